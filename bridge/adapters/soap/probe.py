"""Is the customs certificate service there, as the bridge reaches it? One GET of its WSDL
(`<url>?wsdl`) with the SOAP client's TLS files (CA bundle, client certificate and key), within
a short timeout: reachable when it answers 200 with a WSDL. Nothing is posted, so customs see
no message and no WS-Security login."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass

import requests

from bridge.adapters.soap.client import CustomsEndpoint
from bridge.adapters.soap.tls import tls_failure, tls_session
from bridge.core.errors import ConfigError

MAX_WSDL_BYTES = 1024 * 1024


@dataclass(frozen=True)
class EndpointProbe:
    """`up`: the service answered its WSDL; `reason`: why not (naming the URL); `seconds`: how
    long the check took."""

    up: bool
    reason: str
    seconds: float


def probe_customs(endpoint: CustomsEndpoint, timeout: float) -> EndpointProbe:
    """GET `endpoint.url`?wsdl within `timeout` seconds; never raises for a service that is
    away, answers an error, or fails TLS (that is the answer)."""
    started = time.monotonic()
    url = f"{endpoint.url}?wsdl"

    def down(reason: str) -> EndpointProbe:
        return EndpointProbe(False, f"customs {endpoint.url}: {reason}", time.monotonic() - started)

    tls = endpoint.tls
    try:
        tls.check(endpoint.url)
    except ConfigError as error:
        return down(str(error))
    try:
        with tls_session(tls) as session, session.get(url, timeout=timeout, stream=True) as answer:
            body = answer.raw.read(MAX_WSDL_BYTES, decode_content=True)
            status = answer.status_code
    except ConfigError as error:  # a TLS file gone since the start
        return down(str(error))
    except requests.exceptions.Timeout:
        return down(f"no answer within {timeout:g} s")
    except requests.exceptions.RequestException as error:
        failure = tls_failure(error, endpoint.url, tls)
        if failure is not None:
            return down(str(failure))
        return down(f"not reachable ({_cause(error)})")
    if status != 200:
        return down(f"answered HTTP {status} to GET ?wsdl")
    if b"definitions" not in body[:4096]:
        return down("answered GET ?wsdl with something that is not a WSDL")
    return EndpointProbe(True, "", time.monotonic() - started)


def _cause(error: requests.exceptions.RequestException) -> str:
    # requests' text carries urllib3's pool and object addresses: keep what a person needs.
    text = str(error)
    if "refused" in text.lower():
        return "connection refused: nothing listening?"
    found = re.search(r"\[Errno -?\d+\] ([^')\]]+)", text)
    return found.group(1) if found else text[:200]

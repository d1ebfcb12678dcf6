"""How the customs side checks what it receives against the contract: with the xmlschema
library, a validator independent of the bridge's own (lxml/libxml2), so a certificate the
bridge's validation let through wrongly is still caught here, named by xmlschema's path and
reason.

The messages schema (contract 1.5: the 1.0 messages it includes and SubmitCertificates; it
imports the certificate schema, and admits the certificate and the status update strictly) is
built once per process, on first use: building it takes a tenth of
a second, validating a certificate about a millisecond, and a built schema validates from
several threads at once.

A certificate's signature (contract 1.4) is checked against the issuing authorities the
simulator trusts (`--trusted-authority`, ELBRIDGE_SIM_TRUSTED_AUTHORITIES): with trust
configured, an unsigned, altered or foreign-signed certificate is refused before anything is
stored; without it, certificates are accepted signed or not, as a receiver that has not
enrolled any authority yet would."""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Iterable, Mapping
from decimal import Decimal
from pathlib import Path

import xmlschema
from lxml import etree

from bridge.adapters.signing import SignatureRefused, TrustedAuthorities
from bridge.adapters.soap import BATCH_MESSAGES_SCHEMA_FILE, MESSAGES_NAMESPACE
from bridge.adapters.soap.http_server import SoapFault
from bridge.core.certificate import NAMESPACE as CERTIFICATE_NAMESPACE
from bridge.core.paths import SCHEMAS_DIR

# The prefixes xmlschema's paths are written with.
PREFIXES = {"m": MESSAGES_NAMESPACE, "cert": CERTIFICATE_NAMESPACE}
# What the body element of each operation carries, and what its refusal is called.
_DOCUMENTS = {"cert:Certificate": "certificate", "cert:CertificateStatus": "status update"}

_schema: xmlschema.XMLSchema | None = None
_building = threading.Lock()


def messages_schema() -> xmlschema.XMLSchema:
    """The messages schema as xmlschema builds it, the same object for the whole process.
    Its imports are read from schemas/ only (sandboxed: no other file, no network)."""
    global _schema
    if _schema is None:
        with _building:
            if _schema is None:
                _schema = xmlschema.XMLSchema(
                    str(SCHEMAS_DIR / BATCH_MESSAGES_SCHEMA_FILE), allow="sandbox"
                )
    return _schema


def contract_problems(payload: etree._Element) -> list[str]:
    """Every way the body element of a request (SubmitCertificate, UpdateCertificateStatus)
    breaks the messages schema, each as "<what> refused: <path>: <reason> (xmlschema)", where
    <what> is the certificate, the status update or the message around them and <path> is
    xmlschema's, from the certificate or status update when the problem is inside it; [] when
    valid."""
    # The element is parsed already (bridge.core.xmlsafe); xmlschema reads nothing else.
    resource = xmlschema.XMLResource(payload, allow="none")
    errors = messages_schema().iter_errors(resource, namespaces=PREFIXES)
    return [_described(error) for error in errors]


_SUBMISSION = re.compile(r"/m:Submission\[([0-9]+)\]/cert:")


def batch_problems(payload: etree._Element) -> tuple[list[str], dict[int, list[str]]]:
    """The problems of a SubmitCertificates body element (contract 1.5), in one validation of
    the whole request: those of the message around the certificates (the request is refused
    as a whole), and those inside each Submission's certificate by its index from 0, each
    worded as `contract_problems` words it for the same certificate sent alone."""
    resource = xmlschema.XMLResource(payload, allow="none")
    around: list[str] = []
    inside: dict[int, list[str]] = {}
    for error in messages_schema().iter_errors(resource, namespaces=PREFIXES):
        found = _SUBMISSION.search(error.path or "")
        if found is None:
            around.append(_described(error))
        else:
            inside.setdefault(int(found.group(1)) - 1, []).append(_described(error))
    return around, inside


def _described(error: xmlschema.XMLSchemaValidationError) -> str:
    path = error.path or "/"
    what = "message"
    steps = path.split("/")
    for depth, step in enumerate(steps):
        name = step.split("[", 1)[0]
        if name in _DOCUMENTS:
            what = _DOCUMENTS[name]
            path = "/" + "/".join(steps[depth:])
            break
    reason = error.reason or error.message
    value = error.obj
    if isinstance(value, str | int | Decimal) and not isinstance(value, bool):
        reason = f"{reason}, got {str(value)!r}"
    return f"{what} refused: {path}: {reason} (xmlschema)"


# ---------------------------------------------------------------------------- signatures

TRUSTED_AUTHORITIES_ENV = "ELBRIDGE_SIM_TRUSTED_AUTHORITIES"
SIGNATURE_REFUSED = "SIGNATURE_REFUSED"  # CertexFault code, Transient=false


def trusted_authorities(
    paths: Iterable[Path | str] = (), environ: Mapping[str, str] | None = None
) -> TrustedAuthorities | None:
    """The authority certificates trusted: those in the PEM files `paths` (--trusted-authority)
    and in the files ELBRIDGE_SIM_TRUSTED_AUTHORITIES lists (separated by os.pathsep); None
    when neither names any (signatures are then not required). A ConfigError names a file
    that cannot be read or holds no certificate."""
    environ = os.environ if environ is None else environ
    listed = [part for part in environ.get(TRUSTED_AUTHORITIES_ENV, "").split(os.pathsep) if part]
    named = [*paths, *listed]
    if not named:
        return None
    variable = "--trusted-authority" if paths else TRUSTED_AUTHORITIES_ENV
    return TrustedAuthorities.from_files(named, variable)


def check_signature(certificate: etree._Element, trusted: TrustedAuthorities | None) -> None:
    """Refuse `certificate` with a SOAP Client fault SIGNATURE_REFUSED ("certificate refused:
    not signed", "certificate refused: digest mismatch: ...", "certificate refused: signed by
    an authority not trusted here: CN=...") unless a trusted authority signed it as it is;
    with no authority trusted, every certificate passes."""
    if trusted is None:
        return
    try:
        trusted.verify(certificate)
    except SignatureRefused as refused:
        raise SoapFault.client(SIGNATURE_REFUSED, f"certificate refused: {refused}") from None

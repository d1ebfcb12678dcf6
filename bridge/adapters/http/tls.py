"""The TLS context of the project's HTTP servers: TLS 1.2 or later with the server's certificate
chain and key; when a client CA is given, every client must present a certificate that CA
issued and that is valid now, or the handshake fails."""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path

from bridge.core.errors import ConfigError


@dataclass(frozen=True)
class ServerTls:
    """Where the server's certificate chain and key are (PEM), and the CA bundle client
    certificates are checked against ("" : none asked for)."""

    cert: str
    key: str
    client_ca: str = ""

    def __post_init__(self) -> None:
        if not self.cert or not self.key:
            given = "the certificate" if self.cert else "the key"
            raise ConfigError(f"HTTPS needs both a certificate and its key; only {given} given")


def _readable(what: str, path: str) -> Path:
    file = Path(path).expanduser()
    try:
        with file.open("rb"):
            pass
    except OSError as error:
        raise ConfigError(f"{what} {path}: cannot read it ({error.strerror})") from None
    return file


def server_context(tls: ServerTls) -> ssl.SSLContext:
    """The SSLContext for a server with `tls`; a ConfigError naming the file and the reason
    when a certificate, key or CA bundle cannot be used (never the key's content)."""
    cert = _readable("the server certificate", tls.cert)
    key = _readable("the server key", tls.key)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(cert, key)
    except ssl.SSLError as error:
        raise ConfigError(
            f"the server certificate {tls.cert} and key {tls.key} cannot be used together"
            f" ({error.reason or error})"
        ) from None
    if tls.client_ca:
        ca = _readable("the client CA bundle", tls.client_ca)
        try:
            context.load_verify_locations(cafile=str(ca))
        except ssl.SSLError as error:
            raise ConfigError(
                f"the client CA bundle {tls.client_ca} holds no usable certificate"
                f" ({error.reason or error})"
            ) from None
        context.verify_mode = ssl.CERT_REQUIRED
    return context

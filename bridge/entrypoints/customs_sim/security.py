"""WS-Security as the customs single window checks it: a UsernameToken with a password digest
(or the password as text, which the real single window also accepts over TLS), a nonce not
seen before, Created within five minutes of now, and a wsu:Timestamp, when present, not
expired. The checking itself is the shared verifier, bridge.adapters.soap.wssecurity."""

from __future__ import annotations

from lxml import etree

from bridge.adapters.soap.http_server import SoapFault
from bridge.adapters.soap.wssecurity import AuthenticationFailed, UsernameTokenVerifier


class UsernameTokenCheck:
    """Authenticates requests as the one user `credentials` (username, password) names."""

    def __init__(self, credentials: tuple[str, str]) -> None:
        username, password = credentials
        self.verifier = UsernameTokenVerifier({username: password}, accept_password_text=True)

    def __call__(self, header: etree._Element | None) -> None:
        """Return when the SOAP Header authenticates the request, else raise SoapFault
        AUTHENTICATION_FAILED saying why."""
        try:
            user = self.verifier.verify(header)
        except AuthenticationFailed as failed:
            raise SoapFault.client("AUTHENTICATION_FAILED", failed.reason) from None
        if user is None:
            raise SoapFault.client(
                "AUTHENTICATION_FAILED", "a WS-Security UsernameToken is required"
            )

"""WS-Security as the customs single window checks it: a UsernameToken with a password digest
(or the password as text), a nonce not seen before, Created within five minutes of now, and a
wsu:Timestamp, when present, not expired."""

from __future__ import annotations

import base64
import hashlib
import hmac
import threading
from datetime import UTC, datetime, timedelta

from lxml import etree

from bridge.adapters.soap.http_server import SoapFault

_WSSE_NS = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd"
_WSU_NS = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-utility-1.0.xsd"
_TOKEN_WINDOW = timedelta(minutes=5)  # how far a UsernameToken's Created may be from now


class UsernameTokenCheck:
    """Authenticates requests as the one user `credentials` (username, password) names."""

    def __init__(self, credentials: tuple[str, str]) -> None:
        self.credentials = credentials
        self._nonces: dict[str, datetime] = {}
        self._nonces_lock = threading.Lock()

    def __call__(self, header: etree._Element | None) -> None:
        """Return when the SOAP Header authenticates the request, else raise SoapFault
        AUTHENTICATION_FAILED saying why."""

        def refuse(why: str) -> SoapFault:
            return SoapFault.client("AUTHENTICATION_FAILED", why)

        token = None
        if header is not None:
            token = header.find(f"{{{_WSSE_NS}}}Security/{{{_WSSE_NS}}}UsernameToken")
        if token is None:
            raise refuse("a WS-Security UsernameToken is required")
        expires = header.findtext(
            f"{{{_WSSE_NS}}}Security/{{{_WSU_NS}}}Timestamp/{{{_WSU_NS}}}Expires"
        )
        if expires:
            try:
                expired = datetime.fromisoformat(expires.replace("Z", "+00:00")) < datetime.now(UTC)
            except (TypeError, ValueError):
                raise refuse(f"the Timestamp's Expires {expires!r} is malformed") from None
            if expired:
                raise refuse(f"the message expired at {expires}")
        username, password = self.credentials
        given = token.find(f"{{{_WSSE_NS}}}Password")
        if token.findtext(f"{{{_WSSE_NS}}}Username") != username or given is None:
            raise refuse("unknown user or no password")
        if (given.get("Type") or "").endswith("#PasswordDigest"):
            nonce_text = token.findtext(f"{{{_WSSE_NS}}}Nonce") or ""
            created = token.findtext(f"{{{_WSU_NS}}}Created") or ""
            try:
                nonce = base64.b64decode(nonce_text, validate=True)
                created_at = datetime.fromisoformat(created.replace("Z", "+00:00"))
            except ValueError:
                raise refuse("the token's Nonce or Created is malformed") from None
            if created_at.tzinfo is None:
                created_at = created_at.replace(tzinfo=UTC)
            now = datetime.now(UTC)
            if abs(now - created_at) > _TOKEN_WINDOW:
                raise refuse(f"the token was created at {created}, too far from now")
            expected = base64.b64encode(
                hashlib.sha1(nonce + created.encode() + password.encode()).digest()
            ).decode()
            if not hmac.compare_digest(expected, (given.text or "").strip()):
                raise refuse("the password digest does not match")
            with self._nonces_lock:
                self._nonces = {n: t for n, t in self._nonces.items() if now - t < _TOKEN_WINDOW}
                if nonce_text in self._nonces:
                    raise refuse("the token's nonce was used before (replay)")
                self._nonces[nonce_text] = now
        elif not hmac.compare_digest((given.text or "").encode(), password.encode()):
            raise refuse("the password does not match")

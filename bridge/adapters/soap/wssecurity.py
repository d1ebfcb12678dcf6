"""WS-Security UsernameToken checking for the project's SOAP services (the bridge's query
service, the customs simulator): one verifier for any number of users.

A token authenticates when its password is the user's: as a digest (the profile's
PasswordDigest: Base64(SHA-1(nonce + Created + password))) with a nonce not used before by that
user and a Created within the window of now; or, only where the service accepts it, as the
password itself (PasswordText). A wsu:Timestamp in the same Security header, when present, must
not have expired. The arithmetic is bridge.core.username_token; this module reads the header
and keeps the nonces."""

from __future__ import annotations

import base64
import hmac
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from lxml import etree

from bridge.core.username_token import (
    TOKEN_WINDOW,
    NonceRegister,
    created_problem,
    digest_matches,
    parse_timestamp,
)

WSSE_NS = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd"
WSU_NS = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-utility-1.0.xsd"
_PROFILE = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-username-token-profile-1.0"
PASSWORD_DIGEST = f"{_PROFILE}#PasswordDigest"
PASSWORD_TEXT = f"{_PROFILE}#PasswordText"

# The same words for an unknown user and a wrong password: the caller learns nothing about
# which usernames exist. The audit keeps which one it was.
_NOT_AUTHENTICATED = "unknown user or wrong password"


class AuthenticationFailed(Exception):
    """A UsernameToken that does not authenticate. `reason` is what the caller may be told;
    `detail` what the service's own record may keep (which check failed); `username` as the
    token claimed it."""

    def __init__(self, reason: str, *, detail: str | None = None, username: str | None = None):
        super().__init__(reason)
        self.reason = reason
        self.detail = detail or reason
        self.username = username


@dataclass(frozen=True, slots=True)
class TokenUser:
    """Who a token authenticated, and how: password-digest or password-text."""

    username: str
    method: str


def _wsse(name: str) -> str:
    return f"{{{WSSE_NS}}}{name}"


def _wsu(name: str) -> str:
    return f"{{{WSU_NS}}}{name}"


def username_of(header: etree._Element | None) -> str | None:
    """The username a request's UsernameToken claims (not checked), or None."""
    if header is None:
        return None
    name = header.findtext(f"{_wsse('Security')}/{_wsse('UsernameToken')}/{_wsse('Username')}")
    return None if name is None else name.strip()


class UsernameTokenVerifier:
    """Checks UsernameTokens against `passwords` (username -> password, a mapping or a
    function answering None for an unknown user). PasswordText is refused unless
    `accept_password_text`. Thread-safe: one verifier serves every request of a service."""

    def __init__(
        self,
        passwords: Mapping[str, str] | Callable[[str], str | None],
        *,
        accept_password_text: bool = False,
        window: timedelta = TOKEN_WINDOW,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self._password = passwords.get if isinstance(passwords, Mapping) else passwords
        self.accept_password_text = accept_password_text
        self.window = window
        self.clock = clock or (lambda: datetime.now(UTC))
        self._nonces = NonceRegister(window)
        self._nonces_lock = threading.Lock()

    def verify(self, header: etree._Element | None) -> TokenUser | None:
        """The user the SOAP Header's UsernameToken authenticates; None when the header holds
        no UsernameToken. Raises AuthenticationFailed saying why when there is one and it
        does not authenticate."""
        if header is None:
            return None
        tokens = header.findall(f"{_wsse('Security')}/{_wsse('UsernameToken')}")
        if not tokens:
            return None
        if len(tokens) > 1:
            raise AuthenticationFailed("a request may carry one UsernameToken, not several")
        now = self.clock()
        self._check_timestamp(header, now)
        token = tokens[0]
        username = (token.findtext(_wsse("Username")) or "").strip()
        given = token.find(_wsse("Password"))
        if not username or given is None:
            raise AuthenticationFailed(
                "the UsernameToken needs a Username and a Password", username=username or None
            )
        kind = given.get("Type") or PASSWORD_TEXT  # the profile's default
        if kind == PASSWORD_DIGEST:
            self._check_digest(token, username, given.text or "", now)
            return TokenUser(username, "password-digest")
        if kind == PASSWORD_TEXT and self.accept_password_text:
            self._check_text(username, given.text or "")
            return TokenUser(username, "password-text")
        if kind == PASSWORD_TEXT:
            raise AuthenticationFailed(
                "only a password digest (PasswordDigest with Nonce and Created) is accepted,"
                " never the password itself",
                username=username,
            )
        raise AuthenticationFailed(f"unknown password type {kind!r}", username=username)

    def _check_timestamp(self, header: etree._Element, now: datetime) -> None:
        expires = header.findtext(f"{_wsse('Security')}/{_wsu('Timestamp')}/{_wsu('Expires')}")
        if not expires:
            return
        try:
            expired = parse_timestamp(expires) < now
        except ValueError:
            raise AuthenticationFailed(
                f"the Timestamp's Expires {expires!r} is malformed"
            ) from None
        if expired:
            raise AuthenticationFailed(f"the message expired at {expires}")

    def _check_digest(
        self, token: etree._Element, username: str, given: str, now: datetime
    ) -> None:
        nonce_text = (token.findtext(_wsse("Nonce")) or "").strip()
        created = (token.findtext(_wsu("Created")) or "").strip()
        if not nonce_text or not created:
            raise AuthenticationFailed(
                "a password digest needs the token's Nonce and Created", username=username
            )
        try:
            nonce = base64.b64decode(nonce_text, validate=True)
        except ValueError:  # binascii.Error
            raise AuthenticationFailed(
                "the token's Nonce is not Base64", username=username
            ) from None
        stale = created_problem(created, now, self.window)
        if stale:
            raise AuthenticationFailed(stale, username=username)
        password = self._password(username)
        if password is None or not digest_matches(given, nonce, created, password):
            raise AuthenticationFailed(
                _NOT_AUTHENTICATED,
                detail="unknown user" if password is None else "the password digest does not match",
                username=username,
            )
        # Only a token that authenticated uses up its nonce: nobody else can spend one.
        with self._nonces_lock:
            first = self._nonces.first_use(username, nonce_text, now)
        if not first:
            raise AuthenticationFailed(
                "the token's nonce was used before (a replay)", username=username
            )

    def _check_text(self, username: str, given: str) -> None:
        password = self._password(username)
        if password is None or not _same_text(given, password):
            raise AuthenticationFailed(
                _NOT_AUTHENTICATED,
                detail="unknown user" if password is None else "the password does not match",
                username=username,
            )


def _same_text(given: str, password: str) -> bool:
    return hmac.compare_digest(given.encode("utf-8"), password.encode("utf-8"))

"""The arithmetic of a WS-Security UsernameToken with a password digest (OASIS WSS UsernameToken
Profile 1.1): the digest, whether its Created time is fresh, and the register of nonces already
used. Pure: the time is always given; reading tokens from SOAP headers is
bridge.adapters.soap.wssecurity."""

from __future__ import annotations

import base64
import hashlib
import hmac
from datetime import UTC, datetime, timedelta

# How far a token's Created may be from now, either way (clock skew included): an older token
# is stale, and a nonce needs remembering no longer than this.
TOKEN_WINDOW = timedelta(minutes=5)


def password_digest(nonce: bytes, created: str, password: str) -> str:
    """Base64(SHA-1(nonce + created + password)), as the profile defines it; `created` exactly
    as the token writes it."""
    digest = hashlib.sha1(nonce + created.encode("utf-8") + password.encode("utf-8")).digest()
    return base64.b64encode(digest).decode("ascii")


def digest_matches(given: str, nonce: bytes, created: str, password: str) -> bool:
    """Whether `given` is the password digest of `password` for this nonce and Created, compared
    in constant time."""
    expected = password_digest(nonce, created, password)
    return hmac.compare_digest(expected.encode("ascii"), given.strip().encode("utf-8"))


def parse_timestamp(text: str) -> datetime:
    """An xs:dateTime as WS-Security writes it (UTC, "Z" or an offset; none counts as UTC).
    Raises ValueError when it is not one."""
    moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def created_problem(created: str, now: datetime, window: timedelta = TOKEN_WINDOW) -> str | None:
    """Why a token created at `created` is not acceptable at `now` (malformed, stale, or from
    the future), or None."""
    try:
        created_at = parse_timestamp(created)
    except ValueError:
        return f"the token's Created {created!r} is not a date and time"
    if now - created_at > window:
        return f"the token was created at {created}, more than {_minutes(window)} ago (stale)"
    if created_at - now > window:
        return f"the token was created at {created}, more than {_minutes(window)} from now"
    return None


def _minutes(window: timedelta) -> str:
    minutes = window.total_seconds() / 60
    return f"{minutes:g} minutes"


class NonceRegister:
    """The nonces used within the window, per user: a nonce seen again is a replay. Entries
    older than the window are forgotten, since a token that old is refused as stale anyway.
    Not thread-safe: the caller holds a lock."""

    def __init__(self, window: timedelta = TOKEN_WINDOW) -> None:
        self.window = window
        self._seen: dict[tuple[str, str], datetime] = {}

    def first_use(self, username: str, nonce: str, now: datetime) -> bool:
        """Record (username, nonce) as used at `now`; False when it was used before."""
        # Oldest first (insertion order): forget from the front until one is recent enough.
        while self._seen:
            oldest, at = next(iter(self._seen.items()))
            if now - at <= self.window:
                break
            del self._seen[oldest]
        key = (username, nonce)
        if key in self._seen:
            return False
        self._seen[key] = now
        return True

    def __len__(self) -> int:
        return len(self._seen)

"""Who may use the console: the users file, passwords and the session secret.

- The users file (TOML; ELBRIDGE_CONSOLE_USERS_FILE, default HOME/console/users.toml) holds
  per user a role (`officer` or `auditor`), an optional full name, and the password as an
  scrypt hash (hashlib.scrypt) with a salt of its own. `elbridge console user add` writes it;
  nobody needs to edit it by hand. It is re-read when it changes, so a removed user is out at
  their next request.
- The session cookie is signed (itsdangerous, through Starlette's SessionMiddleware) with the
  secret in ELBRIDGE_CONSOLE_SECRET (or the file ELBRIDGE_CONSOLE_SECRET_FILE names); without
  one, a secret is made once and kept in HOME/console/secret (mode 0600).
- `UserRegistry.authenticate` does the same work for an unknown user as for a wrong password
  (an unknown user's password is hashed too), so timing tells no names.
- `LoginThrottle` stops password guessing: after 5 failed logins for one name, or 20 from one
  address, within 15 minutes, further logins for it are refused unchecked until the oldest of
  those failures is 15 minutes old. Names nobody has are counted alike, so a refusal tells no
  names. Kept in the console process's memory (a restart forgets it).

The login and logout pages are bridge.entrypoints.console.login's."""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
import threading
import tomllib
from collections import deque
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from bridge.core.errors import ConfigError
from bridge.services.config import Settings

OFFICER = "officer"
AUDITOR = "auditor"
ROLES = (OFFICER, AUDITOR)
# scrypt's cost: 16 MiB and some 50 ms a login on this project's machines; stored with each
# hash, so raising it later leaves existing users able to log in.
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1
MIN_PASSWORD_LENGTH = 10
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")


@dataclass(frozen=True)
class User:
    """A console user: login `name`, `role` (officer or auditor) and an optional full name."""

    name: str
    role: str
    full_name: str = ""

    @property
    def actor(self) -> str:
        """How the ledger records this person as the actor of a movement or acknowledgement:
        "Full Name (login)", or the login alone."""
        return f"{self.full_name} ({self.name})" if self.full_name else self.name

    @property
    def may_write(self) -> bool:
        return self.role == OFFICER


@dataclass(frozen=True)
class StoredUser:
    user: User
    salt: bytes
    password_hash: bytes
    n: int = SCRYPT_N
    r: int = SCRYPT_R
    p: int = SCRYPT_P


def hash_password(
    password: str, salt: bytes, *, n: int = SCRYPT_N, r: int = SCRYPT_R, p: int = SCRYPT_P
) -> bytes:
    """scrypt of `password` (UTF-8) with `salt`: 32 bytes."""
    return hashlib.scrypt(
        password.encode("utf-8"), salt=salt, n=n, r=r, p=p, maxmem=256 * n * r + 2**20, dklen=32
    )


def users_file(settings: Settings) -> Path:
    """Where the console's users are: ELBRIDGE_CONSOLE_USERS_FILE, else HOME/console/users.toml."""
    configured = settings.console_users_file
    return Path(configured).expanduser() if configured else settings.home / "console" / "users.toml"


def check_name(name: str) -> str:
    if not _NAME.match(name):
        raise ConfigError(
            f"user name {name!r}: use 1-64 letters, digits, '.', '_', '@' or '-', starting with"
            " a letter or digit"
        )
    return name


def read_users(path: Path) -> dict[str, StoredUser]:
    """The users in the file at `path` (none when it does not exist); a ConfigError naming the
    file, the user and what is wrong otherwise."""
    if not path.exists():
        return {}
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise ConfigError(
            f"{path}: cannot read the console users file ({error.strerror})"
        ) from None
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{path}: not valid TOML: {error}") from None
    users: dict[str, StoredUser] = {}
    table = data.get("users", {})
    if not isinstance(table, dict):
        raise ConfigError(f"{path}: [users] must be a table of users")
    for name, entry in table.items():
        where = f"{path}: user {name!r}"
        if not isinstance(entry, dict):
            raise ConfigError(f"{where}: must be a table")
        role = entry.get("role")
        if role not in ROLES:
            raise ConfigError(f"{where}: role {role!r} is not one of {', '.join(ROLES)}")
        try:
            salt = bytes.fromhex(entry["salt"])
            digest = bytes.fromhex(entry["hash"])
            n, r, p = (
                int(entry.get("n", SCRYPT_N)),
                int(entry.get("r", SCRYPT_R)),
                int(entry.get("p", SCRYPT_P)),
            )
        except (KeyError, ValueError, TypeError) as error:
            raise ConfigError(
                f"{where}: salt and hash must be hex strings, n/r/p numbers ({error})"
            ) from None
        users[name] = StoredUser(
            User(check_name(name), role, str(entry.get("full_name", ""))), salt, digest, n, r, p
        )
    return users


def _toml_string(text: str) -> str:
    # A TOML basic string: JSON's escapes (\" \\ \n \uXXXX) are TOML's too.
    import json

    return json.dumps(text, ensure_ascii=True)


def write_users(path: Path, users: dict[str, StoredUser]) -> None:
    """Write the users file whole (mode 0600: it holds password hashes), replacing the old one
    at once so that a reader never sees half of it."""
    lines = [
        "# The console's users (elbridge console user add|remove). Passwords are scrypt hashes",
        "# with a salt of their own; roles: officer (reads, writes movements, acknowledges",
        "# alerts), auditor (reads).",
    ]
    for name in sorted(users):
        stored = users[name]
        lines += [
            "",
            f"[users.{_toml_string(name)}]",
            f"role = {_toml_string(stored.user.role)}",
            f"full_name = {_toml_string(stored.user.full_name)}",
            f'salt = "{stored.salt.hex()}"',
            f'hash = "{stored.password_hash.hex()}"',
            f"n = {stored.n}",
            f"r = {stored.r}",
            f"p = {stored.p}",
        ]
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write("\n".join(lines) + "\n")
    partial.replace(path)


def add_user(
    path: Path, name: str, role: str, password: str, *, full_name: str = "", replace: bool = False
) -> User:
    """Add (or with `replace`, change) user `name` in the users file; a ConfigError when the
    name, role or password is not acceptable or the user exists already."""
    check_name(name)
    if role not in ROLES:
        raise ConfigError(f"role {role!r}: use {' or '.join(ROLES)}")
    if len(password) < MIN_PASSWORD_LENGTH:
        raise ConfigError(f"the password must have at least {MIN_PASSWORD_LENGTH} characters")
    users = read_users(path)
    if name in users and not replace:
        raise ConfigError(f"user {name!r} exists already in {path} (--replace to change it)")
    salt = secrets.token_bytes(16)
    user = User(name, role, full_name)
    users[name] = StoredUser(user, salt, hash_password(password, salt))
    write_users(path, users)
    return user


def remove_user(path: Path, name: str) -> None:
    users = read_users(path)
    if name not in users:
        raise ConfigError(f"there is no user {name!r} in {path}")
    del users[name]
    write_users(path, users)


class UserRegistry:
    """The users file as the console reads it: loaded again when it changed on disk."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._stamp: tuple[int, int] | None = None
        self._users: dict[str, StoredUser] = {}
        self._dummy_salt = secrets.token_bytes(16)
        self.reload()

    def reload(self) -> None:
        try:
            info = self.path.stat()
            stamp = (info.st_mtime_ns, info.st_size)
        except FileNotFoundError:
            stamp = None
        with self._lock:
            if stamp == self._stamp and (stamp is not None or not self._users):
                return
            self._users = read_users(self.path) if stamp is not None else {}
            self._stamp = stamp

    def get(self, name: str) -> User | None:
        self.reload()
        stored = self._users.get(name)
        return None if stored is None else stored.user

    def __len__(self) -> int:
        self.reload()
        return len(self._users)

    def authenticate(self, name: str, password: str) -> tuple[User | None, str]:
        """(the user, "") when `password` is theirs, else (None, why) for the log; the same
        work either way, so timing tells nothing about which names exist."""
        self.reload()
        stored = self._users.get(name)
        if stored is None:
            hash_password(password, self._dummy_salt)
            return None, "unknown user"
        digest = hash_password(password, stored.salt, n=stored.n, r=stored.r, p=stored.p)
        if not hmac.compare_digest(digest, stored.password_hash):
            return None, "wrong password"
        return stored.user, ""


class LoginThrottle:
    """Failed logins remembered per user name and per client address for `window`. Once a name
    has `per_name` failures in the window (or an address `per_address`), `blocked_until` says
    until when further logins for it are refused without looking at the password."""

    def __init__(
        self,
        *,
        per_name: int = 5,
        per_address: int = 20,
        window: timedelta = timedelta(minutes=15),
    ) -> None:
        self.window = window
        self._limits = {"name": per_name, "address": per_address}
        self._failures: dict[tuple[str, str], deque[datetime]] = {}
        self._lock = threading.Lock()

    def _recent(self, key: tuple[str, str], now: datetime) -> deque[datetime]:
        times = self._failures.get(key, deque())
        while times and times[0] <= now - self.window:
            times.popleft()
        if not times:
            self._failures.pop(key, None)
        return times

    def blocked_until(self, name: str, address: str, now: datetime) -> datetime | None:
        """When logins for `name` from `address` are allowed again; None when they are now."""
        with self._lock:
            ends = []
            for key in (("name", name.lower()), ("address", address)):
                times = self._recent(key, now)
                if len(times) >= self._limits[key[0]]:
                    ends.append(times[-self._limits[key[0]]] + self.window)
            return max(ends, default=None)

    def failed(self, name: str, address: str, now: datetime) -> None:
        """Count a failed login for `name` from `address` (also for names nobody has)."""
        with self._lock:
            if len(self._failures) > 10_000:  # many names tried once: forget what is old
                for key in list(self._failures):
                    self._recent(key, now)
            for key in (("name", name.lower()), ("address", address)):
                self._failures.setdefault(key, deque()).append(now)
                while len(self._failures[key]) > self._limits[key[0]]:
                    self._failures[key].popleft()

    def succeeded(self, name: str) -> None:
        """A login for `name` worked: its failures are forgotten (its address's are kept)."""
        with self._lock:
            self._failures.pop(("name", name.lower()), None)


def session_secret(settings: Settings) -> str:
    """The secret the session cookies are signed with: ELBRIDGE_CONSOLE_SECRET (or _FILE), else
    the one kept in HOME/console/secret, made (mode 0600) the first time."""
    given = settings.console_secret
    if given:
        if len(given) < 16:
            raise ConfigError("ELBRIDGE_CONSOLE_SECRET: use at least 16 characters")
        return given
    path = settings.home / "console" / "secret"
    if path.exists():
        return path.read_text(encoding="utf-8").strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process made it first: use theirs
        return path.read_text(encoding="utf-8").strip()
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(secrets.token_urlsafe(32) + "\n")
    return path.read_text(encoding="utf-8").strip()

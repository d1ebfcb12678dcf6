"""The query service's access: the access file (TOML, bridge.core.query_access says what it
means) with the passwords its entries point at, or, without one, the anonymous mode a
loopback-only service may run in.

An access file looks like this (docs/security.md "Query service"):

    [identities.de-atlas]                 # the name the audit records
    certificate_cn = "atlas.zoll.example" # and/or certificate_san = ["atlas.zoll.example"]
    customs_offices = ["DE004800"]        # counts as member state DE

    [identities.nl-ags]
    username = "nl-ags"                   # WS-Security UsernameToken, password digest only
    password_file = "nl-ags.password"     # relative to this file; or password_env = "NAME"
    member_states = ["NL"]

Passwords never sit in the access file itself; a password file holds the password alone (a
final newline is ignored)."""

from __future__ import annotations

import ipaddress
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from bridge.core.errors import ConfigError
from bridge.core.query_access import AccessFileError, AccessPolicy, Identity, access_policy_from


@dataclass(frozen=True)
class QueryAccess:
    """Who the query service answers: the `policy` of its access file and the passwords of
    its users; or, `policy` None, anyone (anonymous mode, loopback or explicitly allowed)."""

    policy: AccessPolicy | None
    passwords: Mapping[str, str] = field(default_factory=dict, repr=False)

    @property
    def anonymous(self) -> bool:
        return self.policy is None

    def password(self, username: str) -> str | None:
        return self.passwords.get(username)


def load_access_file(path: str | Path, environ: Mapping[str, str] | None = None) -> QueryAccess:
    """The access file at `path` with its users' passwords (files relative to the access
    file's folder; variables from `environ`). Raises AccessFileError naming the file, the entry
    and the problem."""
    environ = os.environ if environ is None else environ
    path = Path(path).expanduser()
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise AccessFileError(f"access file {path}: cannot read it ({exc.strerror})") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise AccessFileError(f"access file {path}: not TOML ({exc})") from None
    policy = access_policy_from(data, str(path))
    passwords = {}
    problems = []
    for identity in policy.identities:
        if identity.username is None:
            continue
        password, problem = _password(identity, path.parent, environ)
        if problem:
            problems.append(f"identity {identity.name!r}: {problem}")
        else:
            passwords[identity.username] = password
    if problems:
        raise AccessFileError(f"access file {path}: " + "; ".join(problems))
    return QueryAccess(policy, passwords)


def _password(identity: Identity, folder: Path, environ: Mapping[str, str]) -> tuple[str, str]:
    """(password, "") or ("", why not): never the value in a message."""
    if identity.password_env is not None:
        value = environ.get(identity.password_env, "")
        if not value:
            return "", f"password_env {identity.password_env} is not set or empty"
        return value, ""
    file = Path(identity.password_file or "").expanduser()
    file = file if file.is_absolute() else folder / file
    try:
        value = file.read_text(encoding="utf-8").rstrip("\r\n")
    except OSError as exc:
        return "", f"password_file {file}: cannot read it ({exc.strerror})"
    except UnicodeDecodeError:
        return "", f"password_file {file}: not UTF-8 text"
    if not value:
        return "", f"password_file {file} is empty"
    return value, ""


def is_loopback(host: str) -> bool:
    """Whether a service listening on `host` can only be reached from this machine."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip().strip("[]")).is_loopback
    except ValueError:
        return False


def query_access(
    access_file: str | Path | None,
    host: str,
    *,
    allow_anonymous: bool = False,
    tls: bool = True,
    environ: Mapping[str, str] | None = None,
) -> QueryAccess:
    """The access a query service listening on `host` (over HTTPS unless not `tls`) runs
    with: its access file's; without one, anonymous, but only on a loopback address unless
    `allow_anonymous` says so. Beyond loopback it needs TLS: licence data and certificates
    do not travel in clear. Raises ConfigError (one line) when it may not start."""
    if not tls and not is_loopback(host):
        raise ConfigError(
            f"the query service on {host} would send licence data in clear: give it"
            " --tls-cert and --tls-key (ELBRIDGE_HTTP_TLS_CERT, ELBRIDGE_HTTP_TLS_KEY), or"
            " listen on a loopback address"
        )
    if access_file:
        if allow_anonymous:
            raise ConfigError(
                f"the query service has an access file ({access_file}) and --allow-anonymous:"
                " choose one"
            )
        return load_access_file(access_file, environ)
    if is_loopback(host) or allow_anonymous:
        return QueryAccess(None)
    raise ConfigError(
        f"the query service on {host} would answer anyone: give it an access file"
        " (--access-file or ELBRIDGE_QUERY_ACCESS_FILE), listen on a loopback address, or"
        " pass --allow-anonymous"
    )

"""Who may ask the bridge's query service what: the identities of the customs systems that call
it, how each is recognised, and the member states whose licences each may ask about. Pure: the
access file is read, and passwords fetched, by bridge.services.query_access.

An identity is recognised by its TLS client certificate (a subject common name, or one of its
subjectAltName values: DNS name, IP address, e-mail or URI) or by a WS-Security UsernameToken
(its username). Its scope is a set of member states, given as such (DE, NL) or through its
customs offices (DE004800 counts as DE: an office's reference number begins with its
country). The query contract carries no customs office, so an office is what its member state
is; the offices are recorded for the audit.

What the scope allows, per operation (docs/security.md "Query service"):

- CheckAvailability: a licence issued by a member state in scope. An unknown licence is
  refused in the same words as one outside the scope, so that a caller cannot learn whether a
  licence exists outside its scope. A CustomsCountry, when given, must be in scope.
- ListSupportingDocuments: a holder whose EORI was given by a member state in scope (its
  two-letter prefix); the answer lists only the holder's licences issued by member states in
  scope. Both are decided from the request and the licences' issuers, never from whether
  anything exists."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from bridge.core.codes import country_problem
from bridge.core.errors import ConfigError

# A customs office reference number (the EU customs office list): country, then six letters or
# digits.
_OFFICE = re.compile(r"[A-Z]{2}[A-Z0-9]{6}")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,99}")

_ENTRY_KEYS = {
    "certificate_cn",
    "certificate_san",
    "username",
    "password_file",
    "password_env",
    "customs_offices",
    "member_states",
}

# How a caller proved who it is (query_audit.authentication).
BY_CERTIFICATE = "certificate"
BY_TOKEN = "username-token"
NOT_AUTHENTICATED = "none"

# The fault codes of a refusal.
AUTHENTICATION_FAILED = "AUTHENTICATION_FAILED"
ACCESS_DENIED = "ACCESS_DENIED"


class AccessFileError(ConfigError):
    """An access file that cannot be used: which file, which entry, what is wrong."""


@dataclass(frozen=True, slots=True)
class Identity:
    """One customs system the query service answers: `name` (the access file's), what
    recognises it, and its scope."""

    name: str
    member_states: frozenset[str]  # the scope: those given and those of the offices
    customs_offices: tuple[str, ...] = ()
    certificate_cn: str | None = None
    certificate_san: tuple[str, ...] = ()
    username: str | None = None
    password_file: str | None = None  # as the access file wrote it
    password_env: str | None = None

    @property
    def scope(self) -> str:
        """The scope in words, for refusals: "member states DE, NL"."""
        states = ", ".join(sorted(self.member_states))
        return f"member state{'s' if len(self.member_states) > 1 else ''} {states}"

    def recognises(self, common_names: Iterable[str], alt_names: Iterable[str]) -> bool:
        """Whether a client certificate with these subject common names and subjectAltName
        values is this identity's."""
        if self.certificate_cn is not None and self.certificate_cn in set(common_names):
            return True
        return bool(set(self.certificate_san) & set(alt_names))


@dataclass(frozen=True, slots=True)
class AccessPolicy:
    """The identities of one access file (`source`)."""

    identities: tuple[Identity, ...]
    source: str = ""

    def by_certificate(
        self, common_names: Iterable[str], alt_names: Iterable[str]
    ) -> list[Identity]:
        """The identities a client certificate recognises (normally one)."""
        names, alts = tuple(common_names), tuple(alt_names)
        return [identity for identity in self.identities if identity.recognises(names, alts)]

    def by_username(self, username: str) -> Identity | None:
        return next((i for i in self.identities if i.username == username), None)


@dataclass(frozen=True, slots=True)
class Refusal:
    """A question the service does not answer: the fault `code`, the `reason` the caller is
    told, and the `detail` only the audit keeps (never sent)."""

    code: str
    reason: str
    detail: str = ""

    @property
    def recorded(self) -> str:
        return f"{self.reason} ({self.detail})" if self.detail else self.reason


@dataclass(frozen=True, slots=True)
class Caller:
    """Who is asking, as far as the service could tell: the identity (None: not recognised),
    how it was authenticated (certificate, username-token, none), the credential presented
    (a certificate's common name, a token's username) and the client's address."""

    identity: Identity | None
    authentication: str = NOT_AUTHENTICATED
    credential: str | None = None
    client_address: str | None = None


@dataclass(frozen=True, slots=True)
class QueryAuditEntry:
    """One row of the query audit: who asked, when, what, and what came of it (answered,
    refused, failed) with the fault's code and the reason."""

    at: datetime
    operation: str
    outcome: str
    identity: str | None = None
    authentication: str = NOT_AUTHENTICATED
    credential: str | None = None
    client_address: str | None = None
    holder_eori: str | None = None
    licence_number: str | None = None
    code: str | None = None
    reason: str | None = None


# ------------------------------------------------------------------------------ deciding


def identify(
    policy: AccessPolicy,
    *,
    common_names: Iterable[str] = (),
    alt_names: Iterable[str] = (),
    token_username: str | None = None,
) -> Identity | Refusal:
    """The identity a request authenticates as: its UsernameToken's user when it carried one
    (already verified), else its client certificate's; a Refusal when neither recognises
    one."""
    names, alts = tuple(common_names), tuple(alt_names)
    if token_username is not None:
        identity = policy.by_username(token_username)
        if identity is None:  # the verifier knows only the file's users: not reached
            return Refusal(AUTHENTICATION_FAILED, "unknown user or wrong password", "unknown")
        return identity
    if not names and not alts:
        return Refusal(
            AUTHENTICATION_FAILED,
            "a client certificate or a WS-Security UsernameToken is required",
        )
    found = policy.by_certificate(names, alts)
    shown = ", ".join(names or alts)
    if not found:
        return Refusal(ACCESS_DENIED, f"the client certificate {shown} may not ask anything")
    if len(found) > 1:
        which = ", ".join(identity.name for identity in found)
        return Refusal(
            ACCESS_DENIED,
            f"the client certificate {shown} matches several identities",
            f"identities {which}",
        )
    return found[0]


def holder_refusal(identity: Identity, holder_eori: str) -> Refusal | None:
    """Why `identity` may not list the documents of the holder `holder_eori` (normalised), or
    None: the EORI's country must be in its scope."""
    if holder_eori[:2] in identity.member_states:
        return None
    return Refusal(
        ACCESS_DENIED,
        f"holder {holder_eori} is not one you may ask about (your scope: {identity.scope})",
    )


def licence_refusal(
    identity: Identity, reference: str, issuing_member_state: str | None
) -> Refusal | None:
    """Why `identity` may not ask about licence `reference`, issued by `issuing_member_state`
    (None: no such licence), or None. Unknown and out of scope read alike."""
    if issuing_member_state is not None and issuing_member_state in identity.member_states:
        return None
    detail = (
        "no such licence" if issuing_member_state is None else f"issued by {issuing_member_state}"
    )
    return Refusal(
        ACCESS_DENIED,
        f"licence {reference} is not one you may ask about (your scope: {identity.scope})",
        detail,
    )


def country_refusal(identity: Identity, country: str | None) -> Refusal | None:
    """Why `identity` may not ask with CustomsCountry `country`, or None."""
    if country is None or country in identity.member_states:
        return None
    return Refusal(
        ACCESS_DENIED,
        f"CustomsCountry {country} is not one you may ask for (your scope: {identity.scope})",
    )


def in_scope(identity: Identity, issuing_member_state: str) -> bool:
    """Whether a licence issued by `issuing_member_state` is within the identity's scope."""
    return issuing_member_state in identity.member_states


# ------------------------------------------------------------------------------- reading


def access_policy_from(data: Mapping[str, Any], source: str) -> AccessPolicy:
    """The policy an access file (parsed into `data`) describes. Raises AccessFileError naming
    `source`, each wrong entry and what is wrong with it, all at once, on one line."""
    problems: list[str] = []
    unknown = sorted(set(data) - {"identities"})
    if unknown:
        problems.append(f"unknown key {', '.join(unknown)} (expected [identities.<name>] tables)")
    entries = data.get("identities")
    if not isinstance(entries, Mapping) or not entries:
        problems.append("no identities: add at least one [identities.<name>] table")
        entries = {}
    identities = []
    for name, entry in entries.items():
        identity, wrong = _identity(str(name), entry)
        problems.extend(f"identity {name!r}: {problem}" for problem in wrong)
        if identity is not None:
            identities.append(identity)
    problems.extend(_duplicates(identities))
    if problems:
        raise AccessFileError(f"access file {source}: " + "; ".join(problems))
    return AccessPolicy(tuple(identities), source)


def _identity(name: str, entry: Any) -> tuple[Identity | None, list[str]]:
    if not isinstance(entry, Mapping):
        return None, ["is not a table of settings"]
    problems = []
    if not _NAME.fullmatch(name):
        problems.append("a name is letters, digits and . _ @ - (up to 100)")
    unknown = sorted(set(entry) - _ENTRY_KEYS - {"password"})
    if unknown:
        problems.append(f"unknown setting {', '.join(unknown)}")
    texts: dict[str, str | None] = {}
    for key in ("certificate_cn", "username", "password_file", "password_env"):
        value = entry.get(key)
        if value is not None and (not isinstance(value, str) or not value.strip()):
            problems.append(f"{key} must be a non-empty string")
            value = None
        texts[key] = value
    if "password" in entry:
        problems.append(
            "a password never goes in the access file: use password_file or password_env"
        )
    sans = _strings(entry.get("certificate_san", []), "certificate_san", problems)
    offices = _strings(entry.get("customs_offices", []), "customs_offices", problems)
    states = _strings(entry.get("member_states", []), "member_states", problems)
    if texts["certificate_cn"] is None and not sans and texts["username"] is None:
        problems.append("needs certificate_cn, certificate_san or username to recognise it by")
    secrets = [key for key in ("password_file", "password_env") if texts[key] is not None]
    if texts["username"] is not None and len(secrets) != 1:
        problems.append("a username needs its password from password_file or password_env (one)")
    if texts["username"] is None and secrets:
        problems.append(f"{secrets[0]} without a username")
    for office in offices:
        if not _OFFICE.fullmatch(office):
            problems.append(
                f"customs office {office!r}: a reference number is two capital letters of the"
                " country and six letters or digits (DE004800)"
            )
    for state in states:
        wrong = country_problem(state)
        if wrong:
            problems.append(f"member state {state!r}: {wrong}")
    if not offices and not states:
        problems.append("needs customs_offices or member_states: what it may ask about")
    if problems:
        return None, problems
    scope = frozenset(states) | {office[:2] for office in offices}
    return (
        Identity(
            name=name,
            member_states=scope,
            customs_offices=tuple(offices),
            certificate_cn=texts["certificate_cn"],
            certificate_san=tuple(sans),
            username=texts["username"],
            password_file=texts["password_file"],
            password_env=texts["password_env"],
        ),
        [],
    )


def _strings(value: Any, key: str, problems: list[str]) -> list[str]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        problems.append(f"{key} must be a list of non-empty strings")
        return []
    return list(value)


def _duplicates(identities: list[Identity]) -> list[str]:
    problems = []
    seen: dict[tuple[str, str], str] = {}
    for identity in identities:
        keys = [("username", identity.username), ("certificate_cn", identity.certificate_cn)]
        keys += [("certificate_san", san) for san in identity.certificate_san]
        for kind, value in keys:
            if value is None:
                continue
            other = seen.setdefault((kind, value), identity.name)
            if other != identity.name:
                problems.append(
                    f"identity {identity.name!r}: {kind} {value!r} is already {other!r}'s"
                )
    return problems


__all__ = [
    "ACCESS_DENIED",
    "AUTHENTICATION_FAILED",
    "BY_CERTIFICATE",
    "BY_TOKEN",
    "NOT_AUTHENTICATED",
    "AccessFileError",
    "AccessPolicy",
    "Caller",
    "Identity",
    "QueryAuditEntry",
    "Refusal",
    "access_policy_from",
    "country_refusal",
    "holder_refusal",
    "identify",
    "in_scope",
    "licence_refusal",
]

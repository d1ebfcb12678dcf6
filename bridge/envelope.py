"""The MQTT event envelope: how a customs system tells the bridge that a declaration was
released, amended or invalidated (docs/envelope.md is the contract).

Pure: `parse_envelope` reads and checks one message (all problems at once), `read_event` also
reads the WCO declaration it carries, `build_envelope` writes one."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from bridge.codes import country_problem
from bridge.declaration import Declaration, read_declaration
from bridge.errors import Problem, Rejected

ENVELOPE = "elbridge.declaration-event/1"
PAYLOAD_FORMAT = "wco-dec-dms-2"
MAX_MESSAGE_ID = 200

# EU and UK MRN (DE 12 01... 18 characters): two-digit year, two-letter country, fourteen
# letters or digits (the last a check character, not verified here).
_MRN = re.compile(r"[0-9]{2}[A-Z]{2}[A-Z0-9]{14}")
_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"


class EventKind(StrEnum):
    RELEASED = "released"
    AMENDED = "amended"
    INVALIDATED = "invalidated"


@dataclass(frozen=True, slots=True)
class Envelope:
    message_id: str
    mrn: str
    event: EventKind
    event_time: datetime  # timezone-aware, as sent
    declaration_version: int
    country: str | None
    payload_format: str
    payload: str | None


@dataclass(frozen=True, slots=True)
class DeclarationEvent:
    """One message, read: the envelope, the declaration it carries (None for an invalidation
    without payload) and the bytes as received (kept to hold an early amendment)."""

    envelope: Envelope
    declaration: Declaration | None
    raw: bytes = b""

    @property
    def message_id(self) -> str:
        return self.envelope.message_id

    @property
    def mrn(self) -> str:
        return self.envelope.mrn

    @property
    def kind(self) -> EventKind:
        return self.envelope.event

    @property
    def version(self) -> int:
        return self.envelope.declaration_version

    @property
    def country(self) -> str | None:
        if self.envelope.country:
            return self.envelope.country
        return self.declaration.country if self.declaration else None


def mrn_problem(mrn: str) -> str | None:
    if not _MRN.fullmatch(mrn or ""):
        return (
            "an MRN is 18 characters: two-digit year, two-letter country, then 14 capital"
            " letters or digits (e.g. 24GBDIRIGZ7QLCPAA8)"
        )
    return None


def parse_envelope(data: bytes, *, max_bytes: int, source: str = "") -> Envelope:
    """The envelope in `data`, or `Rejected` with every problem found. The size is checked
    before anything is parsed; members not in the contract are ignored."""
    if len(data) > max_bytes:
        raise Rejected(
            [Problem(f"message is {len(data)} bytes, over the limit of {max_bytes}", "", source)],
            summary="envelope refused",
        )
    problems: list[Problem] = []

    def problem(reason: str, path: str, value: Any = None) -> None:
        shown = None if value is None else str(value)[:200]
        problems.append(Problem(reason, path, source, shown, "bad-envelope"))

    try:
        # The contract says UTF-8; json.loads(bytes) would also guess UTF-16 and UTF-32.
        document = json.loads(data.decode("utf-8"), object_pairs_hook=_no_duplicate_members)
    except UnicodeDecodeError as error:
        problem(f"the message is not UTF-8 text: {error.reason}", "")
        raise Rejected(problems, summary="envelope refused") from None
    except (ValueError, RecursionError) as error:
        problem(f"the message is not a JSON document: {error}", "")
        raise Rejected(problems, summary="envelope refused") from None
    if not isinstance(document, dict):
        problem("the message is a JSON value but not an object", "")
        raise Rejected(problems, summary="envelope refused")

    name = document.get("envelope")
    if name != ENVELOPE:
        problem(f"envelope must be {ENVELOPE!r}", "envelope", name)
    message_id = document.get("message_id")
    if not isinstance(message_id, str) or not message_id.strip():
        problem("message_id must be a non-empty string", "message_id", message_id)
    elif len(message_id) > MAX_MESSAGE_ID:
        problem(f"message_id is longer than {MAX_MESSAGE_ID} characters", "message_id")
    mrn = document.get("mrn")
    if not isinstance(mrn, str):
        problem("mrn must be a string", "mrn", mrn)
    elif reason := mrn_problem(mrn):
        problem(reason, "mrn", mrn)
    event = document.get("event")
    if event not in tuple(EventKind):
        problem(f"event must be one of {', '.join(EventKind)}", "event", event)
    event_time = _event_time(document.get("event_time"), problem)
    version = document.get("declaration_version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        problem("declaration_version must be a whole number from 1", "declaration_version", version)
    country = document.get("country")
    if country is not None and (not isinstance(country, str) or country_problem(country)):
        problem(
            country_problem(country) if isinstance(country, str) else "country must be a string",
            "country",
            country,
        )
    payload_format = document.get("payload_format")
    if payload_format != PAYLOAD_FORMAT:
        problem(f"payload_format must be {PAYLOAD_FORMAT!r}", "payload_format", payload_format)
    payload = document.get("payload")
    if payload is not None and not isinstance(payload, str):
        problem("payload must be the declaration XML as a string", "payload")
    elif payload is None and event in (EventKind.RELEASED, EventKind.AMENDED):
        problem(f"a {event} event carries the declaration in payload", "payload")
    if problems:
        raise Rejected(problems, summary="envelope refused")
    return Envelope(
        message_id=message_id,
        mrn=mrn,
        event=EventKind(event),
        event_time=event_time,
        declaration_version=version,
        country=country,
        payload_format=payload_format,
        payload=payload,
    )


def read_event(data: bytes, *, max_bytes: int, source: str = "") -> DeclarationEvent:
    """The envelope and the declaration it carries, checked together: the envelope's MRN must
    be the declaration's Declaration/ID when it has one, a release or amendment is not a
    cancellation, and the envelope's country agrees with the declaration's."""
    envelope = parse_envelope(data, max_bytes=max_bytes, source=source)
    source = source or envelope.message_id
    if envelope.payload is None:
        return DeclarationEvent(envelope, None, data)
    declaration = read_declaration(
        envelope.payload.encode("utf-8"), max_bytes=max_bytes, source=source
    )
    problems = []
    if declaration.mrn is not None and declaration.mrn != envelope.mrn:
        problems.append(
            Problem(
                f"the envelope's mrn {envelope.mrn} is not the declaration's ID {declaration.mrn}",
                "mrn",
                source,
                envelope.mrn,
                "mrn-mismatch",
            )
        )
    if declaration.is_cancellation and envelope.event is not EventKind.INVALIDATED:
        problems.append(
            Problem(
                f"a {envelope.event} event carries a cancellation (FunctionCode 13, TypeCode INV)",
                "event",
                source,
                str(envelope.event),
                "event-mismatch",
            )
        )
    if envelope.country and declaration.country and envelope.country != declaration.country:
        problems.append(
            Problem(
                f"the envelope's country {envelope.country} is not the declaration's"
                f" ResponsibleCountryCode {declaration.country}",
                "country",
                source,
                envelope.country,
                "country-mismatch",
            )
        )
    if problems:
        raise Rejected(problems, summary="event refused")
    return DeclarationEvent(envelope, declaration, data)


def build_envelope(
    *,
    message_id: str,
    mrn: str,
    event: EventKind | str,
    event_time: datetime,
    declaration_version: int = 1,
    payload: str | bytes | None = None,
    country: str | None = None,
) -> bytes:
    """One envelope as UTF-8 JSON bytes. `event_time` must be timezone-aware."""
    if event_time.tzinfo is None or event_time.utcoffset() is None:
        raise ValueError("event_time must carry its time zone")
    if isinstance(payload, bytes):
        payload = payload.decode("utf-8")
    document: dict[str, Any] = {
        "envelope": ENVELOPE,
        "message_id": message_id,
        "mrn": mrn,
        "event": str(EventKind(event)),
        "event_time": event_time.isoformat(),
        "declaration_version": declaration_version,
        "payload_format": PAYLOAD_FORMAT,
    }
    if country is not None:
        document["country"] = country
    if payload is not None:
        document["payload"] = payload
    return json.dumps(document, ensure_ascii=False).encode("utf-8")


def mrn_from_lrn(lrn: str, *, year: int, country: str) -> str:
    """A deterministic stand-in MRN for a declaration that has none yet (a sample lodged
    before acceptance): two-digit year, country, then 14 characters from SHA-256 of the LRN."""
    number = int.from_bytes(hashlib.sha256(lrn.encode("utf-8")).digest(), "big")
    tail = []
    for _ in range(14):
        number, digit = divmod(number, len(_ALPHABET))
        tail.append(_ALPHABET[digit])
    return f"{year % 100:02d}{country.upper()}{''.join(tail)}"


def _event_time(raw: Any, problem) -> datetime | None:
    if not isinstance(raw, str):
        problem("event_time must be an ISO 8601 date and time with its zone", "event_time", raw)
        return None
    try:
        parsed = datetime.fromisoformat(raw)
    except ValueError:
        problem("event_time is not an ISO 8601 date and time", "event_time", raw)
        return None
    if parsed.tzinfo is None or parsed.utcoffset() is None:
        problem("event_time must carry its zone (Z or +hh:mm)", "event_time", raw)
        return None
    return parsed


def _no_duplicate_members(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise ValueError(f"member {key!r} appears twice")
        result[key] = value
    return result

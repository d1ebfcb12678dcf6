"""The MQTT event envelope: how a customs system tells the bridge that a declaration was
released, amended or invalidated, and the result message the bridge answers each event with
(docs/envelope.md is the contract).

Pure: `parse_envelope` reads and checks one message (all problems at once), `read_event` also
reads the WCO declaration it carries, `build_envelope` writes one (`envelope_for_declaration`
around a WCO declaration); `build_result` and `parse_result` write and read a result message."""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from typing import Any

from bridge.core.codes import country_problem
from bridge.core.declaration import (
    CANCELLATION_TYPE_CODE,
    ORIGINAL_FUNCTION_CODE,
    REQUEST_FUNCTION_CODE,
    Declaration,
    read_declaration,
)
from bridge.core.errors import Problem, Rejected

ENVELOPE = "elbridge.declaration-event/1"
RESULT_ENVELOPE = "elbridge.declaration-result/1"
PAYLOAD_FORMAT = "wco-dec-dms-2"
MAX_MESSAGE_ID = 200
# The ledger keeps versions in a 32-bit integer column (PostgreSQL `integer`); customs count
# amendments of one declaration in ones.
MAX_DECLARATION_VERSION = 2**31 - 1
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")
_SURROGATE = re.compile("[\ud800-\udfff]")

# EU and UK MRN (DE 12 01... 18 characters): two-digit year, two-letter country, fourteen
# letters or digits (the last a check character, not verified here).
_MRN = re.compile(r"[0-9]{2}[A-Z]{2}[A-Z0-9]{14}")
_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"


class EventKind(StrEnum):
    RELEASED = "released"
    AMENDED = "amended"
    INVALIDATED = "invalidated"


_EVENT_KINDS = tuple(EventKind)  # a tuple: a JSON value may be unhashable (a list, an object)


def event_kind(function_code: str | None, type_code: str | None) -> EventKind | None:
    """The event a declaration message is, by its FunctionCode and TypeCode: 9 (an original
    declaration) is a release, 13 with TypeCode INV a cancellation (invalidation), any other
    13 an amendment; None for another FunctionCode."""
    if function_code == ORIGINAL_FUNCTION_CODE:
        return EventKind.RELEASED
    if function_code == REQUEST_FUNCTION_CODE:
        if type_code == CANCELLATION_TYPE_CODE:
            return EventKind.INVALIDATED
        return EventKind.AMENDED
    return None


def declared_kind(declaration: Declaration) -> EventKind | None:
    """The event `declaration` is (`event_kind` of its codes)."""
    return event_kind(declaration.function_code, declaration.type_code)


@dataclass(frozen=True, slots=True)
class Envelope:
    message_id: str
    mrn: str
    # As sent; None when the sender left it out. Once read with its payload (`read_event`),
    # always the kind the declaration is.
    event: EventKind | None
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
        assert self.envelope.event is not None  # read_event settles it
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
    return _read_envelope(data, max_bytes, source)[0]


def _read_envelope(data: bytes, max_bytes: int, source: str) -> tuple[Envelope, bytes | None]:
    """`parse_envelope`'s answer, with the payload as UTF-8 bytes (encoded once, for the
    XML parser)."""
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
        document = _json_members(data.decode("utf-8"))
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
    elif not _is_text(message_id):
        problem("message_id holds an escaped lone surrogate, which is no character", "message_id")
    elif control := _CONTROL.search(message_id):
        problem(
            f"message_id holds the control character U+{ord(control.group()):04X} at"
            f" character {control.start()}; an id is printable text",
            "message_id",
            message_id,
        )
    mrn = document.get("mrn")
    if not isinstance(mrn, str):
        problem("mrn must be a string", "mrn", mrn)
    elif reason := mrn_problem(mrn):
        problem(reason, "mrn", mrn)
    event = document.get("event")
    if event is not None and event not in _EVENT_KINDS:
        problem(
            f"event must be one of {', '.join(EventKind)}, or left out (the declaration's"
            " FunctionCode and TypeCode then say it)",
            "event",
            event,
        )
    event_time = _event_time(document.get("event_time"), problem)
    version = document.get("declaration_version")
    if (
        not isinstance(version, int)
        or isinstance(version, bool)
        or not 1 <= version <= MAX_DECLARATION_VERSION
    ):
        problem(
            f"declaration_version must be a whole number from 1 to {MAX_DECLARATION_VERSION}",
            "declaration_version",
            version,
        )
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
    encoded = None
    # Only a surrogate has no UTF-8 form: when the payload encodes, it holds none (and the
    # search below, which says which and where, is not needed).
    if isinstance(payload, str):
        with contextlib.suppress(UnicodeEncodeError):
            encoded = payload.encode("utf-8")
    if payload is not None and not isinstance(payload, str):
        problem("payload must be the declaration XML as a string", "payload")
    elif encoded is None and payload is not None and (surrogate := _SURROGATE.search(payload)):
        problem(
            f"payload holds an escaped lone surrogate (U+{ord(surrogate.group()):04X}) at"
            f" character {surrogate.start()}, which is no character: the declaration cannot"
            " be UTF-8 XML",
            "payload",
        )
    elif payload is None and event in (EventKind.RELEASED, EventKind.AMENDED):
        problem(f"a {event} event carries the declaration in payload", "payload")
    elif payload is None and event is None:
        problem(
            "without event, the message carries the declaration in payload (its FunctionCode"
            " and TypeCode say what it is)",
            "payload",
        )
    if problems:
        raise Rejected(problems, summary="envelope refused")
    envelope = Envelope(
        message_id=message_id,
        mrn=mrn,
        event=None if event is None else EventKind(event),
        event_time=event_time,
        declaration_version=version,
        country=country,
        payload_format=payload_format,
        payload=payload,
    )
    return envelope, encoded


def read_event(data: bytes, *, max_bytes: int, source: str = "") -> DeclarationEvent:
    """The envelope and the declaration it carries, checked together: the envelope's MRN must
    be the declaration's Declaration/ID when it has one, the envelope's country agrees with the
    declaration's, and the event is the one the declaration is (`declared_kind`): when the
    envelope leaves `event` out it is taken from the declaration; when it names another kind
    (an amendment sent as `released`, an original as `amended`, a cancellation as `released`...)
    the message is refused (`event-mismatch`, naming both), never applied as either.

    The event's envelope no longer holds the payload text once it is read: the declaration
    is there as read, and the message as received in `raw` (a batch holds hundreds of events
    and needs neither twice)."""
    envelope, payload = _read_envelope(data, max_bytes, source)
    source = source or envelope.message_id
    if payload is None:  # an invalidation without payload: parse_envelope saw to it
        return DeclarationEvent(envelope, None, data)
    declaration = read_declaration(payload, max_bytes=max_bytes, source=source)
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
    kind = declared_kind(declaration)
    if kind is None and envelope.event is None:
        problems.append(
            Problem(
                f"the envelope names no event and the payload is {declaration.kind_of_message}:"
                " FunctionCode 9 is an original declaration (released), 13 an amendment, or"
                " with TypeCode INV a cancellation (invalidated)",
                "event",
                source,
                None,
                "event-unknown",
            )
        )
    elif kind is not None and envelope.event is not None and kind is not envelope.event:
        problems.append(
            Problem(
                f"the envelope says {envelope.event} but the payload is"
                f" {declaration.kind_of_message}, which is {kind}: the message is refused,"
                " not applied as either",
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
    settled = Envelope(
        envelope.message_id,
        envelope.mrn,
        envelope.event or kind,
        envelope.event_time,
        envelope.declaration_version,
        envelope.country,
        envelope.payload_format,
        None,
    )
    return DeclarationEvent(settled, declaration, data)


@dataclass(frozen=True, slots=True)
class EnvelopeHints:
    """What a message that cannot be read still says about itself, for its quarantine record
    and its `quarantined` result: each member only when it is well formed."""

    message_id: str | None = None
    mrn: str | None = None
    event: str | None = None


def envelope_hints(data: bytes, *, max_bytes: int) -> EnvelopeHints:
    """The message id, MRN and event of a message whose envelope is a JSON object, however
    wrong the rest; the event taken from the payload's FunctionCode and TypeCode when the
    envelope names none and the payload can be read."""
    if len(data) > max_bytes:
        return EnvelopeHints()
    try:
        document = json.loads(data)
    except (ValueError, RecursionError):
        return EnvelopeHints()
    if not isinstance(document, dict):
        return EnvelopeHints()
    message_id = document.get("message_id")
    mrn = document.get("mrn")
    event = document.get("event")
    if event is None and isinstance(document.get("payload"), str):
        try:
            declaration = read_declaration(document["payload"].encode("utf-8"), max_bytes=max_bytes)
        except (Rejected, UnicodeEncodeError):
            declaration = None
        found = declared_kind(declaration) if declaration is not None else None
        event = None if found is None else str(found)
    return EnvelopeHints(
        message_id=message_id[:MAX_MESSAGE_ID] if isinstance(message_id, str) else None,
        mrn=mrn if isinstance(mrn, str) and mrn_problem(mrn) is None else None,
        event=event if event in _EVENT_KINDS else None,
    )


def build_envelope(
    *,
    message_id: str,
    mrn: str,
    event: EventKind | str | None,
    event_time: datetime,
    declaration_version: int = 1,
    payload: str | bytes | None = None,
    country: str | None = None,
) -> bytes:
    """One envelope as UTF-8 JSON bytes (without `event` when it is None: the bridge takes it
    from the declaration). `event_time` must be timezone-aware."""
    if event_time.tzinfo is None or event_time.utcoffset() is None:
        raise ValueError("event_time must carry its time zone")
    if isinstance(payload, bytes):
        payload = payload.decode("utf-8")
    document: dict[str, Any] = {
        "envelope": ENVELOPE,
        "message_id": message_id,
        "mrn": mrn,
        "event": None if event is None else str(EventKind(event)),
        "event_time": event_time.isoformat(),
        "declaration_version": declaration_version,
        "payload_format": PAYLOAD_FORMAT,
    }
    if event is None:
        del document["event"]
    if country is not None:
        document["country"] = country
    if payload is not None:
        document["payload"] = payload
    return json.dumps(document, ensure_ascii=False).encode("utf-8")


def envelope_for_declaration(
    data: bytes,
    *,
    source: str,
    name: str | None = None,
    event: EventKind | str | None,
    mrn: str | None = None,
    version: int = 1,
    event_time: datetime,
    message_id: str | None = None,
    country: str | None = None,
) -> bytes:
    """An envelope carrying the WCO declaration `data` (read from `source`, for messages).

    MRN: `mrn` when given, else the declaration's own ID, else one derived from its LRN
    (`mrn_from_lrn`: event year, customs country, a hash of the LRN, or of `name` when it has
    none), so that the same declaration always gets the same MRN. Message id: `message_id`,
    else `<mrn>-<event>-v<version>`, so publishing the same event twice is recognised as a
    redelivery. Without `event` the envelope leaves it out (the bridge takes it from the
    declaration) and the default message id names the kind the declaration is."""
    declaration = read_declaration(data, max_bytes=len(data) + 1, source=source)
    if mrn is None:
        mrn = declaration.mrn
    if mrn is None:
        where = country or declaration.country or "EU"
        mrn = mrn_from_lrn(declaration.lrn or name or source, year=event_time.year, country=where)
    kind = EventKind(event) if event is not None else declared_kind(declaration)
    return build_envelope(
        message_id=message_id or f"{mrn}-{kind or 'event'}-v{version}",
        mrn=mrn,
        event=None if event is None else kind,
        event_time=event_time,
        declaration_version=version,
        payload=data.decode("utf-8"),
        country=country,
    )


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


def _is_text(value: str) -> bool:
    """Whether `value` is text UTF-8 can carry (JSON escapes can smuggle in lone surrogates)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _no_duplicate_members(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):  # some member appears twice: name the first one repeated
        seen = set()
        for key, _ in pairs:
            if key in seen:
                raise ValueError(f"member {key!r} appears twice")
            seen.add(key)
    return result


# One decoder for every message (json.loads with a hook builds a new one per call).
_JSON = json.JSONDecoder(object_pairs_hook=_no_duplicate_members)


def _json_members(text: str) -> Any:
    """`text` decoded as json.loads with `_no_duplicate_members` would, errors included."""
    if text.startswith("\ufeff"):
        return json.loads(text)  # refuses a byte order mark in its own words; the decoder would not
    return _JSON.decode(text)


# The result message ---------------------------------------------------------------------------


class DocumentStatus(StrEnum):
    """What the bridge did with one supporting document of a declaration event."""

    ACCEPTED = "accepted"  # written off (or adjusted) against a line with a ceiling
    RECORDED = "recorded"  # usage recorded against a general authorisation: no ceiling
    REFUSED = "refused"  # nothing written off; `refusals` say why
    IGNORED = "ignored"  # no write-off asked (Y901, or a licence quoted without quantity)
    REVERSED = "reversed"  # what it wrote off was given back (invalidation, dropped by amendment)


@dataclass(frozen=True, slots=True)
class Reason:
    code: str
    reason: str


@dataclass(frozen=True, slots=True)
class Balance:
    """A quantity with its unit and a value with its currency; None where a line counts none."""

    quantity: Decimal | None = None
    unit: str | None = None
    value: Decimal | None = None
    currency: str | None = None


@dataclass(frozen=True, slots=True)
class DocumentResult:
    """One document of a declaration event, as the result message reports it."""

    goods_item: int
    document_code: str
    reference: str
    status: DocumentStatus
    line_number: int | None = None
    refusals: tuple[Reason, ...] = ()
    warnings: tuple[Reason, ...] = ()
    detail: str = ""
    written_off: Balance | None = None  # what this document writes off now, in the line's terms
    remaining: Balance | None = None  # the line's balance after the event; None: no ceiling


@dataclass(frozen=True, slots=True)
class DeclarationResult:
    """The bridge's answer to one declaration event (docs/envelope.md, "Results")."""

    message_id: str
    in_reply_to: str
    outcome: str  # applied | refused | ignored | duplicate | stale | held | quarantined
    processed_at: datetime
    mrn: str | None = None
    declaration_version: int | None = None
    event: str | None = None
    detail: str = ""
    documents: tuple[DocumentResult, ...] = ()


def result_message_id(in_reply_to: str, outcome: str) -> str:
    """The result's own id: the same event always gets the same id (a resend is recognisable),
    except that a held amendment's interim answer and its final one differ."""
    return f"{in_reply_to}:{'held' if outcome == 'held' else 'result'}"


def build_result(result: DeclarationResult) -> bytes:
    """A result message as UTF-8 JSON bytes; Decimals as plain decimal strings, exactly (10,
    never 1E+1; 0.000001, never 1E-6)."""
    if result.processed_at.tzinfo is None or result.processed_at.utcoffset() is None:
        raise ValueError("processed_at must carry its time zone")
    document: dict[str, Any] = {
        "envelope": RESULT_ENVELOPE,
        "message_id": result.message_id,
        "in_reply_to": result.in_reply_to,
        "mrn": result.mrn,
        "declaration_version": result.declaration_version,
        "event": result.event,
        "outcome": result.outcome,
        "detail": result.detail,
        "processed_at": result.processed_at.isoformat(),
        "documents": [_document_json(d) for d in result.documents],
    }
    try:
        return json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    except UnicodeEncodeError:
        # A lone surrogate (a sender's "\\ud800" escape) has no UTF-8 form; as an escape it
        # is still valid JSON and says exactly what came.
        return json.dumps(document, separators=(",", ":")).encode("ascii")


def parse_result(data: bytes) -> DeclarationResult:
    """A result message read back (customs' side, tests); Rejected when it is not one."""

    def refuse(reason: str) -> Rejected:
        return Rejected([Problem(reason, code="bad-result")], summary="result refused")

    try:
        document = _json_members(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as error:
        raise refuse(f"not a UTF-8 JSON document: {error}") from None
    if not isinstance(document, dict) or document.get("envelope") != RESULT_ENVELOPE:
        raise refuse(f"envelope must be {RESULT_ENVELOPE!r}")
    try:
        return DeclarationResult(
            message_id=document["message_id"],
            in_reply_to=document["in_reply_to"],
            outcome=document["outcome"],
            processed_at=datetime.fromisoformat(document["processed_at"]),
            mrn=document.get("mrn"),
            declaration_version=document.get("declaration_version"),
            event=document.get("event"),
            detail=document.get("detail") or "",
            documents=tuple(_document_from_json(d) for d in document.get("documents") or ()),
        )
    except (KeyError, TypeError, ValueError, InvalidOperation) as error:
        raise refuse(f"malformed result message: {error!r}") from None


def plain_decimal(value: Decimal) -> str:
    """`value` in fixed-point notation, exactly, without trailing zeros: 1E+1 -> "10",
    1.500 -> "1.5", -0 -> "0". The one way a decimal goes out in a result message."""
    if value == 0:
        return "0"
    text = format(value.normalize(), "f")
    return text


def _decimal(value: Decimal | None) -> str | None:
    return None if value is None else plain_decimal(value)


def _balance_json(balance: Balance | None) -> dict[str, Any] | None:
    if balance is None:
        return None
    return {
        "quantity": _decimal(balance.quantity),
        "unit": balance.unit,
        "value": _decimal(balance.value),
        "currency": balance.currency,
    }


def _document_json(document: DocumentResult) -> dict[str, Any]:
    return {
        "goods_item": document.goods_item,
        "document_code": document.document_code,
        "reference": document.reference,
        "line_number": document.line_number,
        "status": str(document.status),
        "refusals": [{"code": r.code, "reason": r.reason} for r in document.refusals],
        "warnings": [{"code": w.code, "reason": w.reason} for w in document.warnings],
        "detail": document.detail,
        "written_off": _balance_json(document.written_off),
        "remaining": _balance_json(document.remaining),
    }


def _balance_from_json(data: dict[str, Any] | None) -> Balance | None:
    if data is None:
        return None

    def number(raw: str | None) -> Decimal | None:
        return None if raw is None else Decimal(raw)

    return Balance(
        number(data.get("quantity")),
        data.get("unit"),
        number(data.get("value")),
        data.get("currency"),
    )


def _document_from_json(data: dict[str, Any]) -> DocumentResult:
    return DocumentResult(
        goods_item=data["goods_item"],
        document_code=data["document_code"],
        reference=data["reference"],
        status=DocumentStatus(data["status"]),
        line_number=data.get("line_number"),
        refusals=tuple(Reason(r["code"], r["reason"]) for r in data.get("refusals") or ()),
        warnings=tuple(Reason(w["code"], w["reason"]) for w in data.get("warnings") or ()),
        detail=data.get("detail") or "",
        written_off=_balance_from_json(data.get("written_off")),
        remaining=_balance_from_json(data.get("remaining")),
    )

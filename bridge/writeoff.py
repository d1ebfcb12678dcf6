"""The ledger's rules for customs write-offs: may this write-off happen, and what moves.

Pure: `decide` takes a batch of declaration events and a snapshot of the ledger state they
touch, and returns what to write (movements, usage, refusals, declaration states) and the
outcome of every message. No database, clock or broker here.

Exactly once: what a declaration writes off is kept per key (MRN, goods item, document code,
document reference) in `usage`. A redelivered message, or the same MRN and version again,
changes nothing; a newer version moves each key by the difference and reverses keys that
disappeared; an older one is stale; an invalidation reverses everything the MRN wrote off and
is remembered, so that a release arriving after it writes nothing. An amendment that arrives
before its release is held and applied right after the release."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from decimal import ROUND_CEILING, Decimal
from enum import StrEnum

from bridge.codes import (
    DUAL_USE_DOCUMENT_CODES,
    normalise_eori,
    union_general_authorisation_for,
)
from bridge.declaration import DocumentUse, GoodsItem
from bridge.envelope import DeclarationEvent, EventKind
from bridge.errors import ConfigError
from bridge.model import Licence, LicenceLine, LicenceStatus, LicenceType
from bridge.units import UnitError, convert

LEDGER_DECIMALS = Decimal("0.000001")  # the ledger keeps six decimals (schema.Micro)
# Micro holds up to about 9.2e12; one write-off stays far enough below for line sums to fit.
LEDGER_LIMIT = Decimal(10) ** 12
ZERO = Decimal(0)
ANY_COUNTRY = "*"

# National document codes (first character a digit) mean something only in the customs
# country that defines them. The value is the licence type the code asserts (None: any).
NATIONAL_DOCUMENT_CODES: dict[str, dict[str, LicenceType | None]] = {
    # UK: 9104 is a standard individual export licence (SIEL) for military and dual-use goods.
    "GB": {"9104": LicenceType.INDIVIDUAL},
}

Key = tuple[str, int, str, str]  # (mrn, goods item, document code, document reference)
LineKey = tuple[str, int]  # (licence number, line number)


class Outcome(StrEnum):
    APPLIED = "applied"  # every write-off of the message was applied
    IGNORED = "ignored"  # nothing in it concerns a dual-use licence, or the MRN is invalidated
    REFUSED = "refused"  # at least one write-off was refused (see refusal); others applied
    STALE = "stale"  # an older or equal declaration version than the ledger holds
    DUPLICATE = "duplicate"  # this message (or this MRN and version) was processed before
    HELD = "held"  # an amendment that came before its release: kept until the release
    QUARANTINED = "quarantined"  # unreadable: stored with its reasons (see quarantine)


class MovementKind(StrEnum):
    WRITE_OFF = "write_off"
    ADJUSTMENT = "adjustment"
    REVERSAL = "reversal"
    MANUAL = "manual"


class Record(StrEnum):
    """What the ledger does with a message outcome in processed_message."""

    INSERT = "insert"
    UPDATE = "update"  # a held amendment applied (or dropped) now
    NONE = "none"  # the message id is already recorded


@dataclass(frozen=True, slots=True)
class Usage:
    """What one key writes off now, in the licence line's unit and currency."""

    licence_number: str
    line_number: int
    quantity: Decimal
    value: Decimal
    declaration_version: int
    event: str


@dataclass(frozen=True, slots=True)
class DeclarationState:
    mrn: str
    version: int = 0  # the last declaration version applied (0: none yet)
    event: str | None = None
    invalidated: bool = False
    message_id: str | None = None
    held: DeclarationEvent | None = None  # an amendment waiting for its release


@dataclass(frozen=True, slots=True)
class LedgerSnapshot:
    """The part of the ledger a batch touches, as it is before the batch."""

    licences: Mapping[str, Licence] = field(default_factory=dict)
    usage: Mapping[Key, Usage] = field(default_factory=dict)
    line_totals: Mapping[LineKey, tuple[Decimal, Decimal]] = field(default_factory=dict)
    declarations: Mapping[str, DeclarationState] = field(default_factory=dict)
    seen_message_ids: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class Movement:
    licence_number: str
    line_number: int
    kind: MovementKind
    quantity: Decimal  # signed, in the line's unit
    value: Decimal  # signed, in the line's currency
    mrn: str
    goods_item: int
    document_code: str
    document_ref: str
    message_id: str
    reason: str
    declared_quantity: Decimal | None = None
    declared_unit: str | None = None


@dataclass(frozen=True, slots=True)
class Refusal:
    mrn: str
    goods_item: int
    document_code: str
    document_ref: str
    licence_number: str | None
    line_number: int | None
    code: str
    reason: str
    message_id: str


@dataclass(frozen=True, slots=True)
class MessageOutcome:
    message_id: str
    mrn: str
    event: str
    outcome: Outcome
    detail: str = ""
    record: Record = Record.INSERT


@dataclass
class Decision:
    movements: list[Movement] = field(default_factory=list)
    usage: dict[Key, Usage] = field(default_factory=dict)  # final value of each changed key
    refusals: list[Refusal] = field(default_factory=list)
    outcomes: list[MessageOutcome] = field(default_factory=list)
    declarations: dict[str, DeclarationState] = field(default_factory=dict)  # changed states


def parse_national_document_codes(spec: str) -> dict[str, dict[str, LicenceType | None]]:
    """`GB:9104=individual,DE:8123=global,9999=any` as a table by customs country. An entry
    without country applies in every country; `any` means the licence's own type decides."""
    table: dict[str, dict[str, LicenceType | None]] = {}
    for entry in filter(None, (part.strip() for part in (spec or "").split(","))):
        target, sep, kind = entry.partition("=")
        country, colon, code = target.strip().rpartition(":")
        country = country.strip().upper() if colon else ANY_COUNTRY
        code = code.strip().upper()
        kind = kind.strip().lower()
        if not sep or len(code) != 4 or not code[0].isdigit():
            raise ConfigError(
                f"national document code {entry!r}: write COUNTRY:CODE=TYPE, e.g."
                " GB:9104=individual (a national code is four characters starting with a digit)"
            )
        if kind in ("any", "unknown"):
            licence_type = None
        else:
            try:
                licence_type = LicenceType(kind)
            except ValueError:
                kinds = ", ".join([*LicenceType, "any"])
                raise ConfigError(
                    f"national document code {entry!r}: type must be one of {kinds}"
                ) from None
        table.setdefault(country, {})[code] = licence_type
    return table


def national_document_codes(spec: str = "") -> dict[str, dict[str, LicenceType | None]]:
    """The built-in national table with a deployment's own entries (Settings) over it."""
    merged = {country: dict(codes) for country, codes in NATIONAL_DOCUMENT_CODES.items()}
    for country, codes in parse_national_document_codes(spec).items():
        merged.setdefault(country, {}).update(codes)
    return merged


def licence_document(
    code: str, country: str | None, national: Mapping[str, Mapping[str, LicenceType | None]]
) -> tuple[bool, LicenceType | None]:
    """(is this document code a dual-use licence, the licence type it asserts or None)."""
    if code in DUAL_USE_DOCUMENT_CODES:
        return True, DUAL_USE_DOCUMENT_CODES[code]
    if code[:1].isdigit():
        for table in (national.get(country or "", {}), national.get(ANY_COUNTRY, {})):
            if code in table:
                return True, table[code]
    return False, None


def referenced_licences(events: Iterable[DeclarationEvent]) -> set[str]:
    """Every document reference the events write off against (a superset of the licences the
    rules will look at): what the ledger must load."""
    numbers = set()
    for event in events:
        if event.declaration is not None:
            numbers.update(document.reference for _, document in event.declaration.write_offs())
    return numbers


def decide(
    events: Sequence[DeclarationEvent],
    snapshot: LedgerSnapshot,
    *,
    national: Mapping[str, Mapping[str, LicenceType | None]] | None = None,
) -> Decision:
    """What the batch does to the ledger, event after event in order; each event sees what the
    ones before it wrote (two write-offs on one licence line in one batch add up)."""
    return _Batch(snapshot, NATIONAL_DOCUMENT_CODES if national is None else national).run(events)


@dataclass(frozen=True, slots=True)
class _Target:
    line: LicenceLine
    quantity: Decimal
    value: Decimal


class _Batch:
    """The rules applied to one batch, with the ledger state as the batch changes it."""

    def __init__(self, snapshot: LedgerSnapshot, national) -> None:
        self.licences = snapshot.licences
        self.national = national
        self.usage: dict[Key, Usage] = dict(snapshot.usage)
        self.keys_by_mrn: dict[str, set[Key]] = {}
        for key in self.usage:
            self.keys_by_mrn.setdefault(key[0], set()).add(key)
        self.totals: dict[LineKey, tuple[Decimal, Decimal]] = dict(snapshot.line_totals)
        self.states: dict[str, DeclarationState] = dict(snapshot.declarations)
        self.recorded = set(snapshot.seen_message_ids)
        self.decision = Decision()

    def run(self, events: Sequence[DeclarationEvent]) -> Decision:
        for event in events:
            self.one(event)
        return self.decision

    def outcome(
        self, event: DeclarationEvent, outcome: Outcome, detail: str = "", record=Record.INSERT
    ) -> None:
        self.decision.outcomes.append(
            MessageOutcome(event.message_id, event.mrn, str(event.kind), outcome, detail, record)
        )
        self.recorded.add(event.message_id)

    def set_state(self, state: DeclarationState) -> None:
        self.states[state.mrn] = state
        self.decision.declarations[state.mrn] = state

    def one(self, event: DeclarationEvent) -> None:
        if event.message_id in self.recorded:
            self.outcome(event, Outcome.DUPLICATE, "message already processed", Record.NONE)
            return
        state = self.states.get(event.mrn) or DeclarationState(event.mrn)
        if event.kind is EventKind.INVALIDATED:
            self.invalidate(event, state)
            return
        if state.invalidated:
            self.outcome(event, Outcome.IGNORED, "the declaration was invalidated")
            return
        if event.version == state.version and str(event.kind) == state.event:
            self.outcome(event, Outcome.DUPLICATE, f"version {event.version} already applied")
            return
        if event.version <= state.version:
            self.outcome(
                event, Outcome.STALE, f"version {event.version}, ledger has {state.version}"
            )
            return
        if event.kind is EventKind.AMENDED and state.version == 0:
            self.hold(event, state)
            return
        outcome, detail = self.apply(event)
        self.outcome(event, outcome, detail)
        state = replace(
            state, version=event.version, event=str(event.kind), message_id=event.message_id
        )
        held = state.held
        if held is not None:
            state = replace(state, held=None)
            if held.version > event.version:
                outcome, detail = self.apply(held)
                self.outcome(held, outcome, f"held until its release; {detail}", Record.UPDATE)
                state = replace(
                    state, version=held.version, event=str(held.kind), message_id=held.message_id
                )
            else:
                self.outcome(held, Outcome.STALE, "older than its release", Record.UPDATE)
        self.set_state(state)

    def hold(self, event: DeclarationEvent, state: DeclarationState) -> None:
        if state.held is not None and state.held.version >= event.version:
            self.outcome(event, Outcome.STALE, f"a held version {state.held.version} is newer")
            return
        if state.held is not None:
            self.outcome(state.held, Outcome.STALE, "replaced by a newer amendment", Record.UPDATE)
        self.set_state(replace(state, held=event))
        self.outcome(event, Outcome.HELD, "amendment before its release: held")

    def invalidate(self, event: DeclarationEvent, state: DeclarationState) -> None:
        if state.invalidated:
            self.outcome(event, Outcome.DUPLICATE, "already invalidated")
            return
        reversed_keys = sum(
            self.reverse(key, event) for key in sorted(self.keys_by_mrn.get(event.mrn, ()))
        )
        if state.held is not None:
            self.outcome(state.held, Outcome.IGNORED, "invalidated before release", Record.UPDATE)
        self.set_state(
            replace(
                state,
                invalidated=True,
                event=str(event.kind),
                message_id=event.message_id,
                held=None,
            )
        )
        detail = (
            f"{reversed_keys} write-off(s) reversed"
            if reversed_keys
            else "nothing written off yet; remembered so that a later release writes nothing"
        )
        self.outcome(event, Outcome.APPLIED, detail)

    def apply(self, event: DeclarationEvent) -> tuple[Outcome, str]:
        """Bring the MRN's usage to what this declaration version says."""
        declaration = event.declaration
        assert declaration is not None  # released and amended events always carry one
        present: set[Key] = set()
        refused = applied = 0
        for item, document in declaration.write_offs():
            is_licence, asserted = licence_document(
                document.document_code, event.country, self.national
            )
            if not is_licence:
                continue
            key = (event.mrn, item.sequence, document.document_code, document.reference)
            present.add(key)
            if self.write_off(event, item, document, asserted, key):
                applied += 1
            else:
                refused += 1
        gone = self.keys_by_mrn.get(event.mrn, set()) - present
        reversed_keys = sum(self.reverse(key, event) for key in sorted(gone))
        if refused:
            return Outcome.REFUSED, f"{refused} write-off(s) refused, {applied} applied"
        if applied or reversed_keys:
            return Outcome.APPLIED, f"{applied} write-off(s), {reversed_keys} reversed"
        return Outcome.IGNORED, "no dual-use licence write-off"

    def reverse(self, key: Key, event: DeclarationEvent) -> bool:
        """Give back everything `key` writes off; False when it writes nothing off now."""
        current = self.usage[key]
        if current.quantity == ZERO and current.value == ZERO:
            return False
        self.move(key, current, -current.quantity, -current.value, MovementKind.REVERSAL, event)
        self.set_usage(
            key,
            replace(
                current,
                quantity=ZERO,
                value=ZERO,
                declaration_version=max(current.declaration_version, event.version),
                event=str(event.kind),
            ),
        )
        return True

    def write_off(
        self,
        event: DeclarationEvent,
        item: GoodsItem,
        document: DocumentUse,
        asserted: LicenceType | None,
        key: Key,
    ) -> bool:
        licence = self.licences.get(document.reference)
        target, problems = self.evaluate(event, item, document, asserted, licence)
        current = self.usage.get(key)
        if target is not None and not problems:
            on_line = (document.reference, target.line.line_number)
            same_line = current is not None and _line_of(current) == on_line
            base_q = current.quantity if same_line else ZERO
            base_v = current.value if same_line else ZERO
            over = self.over_use(licence, target, target.quantity - base_q, target.value - base_v)
            if over:
                problems.append(("over-use", over))
        if problems:
            line_number = target.line.line_number if target else None
            reasons: dict[str, str] = {}
            for code, reason in problems:  # one refusal per code, its reasons together
                reasons[code] = f"{reasons[code]}; {reason}" if code in reasons else reason
            for code, reason in reasons.items():
                self.decision.refusals.append(
                    Refusal(
                        event.mrn,
                        item.sequence,
                        document.document_code,
                        document.reference,
                        document.reference,
                        line_number,
                        code,
                        reason,
                        event.message_id,
                    )
                )
            return False
        assert target is not None
        line_number = target.line.line_number
        declared = (document.quantity, document.unit)
        kind = MovementKind.WRITE_OFF if current is None else MovementKind.ADJUSTMENT
        base_q = base_v = ZERO
        if current is not None:
            if _line_of(current) != (document.reference, line_number):
                # The goods now fall on another line (or licence): undo the old line first.
                self.move(
                    key, current, -current.quantity, -current.value, MovementKind.REVERSAL, event
                )
            else:
                base_q, base_v = current.quantity, current.value
        delta_q = target.quantity - base_q
        delta_v = target.value - base_v
        new = Usage(
            document.reference,
            line_number,
            target.quantity,
            target.value,
            event.version,
            str(event.kind),
        )
        if delta_q != ZERO or delta_v != ZERO or current is None:
            self.move(key, new, delta_q, delta_v, kind, event, declared)
        self.set_usage(key, new)
        return True

    def evaluate(
        self,
        event: DeclarationEvent,
        item: GoodsItem,
        document: DocumentUse,
        asserted: LicenceType | None,
        licence: Licence | None,
    ) -> tuple[_Target | None, list[tuple[str, str]]]:
        """The line, quantity and value this write-off means, or every reason it may not."""
        number = document.reference
        if licence is None:
            return None, [("licence-unknown", f"licence {number} is not in the ledger")]
        problems: list[tuple[str, str]] = []
        if licence.status is not LicenceStatus.VALID:
            problems.append(("licence-not-valid", f"licence {number} is {licence.status}"))
        day = event.envelope.event_time.date()
        if day < licence.valid_from or (licence.valid_to is not None and day > licence.valid_to):
            until = licence.valid_to.isoformat() if licence.valid_to else "open end"
            problems.append(
                (
                    "outside-validity",
                    f"the event date {day} is outside licence {number}'s validity"
                    f" {licence.valid_from} to {until}",
                )
            )
        if asserted is not None and licence.type is not asserted:
            problems.append(
                (
                    "document-type-mismatch",
                    f"document code {document.document_code} is for a {asserted} licence;"
                    f" {number} is {licence.type}",
                )
            )
        authorisation = union_general_authorisation_for(document.document_code)
        if (
            authorisation
            and licence.general_authorisation
            and authorisation != licence.general_authorisation
        ):
            problems.append(
                (
                    "document-type-mismatch",
                    f"document code {document.document_code} stands for {authorisation};"
                    f" {number} is {licence.general_authorisation}",
                )
            )
        exporter = event.declaration.exporter_eori if event.declaration else None
        if exporter != normalise_eori(licence.holder_eori):
            problems.append(
                (
                    "wrong-exporter",
                    f"the exporter {exporter or '(none)'} is not the holder of licence {number}"
                    f" ({licence.holder_eori})",
                )
            )
        line, why = _match_line(licence, item, document)
        if line is None:
            problems.append(("no-matching-line", why))
            return None, problems
        if line.destinations and item.destination not in line.destinations:
            problems.append(
                (
                    "destination-not-allowed",
                    f"destination {item.destination or '(none declared)'} is not among licence"
                    f" {number} line {line.line_number}'s {', '.join(line.destinations)}",
                )
            )
        quantity = ZERO
        if document.quantity is not None and line.unit:
            try:
                quantity = _ledger_quantity(convert(document.quantity, document.unit, line.unit))
            except UnitError as error:
                problems.append(("unit-mismatch", f"{error} (licence line unit {line.unit})"))
        for amount, what in ((document.quantity, "quantity"), (quantity, "quantity")):
            if amount is not None and amount >= LEDGER_LIMIT:
                problems.append(
                    (
                        "out-of-range",
                        f"a write-off {what} of {amount} is beyond what the ledger keeps",
                    )
                )
                break
        value = ZERO
        if document.amount is not None and line.currency:
            if document.currency != line.currency:
                problems.append(
                    (
                        "currency-mismatch",
                        f"the write-off is in {document.currency}; licence {number} line"
                        f" {line.line_number} is in {line.currency}",
                    )
                )
            elif document.amount >= LEDGER_LIMIT:
                problems.append(
                    (
                        "out-of-range",
                        f"a write-off amount of {document.amount} is beyond the ledger",
                    )
                )
            else:
                value = document.amount
        return _Target(line, quantity, value), problems

    def over_use(
        self, licence: Licence | None, target: _Target, delta_q: Decimal, delta_v: Decimal
    ) -> str | None:
        """Why an increase would exceed what remains, or None. General authorisations have no
        ceiling; a decrease is always allowed."""
        if licence is None or not licence.type.has_ceiling:
            return None
        line = target.line
        used_q, used_v = self.totals.get((licence.number, line.line_number), (ZERO, ZERO))
        reasons = []
        if line.quantity is not None and delta_q > ZERO and used_q + delta_q > line.quantity:
            reasons.append(
                f"{delta_q} {line.unit} more exceeds the {line.quantity - used_q} {line.unit}"
                f" remaining on licence {licence.number} line {line.line_number}"
            )
        if line.value is not None and delta_v > ZERO and used_v + delta_v > line.value:
            reasons.append(
                f"{delta_v} {line.currency} more exceeds the {line.value - used_v}"
                f" {line.currency} remaining on licence {licence.number} line {line.line_number}"
            )
        return "; ".join(reasons) + " (nothing written off)" if reasons else None

    def move(
        self,
        key: Key,
        usage: Usage,
        quantity: Decimal,
        value: Decimal,
        kind: MovementKind,
        event: DeclarationEvent,
        declared: tuple[Decimal | None, str | None] = (None, None),
    ) -> None:
        line_key = (usage.licence_number, usage.line_number)
        used_q, used_v = self.totals.get(line_key, (ZERO, ZERO))
        self.totals[line_key] = (used_q + quantity, used_v + value)
        self.decision.movements.append(
            Movement(
                licence_number=usage.licence_number,
                line_number=usage.line_number,
                kind=kind,
                quantity=quantity,
                value=value,
                mrn=key[0],
                goods_item=key[1],
                document_code=key[2],
                document_ref=key[3],
                message_id=event.message_id,
                reason=f"{event.kind} v{event.version}",
                declared_quantity=declared[0],
                declared_unit=declared[1],
            )
        )

    def set_usage(self, key: Key, usage: Usage) -> None:
        self.usage[key] = usage
        self.keys_by_mrn.setdefault(key[0], set()).add(key)
        self.decision.usage[key] = usage


def _line_of(usage: Usage) -> LineKey:
    return (usage.licence_number, usage.line_number)


def _match_line(
    licence: Licence, item: GoodsItem, document: DocumentUse
) -> tuple[LicenceLine | None, str]:
    """The licence line a goods item uses: by the document's line item number when given, else
    by CN code, else the licence's only line."""
    if document.line_item_number is not None:
        line = licence.line(document.line_item_number)
        if line is None:
            return None, (
                f"licence {licence.number} has no line {document.line_item_number}"
                f" (lines {', '.join(str(x.line_number) for x in licence.lines)})"
            )
        return line, ""
    if item.cn_code:
        matches = [line for line in licence.lines if _cn_matches(line.cn_code, item.cn_code)]
        if len(matches) == 1:
            return matches[0], ""
        if len(matches) > 1:
            return None, (
                f"CN code {item.cn_code} matches {len(matches)} lines of licence"
                f" {licence.number}; the declaration must give the document line item number"
            )
    if len(licence.lines) == 1:
        return licence.lines[0], ""
    return None, (
        f"goods item {item.sequence} (CN {item.cn_code or 'not declared'}) matches no line of"
        f" licence {licence.number}"
    )


def _cn_matches(line_cn: str | None, declared_cn: str) -> bool:
    # A line's 6- or 8-digit code covers the longer TARIC codes under it.
    return bool(line_cn) and declared_cn.startswith(line_cn)


def _ledger_quantity(quantity: Decimal) -> Decimal:
    """A converted quantity within the ledger's six decimals, rounded up so that a licence is
    never charged less than was declared (1.5 g is 0.0015 kg; 0.0000015 kg stays 0.000002)."""
    if quantity == quantity.quantize(LEDGER_DECIMALS, rounding=ROUND_CEILING):
        return quantity
    return quantity.quantize(LEDGER_DECIMALS, rounding=ROUND_CEILING)

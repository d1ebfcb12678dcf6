"""The ledger's rules for customs write-offs: may this write-off happen, and what moves.

Pure: `decide` takes a batch of declaration events and a snapshot of the ledger state they
touch, and returns what to write (movements, usage, refusals, declaration states, alerts for
the authority, licence status changes) and the outcome of every message with a result for each
of its documents. `availability` answers the same question without writing anything (customs'
CheckAvailability) with the same check functions. No database, clock or broker here.

Licence types: individual and global licences have, per line, a quantity ceiling, a value
ceiling or both (as issued), and a write-off that would exceed what remains is refused whole.
National and Union general authorisations have no ceiling: their usage is recorded (movement
kind `record`), never refused for quantity, but their conditions hold (the exporter is the
registered holder; EU001's destinations).

Exactly once: what a declaration writes off is kept per key (MRN, goods item, document code,
document reference) in `usage`. A redelivered message, or the same MRN and version again,
changes nothing; a newer version moves each key by the difference and reverses keys that
disappeared; an older one is stale; an invalidation reverses everything the MRN wrote off and
is remembered, so that a release arriving after it writes nothing. An amendment that arrives
before its release is held and applied right after the release."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date
from decimal import ROUND_CEILING, Decimal
from enum import StrEnum
from typing import Any

from bridge.core.codes import (
    NO_LICENCE_NEEDED,
    normalise_eori,
    union_general_authorisation_for,
)
from bridge.core.correlation import WARNING as CORRELATION_WARNING
from bridge.core.correlation import Correlation
from bridge.core.declaration import DocumentUse, GoodsItem
from bridge.core.documents import (
    NATIONAL_DOCUMENT_CODES,
    licence_document,
)
from bridge.core.envelope import (
    Balance,
    DeclarationEvent,
    DocumentResult,
    DocumentStatus,
    EventKind,
    Reason,
)
from bridge.core.model import Licence, LicenceLine, LicenceStatus, LicenceType
from bridge.core.units import UnitError, convert, plain

LEDGER_DECIMALS = Decimal("0.000001")  # the ledger keeps six decimals (schema.Micro)
# Micro holds up to about 9.2e12; one write-off stays far enough below for line sums to fit.
LEDGER_LIMIT = Decimal(10) ** 12
ZERO = Decimal(0)
STATUS_ACTOR = "bridge"  # who changes a licence's status when its lines are used up or freed again

# Union general export authorisations (Regulation (EU) 2021/821, Annex II): the destinations
# each covers, where the bridge can state them. EU001 covers exports to these countries only.
# EU002-EU008 have conditions (item lists, excluded destinations, the purpose of the export)
# the bridge does not enforce from a declaration: None. The registration record's own line
# destinations, when it lists any, still apply to every authorisation.
UNION_GENERAL_DESTINATIONS: dict[str, frozenset[str] | None] = {
    # Australia, Canada, Iceland, Japan, New Zealand, Norway, Switzerland incl. Liechtenstein,
    # United Kingdom, United States.
    "EU001": frozenset({"AU", "CA", "IS", "JP", "NZ", "NO", "CH", "LI", "GB", "US"}),
    "EU002": None,
    "EU003": None,
    "EU004": None,
    "EU005": None,
    "EU006": None,
    "EU007": None,
    "EU008": None,
}

Key = tuple[str, int, str, str]  # (mrn, goods item, document code, document reference)
LineKey = tuple[str, int]  # (licence number, line number)
Totals = tuple[Decimal, Decimal]  # (quantity, value) written off on a line so far
Finding = tuple[str, str]  # (machine-readable code, human reason)


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
    RECORD = "record"  # usage of a general authorisation: recorded, no ceiling to decrement
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
    """The part of the ledger a batch touches, as it is before the batch.

    `known_to_customs`: the licences customs acknowledged a certificate of (any version);
    None stands for every licence in `licences` (rules tested without the outbox)."""

    licences: Mapping[str, Licence] = field(default_factory=dict)
    usage: Mapping[Key, Usage] = field(default_factory=dict)
    line_totals: Mapping[LineKey, Totals] = field(default_factory=dict)
    declarations: Mapping[str, DeclarationState] = field(default_factory=dict)
    seen_message_ids: frozenset[str] = frozenset()
    known_to_customs: frozenset[str] | None = None


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
class Alert:
    """Something the licensing authority must look at (over-use, CN/CLE warning, exhausted)."""

    kind: str
    message: str
    licence_number: str | None = None
    line_number: int | None = None
    mrn: str | None = None
    details: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class StatusChange:
    """A licence status the rules changed (exhausted when used up, valid again when freed)."""

    licence_number: str
    from_status: LicenceStatus
    to_status: LicenceStatus
    reason: str
    actor: str = STATUS_ACTOR


@dataclass(frozen=True, slots=True)
class MessageOutcome:
    message_id: str
    mrn: str
    event: str
    outcome: Outcome
    detail: str = ""
    record: Record = Record.INSERT
    version: int | None = None
    documents: tuple[DocumentResult, ...] = ()  # what became of each document, for the result


@dataclass
class Decision:
    movements: list[Movement] = field(default_factory=list)
    usage: dict[Key, Usage] = field(default_factory=dict)  # final value of each changed key
    refusals: list[Refusal] = field(default_factory=list)
    outcomes: list[MessageOutcome] = field(default_factory=list)
    declarations: dict[str, DeclarationState] = field(default_factory=dict)  # changed states
    alerts: list[Alert] = field(default_factory=list)
    status_changes: list[StatusChange] = field(default_factory=list)  # in the order they happen


def referenced_licences(events: Iterable[DeclarationEvent]) -> set[str]:
    """Every document reference the events write off against (a superset of the licences the
    rules will look at): what the ledger must load."""
    numbers = set()
    for event in events:
        if event.declaration is not None:
            numbers.update(document.reference for _, document in event.declaration.write_offs())
    return numbers


# The checks: one function per rule, shared by decide() and availability(). ------------------


def licence_state_problems(licence: Licence, *, on: date, known_to_customs: bool) -> list[Finding]:
    """Whether the licence may be used on `on`: customs know it (a certificate of it was
    acknowledged), its status is valid, `on` is within its validity."""
    number = licence.number
    problems: list[Finding] = []
    if not known_to_customs:
        problems.append(
            (
                "not-known-to-customs",
                f"customs have acknowledged no certificate of licence {number}: they cannot"
                " have checked it, so it cannot be written off",
            )
        )
    if licence.status is not LicenceStatus.VALID:
        problems.append(
            ("licence-not-valid", f"licence {number} is {licence.status}, not valid, on {on}")
        )
    if on < licence.valid_from or (licence.valid_to is not None and on > licence.valid_to):
        until = licence.valid_to.isoformat() if licence.valid_to else "open end"
        problems.append(
            (
                "outside-validity",
                f"the event date {on} is outside licence {number}'s validity"
                f" {licence.valid_from} to {until}",
            )
        )
    return problems


def document_type_problems(
    licence: Licence, document_code: str, asserted: LicenceType | None
) -> list[Finding]:
    """Whether the document code agrees with the licence: X060 individual, X061-X068 the Union
    general authorisation EU001-EU008 the licence registers, X070 global, X071 national
    general; X002 (and national codes of type `any`) take the licence's own type."""
    number = licence.number
    problems: list[Finding] = []
    if asserted is not None and licence.type is not asserted:
        problems.append(
            (
                "document-type-mismatch",
                f"document code {document_code} is for a {asserted} licence;"
                f" {number} is {licence.type}",
            )
        )
    authorisation = union_general_authorisation_for(document_code)
    registered = licence.general_authorisation
    if (
        authorisation
        and (licence.type is LicenceType.UNION_GENERAL or registered)
        and registered != authorisation
    ):
        problems.append(
            (
                "document-type-mismatch",
                f"document code {document_code} stands for {authorisation};"
                f" {number} is {registered or 'registered for no Union general authorisation'}",
            )
        )
    return problems


def exporter_problems(licence: Licence, exporter: str | None) -> list[Finding]:
    """The exporter must be the licence's holder; for a general authorisation, the one its
    registration record names."""
    holder = normalise_eori(licence.holder_eori)
    if exporter == holder:
        return []
    if licence.type.has_ceiling:
        reason = (
            f"the exporter {exporter or '(none)'} is not the holder of licence {licence.number}"
            f" ({licence.holder_eori})"
        )
    else:
        reason = (
            f"the exporter {exporter or '(none)'} is not registered for"
            f" {licence.general_authorisation or 'this general authorisation'}: registration"
            f" {licence.number} is {licence.holder_eori}'s"
        )
    return [("wrong-exporter", reason)]


def match_line(
    licence: Licence, *, line_number: int | None, cn_code: str | None
) -> tuple[LicenceLine | None, Finding | None]:
    """The licence line a goods item uses: the document line item number when given; else the
    one line whose CN code covers the declared one (a 6- or 8-digit line code covers the
    longer codes under it). The declaration carries no CLE, so CN is all there is to match: two
    lines under one CN are ambiguous, and a licence of one line without a CN code takes it."""
    number = licence.number
    if line_number is not None:
        line = licence.line(line_number)
        if line is None:
            lines = ", ".join(str(x.line_number) for x in licence.lines)
            return None, (
                "no-matching-line",
                f"licence {number} has no line {line_number} (lines {lines})",
            )
        return line, None
    if cn_code:
        matches = [line for line in licence.lines if _cn_covers(line.cn_code, cn_code)]
        if len(matches) == 1:
            return matches[0], None
        if len(matches) > 1:
            return None, (
                "ambiguous-line",
                f"CN code {cn_code} matches lines"
                f" {', '.join(str(x.line_number) for x in matches)} of licence {number}; the"
                " declaration must give the document line item number",
            )
        if len(licence.lines) == 1 and not licence.lines[0].cn_code:
            return licence.lines[0], None
        return None, (
            "no-matching-line",
            f"CN code {cn_code} matches no line of licence {number}"
            f" (lines: {_line_codes(licence)})",
        )
    if len(licence.lines) == 1:
        return licence.lines[0], None
    return None, (
        "no-matching-line",
        f"the goods item declares neither a CN code nor a document line item number, and"
        f" licence {number} has {len(licence.lines)} lines",
    )


def allowed_destinations(licence: Licence) -> frozenset[str] | None:
    """The destinations a Union general authorisation covers (None: not enforced here)."""
    if licence.type is not LicenceType.UNION_GENERAL or not licence.general_authorisation:
        return None
    return UNION_GENERAL_DESTINATIONS.get(licence.general_authorisation)


def destination_problems(
    licence: Licence, line: LicenceLine, destination: str | None
) -> list[Finding]:
    """The destination must be among the line's (when it lists any) and, for EU001, among the
    countries the authorisation covers."""
    shown = destination or "(none declared)"
    problems: list[Finding] = []
    if line.destinations and destination not in line.destinations:
        problems.append(
            (
                "destination-not-allowed",
                f"destination {shown} is not among licence {licence.number} line"
                f" {line.line_number}'s {', '.join(line.destinations)}",
            )
        )
    covered = allowed_destinations(licence)
    if covered is not None and destination not in covered:
        problems.append(
            (
                "destination-not-allowed",
                f"{licence.general_authorisation} covers exports to"
                f" {', '.join(sorted(covered))} only; the destination is {shown}",
            )
        )
    return problems


def line_measures(
    licence: Licence,
    line: LicenceLine,
    *,
    quantity: Decimal | None,
    unit: str | None,
    amount: Decimal | None,
    currency: str | None,
) -> tuple[Decimal, Decimal, list[Finding]]:
    """(quantity in the line's unit, value in its currency, problems). Units convert by the
    explicit table (bridge.core.units) or are refused; the currency must be the line's; a write-off
    of a licence with ceilings must give something the line counts."""
    number = licence.number
    problems: list[Finding] = []
    in_line_unit = ZERO
    if quantity is not None and line.unit:
        try:
            in_line_unit = ledger_quantity(convert(quantity, unit or "", line.unit))
        except UnitError as error:
            problems.append(("unit-mismatch", f"{error} (licence line unit {line.unit})"))
    for figure in (quantity, in_line_unit):
        if figure is not None and figure >= LEDGER_LIMIT:
            problems.append(
                (
                    "out-of-range",
                    f"a write-off quantity of {figure} is beyond what the ledger keeps",
                )
            )
            break
    value = ZERO
    if amount is not None and line.currency:
        if currency != line.currency:
            problems.append(
                (
                    "currency-mismatch",
                    f"the write-off is in {currency}; licence {number} line"
                    f" {line.line_number} is in {line.currency}",
                )
            )
        elif amount >= LEDGER_LIMIT:
            problems.append(
                ("out-of-range", f"a write-off amount of {amount} is beyond the ledger")
            )
        else:
            value = plain(amount)
    counts_quantity = line.quantity is not None
    counts_value = line.value is not None
    if (
        licence.type.has_ceiling
        and (counts_quantity or counts_value)
        and (quantity is not None or amount is not None)
        and not (quantity is not None and counts_quantity)
        and not (amount is not None and counts_value)
    ):
        if counts_value:
            problems.append(
                (
                    "unit-mismatch",
                    f"licence {number} line {line.line_number} counts value in {line.currency},"
                    " not quantity; the write-off gives a quantity only",
                )
            )
        else:
            problems.append(
                (
                    "currency-mismatch",
                    f"licence {number} line {line.line_number} counts quantity in {line.unit},"
                    " not value; the write-off gives an amount only",
                )
            )
    return in_line_unit, value, problems


def ceiling_excess(
    licence: Licence, line: LicenceLine, used: Totals, delta_q: Decimal, delta_v: Decimal
) -> list[tuple[str, str]]:
    """(`quantity` or `value`, why) for each ceiling of the line an increase of (delta_q,
    delta_v) over `used` would exceed. General authorisations have no ceiling; a decrease is
    always allowed; a line with both ceilings must respect both. The one ceiling rule, for
    customs write-offs and manual movements alike."""
    if not licence.type.has_ceiling:
        return []
    used_q, used_v = used
    where = f"licence {licence.number} line {line.line_number}"
    excess = []
    if line.quantity is not None and delta_q > ZERO and used_q + delta_q > line.quantity:
        excess.append(
            (
                "quantity",
                f"{plain(delta_q)} {line.unit} more exceeds the {plain(line.quantity - used_q)}"
                f" {line.unit} remaining on {where}",
            )
        )
    if line.value is not None and delta_v > ZERO and used_v + delta_v > line.value:
        excess.append(
            (
                "value",
                f"{plain(delta_v)} {line.currency} more exceeds the"
                f" {plain(line.value - used_v)} {line.currency} remaining on {where}",
            )
        )
    return excess


def over_use(
    licence: Licence, line: LicenceLine, used: Totals, delta_q: Decimal, delta_v: Decimal
) -> str | None:
    """Why an increase of (delta_q, delta_v) would exceed what remains on the line, or None
    (`ceiling_excess`, as one reason)."""
    reasons = [why for _, why in ceiling_excess(licence, line, used, delta_q, delta_v)]
    return "; ".join(reasons) + " (nothing written off)" if reasons else None


def remaining(licence: Licence, line: LicenceLine, used: Totals) -> Balance | None:
    """What the line has left; None when it has no ceiling (general authorisations)."""
    if not licence.type.has_ceiling or (line.quantity is None and line.value is None):
        return None
    used_q, used_v = used
    return Balance(
        quantity=None if line.quantity is None else plain(line.quantity - used_q),
        unit=line.unit if line.quantity is not None else None,
        value=None if line.value is None else plain(line.value - used_v),
        currency=line.currency if line.value is not None else None,
    )


def used_up(licence: Licence, totals: Mapping[LineKey, Totals]) -> bool:
    """Every line with a ceiling has nothing left (its remaining quantity or its remaining
    value is 0 or less). False for a licence without ceilings."""
    lines = [x for x in licence.lines if x.quantity is not None or x.value is not None]
    if not licence.type.has_ceiling or not lines:
        return False
    for line in lines:
        used_q, used_v = totals.get((licence.number, line.line_number), (ZERO, ZERO))
        if not (
            (line.quantity is not None and used_q >= line.quantity)
            or (line.value is not None and used_v >= line.value)
        ):
            return False
    return True


def correlation_warnings(
    correlation: Correlation | None, licence: Licence, line: LicenceLine, cn_code: str | None
) -> list[Finding]:
    """A warning when the declared CN code is indicatively linked to other CLEs than the
    line's (never a refusal: the correlation is indicative only)."""
    if correlation is None:
        return []
    why = correlation.warning(cn_code, line.control_list_entry)
    if why is None:
        return []
    return [(CORRELATION_WARNING, f"licence {licence.number} line {line.line_number}: {why}")]


@dataclass(frozen=True, slots=True)
class Availability:
    """Whether a write-off could happen now, and what the line has left (CheckAvailability)."""

    available: bool
    licence_number: str
    code: str | None = None  # the first refusal code; None when available
    reason: str = ""
    refusals: tuple[Reason, ...] = ()
    warnings: tuple[Reason, ...] = ()
    line_number: int | None = None
    remaining: Balance | None = None  # before the asked write-off; None: no ceiling


def availability(
    licence: Licence | None,
    *,
    number: str,
    on: date,
    line_number: int | None = None,
    cn_code: str | None = None,
    quantity: Decimal | None = None,
    unit: str | None = None,
    amount: Decimal | None = None,
    currency: str | None = None,
    exporter: str | None = None,
    destination: str | None = None,
    document_code: str | None = None,
    country: str | None = None,
    line_totals: Mapping[int, Totals] | None = None,
    known_to_customs: bool = True,
    national: Mapping[str, Mapping[str, LicenceType | None]] | None = None,
    correlation: Correlation | None = None,
) -> Availability:
    """A dry run of one write-off of `quantity` `unit` and/or `amount` `currency` against
    licence `number` on `on`: the checks of `decide`, nothing written. `line_totals` are the
    licence's totals so far by line number. Exporter, destination and document code are
    checked only when given; with neither quantity nor amount, only whether the licence and
    line may be used, and what remains."""
    if licence is None:
        return _unavailable(number, [("licence-unknown", f"licence {number} is not in the ledger")])
    problems: list[Finding] = []
    if document_code is not None:
        national = NATIONAL_DOCUMENT_CODES if national is None else national
        is_licence, asserted = licence_document(document_code, country, national)
        if not is_licence:
            problems.append(
                (
                    "document-type-mismatch",
                    f"document code {document_code} is not a dual-use licence document",
                )
            )
        else:
            problems += document_type_problems(licence, document_code, asserted)
    if exporter is not None:
        problems += exporter_problems(licence, normalise_eori(exporter))
    problems += licence_state_problems(licence, on=on, known_to_customs=known_to_customs)
    line, unmatched = match_line(licence, line_number=line_number, cn_code=cn_code)
    if line is None:
        assert unmatched is not None
        return _unavailable(number, [*problems, unmatched])
    if destination is not None:
        problems += destination_problems(licence, line, destination)
    asked_q, asked_v, measure = line_measures(
        licence, line, quantity=quantity, unit=unit, amount=amount, currency=currency
    )
    problems += measure
    used = (line_totals or {}).get(line.line_number, (ZERO, ZERO))
    if not measure and (why := over_use(licence, line, used, asked_q, asked_v)):
        problems.append(("over-use", why))
    balance = remaining(licence, line, used)
    warnings = correlation_warnings(correlation, licence, line, cn_code)
    if problems:
        result = _unavailable(number, problems)
        return replace(
            result, line_number=line.line_number, remaining=balance, warnings=_reasons(warnings)
        )
    if balance is None:
        left = "no ceiling: usage is recorded"
    else:
        left = " and ".join(
            f"{figure} {what}"
            for figure, what in (
                (balance.quantity, balance.unit),
                (balance.value, balance.currency),
            )
            if figure is not None
        )
    return Availability(
        available=True,
        licence_number=number,
        reason=f"licence {number} line {line.line_number}: {left} remaining",
        warnings=_reasons(warnings),
        line_number=line.line_number,
        remaining=balance,
    )


def _unavailable(number: str, problems: list[Finding]) -> Availability:
    reasons = _reasons(problems)
    return Availability(
        available=False,
        licence_number=number,
        code=reasons[0].code,
        reason="; ".join(r.reason for r in reasons),
        refusals=reasons,
    )


def _reasons(findings: Iterable[Finding]) -> tuple[Reason, ...]:
    """One reason per code, in the order the codes first came, their reasons together."""
    merged: dict[str, str] = {}
    for code, reason in findings:
        merged[code] = f"{merged[code]}; {reason}" if code in merged else reason
    return tuple(Reason(code, reason) for code, reason in merged.items())


# The batch ----------------------------------------------------------------------------------


def decide(
    events: Sequence[DeclarationEvent],
    snapshot: LedgerSnapshot,
    *,
    national: Mapping[str, Mapping[str, LicenceType | None]] | None = None,
    correlation: Correlation | None = None,
) -> Decision:
    """What the batch does to the ledger, event after event in order; each event sees what the
    ones before it wrote (two write-offs on one licence line in one batch add up, and a
    licence used up by one is exhausted for the next)."""
    national = NATIONAL_DOCUMENT_CODES if national is None else national
    return _Batch(snapshot, national, correlation).run(events)


@dataclass(frozen=True, slots=True)
class _Target:
    line: LicenceLine
    quantity: Decimal
    value: Decimal


class _Batch:
    """The rules applied to one batch, with the ledger state as the batch changes it."""

    def __init__(self, snapshot: LedgerSnapshot, national, correlation) -> None:
        self.licences: dict[str, Licence] = dict(snapshot.licences)
        self.known = snapshot.known_to_customs
        self.national = national
        self.correlation = correlation
        self.usage: dict[Key, Usage] = dict(snapshot.usage)
        self.keys_by_mrn: dict[str, set[Key]] = {}
        for key in self.usage:
            self.keys_by_mrn.setdefault(key[0], set()).add(key)
        self.totals: dict[LineKey, Totals] = dict(snapshot.line_totals)
        self.states: dict[str, DeclarationState] = dict(snapshot.declarations)
        self.recorded = set(snapshot.seen_message_ids)
        self.touched: set[str] = set()  # licences the current event moved
        self.warned: set[tuple[str, int, str]] = set()  # CN/CLE alerts raised in this batch
        self.correlated: dict[tuple[str, int, str | None], list[Finding]] = {}
        self.decision = Decision()

    def run(self, events: Sequence[DeclarationEvent]) -> Decision:
        for event in events:
            self.one(event)
            if self.touched:
                self.follow_status(event)
        return self.decision

    def outcome(
        self,
        event: DeclarationEvent,
        outcome: Outcome,
        detail: str = "",
        record=Record.INSERT,
        documents: tuple[DocumentResult, ...] = (),
    ) -> None:
        self.decision.outcomes.append(
            MessageOutcome(
                event.message_id,
                event.mrn,
                str(event.kind),
                outcome,
                detail,
                record,
                event.version,
                documents,
            )
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
        outcome, detail, documents = self.apply(event)
        self.outcome(event, outcome, detail, documents=documents)
        state = replace(
            state, version=event.version, event=str(event.kind), message_id=event.message_id
        )
        held = state.held
        if held is not None:
            state = replace(state, held=None)
            if held.version > event.version:
                if self.touched:  # the release's status change comes before the amendment's
                    self.follow_status(event)
                outcome, detail, documents = self.apply(held)
                self.outcome(
                    held, outcome, f"held until its release; {detail}", Record.UPDATE, documents
                )
                state = replace(
                    state, version=held.version, event=str(held.kind), message_id=held.message_id
                )
                if self.touched:
                    self.follow_status(held)
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
        documents = [
            self.reversed_document(key)
            for key in sorted(self.keys_by_mrn.get(event.mrn, ()))
            if self.reverse(key, event)
        ]
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
            f"{len(documents)} write-off(s) reversed"
            if documents
            else "nothing written off yet; remembered so that a later release writes nothing"
        )
        self.outcome(event, Outcome.APPLIED, detail, documents=self.with_balances(documents))

    def apply(self, event: DeclarationEvent) -> tuple[Outcome, str, tuple[DocumentResult, ...]]:
        """Bring the MRN's usage to what this declaration version says; a result for every
        dual-use (or Y901) document it quotes and every write-off it no longer makes.

        What the version no longer writes off is given back first, so that goods renumbered
        or quoted under another document code are not counted twice on their way."""
        declaration = event.declaration
        assert declaration is not None  # released and amended events always carry one
        planned: list[tuple[GoodsItem, DocumentUse, LicenceType | None, Key | None]] = []
        for item in declaration.goods_items:
            for document in item.documents:
                is_licence, asserted = licence_document(
                    document.document_code, event.country, self.national
                )
                if not is_licence and document.document_code != NO_LICENCE_NEEDED:
                    continue
                key = None
                if is_licence and document.writes_off:
                    key = (event.mrn, item.sequence, document.document_code, document.reference)
                planned.append((item, document, asserted if is_licence else None, key))
        present = {key for *_, key in planned if key is not None}
        gone = self.keys_by_mrn.get(event.mrn, set()) - present
        reversed_documents = [
            self.reversed_document(key, "no longer in the declaration")
            for key in sorted(gone)
            if self.reverse(key, event)
        ]
        documents: list[DocumentResult] = []
        refused = applied = 0
        for item, document, asserted, key in planned:
            if document.document_code == NO_LICENCE_NEEDED:
                documents.append(
                    _ignored(
                        item,
                        document,
                        f"{NO_LICENCE_NEEDED}: the goods need no dual-use licence;"
                        " nothing written off",
                    )
                )
            elif key is None:
                documents.append(
                    _ignored(
                        item,
                        document,
                        "quoted without a write-off quantity or amount: nothing written off",
                    )
                )
            else:
                result = self.write_off(event, item, document, asserted, key)
                documents.append(result)
                if result.status is DocumentStatus.REFUSED:
                    refused += 1
                else:
                    applied += 1
        documents.extend(reversed_documents)
        results = self.with_balances(documents)
        if refused:
            return Outcome.REFUSED, f"{refused} write-off(s) refused, {applied} applied", results
        if applied or reversed_documents:
            detail = f"{applied} write-off(s), {len(reversed_documents)} reversed"
            return Outcome.APPLIED, detail, results
        return Outcome.IGNORED, "no dual-use licence write-off", results

    def with_balances(self, documents: list[DocumentResult]) -> tuple[DocumentResult, ...]:
        """Each document's line balance as it stands after the whole event. A document gets
        its balance when it is decided; only a later one of the same event can change it."""
        if len(documents) <= 1:
            return tuple(documents)
        settled = []
        for document in documents:
            if document.line_number is not None:
                now = self.balance(document.reference, document.line_number)
                if now != document.remaining:  # most lines are in an event once: unchanged
                    document = replace(document, remaining=now)
            settled.append(document)
        return tuple(settled)

    def balance(self, number: str, line_number: int | None) -> Balance | None:
        """What licence `number` line `line_number` has left now (None: no ceiling, no line)."""
        licence = self.licences.get(number)
        line = licence.line(line_number) if licence and line_number is not None else None
        if licence is None or line is None:
            return None
        return remaining(licence, line, self.totals.get((number, line_number), (ZERO, ZERO)))

    def reversed_document(self, key: Key, detail: str = "") -> DocumentResult:
        usage = self.usage[key]
        return DocumentResult(
            goods_item=key[1],
            document_code=key[2],
            reference=key[3],
            status=DocumentStatus.REVERSED,
            line_number=usage.line_number,
            detail=f"written off before, given back{f': {detail}' if detail else ''}",
            written_off=self.written_off(usage),
            remaining=self.balance(usage.licence_number, usage.line_number),
        )

    def written_off(self, usage: Usage | None) -> Balance | None:
        if usage is None:
            return None
        licence = self.licences.get(usage.licence_number)
        line = licence.line(usage.line_number) if licence else None
        return Balance(
            usage.quantity,
            line.unit if line else None,
            usage.value,
            line.currency if line else None,
        )

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
    ) -> DocumentResult:
        licence = self.licences.get(document.reference)
        current = self.usage.get(key)
        target, problems, warnings = self.evaluate(
            event, item, document, asserted, licence, current
        )
        self.warn(event, item, licence, target, warnings)
        if problems:
            return self.refuse(event, item, document, licence, target, current, problems, warnings)
        assert target is not None and licence is not None
        line_number = target.line.line_number
        declared = (document.quantity, document.unit)
        if current is None:
            kind = MovementKind.WRITE_OFF if licence.type.has_ceiling else MovementKind.RECORD
        else:
            kind = MovementKind.ADJUSTMENT
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
        status = DocumentStatus.ACCEPTED if licence.type.has_ceiling else DocumentStatus.RECORDED
        return DocumentResult(
            goods_item=item.sequence,
            document_code=document.document_code,
            reference=document.reference,
            status=status,
            line_number=line_number,
            warnings=_reasons(warnings),
            written_off=self.written_off(new),
            remaining=self.balance(document.reference, line_number),
        )

    def refuse(
        self,
        event: DeclarationEvent,
        item: GoodsItem,
        document: DocumentUse,
        licence: Licence | None,
        target: _Target | None,
        current: Usage | None,
        problems: list[Finding],
        warnings: list[Finding],
    ) -> DocumentResult:
        """Write nothing off; record one refusal per code with every reason, and raise an
        over-use to the authority."""
        line_number = target.line.line_number if target else None
        reasons = _reasons(problems)
        for reason in reasons:
            self.decision.refusals.append(
                Refusal(
                    event.mrn,
                    item.sequence,
                    document.document_code,
                    document.reference,
                    document.reference,
                    line_number,
                    reason.code,
                    reason.reason,
                    event.message_id,
                )
            )
        over = next((r for r in reasons if r.code == "over-use"), None)
        if over is not None and licence is not None and target is not None:
            self.alert_over_use(event, item, document, licence, target, current, over.reason)
        if line_number is None and current is not None:
            line_number = current.line_number  # what it still writes off is on its old line
        return DocumentResult(
            goods_item=item.sequence,
            document_code=document.document_code,
            reference=document.reference,
            status=DocumentStatus.REFUSED,
            line_number=line_number,
            refusals=reasons,
            warnings=_reasons(warnings),
            detail="nothing written off" if current is None else "the earlier write-off stands",
            written_off=self.written_off(current),
            remaining=self.balance(document.reference, line_number),
        )

    def alert_over_use(
        self,
        event: DeclarationEvent,
        item: GoodsItem,
        document: DocumentUse,
        licence: Licence,
        target: _Target,
        current: Usage | None,
        reason: str,
    ) -> None:
        line = target.line
        used = self.totals.get((licence.number, line.line_number), (ZERO, ZERO))
        same = current is not None and _line_of(current) == (licence.number, line.line_number)
        base_q, base_v = (current.quantity, current.value) if same and current else (ZERO, ZERO)
        left = remaining(licence, line, used)
        self.decision.alerts.append(
            Alert(
                kind="over-use",
                message=(
                    f"{event.mrn} goods item {item.sequence} ({document.document_code}) asked"
                    f" more than licence {licence.number} line {line.line_number} has left:"
                    f" {reason}"
                ),
                licence_number=licence.number,
                line_number=line.line_number,
                mrn=event.mrn,
                details={
                    "message_id": event.message_id,
                    "event": str(event.kind),
                    "declaration_version": event.version,
                    "goods_item": item.sequence,
                    "document_code": document.document_code,
                    "requested_quantity": str(target.quantity - base_q),
                    "unit": line.unit,
                    "remaining_quantity": _text(left.quantity if left else None),
                    "requested_value": str(target.value - base_v),
                    "currency": line.currency,
                    "remaining_value": _text(left.value if left else None),
                    "declared_quantity": _text(document.quantity),
                    "declared_unit": document.unit,
                },
            )
        )

    def warn(
        self,
        event: DeclarationEvent,
        item: GoodsItem,
        licence: Licence | None,
        target: _Target | None,
        warnings: list[Finding],
    ) -> None:
        """A CN/CLE warning goes to the authority once per batch and line and CN code."""
        if not warnings or licence is None or target is None:
            return
        seen = (licence.number, target.line.line_number, item.cn_code or "")
        if seen in self.warned:
            return
        self.warned.add(seen)
        for code, reason in warnings:
            self.decision.alerts.append(
                Alert(
                    kind=code,
                    message=reason,
                    licence_number=licence.number,
                    line_number=target.line.line_number,
                    mrn=event.mrn,
                    details={
                        "message_id": event.message_id,
                        "goods_item": item.sequence,
                        "cn_code": item.cn_code,
                        "control_list_entry": target.line.control_list_entry,
                    },
                )
            )

    def evaluate(
        self,
        event: DeclarationEvent,
        item: GoodsItem,
        document: DocumentUse,
        asserted: LicenceType | None,
        licence: Licence | None,
        current: Usage | None,
    ) -> tuple[_Target | None, list[Finding], list[Finding]]:
        """The line, quantity and value this write-off means, every reason it may not happen,
        and warnings. A write-off that only lowers what its key already writes off on the same
        line (an amendment down) is not held to the licence's state: that was checked when it
        was released, and giving back is always allowed."""
        number = document.reference
        if licence is None:
            return None, [("licence-unknown", f"licence {number} is not in the ledger")], []
        if (
            licence.status is LicenceStatus.EXHAUSTED
            and number in self.touched
            and not used_up(licence, self.totals)
        ):
            # This event gave back to the licence (goods renumbered, say): it is exhausted no
            # longer, which follow_status settles once the event is done. Over-use is apart.
            licence = replace(licence, status=LicenceStatus.VALID)
        day = event.envelope.event_time.date()
        known = self.known is None or number in self.known
        exporter = event.declaration.exporter_eori if event.declaration else None
        problems = document_type_problems(licence, document.document_code, asserted)
        problems += exporter_problems(licence, exporter)
        line, unmatched = match_line(
            licence, line_number=document.line_item_number, cn_code=item.cn_code
        )
        if line is None:
            assert unmatched is not None
            problems += licence_state_problems(licence, on=day, known_to_customs=known)
            problems.append(unmatched)
            return None, problems, []
        problems += destination_problems(licence, line, item.destination)
        quantity, value, measure = line_measures(
            licence,
            line,
            quantity=document.quantity,
            unit=document.unit,
            amount=document.amount,
            currency=document.currency,
        )
        problems += measure
        same_line = current is not None and _line_of(current) == (number, line.line_number)
        base_q = current.quantity if same_line and current else ZERO
        base_v = current.value if same_line and current else ZERO
        delta_q, delta_v = quantity - base_q, value - base_v
        if not same_line or delta_q > ZERO or delta_v > ZERO:
            problems[:0] = licence_state_problems(licence, on=day, known_to_customs=known)
        if not measure:
            used = self.totals.get((number, line.line_number), (ZERO, ZERO))
            if why := over_use(licence, line, used, delta_q, delta_v):
                problems.append(("over-use", why))
        return _Target(line, quantity, value), problems, self.correlate(licence, line, item.cn_code)

    def correlate(self, licence: Licence, line: LicenceLine, cn_code: str | None) -> list[Finding]:
        # A batch sees the same licence line and CN code again and again: look it up once.
        seen = (licence.number, line.line_number, cn_code)
        found = self.correlated.get(seen)
        if found is None:
            found = self.correlated[seen] = correlation_warnings(
                self.correlation, licence, line, cn_code
            )
        return found

    def follow_status(self, event: DeclarationEvent) -> None:
        """A licence whose every line with a ceiling is used up becomes exhausted; one that an
        amendment or invalidation frees again becomes valid again."""
        for number in sorted(self.touched):
            licence = self.licences.get(number)
            if licence is None:
                continue
            full = used_up(licence, self.totals)
            if licence.status is LicenceStatus.VALID and full:
                to = LicenceStatus.EXHAUSTED
                reason = (
                    f"every line with a ceiling is used up (declaration {event.mrn},"
                    f" {event.kind} v{event.version}, message {event.message_id})"
                )
            elif licence.status is LicenceStatus.EXHAUSTED and not full:
                to = LicenceStatus.VALID
                reason = (
                    f"quantity or value given back by declaration {event.mrn}"
                    f" ({event.kind} v{event.version}, message {event.message_id})"
                )
            else:
                continue
            self.decision.status_changes.append(StatusChange(number, licence.status, to, reason))
            self.licences[number] = replace(licence, status=to)
        self.touched.clear()

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
        self.touched.add(usage.licence_number)
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


def _ignored(item: GoodsItem, document: DocumentUse, detail: str) -> DocumentResult:
    return DocumentResult(
        goods_item=item.sequence,
        document_code=document.document_code,
        reference=document.reference,
        status=DocumentStatus.IGNORED,
        detail=detail,
    )


def _line_of(usage: Usage) -> LineKey:
    return (usage.licence_number, usage.line_number)


def _line_codes(licence: Licence) -> str:
    return ", ".join(f"{x.line_number} CN {x.cn_code or '-'}" for x in licence.lines)


def _cn_covers(line_cn: str | None, declared_cn: str) -> bool:
    # A line's 6- or 8-digit code covers the longer TARIC codes under it.
    return bool(line_cn) and declared_cn.startswith(line_cn)


def _text(value: Decimal | None) -> str | None:
    return None if value is None else str(value)


def ledger_quantity(quantity: Decimal) -> Decimal:
    """A converted quantity within the ledger's six decimals, rounded up so that a licence is
    never charged less than was declared (1.5 g is 0.0015 kg; 0.0000015 kg stays 0.000002),
    without trailing zeros (10.00 is 10, as the ledger gives it back)."""
    return plain(quantity.quantize(LEDGER_DECIMALS, rounding=ROUND_CEILING))

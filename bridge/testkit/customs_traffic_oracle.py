"""The corpus's independent oracle: what the bridge must answer to each message of customs
traffic and what the ledger must hold after it, worked out from the messages as planned (the
`WcoDeclaration`s, never the XML) with its own few rules, sharing no code with the bridge's
(bridge.core.writeoff, bridge.core.declaration, bridge.core.documents).

Its rules, as issue 11 states them:

- relevance first: a declaration concerns the bridge when a goods item quotes a dual-use
  document code (X002, X060-X068, X070-X072) or a national code of its customs country that the
  deployment declares; anything else is `ignored`, whatever it lacks;
- the event kind is the payload's (FunctionCode 9 an original declaration; 13 with INV a
  cancellation; other 13 an amendment); an envelope `event` contradicting it is refused;
- per MRN the bridge keeps the declaration state: exporter, destination, release date,
  version, per goods item its dual-use documents. An amendment's goods items replace theirs
  (their documents with them: a document an amended item no longer carries is given back);
  items and header data it does not carry keep their values; a whole declaration (FunctionCode
  9) replaces everything;
- every check runs on the merged declaration, validity on the original release date; lowering
  is always allowed; an amendment before its release is held, then applied after it;
- a message id seen before, or the same MRN and version again, is a duplicate; an older
  version is stale; an invalidated MRN writes nothing off."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import date
from decimal import Decimal

from bridge.core.model import Licence, LicenceType
from bridge.testkit.customs_traffic_xml import Doc, WcoDeclaration

ZERO = Decimal(0)
EU_CODES: dict[str, LicenceType | None] = {
    "X002": None,
    "X060": LicenceType.INDIVIDUAL,
    **{f"X06{n}": LicenceType.UNION_GENERAL for n in range(1, 9)},
    "X070": LicenceType.GLOBAL,
    "X071": LicenceType.NATIONAL_GENERAL,
    "X072": LicenceType.INDIVIDUAL,
}
# The deployment's national codes: the UK's SIEL code, for declarations of GB customs.
NATIONAL_CODES: dict[str, dict[str, LicenceType | None]] = {"GB": {"9104": LicenceType.INDIVIDUAL}}
_UNION_GENERAL = {f"X06{n}" for n in range(1, 9)}
EU001 = frozenset({"AU", "CA", "IS", "JP", "NZ", "NO", "CH", "LI", "GB", "US"})
# Exact conversions into a licence line's unit: (declared, line) -> factor.
FACTORS = {("GRM", "KGM"): Decimal("0.001"), ("KGM#G", "KGM"): Decimal(1)}

DocKey = tuple[str, int, str, str]  # (MRN, goods item, document code, reference)
LineKey = tuple[str, int]  # (licence number, line number)
Amounts = tuple[Decimal, Decimal]  # (quantity in the line's unit, value in its currency)

RELEASED, AMENDED, INVALIDATED = "released", "amended", "invalidated"


def payload_kind(declaration: WcoDeclaration) -> str:
    if declaration.function_code == "9":
        return RELEASED
    return INVALIDATED if declaration.type_code == "INV" else AMENDED


@dataclass(frozen=True, slots=True)
class Expected:
    """What the bridge must record for one message (`outcomes`: any of them), and how many
    result messages customs get for it (two for a held amendment: held, then its result)."""

    outcomes: frozenset[str]
    results: int = 1
    why: str = ""

    def __str__(self) -> str:
        return "|".join(sorted(self.outcomes)) + (f" ({self.why})" if self.why else "")


def expect(*outcomes: str, results: int = 1, why: str = "") -> Expected:
    return Expected(frozenset(outcomes), results, why)


@dataclass
class _State:
    """One MRN as the bridge must keep it."""

    version: int = 0
    kind: str | None = None
    released: bool = False
    release_date: date | None = None
    invalidated: bool = False
    exporter: str | None = None
    destination: str | None = None
    country: str | None = None
    items: dict[int, tuple[str | None, tuple[Doc, ...]]] = field(default_factory=dict)
    written: dict[DocKey, Amounts] = field(default_factory=dict)  # what stands now
    lines: dict[DocKey, int] = field(default_factory=dict)  # the licence line each used
    held: list[tuple[str, int, WcoDeclaration, date, str]] = field(default_factory=list)


class TrafficOracle:
    """Fed every message in the order customs publish them (`receive`), each answered with
    what the bridge must record; then asked what each document and licence line holds."""

    def __init__(self, licences: Iterable[Licence]) -> None:
        self.licences = {licence.number: licence for licence in licences}
        self.lines = {
            (licence.number, line.line_number): line
            for licence in self.licences.values()
            for line in licence.lines
        }
        self.totals: dict[LineKey, Amounts] = {key: (ZERO, ZERO) for key in self.lines}
        self.states: dict[str, _State] = {}
        self.seen: set[str] = set()
        self.answers: dict[str, Expected] = {}

    # ------------------------------------------------------------------ relevance

    @staticmethod
    def licence_code(code: str, country: str | None) -> tuple[bool, LicenceType | None]:
        if code in EU_CODES:
            return True, EU_CODES[code]
        national = NATIONAL_CODES.get(country or "", {})
        return (code in national), national.get(code)

    def relevant(self, declaration: WcoDeclaration, country: str | None) -> bool:
        return any(
            self.licence_code(doc.code, country)[0]
            for item in declaration.items
            for doc in item.documents
        )

    # ------------------------------------------------------------------- messages

    def receive(
        self,
        message_id: str,
        mrn: str,
        event: str | None,
        version: int,
        declaration: WcoDeclaration | None,
        event_date: date,
        country: str | None = None,
    ) -> Expected:
        """The answer to one message: `event` is the envelope's (None when absent),
        `declaration` the payload (None for an invalidation without one)."""
        answer = self._receive(message_id, mrn, event, version, declaration, event_date, country)
        if message_id not in self.answers:
            self.answers[message_id] = answer
        return answer

    def _receive(self, message_id, mrn, event, version, declaration, event_date, country):
        if message_id in self.seen:
            return expect("duplicate", why="message id seen before")
        kind = payload_kind(declaration) if declaration is not None else INVALIDATED
        if event is not None and event != kind:
            return expect("refused", "quarantined", why=f"sent as {event}, payload is {kind}")
        self.seen.add(message_id)
        country = country or (declaration.country if declaration else None)
        state = self.states.get(mrn)
        if kind == INVALIDATED:
            state = self.states.setdefault(mrn, _State())
            if state.invalidated:
                return expect("duplicate")
            for key in list(state.written):
                self._move(key, state.lines[key], state.written.pop(key), sign=-1)
            state.invalidated, state.held = True, []
            return expect("applied", why="invalidation")
        assert declaration is not None
        if state is None and not self.relevant(declaration, country):
            return expect("ignored", why="no dual-use document")
        state = self.states.setdefault(mrn, _State())
        if state.invalidated:
            return expect("ignored", why="invalidated before")
        if version == state.version and kind == state.kind:
            return expect("duplicate", why="same version again")
        if version <= state.version:
            return expect("stale")
        if kind == AMENDED and not state.released:
            state.held.append((message_id, version, declaration, event_date, country))
            return expect("held")
        answer = self._apply(mrn, state, kind, version, declaration, event_date, country)
        for held_id, held_version, held, held_date, held_country in sorted(
            state.held, key=lambda h: h[1]
        ):
            if held_version > state.version:
                final = self._apply(
                    mrn, state, AMENDED, held_version, held, held_date, held_country
                )
                self.answers[held_id] = replace(final, results=2)
            else:
                self.answers[held_id] = expect("stale", results=2)
        state.held = []
        return answer

    def _apply(self, mrn, state: _State, kind, version, declaration: WcoDeclaration, when, country):
        """Merge `declaration` onto the MRN's state and move the ledger by the difference."""
        if kind == RELEASED and not state.released:
            state.release_date = when
        state.released = True
        state.version, state.kind = version, kind
        state.country = country or state.country
        if kind == RELEASED:
            state.items = {}
            state.exporter = declaration.exporter
            state.destination = declaration.destination
        else:
            state.exporter = declaration.exporter or state.exporter
            state.destination = declaration.destination or state.destination
        for item in declaration.items:
            state.items[item.sequence] = (item.destination, item.documents)
        wanted: dict[DocKey, Doc] = {}
        destinations: dict[DocKey, str | None] = {}
        for sequence, (destination, documents) in state.items.items():
            for doc in documents:
                if doc.writes_off and self.licence_code(doc.code, state.country)[0]:
                    key = (mrn, sequence, doc.code, doc.reference)
                    wanted[key] = doc
                    destinations[key] = destination or state.destination
        refused = moved = 0
        for key in sorted(set(state.written) - set(wanted)):
            self._move(key, state.lines[key], state.written.pop(key), sign=-1)
            moved += 1
        for key, doc in wanted.items():
            amounts = self.amounts(doc)
            before = state.written.get(key, (ZERO, ZERO))
            if amounts == before:
                continue
            reason = self._refusal(state, key, doc, amounts, before, destinations[key])
            if reason:
                refused += 1
                continue
            if before != (ZERO, ZERO):
                self._move(key, state.lines[key], before, sign=-1)
            state.lines[key] = doc.line_number or 0
            self._move(key, state.lines[key], amounts, sign=1)
            state.written[key] = amounts
            moved += 1
        if refused:
            return expect("refused")
        if kind == AMENDED and not moved:
            # Nothing the bridge keeps changed (another section): applied or ignored.
            return expect("applied", "ignored", why="touches no write-off")
        return expect("applied")

    def _refusal(self, state: _State, key: DocKey, doc: Doc, amounts, before, destination):
        licence = self.licences.get(doc.reference)
        if licence is None or doc.line_number is None:
            return "licence-unknown"
        raises = amounts[0] > before[0] or amounts[1] > before[1]
        if not raises:
            return None  # lowering is always accepted
        _, asserted = self.licence_code(doc.code, state.country)
        if asserted is not None and asserted is not licence.type:
            return "document-type-mismatch"
        if doc.code in _UNION_GENERAL and licence.general_authorisation != f"EU00{doc.code[3]}":
            return "document-type-mismatch"
        if state.exporter != licence.holder_eori:
            return "wrong-exporter"
        line = self.lines[(licence.number, doc.line_number)]
        if line.destinations and destination not in line.destinations:
            return "destination-not-allowed"
        if licence.general_authorisation == "EU001" and destination not in EU001:
            return "destination-not-allowed"
        when = state.release_date
        if (
            when is None
            or when < licence.valid_from
            or (licence.valid_to and when > licence.valid_to)
        ):
            return "outside-validity"
        if licence.type.has_ceiling:
            total = self.totals[(licence.number, doc.line_number)]
            if line.quantity is not None and total[0] - before[0] + amounts[0] > line.quantity:
                return "over-use"
            if line.value is not None and total[1] - before[1] + amounts[1] > line.value:
                return "over-use"
        return None

    def amounts(self, doc: Doc) -> Amounts:
        """What `doc` writes off in its licence line's unit and currency."""
        line = self.lines.get((doc.reference, doc.line_number or 0))
        quantity = ZERO
        if doc.quantity is not None and line is not None and line.unit is not None:
            factor = Decimal(1) if doc.unit == line.unit else FACTORS[(doc.unit, line.unit)]
            quantity = (doc.quantity * factor).normalize()
        value = doc.amount if doc.amount is not None else ZERO
        return quantity, value

    def _move(self, key: DocKey, line_number: int, amounts: Amounts, *, sign: int) -> None:
        line_key = (key[3], line_number)
        quantity, value = self.totals.get(line_key, (ZERO, ZERO))
        self.totals[line_key] = (quantity + sign * amounts[0], value + sign * amounts[1])

    # -------------------------------------------------------------------- answers

    def document_write_offs(self) -> dict[DocKey, Amounts]:
        """What each dual-use document of each MRN writes off in the end (only those that
        stand: nothing for an invalidated MRN, a document given back or one refused)."""
        return {
            key: amounts
            for state in self.states.values()
            for key, amounts in state.written.items()
            if amounts != (ZERO, ZERO)
        }

    def line_totals(self) -> dict[LineKey, Amounts]:
        return dict(self.totals)

    def balances(self) -> dict[LineKey, tuple[Decimal | None, Decimal | None]]:
        """Per licence line, what is left of its ceilings (None: no ceiling of that kind)."""
        left = {}
        for key, (quantity, value) in self.totals.items():
            line = self.lines[key]
            ceiling = self.licences[key[0]].type.has_ceiling
            left[key] = (
                line.quantity - quantity if ceiling and line.quantity is not None else None,
                line.value - value if ceiling and line.value is not None else None,
            )
        return left

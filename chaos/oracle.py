"""The independent oracle: what the ledger must hold after a generated stream, worked out from
the stream alone.

It reads only what the generator meant (`bridge.testkit.streams.SynthEvent`: message id, MRN,
event kind, declaration version, planned write-offs, whether the message is unreadable) and the
licences' authorised quantities, and adds them up with its own few rules:

- a message id seen before is a redelivery and changes nothing;
- an unreadable message belongs in the quarantine, once per distinct payload;
- per declaration (MRN), the highest version received is what stands, whatever order the
  versions came in;
- a partial amendment (bridge.testkit.customs_traffic_stream: FunctionCode 13, only the goods
  items it changes) is merged onto the declaration: the goods items it carries replace theirs,
  documents and all (a document an item is carried without is given back), the others keep
  theirs; the amendments of a declaration are merged in version order, whatever order they
  came in;
- an invalidated declaration writes off nothing, whichever of its versions came before or
  after the invalidation;
- a declaration that quotes no dual-use document (an import, transit, an export quoting only
  Y901) is answered `ignored` and writes nothing off;
- a licence line's written-off total is the sum of what the standing declarations write off
  against it; its balance is its authorised quantity (value) minus that total.

It shares no code with the ledger's rules (bridge.core.writeoff) or its store
(bridge.adapters.store): the suite compares two independent computations, so a bug in the rules
cannot hide itself."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal

from bridge.core.model import Licence
from bridge.testkit.declaration_plans import PlannedWriteOff
from bridge.testkit.streams import SynthEvent

ZERO = Decimal(0)
INVALIDATED = "invalidated"

# (MRN, goods item, document code, licence number): one dual-use document of a declaration.
DocumentKey = tuple[str, int, str, str]
LineKey = tuple[str, int]  # (licence number, line number)
Amounts = tuple[Decimal, Decimal]  # (quantity in the line's unit, value in its currency)


@dataclass(frozen=True, slots=True)
class Ceiling:
    """What a licence line authorises: None where it sets no ceiling of that kind."""

    quantity: Decimal | None
    value: Decimal | None

    @property
    def counts_down(self) -> bool:
        return self.quantity is not None or self.value is not None


@dataclass
class Oracle:
    """Fed every event of the stream in the order generated (`add`), then asked what the
    ledger must hold. Arrival order does not matter to any of its answers."""

    ceilings: dict[LineKey, Ceiling] = field(default_factory=dict)
    ceiling_licences: set[str] = field(default_factory=set)  # licence types with ceilings
    valid_ids: set[str] = field(default_factory=set)
    bad_payloads: dict[bytes, str] = field(default_factory=dict)  # payload -> kind of badness
    standing: dict[str, tuple[int, tuple[PlannedWriteOff, ...]]] = field(default_factory=dict)
    # Per MRN, its partial amendments by version: (goods items carried, what they write off).
    partials: dict[str, dict[int, tuple[frozenset[int], tuple[PlannedWriteOff, ...]]]] = field(
        default_factory=dict
    )
    irrelevant_ids: set[str] = field(default_factory=set)
    partial_ids: set[str] = field(default_factory=set)
    invalidated: set[str] = field(default_factory=set)
    messages: int = 0
    redeliveries: int = 0
    kinds: dict[str, int] = field(default_factory=dict)

    @classmethod
    def for_licences(cls, licences: Iterable[Licence]) -> Oracle:
        oracle = cls()
        for licence in licences:
            for line in licence.lines:
                oracle.ceilings[(licence.number, line.line_number)] = Ceiling(
                    line.quantity, line.value
                )
            if any(line.quantity is not None or line.value is not None for line in licence.lines):
                oracle.ceiling_licences.add(licence.number)
        return oracle

    def add(self, event: SynthEvent) -> None:
        self.messages += 1
        if event.bad is not None:
            self.bad_payloads.setdefault(event.envelope, event.bad)
            self._count(f"unreadable ({event.bad})")
            return
        if event.message_id in self.valid_ids:
            self.redeliveries += 1
            self._count("redelivery")
            return
        self.valid_ids.add(event.message_id)
        assert event.mrn is not None
        if not getattr(event, "irrelevant", False) and not getattr(event, "partial", False):
            self._count(event.kind)
        if event.kind == INVALIDATED:
            self.invalidated.add(event.mrn)
            return
        if getattr(event, "irrelevant", False):
            self.irrelevant_ids.add(event.message_id)
            self._count(f"{event.kind} (irrelevant)")
            return
        if getattr(event, "partial", False):
            self.partial_ids.add(event.message_id)
            self._count(f"{event.kind} (partial)")
            carried = event.carried_items  # type: ignore[attr-defined]
            self.partials.setdefault(event.mrn, {})[event.version] = (carried, event.write_offs)
            return
        version, _ = self.standing.get(event.mrn, (0, ()))
        if event.version > version:
            self.standing[event.mrn] = (event.version, event.write_offs)

    def _count(self, kind: str) -> None:
        self.kinds[kind] = self.kinds.get(kind, 0) + 1

    @property
    def expected_processed(self) -> int:
        """How many messages the ledger must have recorded: each valid message id once, each
        distinct unreadable payload once."""
        return len(self.valid_ids) + len(self.bad_payloads)

    def final_write_offs(self, mrn: str) -> tuple[PlannedWriteOff, ...]:
        """What declaration `mrn` writes off in the end: its highest whole version, with every
        newer partial amendment merged onto it in version order (nothing once invalidated, or
        while no release came)."""
        if mrn in self.invalidated or mrn not in self.standing:
            return ()
        version, write_offs = self.standing[mrn]
        by_item: dict[int, list[PlannedWriteOff]] = {}
        for w in write_offs:
            by_item.setdefault(w.goods_item, []).append(w)
        for amended in sorted(self.partials.get(mrn, {})):
            if amended <= version:
                continue
            carried, amended_write_offs = self.partials[mrn][amended]
            for item in carried:
                by_item[item] = [w for w in amended_write_offs if w.goods_item == item]
        return tuple(w for item in sorted(by_item) for w in by_item[item])

    def document_write_offs(self) -> dict[DocumentKey, Amounts]:
        """What each dual-use document of each declaration writes off in the end (zero for a
        document of an invalidated declaration, or one an amendment dropped)."""
        found: dict[DocumentKey, Amounts] = {}
        for mrn in self.standing:
            for w in self.final_write_offs(mrn):
                key = (mrn, w.goods_item, w.document_code, w.reference)
                quantity, value = found.get(key, (ZERO, ZERO))
                found[key] = (quantity + w.quantity, value + w.value)
        return found

    def line_totals(self) -> dict[LineKey, Amounts]:
        """Per licence line, the quantity and value written off (or recorded) in the end."""
        totals: dict[LineKey, Amounts] = {line: (ZERO, ZERO) for line in self.ceilings}
        for mrn in self.standing:
            for w in self.final_write_offs(mrn):
                key = (w.reference, w.line_number)
                quantity, value = totals.get(key, (ZERO, ZERO))
                totals[key] = (quantity + w.quantity, value + w.value)
        return totals

    def balances(self) -> dict[LineKey, tuple[Decimal | None, Decimal | None]]:
        """Per licence line, what is left of its quantity and value ceilings (None: no
        ceiling of that kind)."""
        left = {}
        for key, (quantity, value) in self.line_totals().items():
            ceiling = self.ceilings.get(key, Ceiling(None, None))
            left[key] = (
                None if ceiling.quantity is None else ceiling.quantity - quantity,
                None if ceiling.value is None else ceiling.value - value,
            )
        return left

    def used_up(self) -> set[str]:
        """Licences with ceilings of which every line with a ceiling has nothing left of its
        quantity or of its value: the ones that must end exhausted."""
        lines_left: dict[str, list[bool]] = {}
        for (number, _), (quantity, value) in self.balances().items():
            if number not in self.ceiling_licences or (quantity is None and value is None):
                continue
            nothing_left = (quantity is not None and quantity <= 0) or (
                value is not None and value <= 0
            )
            lines_left.setdefault(number, []).append(nothing_left)
        return {number for number, lines in lines_left.items() if all(lines)}

"""Declarations planned against synthetic licences, before they are written: who exports,
which goods items, which documents, and what each dual-use document is meant to write off (its
ground truth).

Write-offs are planned against a budget per licence line that never gives quantity back, so
planned declarations never ask for more than a line has left, in any arrival order: every
readable write-off is meant to be applied. `plan_declarations(licences, n, seed=...)` plans `n`
of them sharing one budget; bridge.testkit.declarations writes a plan as WCO DEC-DMS XML."""

from __future__ import annotations

import random
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from decimal import ROUND_HALF_UP, Decimal

from bridge.core.model import Licence, LicenceLine, LicenceStatus, LicenceType
from bridge.testkit.licences import (
    CATALOGUE,
    DESTINATIONS,
    EU001_COUNTRIES,
    MEMBER_STATES_BY_CODE,
    UNIT_DECIMALS,
    money,
    plain,
    random_decimal,
)

# What one write-off declares, in the line's unit.
_WRITE_OFF_RANGE = {"NAR": (1, 20), "KGM": (1, 60), "GRM": (10, 500), "LTR": (5, 200)}
_WRITE_OFF_RANGE |= {"MTK": (1, 40)}


@dataclass(frozen=True, slots=True)
class PlannedWriteOff:
    """What one dual-use document of a declaration is meant to write off, in the licence
    line's own unit and currency (zero where the line counts nothing of that kind)."""

    goods_item: int
    document_code: str
    reference: str  # the licence number
    line_number: int
    quantity: Decimal
    value: Decimal
    recorded: bool  # a general authorisation: usage recorded, no ceiling

    @property
    def key(self) -> tuple[int, str, str]:
        return (self.goods_item, self.document_code, self.reference)


@dataclass(frozen=True, slots=True)
class DocumentPlan:
    category: str  # CategoryCode + TypeCode = the document code
    type_code: str
    reference: str
    name: str | None = None
    status: str | None = None  # LPCOExemptionCode
    quantity: str | None = None  # as declared (text), in `unit`
    unit: str | None = None
    amount: str | None = None
    currency: str | None = None
    write_off: PlannedWriteOff | None = None


@dataclass(frozen=True, slots=True)
class GoodsItemPlan:
    sequence: int
    cn: str
    description: str
    destination: str
    documents: tuple[DocumentPlan, ...]
    gross_mass: Decimal
    statistical_value: Decimal


@dataclass(frozen=True, slots=True)
class DeclarationPlan:
    """A declaration before it is written: everything `render_declaration` needs."""

    mrn: str
    lrn: str
    country: str  # the customs country (MetaData ResponsibleCountryCode)
    currency: str
    exporter_eori: str
    declarant_eori: str
    goods_items: tuple[GoodsItemPlan, ...]
    type_code: str = "EXA"
    amended: bool = False  # carries an Amendment (post-release correction)
    minimal: bool = False  # written as the ~1 KB minimal declaration

    @property
    def write_offs(self) -> tuple[PlannedWriteOff, ...]:
        return tuple(
            d.write_off for item in self.goods_items for d in item.documents if d.write_off
        )


_ORDINARY_DOCUMENTS = (
    ("C", "512", "GBSDE{eori}E20260113093111", None, None),
    ("Y", "935", "1332/2013", "Reg 1332/2013 exempt", None),
    ("Y", "903", "116/2009", "Not on list of cultural goods", None),
    ("E", "020", "ORD-{n}", "Export authorisation for firearms", "XX"),
    ("N", "935", "INV-{n}", "Commercial invoice", None),
)


@dataclass
class _Line:
    licence: Licence
    line: LicenceLine
    remaining_q: Decimal | None  # None: no ceiling of that kind
    remaining_v: Decimal | None


class _Budget:
    """The licence lines each exporter may write off against, and what is left of each line
    for planning. It only ever shrinks, so no arrival order can take a line past its ceiling."""

    def __init__(self, licences: Iterable[Licence]) -> None:
        self.by_holder: dict[str, dict[str, list[_Line]]] = {}
        self.holder_names: dict[str, str] = {}
        self.holder_country: dict[str, str] = {}
        self.by_line: dict[tuple[str, int], _Line] = {}
        for licence in licences:
            if licence.status is not LicenceStatus.VALID:
                continue
            by_cn = self.by_holder.setdefault(licence.holder_eori, {})
            self.holder_names[licence.holder_eori] = licence.holder_name
            self.holder_country[licence.holder_eori] = licence.issuing_member_state
            for line in licence.lines:
                if line.cn_code:
                    entry = _Line(licence, line, line.quantity, line.value)
                    by_cn.setdefault(line.cn_code, []).append(entry)
                    self.by_line[(licence.number, line.line_number)] = entry
        self.holders = sorted(h for h, lines in self.by_holder.items() if lines)
        if not self.holders:
            raise ValueError("no valid licence with a CN code to write off against")

    def take(self, entry: _Line, quantity: Decimal, value: Decimal) -> bool:
        if entry.remaining_q is not None and quantity > entry.remaining_q:
            return False
        if entry.remaining_v is not None and value > entry.remaining_v:
            return False
        if entry.remaining_q is not None:
            entry.remaining_q -= quantity
        if entry.remaining_v is not None:
            entry.remaining_v -= value
        return True


def _document_code(rng: random.Random, licence: Licence) -> tuple[str, str]:
    kind = licence.type
    if kind is LicenceType.INDIVIDUAL:
        return ("X", "002") if rng.random() < 0.2 else ("X", "060")
    if kind is LicenceType.GLOBAL:
        return ("X", "002") if rng.random() < 0.2 else ("X", "070")
    if kind is LicenceType.UNION_GENERAL:
        return ("X", f"06{(licence.general_authorisation or 'EU001')[-1]}")
    return ("X", "071")


def _destination_fits(licence: Licence, line: LicenceLine, destination: str) -> bool:
    if line.destinations and destination not in line.destinations:
        return False
    if licence.type is LicenceType.UNION_GENERAL and licence.general_authorisation == "EU001":
        return destination in EU001_COUNTRIES
    return True


def _pick_destination(rng: random.Random, entry: _Line) -> str:
    if entry.line.destinations:
        return rng.choice(entry.line.destinations)
    if entry.licence.general_authorisation == "EU001":
        return rng.choice(EU001_COUNTRIES)
    return rng.choice(DESTINATIONS)


def _amounts(
    rng: random.Random,
    entry: _Line,
    factor: Decimal | None = None,
    base: PlannedWriteOff | None = None,
) -> tuple[Decimal, Decimal, bool, bool]:
    """(quantity in the line's unit, value, declare quantity?, declare amount?) for a write-off
    against `entry`: fresh, or `base` scaled by `factor` (an amendment)."""
    line = entry.line
    unit = line.unit
    counts_q = unit is not None
    counts_v = line.value is not None
    if base is not None and factor is not None:
        quantity = _step(base.quantity * factor, unit) if base.quantity else Decimal(0)
        value = money(base.value * factor) if base.value else Decimal(0)
        return quantity, value, bool(base.quantity), bool(base.value)
    quantity = Decimal(0)
    if counts_q:
        low, high = _WRITE_OFF_RANGE[unit]
        quantity = random_decimal(rng, low, high, UNIT_DECIMALS[unit])
    value = Decimal(0)
    declare_amount = counts_v and (not counts_q or rng.random() < 0.5)
    if declare_amount:
        if line.quantity and quantity:
            value = money(line.value * quantity / line.quantity)
        else:
            value = money(random_decimal(rng, 500, 250_000, 2))
        if value <= 0:
            value = Decimal("0.01")
    return quantity, value, counts_q, declare_amount


def _step(quantity: Decimal, unit: str | None) -> Decimal:
    """`quantity` rounded to how finely `unit` counts, at least one step."""
    decimals = UNIT_DECIMALS.get(unit or "", 2)
    smallest = Decimal(1).scaleb(-decimals)
    rounded = quantity.quantize(smallest, rounding=ROUND_HALF_UP)
    return plain(max(rounded, smallest))


def _declared(rng: random.Random, unit: str, quantity: Decimal) -> tuple[str, str]:
    """The quantity as a customs declaration may write it: in the line's unit, KGM gross
    (KGM#G), or grams for a line in kilograms; always an exact conversion."""
    if unit == "KGM":
        choice = rng.random()
        if choice < 0.3:
            return format(plain(quantity * 1000), "f"), "GRM"
        if choice < 0.7:
            return format(quantity, "f"), "KGM#G"
    return format(quantity, "f"), unit


def _document(
    rng: random.Random,
    item: int,
    entry: _Line,
    quantity: Decimal,
    value: Decimal,
    declare_q: bool,
    declare_v: bool,
    code: tuple[str, str],
    unit_choice: random.Random,
) -> DocumentPlan:
    licence, line = entry.licence, entry.line
    declared_q = declared_unit = None
    if declare_q and quantity:
        declared_q, declared_unit = _declared(unit_choice, line.unit or "", quantity)
    amount = format(value, "f") if declare_v and value else None
    write_off = PlannedWriteOff(
        goods_item=item,
        document_code=code[0] + code[1],
        reference=licence.number,
        line_number=line.line_number,
        quantity=quantity if declared_q else Decimal(0),
        value=value if amount else Decimal(0),
        recorded=not licence.type.has_ceiling,
    )
    names = {"060": "Individual licence", "070": "Global licence", "002": "Dual-use licence"}
    return DocumentPlan(
        category=code[0],
        type_code=code[1],
        reference=licence.number,
        name=names.get(code[1], "General authorisation"),
        status=rng.choice(("EA", "ES", "AE")),
        quantity=declared_q,
        unit=declared_unit,
        amount=amount,
        currency=line.currency if amount else None,
        write_off=write_off,
    )


class DeclarationPlanner:
    """Plans declarations for a licence set: who exports, which goods, which documents."""

    def __init__(self, licences: Iterable[Licence], *, seed: int, goods_items: tuple[int, int]):
        self.budget = _Budget(licences)
        self.rng = random.Random(f"declarations:{seed}")
        self.goods_items = goods_items
        self.serial = 0

    def plan(self, mrn: str, *, minimal: bool = False) -> DeclarationPlan:
        rng = self.rng
        self.serial += 1
        eori = rng.choice(self.budget.holders)
        lines_by_cn = self.budget.by_holder[eori]
        country = self.budget.holder_country[eori]
        count = 1 if minimal else rng.randint(*self.goods_items)
        items: list[GoodsItemPlan] = []
        cns = sorted(lines_by_cn)
        for sequence in range(1, count + 1):
            dual_use = minimal or rng.random() < 0.75
            if dual_use:
                cn = rng.choice(cns)
                entries = lines_by_cn[cn]
                items.append(self._dual_use_item(sequence, cn, entries, minimal))
            else:
                goods = rng.choice(CATALOGUE)
                items.append(self._ordinary_item(sequence, goods.cn, goods.description))
        return DeclarationPlan(
            mrn=mrn,
            lrn=f"{country}{self.serial:09d}LRN{rng.randint(100, 999)}",
            country=country,
            currency=MEMBER_STATES_BY_CODE[country].currency,
            exporter_eori=eori,
            declarant_eori=f"{country}{rng.randint(10**9, 10**10 - 1)}",
            goods_items=tuple(items),
            type_code=rng.choice(("EXA", "EXD", "EXY")),
            minimal=minimal,
        )

    def _ordinary_documents(self, sequence: int, minimal: bool) -> list[DocumentPlan]:
        if minimal:
            return []
        rng = self.rng
        chosen = rng.sample(_ORDINARY_DOCUMENTS, rng.randint(2, 4))
        return [
            DocumentPlan(
                category=c,
                type_code=t,
                reference=ref.format(eori=rng.randint(10**11, 10**12 - 1), n=sequence),
                name=name,
                status=status,
            )
            for c, t, ref, name, status in chosen
        ]

    def _dual_use_item(
        self, sequence: int, cn: str, entries: list[_Line], minimal: bool
    ) -> GoodsItemPlan:
        rng = self.rng
        first = rng.choice(entries)
        destination = _pick_destination(rng, first)
        candidates = [first] + [
            e
            for e in rng.sample(entries, len(entries))
            if e is not first and _destination_fits(e.licence, e.line, destination)
        ]
        wanted = 1 if minimal else rng.choice((1, 1, 2))
        documents = self._ordinary_documents(sequence, minimal)
        used: set[tuple[str, str]] = set()
        for entry in candidates[:wanted]:
            if not _destination_fits(entry.licence, entry.line, destination):
                continue
            code = _document_code(rng, entry.licence)
            if (code[0] + code[1], entry.licence.number) in used:
                continue
            quantity, value, declare_q, declare_v = _amounts(rng, entry)
            if not (declare_q and quantity) and not (declare_v and value):
                continue
            if not self.budget.take(entry, quantity if declare_q else Decimal(0), value):
                continue  # the line is (nearly) used up: quote nothing against it
            used.add((code[0] + code[1], entry.licence.number))
            document = _document(
                rng, sequence, entry, quantity, value, declare_q, declare_v, code, rng
            )
            documents.insert(rng.randint(0, len(documents)), document)
        goods = next((g for g in CATALOGUE if g.cn == cn), None)
        description = goods.description if goods else f"Goods of CN {cn}"
        return self._item(sequence, cn, description, destination, documents)

    def _ordinary_item(self, sequence: int, cn: str, description: str) -> GoodsItemPlan:
        rng = self.rng
        documents = self._ordinary_documents(sequence, False)
        return self._item(sequence, cn, description, rng.choice(DESTINATIONS), documents)

    def _item(
        self, sequence: int, cn: str, description: str, destination: str, documents: list
    ) -> GoodsItemPlan:
        rng = self.rng
        return GoodsItemPlan(
            sequence=sequence,
            cn=cn,
            description=description,
            destination=destination,
            documents=tuple(documents),
            gross_mass=random_decimal(rng, 1, 5000, 2),
            statistical_value=money(random_decimal(rng, 100, 900_000, 2)),
        )

    def amend(self, plan: DeclarationPlan) -> DeclarationPlan:
        """The whole declaration as amended after release: some write-offs go up or down, one
        may be dropped. An increase is planned only while the line's budget allows it."""
        rng = self.rng
        dual_use = [
            (i, j)
            for i, it in enumerate(plan.goods_items)
            for j, d in enumerate(it.documents)
            if d.write_off
        ]
        drop = rng.choice(dual_use) if len(dual_use) > 1 and rng.random() < 0.25 else None
        items = []
        for i, item in enumerate(plan.goods_items):
            documents = []
            for j, document in enumerate(item.documents):
                if (i, j) == drop:
                    continue
                if document.write_off and rng.random() < 0.7:
                    document = self._amended_document(document)
                documents.append(document)
            items.append(replace(item, documents=tuple(documents)))
        return replace(plan, goods_items=tuple(items), amended=True)

    def _amended_document(self, document: DocumentPlan) -> DocumentPlan:
        rng = self.rng
        base = document.write_off
        assert base is not None
        entry = self._entry(base)
        factor = Decimal(rng.choice(("0.5", "0.75", "1.25", "1.5")))
        quantity, value, declare_q, declare_v = _amounts(rng, entry, factor, base)
        more_q = max(Decimal(0), quantity - base.quantity)
        more_v = max(Decimal(0), value - base.value)
        if (more_q or more_v) and not self.budget.take(entry, more_q, more_v):
            factor = Decimal("0.5")  # no room to go up: go down instead
            quantity, value, declare_q, declare_v = _amounts(rng, entry, factor, base)
        code = (document.category, document.type_code)
        unit_rng = random.Random(f"{base.reference}:{base.goods_item}:{quantity}")
        amended = _document(
            rng, base.goods_item, entry, quantity, value, declare_q, declare_v, code, unit_rng
        )
        return replace(amended, name=document.name, status=document.status)

    def _entry(self, write_off: PlannedWriteOff) -> _Line:
        return self.budget.by_line[(write_off.reference, write_off.line_number)]


_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"


def make_mrn(rng: random.Random, serial: int, *, year: int, country: str) -> str:
    """An MRN of the EU shape: two-digit year, country, 14 capitals or digits (7 random, then
    the serial in base 36, so that MRNs of one stream never collide)."""
    tail = []
    number = serial
    for _ in range(7):
        number, digit = divmod(number, 36)
        tail.append(_ALPHABET[digit])
    head = "".join(rng.choice(_ALPHABET) for _ in range(7))
    return f"{year % 100:02d}{country}{head}{''.join(reversed(tail))}"


def plan_declarations(
    licences: Iterable[Licence],
    n: int,
    *,
    seed: int,
    minimal: bool = False,
    goods_items: tuple[int, int] = (7, 9),
    year: int = 2026,
) -> Iterator[DeclarationPlan]:
    """`n` declaration plans (render them with `render_declaration`), each with its own MRN,
    sharing one write-off budget."""
    planner = DeclarationPlanner(licences, seed=seed, goods_items=goods_items)
    mrn_rng = random.Random(f"mrn:{seed}")
    for serial in range(n):
        plan = planner.plan("", minimal=minimal)
        yield replace(plan, mrn=make_mrn(mrn_rng, serial, year=year, country=plan.country))

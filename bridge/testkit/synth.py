"""Deterministic synthetic data for the benchmarks and the fault-injection suite.

Everything here is a pure function of its arguments and a seed: the same call gives the same
licences, the same declaration bytes and the same event stream, on every machine.

- `licences(n, seed=...)`: canonical licences as national authorities issue them (individual,
  global, national and Union general authorisations; EORIs, control list entries, CN codes,
  units, ceilings) for a handful of member states.
- `declaration_xml(...)`: a WCO DEC-DMS export declaration of the real shape (the MetaData
  envelope of urn:wco:datamodel:WCO:DocumentMetaData-DMS:2 around a Declaration of
  urn:wco:datamodel:WCO:DEC-DMS:2, element order as the DMS schema has it), about 20 KB with
  several goods items, each with dual-use documents whose write-offs quote the licences given
  and ordinary documents beside them; or, `minimal=True`, about 1 KB with one write-off.
- `event_stream(licences, n, seed=...)`: declaration events (envelopes as
  `bridge.core.envelope.build_envelope` writes them) with duplicates, reordering, amendments,
  invalidations and unreadable messages at the rates asked, each carrying its ground truth: what
  it was meant to be and what it writes off. `GroundTruth` adds a stream up into what the ledger
  must hold after it, whatever order the events arrive in.
- `bafa_csv`, `ecju_json`, `elicensing_xml`: licences written in the national formats that
  mappings/*.yaml read.

Write-offs are planned against a budget per licence line that never gives quantity back, so a
generated stream never asks for more than a line has left, in any arrival order: every readable
write-off is meant to be applied."""

from __future__ import annotations

import heapq
import json
import random
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from xml.sax.saxutils import escape, quoteattr

from bridge.core.declaration import DEC_NS, METADATA_NS
from bridge.core.envelope import EventKind, build_envelope
from bridge.core.model import Licence, LicenceLine, LicenceStatus, LicenceType, Party

# ------------------------------------------------------------------------------ reference data


@dataclass(frozen=True, slots=True)
class Goods:
    """A kind of dual-use goods: control list entry, CN code (consistent with the project's
    CN/CLE correlation table, so write-offs raise no correlation warning), description, the
    unit it is counted in (None: value only, e.g. software) and which ceilings a line has."""

    cle: str
    cn: str
    description: str
    unit: str | None
    counts: str  # "both", "quantity" or "value"


CATALOGUE: tuple[Goods, ...] = (
    Goods("0A001.j", "84014000", "Parts of nuclear reactors", "NAR", "both"),
    Goods("0C001", "28444000", "Natural uranium compounds", "KGM", "quantity"),
    Goods("1C350", "28121990", "Phosphorus oxychloride", "KGM", "quantity"),
    Goods("1C350", "29309098", "Thiodiglycol, technical grade", "LTR", "both"),
    Goods("1C351.d.4", "30029050", "Toxin reference samples", "GRM", "quantity"),
    Goods("1C010.b", "68151900", "Carbon fibre preforms", "KGM", "both"),
    Goods("1C001.a", "39269097", "Radar absorbing panels", "MTK", "quantity"),
    Goods("2B350.c", "84195080", "Corrosion resistant heat exchangers", "NAR", "both"),
    Goods("2B350.i", "84137035", "Multiple-seal pumps", "NAR", "both"),
    Goods("2B001.b", "84571010", "Five-axis machining centres", "NAR", "both"),
    Goods("2B001.a", "84581120", "Numerically controlled lathes", "NAR", "both"),
    Goods("3A001.a.1", "85423190", "Radiation hardened integrated circuits", "NAR", "both"),
    Goods("3A001.b.2", "85423300", "Microwave power amplifiers", "NAR", "both"),
    Goods("4A003.b", "84714100", "High performance computers", "NAR", "both"),
    Goods("5A002.a", "85176200", "Network encryption routers", "NAR", "both"),
    Goods("5A001.b.5", "85176990", "Spread spectrum radio equipment", "NAR", "quantity"),
    Goods("5A002.a", "84715000", "Cryptographic processing units", "NAR", "both"),
    Goods("5D002.c.1", "85234910", "Encryption software on media", None, "value"),
    Goods("6A003.b.4", "85258900", "Uncooled thermal imaging cameras", "NAR", "both"),
    Goods("6A005.b", "90132000", "Industrial lasers", "NAR", "both"),
    Goods("6A008.j", "85261000", "Coastal surveillance radar", "NAR", "both"),
    Goods("7A003.a", "90142080", "Inertial navigation systems", "NAR", "both"),
    Goods("7A001.a", "90148000", "Navigation grade accelerometers", "NAR", "quantity"),
    Goods("9A001.a", "84111100", "Turbojet engines", "NAR", "both"),
    Goods("9A012.a", "88062200", "Unmanned aerial vehicles", "NAR", "both"),
)

# Realistic ceilings of one licence line (before `scale`), and how finely each unit counts.
_QUANTITY_RANGE = {"NAR": (5, 2000), "KGM": (10, 5000), "GRM": (50, 20000), "LTR": (100, 20000)}
_QUANTITY_RANGE |= {"MTK": (20, 5000)}
_UNIT_DECIMALS = {"NAR": 0, "KGM": 3, "GRM": 0, "LTR": 1, "MTK": 2}
# What one write-off declares, in the line's unit.
_WRITE_OFF_RANGE = {"NAR": (1, 20), "KGM": (1, 60), "GRM": (10, 500), "LTR": (5, 200)}
_WRITE_OFF_RANGE |= {"MTK": (1, 40)}

EU001_COUNTRIES = ("AU", "CA", "IS", "JP", "NZ", "NO", "CH", "GB", "US")
DESTINATIONS = ("IN", "BR", "SG", "ZA", "AE", "SA", "KR", "MX", "TR", "ID", "MY", "TH", "VN", "EG")
DESTINATIONS += ("CL", "PE", "CO", "AR", "PH", "KZ", "QA", "OM", "MA", "NG", "US", "CA", "AU")


@dataclass(frozen=True, slots=True)
class MemberState:
    code: str
    currency: str
    authority: str
    weight: float
    eori_digits: int
    names: tuple[str, ...]
    forms: tuple[str, ...]


MEMBER_STATES: tuple[MemberState, ...] = (
    MemberState(
        "DE",
        "EUR",
        "Bundesamt für Wirtschaft und Ausfuhrkontrolle (BAFA)",
        0.30,
        10,
        (
            "Müller Präzisionsoptik",
            "Kältetechnik Süd",
            "Bärenfeld Chemie",
            "Rheinmetall Systeme",
            "Nordlicht Laser",
            "Schwarzwald Elektronik",
            "Hanse Navigation",
            "Isar Turbinen",
        ),
        ("GmbH", "AG", "GmbH & Co. KG"),
    ),
    MemberState(
        "GB",
        "GBP",
        "Export Control Joint Unit",
        0.25,
        12,
        (
            "Precision Arms",
            "Thames Photonics",
            "Pennine Composites",
            "Solent Radar Systems",
            "Clyde Cryptography",
            "Midlands Machine Tools",
            "Severn Aero Engines",
        ),
        ("Ltd", "plc", "LLP"),
    ),
    MemberState(
        "LV",
        "EUR",
        "Stratēģiskas nozīmes preču kontroles komiteja",
        0.10,
        11,
        ("Baltijas Sakaru Sistēmas", "Rīgas Lāzeri", "Daugavas Elektronika"),
        ("SIA", "AS"),
    ),
    MemberState(
        "RO",
        "RON",
        "Departamentul pentru Controlul Exporturilor – ANCEX",
        0.10,
        8,
        ("Avionica Carpați", "Electronica Banat", "Chimica Dobrogea"),
        ("SRL", "SA"),
    ),
    MemberState(
        "FR",
        "EUR",
        "Service des biens à double usage (SBDU)",
        0.15,
        12,
        ("Optronique de Provence", "Turbomeca Atlantique", "Cryptologie Lyonnaise"),
        ("SAS", "SA"),
    ),
    MemberState(
        "NL",
        "EUR",
        "Centrale Dienst voor In- en Uitvoer (CDIU)",
        0.10,
        9,
        ("Delftse Lithografie", "Zeeland Radar", "Twente Sensoren"),
        ("B.V.", "N.V."),
    ),
)
_BY_CODE = {ms.code: ms for ms in MEMBER_STATES}


@dataclass(frozen=True, slots=True)
class Holder:
    name: str
    eori: str
    member_state: str


def _holders(rng: random.Random, count: int) -> list[Holder]:
    weights = [ms.weight for ms in MEMBER_STATES]
    holders = []
    for index in range(count):
        ms = rng.choices(MEMBER_STATES, weights)[0]
        name = f"{rng.choice(ms.names)} {index + 1} {rng.choice(ms.forms)}"
        digits = "".join(rng.choice("0123456789") for _ in range(ms.eori_digits))
        holders.append(Holder(name, f"{ms.code}{digits}", ms.code))
    return holders


# ---------------------------------------------------------------------------------- licences


def _decimal(rng: random.Random, low: float, high: float, decimals: int) -> Decimal:
    """A random amount in [low, high] with at most `decimals` decimals, without trailing zeros
    or exponent (the canonical spelling the mapping engine gives)."""
    steps = 10**decimals
    value = Decimal(rng.randint(int(low * steps), int(high * steps))) / steps
    return _plain(value)


def _plain(value: Decimal) -> Decimal:
    normal = value.normalize()
    return normal.quantize(Decimal(1)) if normal.as_tuple().exponent > 0 else normal


def _money(value: Decimal) -> Decimal:
    return value.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)


def _licence_type(rng: random.Random, member_state: str) -> LicenceType:
    if member_state == "GB":  # no Union general authorisations outside the Union
        kinds = (LicenceType.INDIVIDUAL, LicenceType.GLOBAL, LicenceType.NATIONAL_GENERAL)
        return rng.choices(kinds, (0.65, 0.25, 0.10))[0]
    return rng.choices(tuple(LicenceType), (0.60, 0.22, 0.08, 0.10))[0]


_NUMBER_FORMATS = {
    "DE": {"individual": "EA-{y}-{n:07d}", "global": "SG-{y}-{n:07d}"},
    "GB": {"individual": "GBSIEL/{y}/{n:07d}", "global": "GBOIEL/{y}/{n:07d}"},
}


def _number(member_state: str, kind: LicenceType, year: int, serial: int) -> str:
    formats = _NUMBER_FORMATS.get(member_state, {})
    default = {
        LicenceType.INDIVIDUAL: "{ms}-DU-{y}-{n:07d}",
        LicenceType.GLOBAL: "{ms}-GL-{y}-{n:07d}",
        LicenceType.NATIONAL_GENERAL: "{ms}-NGA-{y}-{n:07d}",
        LicenceType.UNION_GENERAL: "{ms}-UGA-{y}-{n:07d}",
    }[kind]
    return formats.get(kind.value, default).format(ms=member_state, y=year, n=serial)


def _party(rng: random.Random, country: str, role: str) -> Party:
    town = rng.choice(("Harbour", "Central", "North", "Industrial", "Port"))
    return Party(f"{town} {role} {rng.randint(1, 999)} of {country}", country)


def _line(
    rng: random.Random, number: int, goods: Goods, kind: LicenceType, ms: MemberState, scale: int
) -> LicenceLine:
    quantity = unit = value = currency = None
    destinations: tuple[str, ...] = ()
    consignee = end_user = None
    if kind.has_ceiling:
        if goods.counts in ("both", "quantity") and goods.unit:
            low, high = _QUANTITY_RANGE[goods.unit]
            quantity = _decimal(rng, low * scale, high * scale, min(2, _UNIT_DECIMALS[goods.unit]))
            unit = goods.unit
        if goods.counts in ("both", "value"):
            value = _money(_decimal(rng, 50_000 * scale, 20_000_000 * scale, 2))
            currency = ms.currency
        if kind is LicenceType.INDIVIDUAL:
            destinations = (rng.choice(DESTINATIONS),)
            consignee = _party(rng, destinations[0], "Trading")
            end_user = consignee if rng.random() < 0.4 else _party(rng, destinations[0], "Works")
        else:
            destinations = tuple(sorted(rng.sample(DESTINATIONS, rng.randint(3, 6))))
    else:
        # General authorisations count nothing down; their usage is recorded in the unit.
        unit = goods.unit
        if unit is None:
            currency = ms.currency
    return LicenceLine(
        line_number=number,
        control_list_entry=goods.cle,
        description=goods.description,
        cn_code=goods.cn,
        quantity=quantity,
        unit=unit,
        value=value,
        currency=currency,
        destinations=destinations,
        consignee=consignee,
        end_user=end_user,
    )


def licences(
    n: int,
    *,
    seed: int,
    lines_per_licence: int | tuple[int, int] = (1, 4),
    holders: int | None = None,
    scale: int = 1,
    first_serial: int = 1,
    year: int = 2026,
) -> Iterator[Licence]:
    """`n` valid licences, version 1. Each belongs to one of `holders` exporters (default one per
    twenty licences) and has `lines_per_licence` lines (a number, or a (low, high) range) of
    distinct goods. Individual and global licences carry quantity and/or value ceilings
    (realistic sizes times `scale`); general authorisations carry none. All are valid for two
    years from a day between March of the year before `year` and February of `year`, so events
    from March to December of `year` fall inside every licence's validity. Licence numbers run
    from `first_serial`."""
    rng = random.Random(f"licences:{seed}")
    owners = _holders(rng, holders or max(1, n // 20))
    low, high = (
        (lines_per_licence, lines_per_licence)
        if isinstance(lines_per_licence, int)
        else lines_per_licence
    )
    start = date(year - 1, 3, 1)
    for index in range(n):
        holder = owners[index % len(owners)] if index < len(owners) else rng.choice(owners)
        ms = _BY_CODE[holder.member_state]
        kind = _licence_type(rng, ms.code)
        goods = rng.sample(CATALOGUE, min(len(CATALOGUE), rng.randint(low, high)))
        general = None
        if kind is LicenceType.UNION_GENERAL:
            general = rng.choices(("EU001", "EU002", "EU003", "EU007"), (0.7, 0.1, 0.1, 0.1))[0]
        elif kind is LicenceType.NATIONAL_GENERAL:
            general = f"{ms.code}{rng.randint(1, 4):03d}" if ms.code != "GB" else "OGELDU"
        valid_from = start + timedelta(days=rng.randint(0, 360))
        yield Licence(
            number=_number(ms.code, kind, valid_from.year, first_serial + index),
            type=kind,
            issuing_member_state=ms.code,
            issuing_authority=ms.authority,
            holder_name=holder.name,
            holder_eori=holder.eori,
            valid_from=valid_from,
            valid_to=valid_from + timedelta(days=2 * 365 - 1),
            lines=tuple(_line(rng, i + 1, g, kind, ms, scale) for i, g in enumerate(goods)),
            status=LicenceStatus.VALID,
            version=1,
            general_authorisation=general,
        )


# ------------------------------------------------------------------------------ declarations


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
        value = _money(base.value * factor) if base.value else Decimal(0)
        return quantity, value, bool(base.quantity), bool(base.value)
    quantity = Decimal(0)
    if counts_q:
        low, high = _WRITE_OFF_RANGE[unit]
        quantity = _decimal(rng, low, high, _UNIT_DECIMALS[unit])
    value = Decimal(0)
    declare_amount = counts_v and (not counts_q or rng.random() < 0.5)
    if declare_amount:
        if line.quantity and quantity:
            value = _money(line.value * quantity / line.quantity)
        else:
            value = _money(_decimal(rng, 500, 250_000, 2))
        if value <= 0:
            value = Decimal("0.01")
    return quantity, value, counts_q, declare_amount


def _step(quantity: Decimal, unit: str | None) -> Decimal:
    """`quantity` rounded to how finely `unit` counts, at least one step."""
    decimals = _UNIT_DECIMALS.get(unit or "", 2)
    smallest = Decimal(1).scaleb(-decimals)
    rounded = quantity.quantize(smallest, rounding=ROUND_HALF_UP)
    return _plain(max(rounded, smallest))


def _declared(rng: random.Random, unit: str, quantity: Decimal) -> tuple[str, str]:
    """The quantity as a customs declaration may write it: in the line's unit, KGM gross
    (KGM#G), or grams for a line in kilograms; always an exact conversion."""
    if unit == "KGM":
        choice = rng.random()
        if choice < 0.3:
            return format(_plain(quantity * 1000), "f"), "GRM"
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


class _Planner:
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
            currency=_BY_CODE[country].currency,
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
            gross_mass=_decimal(rng, 1, 5000, 2),
            statistical_value=_money(_decimal(rng, 100, 900_000, 2)),
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


def _el(out: list[str], indent: str, tag: str, text: str | None, **attributes: str) -> None:
    if text is None:
        return
    attrs = "".join(f" {name}={quoteattr(value)}" for name, value in attributes.items() if value)
    out.append(f"{indent}<{tag}{attrs}>{escape(text)}</{tag}>")


def render_declaration(plan: DeclarationPlan) -> bytes:
    """The declaration of `plan` as WCO DEC-DMS XML in its MetaData envelope, indented like the
    published samples, in the DMS schema's element order (the ~1 KB form for a minimal plan)."""
    minimal = plan.minimal
    out = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        f'<md:MetaData xmlns:md="{METADATA_NS}" xmlns="{DEC_NS}">',
    ]
    i1, i2, i3, i4, i5, i6 = ("\t" * n for n in range(1, 7))
    if not minimal:
        _el(out, i1, "md:WCODataModelVersionCode", "3.6")
        _el(out, i1, "md:WCOTypeName", "DEC")
    _el(out, i1, "md:ResponsibleCountryCode", plan.country)
    if not minimal:
        _el(out, i1, "md:ResponsibleAgencyName", "Customs")
        _el(out, i1, "md:AgencyAssignedCustomizationVersionCode", "v2.1")
    out.append(f"{i1}<Declaration>")
    _el(out, i2, "FunctionCode", "9")
    _el(out, i2, "FunctionalReferenceID", plan.lrn)
    _el(out, i2, "ID", plan.mrn)
    _el(out, i2, "TypeCode", plan.type_code)
    if not minimal:
        total = sum((it.statistical_value for it in plan.goods_items), Decimal(0))
        _el(out, i2, "GoodsItemQuantity", str(len(plan.goods_items)))
        _el(out, i2, "InvoiceAmount", format(total, "f"), currencyID=plan.currency)
        _el(out, i2, "TotalPackageQuantity", str(len(plan.goods_items)))
        out += [
            f"{i2}<Agent>",
            f"{i3}<ID>{plan.declarant_eori}</ID>",
            f"{i3}<FunctionCode>2</FunctionCode>",
            f"{i2}</Agent>",
        ]
        if plan.amended:
            out.append(f"{i2}<Amendment>")
            _el(out, i3, "ChangeReasonCode", "32")
            out.append(f"{i2}</Amendment>")
        out += [
            f"{i2}<AuthorisationHolder>",
            f"{i3}<ID>{plan.declarant_eori}</ID>",
            f"{i3}<CategoryCode>EXRR</CategoryCode>",
            f"{i2}</AuthorisationHolder>",
        ]
        out += [
            f"{i2}<BorderTransportMeans>",
            f"{i3}<ID>MSCCARGOVESSEL</ID>",
            f"{i3}<IdentificationTypeCode>11</IdentificationTypeCode>",
            f"{i3}<RegistrationNationalityCode>{plan.country}</RegistrationNationalityCode>",
            f"{i3}<ModeCode>1</ModeCode>",
            f"{i2}</BorderTransportMeans>",
        ]
        out += [f"{i2}<Declarant>", f"{i3}<ID>{plan.declarant_eori}</ID>", f"{i2}</Declarant>"]
        out += [f"{i2}<ExitOffice>", f"{i3}<ID>{plan.country}000051</ID>", f"{i2}</ExitOffice>"]
    out += [f"{i2}<Exporter>", f"{i3}<ID>{plan.exporter_eori}</ID>", f"{i2}</Exporter>"]
    out.append(f"{i2}<GoodsShipment>")
    if not minimal:
        first = plan.goods_items[0].destination if plan.goods_items else "US"
        out += [
            f"{i3}<Consignee>",
            f"{i4}<Name>Consignee in {first}</Name>",
            f"{i4}<Address>",
            f"{i5}<CityName>Port City</CityName>",
            f"{i5}<CountryCode>{first}</CountryCode>",
            f"{i5}<Line>1 Harbour Road</Line>",
            f"{i5}<PostcodeID>PC1 234</PostcodeID>",
            f"{i4}</Address>",
            f"{i3}</Consignee>",
        ]
        out += [
            f"{i3}<Consignment>",
            f"{i4}<ContainerCode>1</ContainerCode>",
            f"{i4}<GoodsLocation>",
            f"{i5}<Name>PORTLOCATION1</Name>",
            f"{i5}<TypeCode>A</TypeCode>",
            f"{i5}<Address>",
            f"{i6}<TypeCode>U</TypeCode>",
            f"{i6}<CountryCode>{plan.country}</CountryCode>",
            f"{i5}</Address>",
            f"{i4}</GoodsLocation>",
            f"{i3}</Consignment>",
        ]
        out += [f"{i3}<ExportCountry>", f"{i4}<ID>{plan.country}</ID>", f"{i3}</ExportCountry>"]
    for item in plan.goods_items:
        _goods_item(out, item, plan, minimal)
    if not minimal:
        out += [
            f"{i3}<PreviousDocument>",
            f"{i4}<CategoryCode>Z</CategoryCode>",
            f"{i4}<ID>{plan.lrn}-DUCR</ID>",
            f"{i4}<TypeCode>DCR</TypeCode>",
            f"{i3}</PreviousDocument>",
        ]
    out += [f"{i2}</GoodsShipment>", f"{i1}</Declaration>", "</md:MetaData>", ""]
    return "\n".join(out).encode("utf-8")


def _goods_item(out: list[str], item: GoodsItemPlan, plan: DeclarationPlan, minimal: bool) -> None:
    i3, i4, i5, i6, i7 = ("\t" * n for n in range(3, 8))
    out.append(f"{i3}<GovernmentAgencyGoodsItem>")
    _el(out, i4, "SequenceNumeric", str(item.sequence))
    if not minimal:
        value = format(item.statistical_value, "f")
        _el(out, i4, "StatisticalValueAmount", value, currencyID=plan.currency)
        _el(out, i4, "TransactionNatureCode", "1")
    for document in item.documents:
        out.append(f"{i4}<AdditionalDocument>")
        _el(out, i5, "CategoryCode", document.category)
        _el(out, i5, "ID", document.reference)
        if not minimal:
            _el(out, i5, "Name", document.name)
        _el(out, i5, "TypeCode", document.type_code)
        _el(out, i5, "LPCOExemptionCode", document.status)
        if document.quantity is not None or document.amount is not None:
            out.append(f"{i5}<WriteOff>")
            _el(out, i6, "QuantityQuantity", document.quantity, unitCode=document.unit or "")
            _el(out, i6, "AmountAmount", document.amount, currencyID=document.currency or "")
            out.append(f"{i5}</WriteOff>")
        out.append(f"{i4}</AdditionalDocument>")
    out.append(f"{i4}<Commodity>")
    if not minimal:
        _el(out, i5, "Description", item.description)
    out += [
        f"{i5}<Classification>",
        f"{i6}<ID>{item.cn}</ID>",
        f"{i6}<IdentificationTypeCode>TSP</IdentificationTypeCode>",
        f"{i5}</Classification>",
    ]
    if not minimal:
        out += [
            f"{i5}<Classification>",
            f"{i6}<ID>{item.cn[-4:]}</ID>",
            f"{i6}<IdentificationTypeCode>TRA</IdentificationTypeCode>",
            f"{i5}</Classification>",
            f"{i5}<GoodsMeasure>",
            f"{i6}<GrossMassMeasure>{format(item.gross_mass, 'f')}</GrossMassMeasure>",
            f"{i6}<NetNetWeightMeasure>{format(_plain(item.gross_mass * Decimal('0.8')), 'f')}"
            "</NetNetWeightMeasure>",
            f"{i5}</GoodsMeasure>",
        ]
    out.append(f"{i4}</Commodity>")
    out += [
        f"{i4}<Destination>",
        f"{i5}<CountryCode>{item.destination}</CountryCode>",
        f"{i4}</Destination>",
    ]
    if not minimal:
        out += [
            f"{i4}<GovernmentProcedure>",
            f"{i5}<CurrentCode>10</CurrentCode>",
            f"{i5}<PreviousCode>40</PreviousCode>",
            f"{i4}</GovernmentProcedure>",
            f"{i4}<GovernmentProcedure>",
            f"{i5}<CurrentCode>000</CurrentCode>",
            f"{i4}</GovernmentProcedure>",
            f"{i4}<Packaging>",
            f"{i5}<SequenceNumeric>1</SequenceNumeric>",
            f"{i5}<MarksNumbersID>ELB-{plan.lrn}-{item.sequence}</MarksNumbersID>",
            f"{i5}<QuantityQuantity>1</QuantityQuantity>",
            f"{i5}<TypeCode>4C</TypeCode>",
            f"{i4}</Packaging>",
            f"{i4}<PreviousDocument>",
            f"{i5}<CategoryCode>Z</CategoryCode>",
            f"{i5}<ID>{plan.lrn}-{item.sequence}</ID>",
            f"{i5}<TypeCode>ZZZ</TypeCode>",
            f"{i5}<LineNumeric>{item.sequence}</LineNumeric>",
            f"{i4}</PreviousDocument>",
        ]
    _ = i7
    out.append(f"{i3}</GovernmentAgencyGoodsItem>")


def cancellation_xml(mrn: str, *, country: str, lrn: str, submitter: str) -> bytes:
    """A cancellation request (FunctionCode 13, TypeCode INV) for the declaration `mrn`."""
    return "\n".join(
        [
            '<?xml version="1.0" encoding="UTF-8"?>',
            f'<md:MetaData xmlns:md="{METADATA_NS}" xmlns="{DEC_NS}">',
            "\t<md:WCODataModelVersionCode>3.6</md:WCODataModelVersionCode>",
            "\t<md:WCOTypeName>DEC</md:WCOTypeName>",
            f"\t<md:ResponsibleCountryCode>{country}</md:ResponsibleCountryCode>",
            "\t<Declaration>",
            "\t\t<FunctionCode>13</FunctionCode>",
            f"\t\t<FunctionalReferenceID>{escape(lrn)}</FunctionalReferenceID>",
            f"\t\t<ID>{mrn}</ID>",
            "\t\t<TypeCode>INV</TypeCode>",
            f"\t\t<Submitter>\n\t\t\t<ID>{submitter}</ID>\n\t\t</Submitter>",
            "\t\t<AdditionalInformation>",
            "\t\t\t<StatementDescription>Goods not exported</StatementDescription>",
            "\t\t\t<StatementTypeCode>AES</StatementTypeCode>",
            "\t\t</AdditionalInformation>",
            "\t\t<Amendment>\n\t\t\t<ChangeReasonCode>1</ChangeReasonCode>\n\t\t</Amendment>",
            "\t</Declaration>",
            "</md:MetaData>",
            "",
        ]
    ).encode("utf-8")


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


def declaration_xml(
    licences: Iterable[Licence],
    *,
    seed: int,
    mrn: str | None = None,
    minimal: bool = False,
    goods_items: tuple[int, int] = (7, 9),
) -> bytes:
    """One WCO DEC-DMS export declaration quoting `licences` (see the module docstring): about
    20 KB, or about 1 KB with `minimal`. Use `plan_declarations` for many, with their
    ground-truth write-offs."""
    plan = next(plan_declarations(licences, 1, seed=seed, minimal=minimal, goods_items=goods_items))
    if mrn is not None:
        plan = replace(plan, mrn=mrn)
    return render_declaration(plan)


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
    planner = _Planner(licences, seed=seed, goods_items=goods_items)
    mrn_rng = random.Random(f"mrn:{seed}")
    for serial in range(n):
        plan = planner.plan("", minimal=minimal)
        yield replace(plan, mrn=make_mrn(mrn_rng, serial, year=year, country=plan.country))


# ------------------------------------------------------------------------------ event stream

BAD_KINDS = ("not-json", "bad-envelope", "unsafe-xml", "bad-quantity", "wrong-namespace")
# Hostile messages beyond the default mix, for streams that ask for them (`bad_kinds`): an
# external entity to a local file, an entity expansion bomb, an envelope that is not UTF-8, a
# declaration cut off in the middle.
HOSTILE_KINDS = ("external-entity", "entity-bomb", "invalid-utf8", "truncated-xml")


@dataclass(frozen=True, slots=True)
class SynthEvent:
    """One MQTT message of a generated stream, with its ground truth.

    `kind` is what the sender meant (released, amended, invalidated; "unreadable" for a bad
    message); `write_offs` what this declaration version writes off (empty for invalidations
    and bad messages); `duplicate_of` the message id this is a redelivery of (the same bytes);
    `bad` which kind of unreadable message it is (it must be quarantined); `reordered` whether
    it was held back behind later events; `position` its place in the intended order."""

    envelope: bytes
    message_id: str
    mrn: str | None
    kind: str
    version: int
    position: int
    write_offs: tuple[PlannedWriteOff, ...] = ()
    duplicate_of: str | None = None
    bad: str | None = None
    reordered: bool = False

    @property
    def readable(self) -> bool:
        return self.bad is None


@dataclass
class _Open:
    plan: DeclarationPlan
    version: int
    released_at: datetime


def event_stream(
    licences: Sequence[Licence] | Iterable[Licence],
    n_events: int,
    *,
    seed: int,
    duplicates: float = 0.0,
    reorder: float = 0.0,
    amendments: float = 0.0,
    invalidations: float = 0.0,
    bad: float = 0.0,
    minimal: bool = False,
    goods_items: tuple[int, int] = (7, 9),
    start: datetime = datetime(2026, 3, 2, 8, 0, tzinfo=UTC),
    reorder_window: int = 8,
    bad_kinds: Sequence[str] = BAD_KINDS,
    full_share: float = 0.0,
) -> Iterator[SynthEvent]:
    """`n_events` declaration events quoting `licences`. Each event is, with the given
    probabilities, a redelivery of an earlier message (same bytes), an amendment or an
    invalidation of a declaration released earlier, an unreadable message (of one of
    `bad_kinds`: BAD_KINDS and HOSTILE_KINDS), or else the release of a new declaration; with
    probability `reorder` an event is held back behind up to `reorder_window` later ones. With
    `minimal`, each new declaration is still written in full (about 20 KB, several goods items)
    with probability `full_share`. Deterministic for a given seed; streamed, so millions cost no
    memory."""
    unknown = [kind for kind in bad_kinds if kind not in BAD_KINDS + HOSTILE_KINDS]
    if unknown or not bad_kinds:
        raise ValueError(f"bad_kinds must be some of {BAD_KINDS + HOSTILE_KINDS}, not {unknown}")
    planner = _Planner(licences, seed=seed, goods_items=goods_items)
    rng = random.Random(f"events:{seed}")
    # Its own draws, so that streams without full declarations stay as they always were.
    sizes = random.Random(f"sizes:{seed}")
    mrn_rng = random.Random(f"mrn:{seed}")
    open_mrns: list[_Open] = []
    recent: list[SynthEvent] = []
    pending: list[tuple[float, int, SynthEvent]] = []
    serial = 0
    for position in range(n_events):
        at = start + timedelta(seconds=position)
        draw = rng.random()
        event: SynthEvent | None = None
        if draw < bad:
            event = _bad_event(rng, planner, mrn_rng, position, at, bad_kinds)
        elif draw < bad + duplicates and recent:
            original = rng.choice(recent)
            event = replace(original, position=position, duplicate_of=original.message_id)
        elif draw < bad + duplicates + amendments and open_mrns:
            entry = rng.choice(open_mrns)
            entry.version += 1
            entry.plan = planner.amend(entry.plan)
            event = _declaration_event(entry.plan, EventKind.AMENDED, entry.version, at, position)
        elif draw < bad + duplicates + amendments + invalidations and open_mrns:
            entry = open_mrns.pop(rng.randrange(len(open_mrns)))
            payload = None
            if rng.random() < 0.5:
                payload = cancellation_xml(
                    entry.plan.mrn,
                    country=entry.plan.country,
                    lrn=entry.plan.lrn,
                    submitter=entry.plan.declarant_eori,
                )
            message_id = f"{entry.plan.mrn}-invalidated-v{entry.version}"
            event = SynthEvent(
                envelope=build_envelope(
                    message_id=message_id,
                    mrn=entry.plan.mrn,
                    event=EventKind.INVALIDATED,
                    event_time=at,
                    declaration_version=entry.version,
                    payload=payload,
                ),
                message_id=message_id,
                mrn=entry.plan.mrn,
                kind=str(EventKind.INVALIDATED),
                version=entry.version,
                position=position,
            )
        if event is None:
            serial += 1
            written_minimal = minimal and not (full_share and sizes.random() < full_share)
            plan = planner.plan("", minimal=written_minimal)
            plan = replace(plan, mrn=make_mrn(mrn_rng, serial, year=at.year, country=plan.country))
            event = _declaration_event(plan, EventKind.RELEASED, 1, at, position)
            open_mrns.append(_Open(plan, 1, at))
            if len(open_mrns) > 512:
                open_mrns.pop(0)
        if event.readable and event.duplicate_of is None:
            recent.append(event)
            if len(recent) > 256:
                recent.pop(0)
        due = float(position)
        if reorder and rng.random() < reorder:
            due = position + rng.randint(1, reorder_window) + 0.5
            event = replace(event, reordered=True)
        heapq.heappush(pending, (due, position, event))
        while pending and pending[0][0] <= position:
            yield heapq.heappop(pending)[2]
    while pending:
        yield heapq.heappop(pending)[2]


def _declaration_event(
    plan: DeclarationPlan, kind: EventKind, version: int, at: datetime, position: int
) -> SynthEvent:
    message_id = f"{plan.mrn}-{kind}-v{version}"
    envelope = build_envelope(
        message_id=message_id,
        mrn=plan.mrn,
        event=kind,
        event_time=at,
        declaration_version=version,
        payload=render_declaration(plan),
    )
    return SynthEvent(
        envelope=envelope,
        message_id=message_id,
        mrn=plan.mrn,
        kind=str(kind),
        version=version,
        position=position,
        write_offs=plan.write_offs,
    )


def _bad_event(
    rng: random.Random,
    planner: _Planner,
    mrn_rng: random.Random,
    position: int,
    at: datetime,
    kinds: Sequence[str] = BAD_KINDS,
) -> SynthEvent:
    kind = rng.choice(kinds)
    message_id = f"unreadable-{position}"
    if kind == "not-json":
        envelope = f"<<not a JSON document {position}>>".encode()
        return SynthEvent(envelope, message_id, None, "unreadable", 0, position, bad=kind)
    mrn = make_mrn(mrn_rng, 10**9 + position, year=at.year, country="EU")
    if kind == "bad-envelope":
        document = {
            "envelope": "elbridge.declaration-event/0",
            "message_id": message_id,
            "mrn": mrn[:10],
            "event": "shipped",
            "declaration_version": 0,
        }
        envelope = json.dumps(document).encode()
        return SynthEvent(envelope, message_id, None, "unreadable", 0, position, bad=kind)
    plan = replace(planner.plan(mrn, minimal=True), mrn=mrn)
    xml = render_declaration(plan).decode("utf-8")
    if kind == "bad-quantity" and "<WriteOff>" not in xml:
        kind = "wrong-namespace"  # nothing left to write off: spoil the namespace instead
    if kind == "unsafe-xml":
        xml = xml.replace(
            "<md:MetaData",
            '<!DOCTYPE md:MetaData [<!ENTITY boom "boom">]>\n<md:MetaData',
            1,
        )
    elif kind == "bad-quantity":
        start = xml.find("<QuantityQuantity")
        if start < 0:  # a write-off by amount only
            start = xml.find("<AmountAmount")
        close = xml.find(">", start) + 1
        end = xml.find("<", close)
        xml = xml[:close] + "12,5" + xml[end:]
    elif kind == "external-entity":
        xml = xml.replace(
            "<md:MetaData",
            '<!DOCTYPE md:MetaData [<!ENTITY exporter SYSTEM "file:///etc/hostname">]>\n'
            "<md:MetaData",
            1,
        ).replace(f"<ID>{plan.exporter_eori}</ID>", "<ID>&exporter;</ID>", 1)
    elif kind == "entity-bomb":
        levels = ['<!ENTITY lol0 "lol">'] + [
            f'<!ENTITY lol{n} "{f"&lol{n - 1};" * 10}">' for n in range(1, 8)
        ]
        xml = xml.replace(
            "<md:MetaData",
            f"<!DOCTYPE md:MetaData [{''.join(levels)}]>\n<md:MetaData",
            1,
        ).replace(f"<ID>{plan.exporter_eori}</ID>", "<ID>&lol7;</ID>", 1)
    elif kind == "truncated-xml":
        xml = xml[: len(xml) * 3 // 5]
    elif kind == "wrong-namespace":  # a declaration of another major version
        xml = xml.replace(DEC_NS, "urn:wco:datamodel:WCO:DEC-DMS:1")
    envelope = build_envelope(
        message_id=message_id, mrn=mrn, event=EventKind.RELEASED, event_time=at, payload=xml
    )
    if kind == "invalid-utf8":
        # A byte that no UTF-8 text holds, where the declaration starts.
        envelope = envelope.replace(b"<md:MetaData", b"<md:\xffMetaData", 1)
    return SynthEvent(envelope, message_id, mrn, "unreadable", 1, position, bad=kind)


@dataclass
class GroundTruth:
    """What the ledger must hold after a stream, added up event by event (order does not
    matter): per MRN the write-offs of its highest readable version, nothing for an MRN that
    was invalidated; the messages that must be quarantined; the redeliveries."""

    latest: dict[str, tuple[int, tuple[PlannedWriteOff, ...]]] = field(default_factory=dict)
    invalidated: set[str] = field(default_factory=set)
    messages: int = 0
    unreadable: int = 0
    unreadable_ids: set[bytes] = field(default_factory=set)
    redeliveries: int = 0
    releases: int = 0

    def add(self, event: SynthEvent) -> None:
        self.messages += 1
        if event.bad is not None:
            self.unreadable += 1
            self.unreadable_ids.add(event.envelope)
            return
        if event.duplicate_of is not None:
            self.redeliveries += 1
            return
        assert event.mrn is not None
        if event.kind == EventKind.INVALIDATED:
            self.invalidated.add(event.mrn)
            return
        if event.kind == EventKind.RELEASED:
            self.releases += 1
        version, _ = self.latest.get(event.mrn, (0, ()))
        if event.version > version:
            self.latest[event.mrn] = (event.version, event.write_offs)

    def totals(self) -> dict[tuple[str, int], tuple[Decimal, Decimal]]:
        """(licence, line) -> (quantity, value) written off (or recorded) in the line's unit
        and currency, after every event."""
        totals: dict[tuple[str, int], tuple[Decimal, Decimal]] = {}
        for mrn, (_, write_offs) in self.latest.items():
            if mrn in self.invalidated:
                continue
            for w in write_offs:
                key = (w.reference, w.line_number)
                q, v = totals.get(key, (Decimal(0), Decimal(0)))
                totals[key] = (q + w.quantity, v + w.value)
        return {key: value for key, value in totals.items() if value != (0, 0)}

    @property
    def quarantined(self) -> int:
        """Distinct unreadable messages (a redelivered one is stored once)."""
        return len(self.unreadable_ids)


# --------------------------------------------------------------------------- national files

_BAFA_TYPES = {
    LicenceType.INDIVIDUAL: "Einzelausfuhrgenehmigung",
    LicenceType.GLOBAL: "Höchstbetragsgenehmigung",
    LicenceType.NATIONAL_GENERAL: "Allgemeine Genehmigung",
    LicenceType.UNION_GENERAL: "Allgemeine Genehmigung der Union",
}
_BAFA_UNITS = {"NAR": "Stück", "KGM": "kg", "GRM": "g", "TNE": "t", "LTR": "l", "MTR": "m"}
_BAFA_UNITS |= {"MTK": "m²"}
_BAFA_COLUMNS = (
    "Genehmigungsnummer;Genehmigungsart;Status;Gültig ab;Gültig bis;Ausführer;EORI-Nummer;"
    "AGG-Nummer;Pos.;AL-Nummer;Warennummer;Warenbezeichnung;Menge;Maßeinheit;Wert;Währung;"
    "Bestimmungsländer;Empfänger;Empfängerland;Endverwender;Endverwenderland"
)


def _german_number(value: Decimal | None) -> str:
    if value is None:
        return ""
    whole, _, fraction = format(value, "f").partition(".")
    grouped = f"{int(whole):,}".replace(",", ".")
    return f"{grouped},{fraction}" if fraction else grouped


def _csv_field(text: str) -> str:
    if any(c in text for c in ';"\n'):
        return '"' + text.replace('"', '""') + '"'
    return text


def bafa_csv(licences: Iterable[Licence]) -> bytes:
    """The licences as the German legacy CSV (mappings/de_bafa_legacy.yaml): Latin-1, one row
    per line. Only German licences fit (the mapping fixes the issuing authority)."""
    rows = [_BAFA_COLUMNS]
    for licence in licences:
        if licence.issuing_member_state != "DE":
            raise ValueError(f"licence {licence.number}: the BAFA format carries DE licences")
        for line in licence.lines:
            cells = [
                licence.number,
                _BAFA_TYPES[licence.type],
                "gültig",
                licence.valid_from.strftime("%d.%m.%Y"),
                licence.valid_to.strftime("%d.%m.%Y") if licence.valid_to else "",
                licence.holder_name,
                licence.holder_eori,
                licence.general_authorisation or "",
                str(line.line_number),
                line.control_list_entry,
                f"{line.cn_code[:4]} {line.cn_code[4:6]} {line.cn_code[6:]}"
                if line.cn_code
                else "",
                line.description,
                _german_number(line.quantity),
                _BAFA_UNITS[line.unit] if line.unit else "",
                _german_number(line.value),
                line.currency or "",
                ",".join(line.destinations),
                line.consignee.name if line.consignee else "",
                (line.consignee.country or "") if line.consignee else "",
                line.end_user.name if line.end_user else "",
                (line.end_user.country or "") if line.end_user else "",
            ]
            rows.append(";".join(_csv_field(cell) for cell in cells))
    return ("\n".join(rows) + "\n").encode("latin-1")


_ECJU_TYPES = {
    LicenceType.INDIVIDUAL: "SIEL",
    LicenceType.GLOBAL: "OIEL",
    LicenceType.NATIONAL_GENERAL: "OGEL",
}


def ecju_json(licences: Iterable[Licence]) -> bytes:
    """The licences as the licensing REST API export (mappings/gb_ecju_api.yaml). It has no
    Union general authorisations."""

    def party(p: Party | None) -> dict | None:
        if p is None:
            return None
        found = {"name": p.name, "country": p.country}
        if p.address:
            found["address"] = p.address
        return found

    records = []
    for licence in licences:
        if licence.type not in _ECJU_TYPES:
            raise ValueError(f"licence {licence.number}: the API export has no {licence.type}")
        goods = []
        for line in licence.lines:
            item: dict = {
                "lineNo": line.line_number,
                "controlEntry": line.control_list_entry,
                "commodityCode": line.cn_code,
                "description": line.description,
            }
            if line.quantity is not None or line.unit:
                item["quantity"] = {
                    "amount": None if line.quantity is None else str(line.quantity),
                    "unit": line.unit,
                }
            if line.value is not None or line.currency:
                item["value"] = {
                    "amount": None if line.value is None else str(line.value),
                    "currency": line.currency,
                }
            item["destinations"] = list(line.destinations)
            if line.consignee:
                item["consignee"] = party(line.consignee)
            if line.end_user:
                item["endUser"] = party(line.end_user)
            goods.append(item)
        records.append(
            {
                "reference": licence.number,
                "revision": licence.version,
                "licenceType": _ECJU_TYPES[licence.type],
                "status": "Issued",
                "issuer": {
                    "country": licence.issuing_member_state,
                    "name": licence.issuing_authority,
                },
                "validity": {
                    "from": licence.valid_from.isoformat(),
                    "to": licence.valid_to.isoformat() if licence.valid_to else None,
                },
                "licensee": {"name": licence.holder_name, "eori": licence.holder_eori},
                "generalAuthorisation": licence.general_authorisation,
                "goods": goods,
            }
        )
    document = {"export": {"system": "LITE", "count": len(records)}, "licences": records}
    return json.dumps(document, ensure_ascii=False, indent=1).encode("utf-8")


ELICENSING_NS = "urn:eu:ec:trade:dual-use:elicensing:export:1"


def elicensing_xml(licences: Iterable[Licence]) -> bytes:
    """The licences as the EU e-licensing tool's XML export (mappings/eu_elicensing_tool.yaml)."""
    out = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        f'<elic:LicenceExport xmlns:elic="{ELICENSING_NS}" system="synthetic">',
    ]
    for licence in licences:
        out.append(f'  <elic:Authorisation version="{licence.version}">')
        out.append(f"    <elic:Reference>{escape(licence.number)}</elic:Reference>")
        out.append(f"    <elic:Kind>{licence.type.value.upper()}</elic:Kind>")
        out.append("    <elic:State>ISSUED</elic:State>")
        out.append(
            f"    <elic:IssuingMemberState>{licence.issuing_member_state}</elic:IssuingMemberState>"
        )
        authority = escape(licence.issuing_authority)
        out.append(f"    <elic:CompetentAuthority>{authority}</elic:CompetentAuthority>")
        until = f' to="{licence.valid_to.isoformat()}"' if licence.valid_to else ""
        out.append(f'    <elic:Validity from="{licence.valid_from.isoformat()}"{until}/>')
        out.append(
            f"    <elic:Exporter><elic:Name>{escape(licence.holder_name)}</elic:Name>"
            f"<elic:EORI>{licence.holder_eori}</elic:EORI></elic:Exporter>"
        )
        if licence.general_authorisation:
            out.append(
                f"    <elic:GeneralAuthorisation>{licence.general_authorisation}"
                "</elic:GeneralAuthorisation>"
            )
        out.append("    <elic:Items>")
        for line in licence.lines:
            out.append(f'      <elic:Item sequence="{line.line_number}">')
            out.append(
                f"        <elic:ControlListEntry>{line.control_list_entry}</elic:ControlListEntry>"
            )
            if line.cn_code:
                out.append(f"        <elic:CommodityCode>{line.cn_code}</elic:CommodityCode>")
            out.append(f"        <elic:Description>{escape(line.description)}</elic:Description>")
            if line.quantity is not None:
                out.append(
                    f'        <elic:Quantity unit="{line.unit}">{line.quantity}</elic:Quantity>'
                )
            elif line.unit:
                out.append(f'        <elic:Quantity unit="{line.unit}"/>')
            if line.value is not None:
                out.append(
                    f'        <elic:Value currency="{line.currency}">{line.value}</elic:Value>'
                )
            elif line.currency:
                out.append(f'        <elic:Value currency="{line.currency}"/>')
            if line.destinations:
                countries = "".join(f"<elic:Country>{c}</elic:Country>" for c in line.destinations)
                out.append(f"        <elic:Destinations>{countries}</elic:Destinations>")
            for tag, party in (("Consignee", line.consignee), ("EndUser", line.end_user)):
                if party is not None:
                    out.append(
                        f'        <elic:{tag} country="{party.country}">'
                        f"<elic:Name>{escape(party.name)}</elic:Name></elic:{tag}>"
                    )
            out.append("      </elic:Item>")
        out.append("    </elic:Items>")
        out.append("  </elic:Authorisation>")
    out.append("</elic:LicenceExport>\n")
    return "\n".join(out).encode("utf-8")


def national_files(licences: Iterable[Licence]) -> dict[str, bytes]:
    """The licences split by where they come from, each group in its national format, under
    file names the mappings claim: German ones as BAFA CSV, British ones as the API export's
    JSON, the rest as the EU tool's XML."""
    german, british, others = [], [], []
    for licence in licences:
        {"DE": german, "GB": british}.get(licence.issuing_member_state, others).append(licence)
    files = {}
    if german:
        files["bafa_ausfuhr_synthetic.csv"] = bafa_csv(german)
    if british:
        files["ecju_licences_synthetic.json"] = ecju_json(british)
    if others:
        files["elicensing_export_synthetic.xml"] = elicensing_xml(others)
    return files

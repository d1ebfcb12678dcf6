"""Synthetic licences, as national authorities issue them: individual, global, national and
Union general authorisations for a handful of member states, with EORIs, control list entries,
CN codes, units and ceilings, and the reference data they are drawn from (the goods catalogue,
member states, destinations) that declarations planned against them share.

A pure function of its arguments and a seed: the same call gives the same licences on every
machine."""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import ROUND_HALF_UP, Decimal

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
UNIT_DECIMALS = {"NAR": 0, "KGM": 3, "GRM": 0, "LTR": 1, "MTK": 2}
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
MEMBER_STATES_BY_CODE = {ms.code: ms for ms in MEMBER_STATES}


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


def random_decimal(rng: random.Random, low: float, high: float, decimals: int) -> Decimal:
    """A random amount in [low, high] with at most `decimals` decimals, without trailing zeros
    or exponent (the canonical spelling the mapping engine gives)."""
    steps = 10**decimals
    value = Decimal(rng.randint(int(low * steps), int(high * steps))) / steps
    return plain(value)


def plain(value: Decimal) -> Decimal:
    normal = value.normalize()
    return normal.quantize(Decimal(1)) if normal.as_tuple().exponent > 0 else normal


def money(value: Decimal) -> Decimal:
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
            quantity = random_decimal(
                rng, low * scale, high * scale, min(2, UNIT_DECIMALS[goods.unit])
            )
            unit = goods.unit
        if goods.counts in ("both", "value"):
            value = money(random_decimal(rng, 50_000 * scale, 20_000_000 * scale, 2))
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
        ms = MEMBER_STATES_BY_CODE[holder.member_state]
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

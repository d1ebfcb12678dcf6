"""Statistics of a licensing authority (docs/statistics.md): per period, licences issued by type,
what they authorise, what was actually exported under them (the ledger's movements, net of
reversals and corrections) by control list category and destination, refused write-offs and
over-use. The licences issued and what they authorise serve the EU's annual dual-use report
(Regulation (EU) 2021/821, Art. 26; denied applications are not in the bridge); the rest is
what only the bridge knows: actual use against authorised.

Pure: the store reads the facts (bridge.adapters.store.statistics), this module counts them into
tables (bridge.core.tables). Quantities are never added across units nor values across
currencies: every figure is per unit or per currency, as its licence line keeps it."""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from enum import StrEnum

from bridge.core.codes import normalise_cle
from bridge.core.model import LicenceType
from bridge.core.tables import Column, Kind, Table, TableSpec, share

ZERO = Decimal(0)
MAX_DAYS_BY_DAY = 400


class Granularity(StrEnum):
    YEAR = "year"
    QUARTER = "quarter"
    MONTH = "month"
    DAY = "day"


def period_of(moment: date | datetime, granularity: Granularity) -> str:
    """The period a day (or a UTC time) falls in: `2026`, `2026-Q1`, `2026-03` or
    `2026-03-17`."""
    if isinstance(moment, datetime):
        moment = moment.astimezone(UTC).date() if moment.tzinfo else moment.date()
    if granularity is Granularity.YEAR:
        return f"{moment.year}"
    if granularity is Granularity.QUARTER:
        return f"{moment.year}-Q{(moment.month - 1) // 3 + 1}"
    if granularity is Granularity.DAY:
        return moment.isoformat()
    return f"{moment.year}-{moment.month:02d}"


def periods_between(start: datetime, end: datetime, granularity: Granularity) -> list[str]:
    """Every period from the one holding `start` to the one holding the last instant before
    `end`, in order (none when the range is empty)."""
    if end <= start:
        return []
    last = (end - timedelta(microseconds=1)).astimezone(UTC).date()
    day = start.astimezone(UTC).date()
    if granularity is Granularity.DAY:
        return [(day + timedelta(days=n)).isoformat() for n in range((last - day).days + 1)]
    day = day.replace(day=1)
    found: list[str] = []
    while day <= last:
        label = period_of(day, granularity)
        if not found or found[-1] != label:
            found.append(label)
        day = (day.replace(day=28) + timedelta(days=4)).replace(day=1)  # the next month
    return found


def day_start(day: date) -> datetime:
    return datetime.combine(day, time(0), tzinfo=UTC)


@dataclass(frozen=True)
class StatisticsQuery:
    """The range counted: from `start` (inclusive) to `end` (exclusive), both UTC, in periods
    of `granularity`."""

    start: datetime
    end: datetime
    granularity: Granularity = Granularity.MONTH

    def __post_init__(self) -> None:
        if self.start.tzinfo is None or self.end.tzinfo is None:
            raise ValueError("the statistics range needs times with their time zone (UTC)")
        if self.end <= self.start:
            raise ValueError(
                f"the range ends ({self.end:%Y-%m-%d}) before it starts ({self.start:%Y-%m-%d})"
            )

    @classmethod
    def of_days(
        cls, first: date, last: date, granularity: Granularity = Granularity.MONTH
    ) -> StatisticsQuery:
        """From the start of day `first` to the end of day `last` (both counted)."""
        if last < first:
            raise ValueError(f"the range ends ({last}) before it starts ({first})")
        return cls(day_start(first), day_start(last + timedelta(days=1)), granularity)

    @classmethod
    def from_params(cls, params: Mapping[str, str], *, today: date) -> StatisticsQuery:
        """The range a page's query asks for (`from`, `to` as YYYY-MM-DD, both counted;
        `period` year, quarter, month or day); by default this year up to today, by month. A
        value that cannot be read raises ValueError saying which and why; more than 400 days
        by day is refused (a page of that many rows helps nobody)."""
        granularity_text = (params.get("period") or Granularity.MONTH.value).strip()
        try:
            granularity = Granularity(granularity_text)
        except ValueError:
            raise ValueError(
                f"period {granularity_text!r}: choose year, quarter, month or day"
            ) from None
        first = _day(params.get("from"), "from") or today.replace(month=1, day=1)
        last = _day(params.get("to"), "to") or today
        if granularity is Granularity.DAY and (last - first).days >= MAX_DAYS_BY_DAY:
            raise ValueError(
                f"{(last - first).days + 1} days by day: choose at most {MAX_DAYS_BY_DAY} days,"
                " or count by month"
            )
        return cls.of_days(first, last, granularity)

    @property
    def first_day(self) -> date:
        return self.start.astimezone(UTC).date()

    @property
    def last_day(self) -> date:
        return (self.end - timedelta(microseconds=1)).astimezone(UTC).date()

    def params(self) -> dict[str, str]:
        """The query parameters that ask for this range again."""
        return {
            "from": self.first_day.isoformat(),
            "to": self.last_day.isoformat(),
            "period": self.granularity.value,
        }

    def holds(self, moment: datetime | date) -> bool:
        if not isinstance(moment, datetime):
            moment = day_start(moment)
        elif moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        return self.start <= moment < self.end

    def describe(self) -> str:
        return f"{self.first_day} to {self.last_day}, by {self.granularity.value}"


def _day(text: str | None, name: str) -> date | None:
    if text is None or not text.strip():
        return None
    try:
        return date.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(f"{name} {text.strip()!r} is not a date (YYYY-MM-DD)") from None


# --------------------------------------------------------------------------- categories

# Annex I to Regulation (EU) 2021/821: the ten categories.
CATEGORIES = {
    "0": "Nuclear materials, facilities and equipment",
    "1": "Special materials and related equipment",
    "2": "Materials processing",
    "3": "Electronics",
    "4": "Computers",
    "5": "Telecommunications and information security",
    "6": "Sensors and lasers",
    "7": "Navigation and avionics",
    "8": "Marine",
    "9": "Aerospace and propulsion",
}
OTHER_LIST = "other"  # an entry of another list (military, national) or none
SEVERAL = "several"  # an open licence whose scope spans several categories
CATEGORY_NAMES = {
    **CATEGORIES,
    OTHER_LIST: "Other control lists (military, national) or no entry",
    SEVERAL: "Open licences spanning several categories",
}
_CATEGORY_SCOPE = re.compile(r"[0-9][A-Ea-e]?")


def category_of(control_list_entry: str | None) -> str:
    """The Annex I category (`0`-`9`) of a line's control list entry; an open licence's scope
    (several entries, or a category `5` or group `5A`) has one category when all of it lies in
    one, else `several`; anything that is no Annex I entry is `other`."""
    found = set()
    for token in (control_list_entry or "").split():
        if normalise_cle(token) is not None or _CATEGORY_SCOPE.fullmatch(token):
            found.add(token[0])
        else:
            found.add(OTHER_LIST)
    if not found:
        return OTHER_LIST
    if len(found) > 1:
        return SEVERAL
    return found.pop()


def _category_order(code: str) -> tuple[int, str]:
    return (0, code) if code in CATEGORIES else (1, code)


# --------------------------------------------------------------------------- facts


class MovementClass(StrEnum):
    """How a movement counts: a write-off exports (or records use of) goods; a reversal,
    adjustment or correction changes what earlier write-offs said, by its sign."""

    WRITE_OFF = "write-off"
    CHANGE = "change"


# Movement kinds as the ledger keeps them (bridge.adapters.store.schema.movement).
WRITE_OFF_KINDS = frozenset({"write_off", "record", "manual_write_off"})
# Alert kinds that tell of over-use: refused by the rules, forced by hand, in a contingency.
OVER_USE_ALERTS = frozenset({"over-use", "manual-over-use", "contingency-over-use"})
OVER_USE_REFUSAL = "over-use"
NOT_DECLARED = "not declared"  # a movement whose declaration names no destination (manual)


def movement_class(kind: str) -> MovementClass:
    return MovementClass.WRITE_OFF if kind in WRITE_OFF_KINDS else MovementClass.CHANGE


@dataclass(frozen=True, slots=True)
class LineFacts:
    """A licence line (current, or as the last version that had it) with its licence."""

    licence_number: str
    line_number: int
    licence_type: str
    valid_from: date
    control_list_entry: str
    unit: str | None
    quantity: Decimal | None  # authorised (None: no ceiling)
    currency: str | None
    value: Decimal | None
    destinations: tuple[str, ...] = ()
    current: bool = True  # False: a later version dropped it


@dataclass(frozen=True, slots=True)
class MovementFact:
    at: datetime
    licence_number: str
    line_number: int
    kind: str
    quantity: Decimal
    value: Decimal
    mrn: str | None = None
    goods_item: int | None = None


@dataclass(frozen=True, slots=True)
class Event:
    """A refusal (kind: its code) or an alert (kind: its kind) at a time."""

    at: datetime
    kind: str


@dataclass
class Facts:
    """What the statistics of one range are counted from. `lines`: every line any movement
    is on, and every line of the licences issued in the range; `licences`: (type, valid_from)
    of every licence; `movements`: those of the range; `used`: per line, the sums of every
    movement before the range's end; `destinations`: per (MRN, goods item), the country the
    declaration the bridge acts on sends the goods to."""

    licences: Mapping[str, tuple[str, date]]
    lines: Mapping[tuple[str, int], LineFacts]
    movements: list[MovementFact]
    used: Mapping[tuple[str, int], tuple[Decimal, Decimal]]
    destinations: Mapping[tuple[str, int], str]
    refusals: list[Event]
    alerts: list[Event]


# --------------------------------------------------------------------------- tables

TYPE_LABELS = {
    LicenceType.INDIVIDUAL.value: "individual",
    LicenceType.GLOBAL.value: "global",
    LicenceType.NATIONAL_GENERAL.value: "national general",
    LicenceType.UNION_GENERAL.value: "Union general",
}
TYPES = tuple(TYPE_LABELS)

_Q = Kind.QUANTITY
_M = Kind.MONEY
_I = Kind.INTEGER

OVERVIEW = TableSpec(
    "stats_overview",
    "Per period",
    (
        Column("period", "period"),
        Column("licences", "licences issued", _I),
        *(Column(f"type_{t}", TYPE_LABELS[t], _I) for t in TYPES),
        Column("write_offs", "write-offs", _I),
        Column("changes", "reversals and corrections", _I),
        Column("refusals", "refused write-offs", _I),
        Column("over_use_refusals", "of which over-use", _I),
        Column("over_use_alerts", "over-use alerts", _I),
    ),
    description=(
        "Licences issued: by their first valid day. Write-offs, reversals and corrections:"
        " movements recorded in the period. Refusals and alerts: recorded in the period."
    ),
)
BY_TYPE = TableSpec(
    "stats_by_type",
    "Licences issued, by type: authorised and used",
    (
        Column("licence_type", "licence type"),
        Column("unit", "unit"),
        Column("currency", "currency"),
        Column("licences", "licences", _I),
        Column("lines", "lines", _I),
        Column("authorised_quantity", "authorised quantity", _Q),
        Column("used_quantity", "used quantity", _Q),
        Column("used_quantity_share", "quantity used", Kind.PERCENT),
        Column("authorised_value", "authorised value", _M),
        Column("used_value", "used value", _M),
        Column("used_value_share", "value used", Kind.PERCENT),
        Column("over_used_lines", "lines over-used", _I),
    ),
    description=(
        "Licences whose first valid day is in the range; authorised: the ceilings of their"
        " current lines; used: every movement on those lines up to the end of the range, net"
        " of reversals and corrections; the shares compare the use of the lines that have a"
        " ceiling with their ceilings. Per unit and currency: nothing is converted."
    ),
)
AUTHORISED_BY_CATEGORY = TableSpec(
    "stats_authorised_by_category",
    "Licences issued, by control list category",
    (
        Column("category", "category"),
        Column("category_name", "Annex I category", width=36),
        Column("unit", "unit"),
        Column("currency", "currency"),
        Column("licences", "licences", _I),
        Column("lines", "lines", _I),
        Column("authorised_quantity", "authorised quantity", _Q),
        Column("authorised_value", "authorised value", _M),
    ),
    description=(
        "The lines of the licences issued in the range, by the Annex I category of their"
        " control list entry."
    ),
)
_EXPORT_FIGURES = (
    Column("unit", "unit"),
    Column("currency", "currency"),
    Column("write_offs", "write-offs", _I),
    Column("changes", "reversals and corrections", _I),
    Column("quantity", "net quantity", _Q),
    Column("value", "net value", _M),
)
EXPORTS_BY_CATEGORY = TableSpec(
    "stats_exports_by_category",
    "Exported, by control list category",
    (
        Column("category", "category"),
        Column("category_name", "Annex I category", width=36),
        *_EXPORT_FIGURES,
    ),
    description=(
        "Movements recorded in the range, by the category of their licence line: net"
        " quantity and value are write-offs less reversals and corrections."
    ),
)
EXPORTS_BY_DESTINATION = TableSpec(
    "stats_exports_by_destination",
    "Exported, by destination",
    (Column("destination", "destination"), *_EXPORT_FIGURES),
    description=(
        "Movements recorded in the range, by the destination the customs declaration gives"
        " the goods item (manual movements without a declaration: not declared)."
    ),
)
LICENCES_BY_DESTINATION = TableSpec(
    "stats_licences_by_destination",
    "Licences issued, by destination they allow",
    (
        Column("destination", "destination"),
        Column("licences", "licences", _I),
        Column("lines", "lines", _I),
    ),
    description="A licence counts once under each country one of its lines allows.",
)
REFUSALS = TableSpec(
    "stats_refusals",
    "Refused write-offs, by reason",
    (
        Column("period", "period"),
        Column("code", "reason code"),
        Column("refusals", "refusals", _I),
    ),
    description="Write-offs the rules refused in the range, by the reason's code.",
)
OVER_USED = TableSpec(
    "stats_over_used",
    "Lines over-used at the end of the range",
    (
        Column("licence_number", "licence", width=24),
        Column("line_number", "line", _I),
        Column("licence_type", "licence type"),
        Column("unit", "unit"),
        Column("authorised_quantity", "authorised quantity", _Q),
        Column("used_quantity", "used quantity", _Q),
        Column("currency", "currency"),
        Column("authorised_value", "authorised value", _M),
        Column("used_value", "used value", _M),
    ),
    description=(
        "Lines whose movements up to the end of the range exceed their ceiling (quantity or"
        " value): forced by hand, or a ceiling lowered below what was used."
    ),
)
SPECS = (
    OVERVIEW,
    BY_TYPE,
    AUTHORISED_BY_CATEGORY,
    EXPORTS_BY_CATEGORY,
    EXPORTS_BY_DESTINATION,
    LICENCES_BY_DESTINATION,
    REFUSALS,
    OVER_USED,
)


@dataclass(frozen=True)
class Statistics:
    """The tables of one range, each a bridge.core.tables.Table, by name."""

    query: StatisticsQuery
    tables: dict[str, Table] = field(default_factory=dict)

    def __getitem__(self, name: str) -> Table:
        return self.tables[name]


def count(query: StatisticsQuery, facts: Facts) -> Statistics:
    """The statistics of `query`'s range from `facts` (see docs/statistics.md for what each
    figure counts)."""
    note = {"range": query.describe()}
    issued = {
        number for number, (_, valid_from) in facts.licences.items() if query.holds(valid_from)
    }
    issued_lines = [
        line for line in facts.lines.values() if line.licence_number in issued and line.current
    ]
    tables = [
        OVERVIEW.table(_overview(query, facts, issued), **note),
        BY_TYPE.table(_by_type(issued_lines, facts.used), **note),
        AUTHORISED_BY_CATEGORY.table(_authorised_by_category(issued_lines), **note),
        EXPORTS_BY_CATEGORY.table(
            _exports(facts, lambda m, line: category_of(line.control_list_entry), "category"),
            **note,
        ),
        EXPORTS_BY_DESTINATION.table(
            _exports(
                facts,
                lambda m, line: (
                    facts.destinations.get((m.mrn or "", m.goods_item or 0)) or NOT_DECLARED
                ),
                "destination",
            ),
            **note,
        ),
        LICENCES_BY_DESTINATION.table(_licences_by_destination(issued_lines), **note),
        REFUSALS.table(_refusals(query, facts.refusals), **note),
        OVER_USED.table(_over_used(facts), **note),
    ]
    return Statistics(query, {table.name: table for table in tables})


def _overview(query: StatisticsQuery, facts: Facts, issued: set[str]) -> list[dict]:
    rows = {
        period: {"period": period, "licences": 0, **{f"type_{t}": 0 for t in TYPES}}
        for period in periods_between(query.start, query.end, query.granularity)
    }
    for key in ("write_offs", "changes", "refusals", "over_use_refusals", "over_use_alerts"):
        for row in rows.values():
            row[key] = 0

    def bump(moment: date | datetime, key: str) -> None:
        rows[period_of(moment, query.granularity)][key] += 1

    for number in issued:
        kind, valid_from = facts.licences[number]
        bump(valid_from, "licences")
        if f"type_{kind}" in rows[period_of(valid_from, query.granularity)]:
            bump(valid_from, f"type_{kind}")
    for m in facts.movements:
        bump(m.at, "write_offs" if movement_class(m.kind) is MovementClass.WRITE_OFF else "changes")
    for refusal in facts.refusals:
        bump(refusal.at, "refusals")
        if refusal.kind == OVER_USE_REFUSAL:
            bump(refusal.at, "over_use_refusals")
    for alert in facts.alerts:
        if alert.kind in OVER_USE_ALERTS:
            bump(alert.at, "over_use_alerts")
    return list(rows.values())


def _measures(line: LineFacts) -> tuple[str, str]:
    return (line.unit or "", line.currency or "")


def _add(total: Decimal | None, figure: Decimal | None) -> Decimal | None:
    if figure is None:
        return total
    return figure if total is None else total + figure


def _over(line: LineFacts, used: tuple[Decimal, Decimal]) -> bool:
    return (line.quantity is not None and used[0] > line.quantity) or (
        line.value is not None and used[1] > line.value
    )


def _by_type(
    lines: list[LineFacts], used: Mapping[tuple[str, int], tuple[Decimal, Decimal]]
) -> list[dict]:
    groups: dict[tuple[str, str, str], dict] = {}
    for line in lines:
        key = (line.licence_type, *_measures(line))
        row = groups.setdefault(
            key,
            {
                "licence_type": TYPE_LABELS.get(line.licence_type, line.licence_type),
                "unit": key[1] or None,
                "currency": key[2] or None,
                "numbers": set(),
                "lines": 0,
                "authorised_quantity": None,
                "used_quantity": ZERO,
                "authorised_value": None,
                "used_value": ZERO,
                "over_used_lines": 0,
                # the use of the lines that have a ceiling, for the shares
                "capped_quantity": ZERO,
                "capped_value": ZERO,
            },
        )
        quantity, value = used.get((line.licence_number, line.line_number), (ZERO, ZERO))
        row["numbers"].add(line.licence_number)
        row["lines"] += 1
        row["authorised_quantity"] = _add(row["authorised_quantity"], line.quantity)
        row["authorised_value"] = _add(row["authorised_value"], line.value)
        row["used_quantity"] += quantity
        row["used_value"] += value
        if line.quantity is not None:
            row["capped_quantity"] += quantity
        if line.value is not None:
            row["capped_value"] += value
        row["over_used_lines"] += _over(line, (quantity, value))
    rows = []
    for key in sorted(groups, key=lambda k: (_type_order(k[0]), k[1], k[2])):
        row = groups[key]
        row["licences"] = len(row.pop("numbers"))
        if not key[1]:  # no unit: nothing measured in a quantity
            row["used_quantity"] = None
        if not key[2]:
            row["used_value"] = None
        # A line without a ceiling uses nothing of the others' ceilings: the share compares the
        # use of the lines that have one with their ceilings.
        capped_quantity, capped_value = row.pop("capped_quantity"), row.pop("capped_value")
        row["used_quantity_share"] = share(
            capped_quantity if key[1] else None, row["authorised_quantity"]
        )
        row["used_value_share"] = share(capped_value if key[2] else None, row["authorised_value"])
        rows.append(row)
    return rows


def _type_order(kind: str) -> tuple[int, str]:
    return (TYPES.index(kind), kind) if kind in TYPES else (len(TYPES), kind)


def _authorised_by_category(lines: list[LineFacts]) -> list[dict]:
    groups: dict[tuple[str, str, str], dict] = {}
    for line in lines:
        category = category_of(line.control_list_entry)
        key = (category, *_measures(line))
        row = groups.setdefault(
            key,
            {
                "category": category,
                "category_name": CATEGORY_NAMES[category],
                "unit": key[1] or None,
                "currency": key[2] or None,
                "numbers": set(),
                "lines": 0,
                "authorised_quantity": None,
                "authorised_value": None,
            },
        )
        row["numbers"].add(line.licence_number)
        row["lines"] += 1
        row["authorised_quantity"] = _add(row["authorised_quantity"], line.quantity)
        row["authorised_value"] = _add(row["authorised_value"], line.value)
    rows = []
    for key in sorted(groups, key=lambda k: (_category_order(k[0]), k[1], k[2])):
        row = groups[key]
        row["licences"] = len(row.pop("numbers"))
        rows.append(row)
    return rows


def _exports(facts: Facts, key_of, name: str) -> list[dict]:
    groups: dict[tuple[str, str, str], dict] = {}
    for m in facts.movements:
        line = facts.lines[(m.licence_number, m.line_number)]
        group = key_of(m, line)
        key = (group, *_measures(line))
        row = groups.setdefault(
            key,
            {
                name: group,
                "unit": key[1] or None,
                "currency": key[2] or None,
                "write_offs": 0,
                "changes": 0,
                "quantity": ZERO if key[1] else None,
                "value": ZERO if key[2] else None,
            },
        )
        if name == "category":
            row["category_name"] = CATEGORY_NAMES[group]
        if movement_class(m.kind) is MovementClass.WRITE_OFF:
            row["write_offs"] += 1
        else:
            row["changes"] += 1
        if key[1]:
            row["quantity"] += m.quantity
        if key[2]:
            row["value"] += m.value
    order = _category_order if name == "category" else _destination_order
    return [groups[k] for k in sorted(groups, key=lambda k: (order(k[0]), k[1], k[2]))]


def _destination_order(country: str) -> tuple[int, str]:
    return (1, country) if country == NOT_DECLARED else (0, country)


def _licences_by_destination(lines: list[LineFacts]) -> list[dict]:
    groups: dict[str, dict] = {}
    for line in lines:
        for country in line.destinations or (NOT_DECLARED,):
            row = groups.setdefault(country, {"destination": country, "numbers": set(), "lines": 0})
            row["numbers"].add(line.licence_number)
            row["lines"] += 1
    rows = []
    for country in sorted(groups, key=_destination_order):
        row = groups[country]
        row["licences"] = len(row.pop("numbers"))
        rows.append(row)
    return rows


def _refusals(query: StatisticsQuery, refusals: Iterable[Event]) -> list[dict]:
    counted: dict[tuple[str, str], int] = defaultdict(int)
    for refusal in refusals:
        counted[(period_of(refusal.at, query.granularity), refusal.kind)] += 1
    return [
        {"period": period, "code": code, "refusals": n}
        for (period, code), n in sorted(counted.items())
    ]


def _over_used(facts: Facts) -> list[dict]:
    rows = []
    for key in sorted(facts.used):
        line = facts.lines.get(key)
        if line is None or not line.current:
            continue
        quantity, value = facts.used[key]
        if _over(line, (quantity, value)):
            rows.append(
                {
                    "licence_number": line.licence_number,
                    "line_number": line.line_number,
                    "licence_type": TYPE_LABELS.get(line.licence_type, line.licence_type),
                    "unit": line.unit,
                    "authorised_quantity": line.quantity,
                    "used_quantity": quantity if line.unit else None,
                    "currency": line.currency,
                    "authorised_value": line.value,
                    "used_value": value if line.currency else None,
                }
            )
    return rows


def chart_series(statistics: Statistics) -> list[tuple[str, list[tuple[str, int]]]]:
    """What the page's chart draws: per period, (label, count) of licences issued, write-offs
    and refused write-offs."""
    series = (
        ("licences", "licences issued"),
        ("write_offs", "write-offs"),
        ("refusals", "refused"),
    )
    return [
        (row["period"], [(label, int(row[key])) for key, label in series])
        for row in statistics[OVERVIEW.name].rows
    ]

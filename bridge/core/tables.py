"""A table the console shows, described once: its columns (key, heading, kind of value) and its
rows. The same description renders the HTML table, the CSV file and the xlsx sheet
(bridge.services.exports), so a figure reads the same on the page and in the spreadsheet.

Pure: values are plain Python (str, int, Decimal, date, datetime, bool, None); how each kind is
written is decided here once (`display` for people, `csv_text` for a CSV file)."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any

CENT = Decimal("0.01")
PERCENT_PLACES = Decimal("0.1")
_NAME = re.compile(r"[a-z][a-z0-9_]{0,40}")


class Kind(StrEnum):
    """What a column holds, which decides how it is written and aligned."""

    TEXT = "text"
    INTEGER = "integer"
    QUANTITY = "quantity"  # exact, as many decimals as it has (at most six)
    MONEY = "money"  # two decimals
    PERCENT = "percent"  # a share: 0.25 is shown 25.0 %
    DATE = "date"
    DATETIME = "datetime"  # UTC
    FLAG = "flag"  # yes / (blank)

    @property
    def numeric(self) -> bool:
        return self in (Kind.INTEGER, Kind.QUANTITY, Kind.MONEY, Kind.PERCENT)


@dataclass(frozen=True, slots=True)
class Column:
    key: str
    label: str
    kind: Kind = Kind.TEXT
    # How wide the column starts in a spreadsheet (characters); None: from its contents.
    width: int | None = None


@dataclass(frozen=True)
class TableSpec:
    """A table's name (a file name: lower case, digits, `_`), its title, its columns, and
    what it counts, for the reader (`description`)."""

    name: str
    title: str
    columns: tuple[Column, ...]
    description: str = ""

    def __post_init__(self) -> None:
        if not _NAME.fullmatch(self.name):
            raise ValueError(f"table name {self.name!r}: lower-case letters, digits and _")
        keys = [column.key for column in self.columns]
        if len(set(keys)) != len(keys):
            raise ValueError(f"table {self.name}: a column key appears twice")

    def table(self, rows: Iterable[Mapping[str, Any]], **notes: str) -> Table:
        return Table(self, tuple(rows), notes)


@dataclass(frozen=True)
class Table:
    """A spec with its rows (mappings from column key to value; missing keys are blank) and
    notes for the reader (e.g. {"range": "2026-01-01 to 2026-03-31"})."""

    spec: TableSpec
    rows: tuple[Mapping[str, Any], ...]
    notes: Mapping[str, str] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def title(self) -> str:
        return self.spec.title

    @property
    def columns(self) -> tuple[Column, ...]:
        return self.spec.columns

    def values(self, row: Mapping[str, Any]) -> list[Any]:
        """The row's values in column order, each as its column's kind keeps it."""
        return [normalised(row.get(column.key), column.kind) for column in self.columns]


def normalised(value: Any, kind: Kind) -> Any:
    """`value` as a column of `kind` holds it: money to the cent, quantities without trailing
    zeros, times in UTC; None stays None."""
    if value is None or value == "":
        return None
    if kind is Kind.MONEY:
        return Decimal(value).quantize(CENT)
    if kind is Kind.QUANTITY:
        number = Decimal(value)
        return number.quantize(Decimal(1)) if number == number.to_integral() else number.normalize()
    if kind is Kind.PERCENT:
        return Decimal(value)
    if kind is Kind.INTEGER:
        return int(value)
    if kind is Kind.DATETIME and isinstance(value, datetime):
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    if kind is Kind.FLAG:
        return bool(value)
    return value


def grouped(digits: str, mark: str = ".", separator: str = "\u202f") -> str:
    """A plain decimal string (`-1234567.5`) with its thousands grouped by `separator` and its
    decimal mark `mark`."""
    sign, digits = ("-", digits[1:]) if digits.startswith("-") else ("", digits)
    whole, _, fraction = digits.partition(".")
    groups = []
    while len(whole) > 3:
        groups.insert(0, whole[-3:])
        whole = whole[:-3]
    groups.insert(0, whole)
    return sign + separator.join(groups) + (mark + fraction if fraction else "")


def percent_text(share: Decimal) -> str:
    """A share (0.255) as percent digits to one decimal (25.5)."""
    return format((share * 100).quantize(PERCENT_PLACES), "f")


def display(value: Any, kind: Kind) -> str:
    """A value as a person reads it on a page: numbers exact, thousands grouped by a narrow
    space (no `,` or `.` that a reader of another country takes for the decimal mark), money
    to the cent, shares as `25.5 %`, times as `2026-03-01 14:05 UTC`, nothing as `–`."""
    value = normalised(value, kind)
    if value is None:
        return "–" if kind.numeric else ""
    if kind is Kind.PERCENT:
        return grouped(percent_text(value)) + "\u202f%"
    if kind in (Kind.QUANTITY, Kind.MONEY):
        return grouped(format(value, "f"))
    if kind is Kind.INTEGER:
        return grouped(str(value))
    if kind is Kind.DATETIME and isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M UTC")
    if kind is Kind.DATE and isinstance(value, date):
        return value.isoformat()
    if kind is Kind.FLAG:
        return "yes" if value else ""
    return str(value)


def csv_text(value: Any, kind: Kind, decimal_mark: str = ".") -> str:
    """A value as a CSV cell a spreadsheet reads as what it is: numbers without grouping and
    with `decimal_mark`, shares as percent digits, dates ISO (every Excel reads them), times
    as `2026-03-01 14:05:00` (UTC, said in the heading), nothing as an empty cell."""
    value = normalised(value, kind)
    if value is None:
        return ""
    if kind is Kind.PERCENT:
        return percent_text(value).replace(".", decimal_mark)
    if kind in (Kind.QUANTITY, Kind.MONEY):
        return format(value, "f").replace(".", decimal_mark)
    if kind is Kind.DATETIME and isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    if kind is Kind.DATE and isinstance(value, date):
        return value.isoformat()
    if kind is Kind.FLAG:
        return "yes" if value else ""
    return str(value)


def heading(column: Column) -> str:
    """A column's heading in a file: its label, with the unit a reader needs (UTC, %)."""
    if column.kind is Kind.DATETIME:
        return f"{column.label} (UTC)"
    if column.kind is Kind.PERCENT and "%" not in column.label:
        return f"{column.label} (%)"
    return column.label


def share(part: Decimal | None, whole: Decimal | None) -> Decimal | None:
    """`part` as a share of `whole`; None when there is no whole to compare with."""
    if part is None or whole is None or whole == 0:
        return None
    return Decimal(part) / Decimal(whole)


def specs_by_name(specs: Sequence[TableSpec]) -> dict[str, TableSpec]:
    found: dict[str, TableSpec] = {}
    for spec in specs:
        if spec.name in found:
            raise ValueError(f"two tables are named {spec.name}")
        found[spec.name] = spec
    return found

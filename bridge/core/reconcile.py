"""Reconciliation: per licence line, what was authorised, what was written off, what remains.

Pure: rows come from the ledger (bridge.adapters.store.reconciliation) and are rendered here as a
table, CSV or JSON. A line is over-used when what was written off exceeds what was authorised
(possible after an authority lowers a ceiling below what is already used, or by manual correction);
general authorisations have no ceiling and are never over-used. An open licence (no goods lines)
is reconciled as its line 0, the licence as a whole; a line a later version dropped keeps its
row (`dropped_in_version`, nothing authorised); contingency write-offs are counted per line
(docs/contingency.md)."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Sequence
from decimal import Decimal
from typing import Any, NamedTuple

FORMATS = ("table", "csv", "json")


class ReconciliationRow(NamedTuple):
    """One line's reconciliation. A named tuple, not a dataclass: the ledger builds one per
    licence line (a million for a big ledger), and a tuple costs a fifth of a frozen
    dataclass to make; fields, defaults, immutability and the derived amounts are the same."""

    licence_number: str
    line_number: int
    licence_type: str
    status: str
    control_list_entry: str
    unit: str | None
    authorised_quantity: Decimal | None
    written_off_quantity: Decimal
    currency: str | None
    authorised_value: Decimal | None
    written_off_value: Decimal
    movements: int
    certificate: str = "none"  # delivery of the current version to customs
    # Contingency write-offs on the line (docs/contingency.md): how many movements, and what
    # they wrote off (already in the written-off totals).
    contingency_movements: int = 0
    contingency_quantity: Decimal = Decimal(0)
    contingency_value: Decimal = Decimal(0)
    # The version that dropped this line (None: the current version has it). A dropped line
    # keeps what was written off on it and authorises nothing more.
    dropped_in_version: int | None = None

    @property
    def remaining_quantity(self) -> Decimal | None:
        if self.authorised_quantity is None:
            return None
        return self.authorised_quantity - self.written_off_quantity

    @property
    def remaining_value(self) -> Decimal | None:
        if self.authorised_value is None:
            return None
        return self.authorised_value - self.written_off_value

    @property
    def over_used(self) -> bool:
        return any(r is not None and r < 0 for r in (self.remaining_quantity, self.remaining_value))


COLUMNS = (
    "licence_number",
    "line_number",
    "licence_type",
    "status",
    "control_list_entry",
    "unit",
    "authorised_quantity",
    "written_off_quantity",
    "remaining_quantity",
    "currency",
    "authorised_value",
    "written_off_value",
    "remaining_value",
    "movements",
    "certificate",
    "over_used",
    "contingency_movements",
    "contingency_quantity",
    "contingency_value",
    "dropped_in_version",
)


MONEY = frozenset({"authorised_value", "written_off_value", "remaining_value", "contingency_value"})
CENT = Decimal("0.01")


def _field(row: ReconciliationRow, column: str) -> Any:
    """A column's value; amounts with their two decimals (n..16,2), as customs write them."""
    value = getattr(row, column)
    if column in MONEY and value is not None:
        return value.quantize(CENT)
    return value


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else ""
    if isinstance(value, Decimal):
        return f"{value:f}"
    return str(value)


def as_records(rows: Iterable[ReconciliationRow]) -> list[dict[str, Any]]:
    """Rows as JSON-ready dicts; Decimals as exact strings."""
    records = []
    for row in rows:
        record = {}
        for column in COLUMNS:
            value = _field(row, column)
            record[column] = f"{value:f}" if isinstance(value, Decimal) else value
        records.append(record)
    return records


def summary(rows: Sequence[ReconciliationRow]) -> dict[str, Any]:
    return {
        "lines": len(rows),
        "licences": len({row.licence_number for row in rows}),
        "lines_with_write_offs": sum(1 for row in rows if row.movements),
        "over_used_lines": [
            f"{row.licence_number}/{row.line_number}" for row in rows if row.over_used
        ],
        "contingency_lines": [
            f"{row.licence_number}/{row.line_number}" for row in rows if row.contingency_movements
        ],
        "dropped_lines": [
            f"{row.licence_number}/{row.line_number}"
            for row in rows
            if row.dropped_in_version is not None
        ],
    }


def render(rows: Sequence[ReconciliationRow], fmt: str = "table") -> str:
    if fmt == "json":
        return json.dumps({"summary": summary(rows), "lines": as_records(rows)}, indent=2) + "\n"
    if fmt == "csv":
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(COLUMNS)
        for row in rows:
            writer.writerow([_cell(_field(row, column)) for column in COLUMNS])
        return out.getvalue()
    if fmt == "table":
        return _table(rows)
    raise ValueError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")


_TABLE = (
    ("licence", "licence_number"),
    ("line", "line_number"),
    ("type", "licence_type"),
    ("status", "status"),
    ("CLE", "control_list_entry"),
    ("unit", "unit"),
    ("authorised", "authorised_quantity"),
    ("written off", "written_off_quantity"),
    ("remaining", "remaining_quantity"),
    ("cur", "currency"),
    ("auth. value", "authorised_value"),
    ("value used", "written_off_value"),
    ("value left", "remaining_value"),
    ("moves", "movements"),
    ("customs", "certificate"),
    ("over-use", "over_used"),
    ("contingency", "contingency_movements"),
    ("dropped in", "dropped_in_version"),
)


def _also(totals: dict[str, Any], key: str, what: str) -> str:
    found = totals[key]
    return f"; {len(found)} {what}: {', '.join(found)}" if found else ""


def _table(rows: Sequence[ReconciliationRow]) -> str:
    cells = [[heading for heading, _ in _TABLE]]
    cells += [[_cell(_field(row, attr)) for _, attr in _TABLE] for row in rows]
    widths = [max(len(line[i]) for line in cells) for i in range(len(_TABLE))]
    numeric = {
        "line",
        "authorised",
        "written off",
        "remaining",
        "auth. value",
        "value used",
        "value left",
        "moves",
        "contingency",
        "dropped in",
    }
    out = []
    for index, line in enumerate(cells):
        parts = [
            cell.rjust(width) if _TABLE[i][0] in numeric and index else cell.ljust(width)
            for i, (cell, width) in enumerate(zip(line, widths, strict=True))
        ]
        out.append("  ".join(parts).rstrip())
        if index == 0:
            out.append("  ".join("-" * width for width in widths))
    totals = summary(rows)
    out.append("")
    out.append(
        f"{totals['licences']} licences, {totals['lines']} lines,"
        f" {totals['lines_with_write_offs']} with write-offs,"
        f" {len(totals['over_used_lines'])} over-used"
        + (f": {', '.join(totals['over_used_lines'])}" if totals["over_used_lines"] else "")
        + _also(totals, "contingency_lines", "with contingency write-offs")
        + _also(totals, "dropped_lines", "dropped by a later version")
    )
    return "\n".join(out) + "\n"

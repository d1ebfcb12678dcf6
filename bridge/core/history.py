"""What an authority reads about a licence: its movements in time order with the running
balance, the write-offs customs were refused, and the alerts the bridge raised.

Pure: the movements come from the ledger (bridge.adapters.store.history, as
bridge.core.movements.RecordedMovement) and are balanced and rendered here as a table, CSV or
JSON, in the style of bridge.core.reconcile. The running balance uses the current version's
ceilings, so its last row per line equals the line's reconciliation row."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from bridge.core.model import LicenceLine
from bridge.core.movements import RecordedMovement
from bridge.core.reconcile import CENT, FORMATS
from bridge.core.units import plain


@dataclass(frozen=True, slots=True)
class HistoryRow:
    """A movement with its line's totals right after it."""

    movement: RecordedMovement
    unit: str | None  # the line's unit: what `movement.quantity` is counted in
    currency: str | None
    used_quantity: Decimal  # written off on the line so far, this movement included
    used_value: Decimal
    remaining_quantity: Decimal | None  # None: the line has no quantity ceiling
    remaining_value: Decimal | None


def running_balances(
    movements: Iterable[RecordedMovement], lines: Mapping[int, LicenceLine]
) -> list[HistoryRow]:
    """Each movement (in the order given: the ledger's time order) with the running totals of
    its line. `lines` are the current version's, with any line a later version dropped as its
    last version had it; a line missing from `lines` has no ceiling."""
    used: dict[int, tuple[Decimal, Decimal]] = {}
    rows = []
    for m in movements:
        before_q, before_v = used.get(m.line_number, (Decimal(0), Decimal(0)))
        after_q, after_v = before_q + m.quantity, before_v + m.value
        used[m.line_number] = (after_q, after_v)
        line = lines.get(m.line_number)
        ceiling_q = line.quantity if line else None
        ceiling_v = line.value if line else None
        rows.append(
            HistoryRow(
                movement=m,
                unit=line.unit if line else None,
                currency=line.currency if line else None,
                used_quantity=after_q,
                used_value=after_v,
                remaining_quantity=None if ceiling_q is None else ceiling_q - after_q,
                remaining_value=None if ceiling_v is None else ceiling_v - after_v,
            )
        )
    return rows


# (heading, key, right-aligned) for each view; the key names the record field.
Column = tuple[str, str, bool]

HISTORY_COLUMNS: tuple[Column, ...] = (
    ("at", "at", False),
    ("id", "id", True),
    ("line", "line_number", True),
    ("kind", "kind", False),
    ("contingency", "contingency", False),
    ("undoes", "reverses", True),
    ("MRN", "mrn", False),
    ("item", "goods_item", True),
    ("document", "document", False),
    ("quantity", "quantity", True),
    ("unit", "unit", False),
    ("declared", "declared_quantity", True),
    ("decl. unit", "declared_unit", False),
    ("value", "value", True),
    ("cur", "currency", False),
    ("who", "actor", False),
    ("event/reason", "reason", False),
    ("used", "used_quantity", True),
    ("remaining", "remaining_quantity", True),
    ("value used", "used_value", True),
    ("value left", "remaining_value", True),
)

REFUSAL_COLUMNS: tuple[Column, ...] = (
    ("at", "at", False),
    ("MRN", "mrn", False),
    ("item", "goods_item", True),
    ("document", "document", False),
    ("licence", "licence_number", False),
    ("line", "line_number", True),
    ("code", "code", False),
    ("reason", "reason", False),
)

ALERT_COLUMNS: tuple[Column, ...] = (
    ("at", "at", False),
    ("kind", "kind", False),
    ("licence", "licence_number", False),
    ("line", "line_number", True),
    ("MRN", "mrn", False),
    ("message", "message", False),
    ("details", "details", False),
)

_MONEY = frozenset({"value", "used_value", "remaining_value"})
_QUANTITIES = ("quantity", "declared_quantity", "used_quantity", "remaining_quantity")


def _document(code: str | None, reference: str | None) -> str | None:
    text = " ".join(part for part in (code, reference) if part)
    return text or None


def history_record(row: HistoryRow) -> dict[str, Any]:
    """One history row as a flat record (Decimals exact, amounts with two decimals)."""
    m = row.movement
    record = {
        "at": m.at,
        "id": m.id,
        "licence_number": m.licence_number,
        "line_number": m.line_number,
        "kind": m.kind,
        "mrn": m.mrn,
        "goods_item": m.goods_item,
        "document": _document(m.document_code, m.document_ref),
        "quantity": m.quantity,
        "unit": row.unit,
        "declared_quantity": m.declared_quantity,
        "declared_unit": m.declared_unit,
        "value": m.value,
        "currency": row.currency,
        "actor": m.actor,
        "reason": m.reason,
        "reverses": m.reverses,
        "contingency": m.contingency,
        "used_quantity": row.used_quantity,
        "remaining_quantity": row.remaining_quantity,
        "used_value": row.used_value,
        "remaining_value": row.remaining_value,
    }
    for key in _QUANTITIES:
        if record[key] is not None:
            record[key] = plain(record[key])
    for key in _MONEY:
        if record[key] is not None:
            record[key] = record[key].quantize(CENT)
    return record


def refusal_record(refusal: Mapping[str, Any]) -> dict[str, Any]:
    """A refusal as the ledger lists it (bridge.adapters.store.reconciliation.refusals),
    flattened."""
    record = dict(refusal)
    record["document"] = _document(refusal.get("document_code"), refusal.get("document_ref"))
    return record


def alert_record(alert: Mapping[str, Any]) -> dict[str, Any]:
    """An alert as the ledger lists it (bridge.adapters.store.alerts.list_alerts)."""
    return dict(alert)


def _json_value(value: Any) -> Any:
    if isinstance(value, Decimal):
        return f"{value:f}"
    if isinstance(value, datetime):
        return value.isoformat()
    return value


def _csv_value(value: Any) -> str:
    return value.isoformat() if isinstance(value, datetime) else _cell(value)


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else ""
    if isinstance(value, Decimal):
        return f"{value:f}"
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, dict):
        return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
    return str(value)


def _render(
    records: Sequence[Mapping[str, Any]],
    columns: Sequence[Column],
    fmt: str,
    *,
    name: str,
    header: Mapping[str, Any],
    footer: str,
) -> str:
    if fmt == "json":
        body = {key: _json_value(value) for key, value in header.items()}
        body[name] = [
            {key: _json_value(value) for key, value in record.items()} for record in records
        ]
        return json.dumps(body, indent=2, default=str) + "\n"
    if fmt == "csv":
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow([key for _, key, _ in columns])
        for record in records:
            writer.writerow([_csv_value(record.get(key)) for _, key, _ in columns])
        return out.getvalue()
    if fmt == "table":
        return _table(records, columns) + "\n" + footer + "\n"
    raise ValueError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")


def _table(records: Sequence[Mapping[str, Any]], columns: Sequence[Column]) -> str:
    cells = [[heading for heading, _, _ in columns]]
    cells += [[_cell(record.get(key)) for _, key, _ in columns] for record in records]
    widths = [max(len(line[i]) for line in cells) for i in range(len(columns))]
    out = []
    for index, line in enumerate(cells):
        parts = [
            cell.rjust(width) if columns[i][2] and index else cell.ljust(width)
            for i, (cell, width) in enumerate(zip(line, widths, strict=True))
        ]
        out.append("  ".join(parts).rstrip())
        if index == 0:
            out.append("  ".join("-" * width for width in widths))
    return "\n".join(out) + "\n"


def render_history(licence_number: str, rows: Sequence[HistoryRow], fmt: str = "table") -> str:
    """One licence's movements in time order with the running balance of their line."""
    records = [history_record(row) for row in rows]
    lines = sorted({row.movement.line_number for row in rows})
    contingent = sum(1 for row in rows if row.movement.contingency)
    return _render(
        records,
        HISTORY_COLUMNS,
        fmt,
        name="movements",
        header={"licence_number": licence_number},
        footer=f"licence {licence_number}: {len(rows)} movements on {len(lines)} line(s)"
        + (f", {contingent} contingency write-off(s)" if contingent else ""),
    )


def render_refusals(
    refusals: Sequence[Mapping[str, Any]], fmt: str = "table", licence_number: str | None = None
) -> str:
    """Refused write-offs with their code and reason."""
    records = [refusal_record(r) for r in refusals]
    return _render(
        records,
        REFUSAL_COLUMNS,
        fmt,
        name="refusals",
        header={"licence_number": licence_number},
        footer=_count(records, "refusal", licence_number, key="code"),
    )


def render_alerts(
    alerts: Sequence[Mapping[str, Any]], fmt: str = "table", licence_number: str | None = None
) -> str:
    """Alerts for the authority, with their details."""
    records = [alert_record(a) for a in alerts]
    return _render(
        records,
        ALERT_COLUMNS,
        fmt,
        name="alerts",
        header={"licence_number": licence_number},
        footer=_count(records, "alert", licence_number, key="kind"),
    )


def _count(
    records: Sequence[Mapping[str, Any]], what: str, licence_number: str | None, *, key: str
) -> str:
    by: dict[str, int] = {}
    for record in records:
        by[str(record.get(key))] = by.get(str(record.get(key)), 0) + 1
    scope = f" for licence {licence_number}" if licence_number else ""
    kinds = ", ".join(f"{name} {count}" for name, count in sorted(by.items()))
    return f"{len(records)} {what}(s){scope}" + (f": {kinds}" if kinds else "")


__all__: list[str] = [
    "HistoryRow",
    "render_alerts",
    "render_history",
    "render_refusals",
    "running_balances",
]

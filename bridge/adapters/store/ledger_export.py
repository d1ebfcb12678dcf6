"""The ledger's rows as the reconciliation workbook and the reports show them: licence headers,
movements (with their line's unit and currency), refusals and alerts, each optionally of a time
range. Read only; times in UTC."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Select, select

from bridge.adapters.store.schema import alert, licence, licence_line, movement, refusal


def _utc(record: dict[str, Any]) -> dict[str, Any]:
    for name, value in record.items():
        if isinstance(value, datetime) and value.tzinfo is None:  # SQLite hands back naive ones
            record[name] = value.replace(tzinfo=UTC)
    return record


def _between(query: Select, column, since: datetime | None, until: datetime | None) -> Select:
    if since is not None:
        query = query.where(column >= since)
    if until is not None:
        query = query.where(column < until)
    return query


def licence_headers(conn: Connection) -> list[dict[str, Any]]:
    """Every licence's header (current version), in number order."""
    query = select(licence, licence.c.current_version.label("version")).order_by(licence.c.number)
    return [_utc(dict(row)) for row in conn.execute(query).mappings()]


def movement_rows(
    conn: Connection, *, since: datetime | None = None, until: datetime | None = None
) -> list[dict[str, Any]]:
    """Movements recorded in the range (all without one), in id order, with the unit and
    currency of their line (none for a line the current version dropped)."""
    query = select(movement, licence_line.c.unit, licence_line.c.currency).outerjoin(
        licence_line,
        (licence_line.c.number == movement.c.licence_number)
        & (licence_line.c.line_number == movement.c.line_number),
    )
    query = _between(query, movement.c.at, since, until).order_by(movement.c.id)
    return [_utc(dict(row)) for row in conn.execute(query).mappings()]


def refusal_rows(
    conn: Connection, *, since: datetime | None = None, until: datetime | None = None
) -> list[dict[str, Any]]:
    """Refused write-offs recorded in the range, oldest first."""
    query = _between(select(refusal), refusal.c.at, since, until).order_by(refusal.c.id)
    return [_utc(dict(row)) for row in conn.execute(query).mappings()]


def alert_rows(
    conn: Connection, *, since: datetime | None = None, until: datetime | None = None
) -> list[dict[str, Any]]:
    """Alerts raised in the range, oldest first (details left out: the message says it)."""
    columns = [c for c in alert.c if c.name != "details"]
    query = _between(select(*columns), alert.c.at, since, until).order_by(alert.c.id)
    return [_utc(dict(row)) for row in conn.execute(query).mappings()]

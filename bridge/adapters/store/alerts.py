"""Alerts for the licensing authority: things the bridge saw that a person must look at. An
alert is open until an officer acknowledges it (who and when are kept with it)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, func, insert, select, update

from bridge.adapters.store.schema import alert

OPEN = "open"
ACKNOWLEDGED = "acknowledged"
STATES = (OPEN, ACKNOWLEDGED)


def _record(row: Any) -> dict[str, Any]:
    """A row as a dict: details decoded, times in UTC (SQLite hands back naive ones)."""
    record = dict(row._mapping)
    record["details"] = json.loads(record["details"] or "{}")
    for name in ("at", "acknowledged_at"):
        at = record.get(name)
        if at is not None:
            record[name] = at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)
    return record


def raise_alert(
    conn: Connection,
    kind: str,
    message: str,
    *,
    now: datetime,
    licence_number: str | None = None,
    line_number: int | None = None,
    mrn: str | None = None,
    details: dict[str, Any] | None = None,
) -> None:
    """Record an alert (e.g. kind `over-use`, `ceiling-below-usage`, `exhausted`)."""
    conn.execute(
        insert(alert).values(
            kind=kind,
            message=message,
            licence_number=licence_number,
            line_number=line_number,
            mrn=mrn,
            details=json.dumps(details or {}, sort_keys=True, default=str),
            at=now,
        )
    )


def list_alerts(
    conn: Connection,
    *,
    licence_number: str | None = None,
    kind: str | None = None,
    state: str | None = None,
    limit: int | None = None,
) -> list[dict[str, Any]]:
    """Alerts, newest first, with details decoded and times in UTC; only those in `state`
    when given."""
    query = select(alert).order_by(alert.c.at.desc(), alert.c.id.desc())
    if licence_number is not None:
        query = query.where(alert.c.licence_number == licence_number)
    if kind is not None:
        query = query.where(alert.c.kind == kind)
    if state is not None:
        query = query.where(alert.c.state == state)
    if limit is not None:
        query = query.limit(limit)
    return [_record(row) for row in conn.execute(query)]


def alerts_by_id(conn: Connection, ids: list[int]) -> dict[int, dict[str, Any]]:
    """The alerts with these ids (those that exist), details decoded."""
    if not ids:
        return {}
    rows = conn.execute(select(alert).where(alert.c.id.in_(ids)))
    return {record["id"]: record for record in map(_record, rows)}


def acknowledge_alerts(conn: Connection, ids: list[int], *, actor: str, now: datetime) -> list[int]:
    """Mark the open alerts among `ids` acknowledged by `actor` at `now`; returns the ids it
    changed (an alert already acknowledged keeps who did it first)."""
    if not ids:
        return []
    changed = conn.execute(
        update(alert)
        .where(alert.c.id.in_(ids), alert.c.state == OPEN)
        .values(state=ACKNOWLEDGED, acknowledged_by=actor, acknowledged_at=now)
        .returning(alert.c.id)
    )
    return sorted(row[0] for row in changed)


def count_alerts(conn: Connection, *, state: str | None = None) -> dict[str, int]:
    """How many alerts per kind (all, or those in `state`)."""
    query = select(alert.c.kind, func.count()).group_by(alert.c.kind)
    if state is not None:
        query = query.where(alert.c.state == state)
    return {kind: count for kind, count in conn.execute(query)}

"""Alerts for the licensing authority: things the bridge saw that a person must look at."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, insert, select

from bridge.adapters.store.schema import alert


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
    conn: Connection, *, licence_number: str | None = None, kind: str | None = None
) -> list[dict[str, Any]]:
    """Alerts, newest first, with details decoded."""
    query = select(alert).order_by(alert.c.at.desc(), alert.c.id.desc())
    if licence_number is not None:
        query = query.where(alert.c.licence_number == licence_number)
    if kind is not None:
        query = query.where(alert.c.kind == kind)
    rows = []
    for row in conn.execute(query):
        record = dict(row._mapping)
        record["details"] = json.loads(record["details"] or "{}")
        rows.append(record)
    return rows

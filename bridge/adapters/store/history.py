"""The ledger queries behind an authority's views: one licence's movements in time order, one
movement and its reversal, a line's totals; refusals and alerts come from their own queries
(bridge.adapters.store.reconciliation, bridge.adapters.store.alerts) with times in UTC. Rows
only: the running balance and the rendering are bridge.core.history's."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, select

from bridge.adapters.store.alerts import list_alerts
from bridge.adapters.store.reconciliation import refusals
from bridge.adapters.store.schema import line_total, movement
from bridge.core.movements import RecordedMovement, reversal_mark


def _utc(at: datetime) -> datetime:
    # SQLite hands back naive datetimes; the ledger writes UTC only.
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)


def _recorded(row: Any) -> RecordedMovement:
    return RecordedMovement(
        id=row.id,
        licence_number=row.licence_number,
        line_number=row.line_number,
        kind=row.kind,
        quantity=row.quantity,
        value=row.value,
        declared_quantity=row.declared_quantity,
        declared_unit=row.declared_unit,
        mrn=row.mrn,
        goods_item=row.goods_item,
        document_code=row.document_code,
        document_ref=row.document_ref,
        message_id=row.message_id,
        actor=row.actor,
        reason=row.reason,
        at=_utc(row.at),
        contingency=bool(row.contingency),
    )


def movements_of(conn: Connection, licence_number: str) -> list[RecordedMovement]:
    """Every movement on the licence's lines, oldest first (ties in the order written)."""
    query = (
        select(movement)
        .where(movement.c.licence_number == licence_number)
        .order_by(movement.c.at, movement.c.id)
    )
    return [_recorded(row) for row in conn.execute(query)]


def movement_by_id(conn: Connection, movement_id: int) -> RecordedMovement | None:
    row = conn.execute(select(movement).where(movement.c.id == movement_id)).first()
    return None if row is None else _recorded(row)


def reversal_of(conn: Connection, movement_id: int) -> RecordedMovement | None:
    """The manual reversal recorded for this movement, if there is one."""
    row = conn.execute(
        select(movement)
        .where(movement.c.message_id == reversal_mark(movement_id))
        .order_by(movement.c.id)
    ).first()
    return None if row is None else _recorded(row)


def line_written_off(
    conn: Connection, licence_number: str, line_number: int
) -> tuple[Decimal, Decimal]:
    """(quantity, value) written off on one line so far: the sum of its movements, as the
    database keeps it (line_total)."""
    row = conn.execute(
        select(line_total.c.quantity, line_total.c.value).where(
            line_total.c.licence_number == licence_number,
            line_total.c.line_number == line_number,
        )
    ).first()
    return (row[0], row[1]) if row is not None else (Decimal(0), Decimal(0))


def refusals_for(conn: Connection, licence_number: str | None = None) -> list[dict[str, Any]]:
    """Refused write-offs, newest first (bridge.adapters.store.reconciliation.refusals), times in
    UTC."""
    return [{**r, "at": _utc(r["at"])} for r in refusals(conn, licence_number)]


def alerts_for(conn: Connection, licence_number: str | None = None) -> list[dict[str, Any]]:
    """Alerts, newest first (bridge.adapters.store.alerts.list_alerts), times in UTC."""
    return [{**a, "at": _utc(a["at"])} for a in list_alerts(conn, licence_number=licence_number)]

"""The ledger query behind reconciliation: one grouped pass over movements per licence line."""

from __future__ import annotations

from decimal import Decimal

from sqlalchemy import Connection, func, select

from bridge.adapters.store.schema import (
    licence,
    licence_line,
    line_total,
    outbox,
    processed_message,
    refusal,
)
from bridge.core.reconcile import ReconciliationRow


def reconciliation_rows(
    conn: Connection, licence_number: str | None = None
) -> list[ReconciliationRow]:
    """Every current licence line with its authorised and written-off totals, in licence and
    line order; totals are sums of movements, which the database keeps per line in the
    transaction of each movement (line_total, bridge.adapters.store.line_totals), so the audit trail
    and the balance cannot drift and a line costs one row whatever its history.
    `certificate` tells whether customs have the licence's current version (delivered), are
    still to get it (pending), refused it (failed), or it was never certified (none)."""
    totals = line_total
    query = (
        select(
            licence_line.c.number,
            licence_line.c.line_number,
            licence.c.type,
            licence.c.status,
            licence_line.c.control_list_entry,
            licence_line.c.unit,
            licence_line.c.quantity,
            totals.c.quantity,
            licence_line.c.currency,
            licence_line.c.value,
            totals.c.value,
            totals.c.movements,
            outbox.c.status,
        )
        .join(licence, licence.c.number == licence_line.c.number)
        .outerjoin(
            outbox,
            (outbox.c.licence_number == licence.c.number)
            & (outbox.c.licence_version == licence.c.current_version)
            & (outbox.c.kind == "certificate"),
        )
        .outerjoin(
            totals,
            (totals.c.licence_number == licence_line.c.number)
            & (totals.c.line_number == licence_line.c.line_number),
        )
        .order_by(licence_line.c.number, licence_line.c.line_number)
    )
    if licence_number is not None:
        query = query.where(licence_line.c.number == licence_number)
    rows = []
    for r in conn.execute(query):
        rows.append(
            ReconciliationRow(
                licence_number=r[0],
                line_number=r[1],
                licence_type=r[2],
                status=r[3],
                control_list_entry=r[4],
                unit=r[5],
                authorised_quantity=r[6],
                written_off_quantity=r[7] if r[7] is not None else Decimal(0),
                currency=r[8],
                authorised_value=r[9],
                written_off_value=r[10] if r[10] is not None else Decimal(0),
                movements=r[11] or 0,
                certificate=r[12] or "none",
            )
        )
    return rows


def declaration_outcomes(conn: Connection) -> list[tuple[str | None, str | None, str, int]]:
    """(MRN, event, outcome, messages) for every declaration event processed, in MRN order."""
    query = (
        select(
            processed_message.c.mrn,
            processed_message.c.event,
            processed_message.c.outcome,
            func.count(),
        )
        .group_by(processed_message.c.mrn, processed_message.c.event, processed_message.c.outcome)
        .order_by(processed_message.c.mrn, processed_message.c.event)
    )
    return [tuple(row) for row in conn.execute(query)]


def refusals(conn: Connection, licence_number: str | None = None) -> list[dict]:
    """Refused write-offs, newest first, with their code and reason."""
    query = select(refusal).order_by(refusal.c.at.desc(), refusal.c.id.desc())
    if licence_number is not None:
        query = query.where(refusal.c.licence_number == licence_number)
    return [dict(row._mapping) for row in conn.execute(query)]

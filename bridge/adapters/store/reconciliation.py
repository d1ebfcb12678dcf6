"""The ledger query behind reconciliation: one grouped pass over movements per licence line."""

from __future__ import annotations

from decimal import Decimal

from sqlalchemy import Connection, func, select

from bridge.adapters.store.licences import last_versions_of_lines
from bridge.adapters.store.schema import (
    licence,
    licence_line,
    line_total,
    movement,
    outbox,
    processed_message,
    refusal,
)
from bridge.core.reconcile import ReconciliationRow

# The outbox row of a licence's current certificate: whether customs have the version in force.
_CURRENT_CERTIFICATE = (
    (outbox.c.licence_number == licence.c.number)
    & (outbox.c.licence_version == licence.c.current_version)
    & (outbox.c.kind == "certificate")
)


def reconciliation_rows(
    conn: Connection, licence_number: str | None = None
) -> list[ReconciliationRow]:
    """Every current licence line (an open licence's line 0: the licence as a whole), and every
    line a later version dropped that has movements (`dropped_in_version`), with its authorised
    and written-off totals and its contingency write-offs, in licence and line order. Totals
    are sums of movements, which the database keeps per line in the transaction of each
    movement (line_total, bridge.adapters.store.line_totals), so the audit trail and the
    balance cannot drift and a line costs one row whatever its history.
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
        .outerjoin(outbox, _CURRENT_CERTIFICATE)
        .outerjoin(
            totals,
            (totals.c.licence_number == licence_line.c.number)
            & (totals.c.line_number == licence_line.c.line_number),
        )
        .order_by(licence_line.c.number, licence_line.c.line_number)
    )
    if licence_number is not None:
        query = query.where(licence_line.c.number == licence_number)
    contingent = _contingency_totals(conn, licence_number)
    rows = []
    for r in conn.execute(query):
        extra = contingent.get((r[0], r[1]))
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
                **_contingency_fields(extra),
            )
        )
    rows += _dropped_line_rows(conn, licence_number, contingent)
    rows.sort(key=lambda row: (row.licence_number, row.line_number))
    return rows


def _contingency_fields(extra: tuple[int, Decimal, Decimal] | None) -> dict:
    if extra is None:
        return {}
    count, quantity, value = extra
    return {
        "contingency_movements": count,
        "contingency_quantity": quantity,
        "contingency_value": value,
    }


def _contingency_totals(
    conn: Connection, licence_number: str | None
) -> dict[tuple[str, int], tuple[int, Decimal, Decimal]]:
    """(count, quantity, value) of the contingency movements per line (few: read through
    ix_movement_contingency)."""
    query = (
        select(
            movement.c.licence_number,
            movement.c.line_number,
            func.count(),
            func.sum(movement.c.quantity),
            func.sum(movement.c.value),
        )
        .where(movement.c.contingency == 1)
        .group_by(movement.c.licence_number, movement.c.line_number)
    )
    if licence_number is not None:
        query = query.where(movement.c.licence_number == licence_number)
    # The sums keep the columns' type (Micro): they come back as Decimals.
    return {
        (number, line): (count, quantity, value)
        for number, line, count, quantity, value in conn.execute(query)
    }


def _dropped_line_rows(
    conn: Connection,
    licence_number: str | None,
    contingent: dict[tuple[str, int], tuple[int, Decimal, Decimal]],
) -> list[ReconciliationRow]:
    """Lines with movements that the licence's current version no longer has: what was written
    off on them stays visible, they authorise nothing more (no ceiling, nothing remaining), and
    they carry the control list entry, unit and currency of the last version that had them."""
    totals = line_total
    query = (
        select(
            totals.c.licence_number,
            totals.c.line_number,
            licence.c.type,
            licence.c.status,
            licence.c.current_version,
            totals.c.quantity,
            totals.c.value,
            totals.c.movements,
            outbox.c.status,
        )
        .join(licence, licence.c.number == totals.c.licence_number)
        .outerjoin(outbox, _CURRENT_CERTIFICATE)
        .outerjoin(
            licence_line,
            (licence_line.c.number == totals.c.licence_number)
            & (licence_line.c.line_number == totals.c.line_number),
        )
        .where(licence_line.c.number.is_(None))
    )
    if licence_number is not None:
        query = query.where(totals.c.licence_number == licence_number)
    found = conn.execute(query).all()
    if not found:
        return []
    last_seen = last_versions_of_lines(conn, {(r[0], r[1]) for r in found})
    rows = []
    for number, line_number, kind, status, current, quantity, value, count, sent in found:
        dropped_in, line = last_seen.get((number, line_number), (current, None))
        rows.append(
            ReconciliationRow(
                licence_number=number,
                line_number=line_number,
                licence_type=kind,
                status=status,
                control_list_entry=line.control_list_entry if line else "",
                unit=line.unit if line else None,
                authorised_quantity=None,
                written_off_quantity=quantity,
                currency=line.currency if line else None,
                authorised_value=None,
                written_off_value=value,
                movements=count,
                certificate=sent or "none",
                dropped_in_version=dropped_in,
                **_contingency_fields(contingent.get((number, line_number))),
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

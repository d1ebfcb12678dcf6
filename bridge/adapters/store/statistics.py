"""The ledger's facts behind the statistics (bridge.core.statistics counts them): licences and
their lines, movements of a range, what every line had used before a time, the declarations'
destinations, refusals and alerts. Read only."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, date, datetime
from decimal import Decimal

from sqlalchemy import Connection, func, select

from bridge.adapters.store.licences import last_versions_of_lines
from bridge.adapters.store.schema import (
    alert,
    declaration,
    licence,
    licence_line,
    movement,
    refusal,
)
from bridge.core.statistics import Event, LineFacts, MovementFact

_CHUNK = 500  # keys per IN list


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def licence_dates(conn: Connection) -> dict[str, tuple[str, date]]:
    """(type, valid from) of every licence the ledger knows."""
    query = select(licence.c.number, licence.c.type, licence.c.valid_from)
    return {number: (kind, valid_from) for number, kind, valid_from in conn.execute(query)}


def current_lines(conn: Connection) -> dict[tuple[str, int], LineFacts]:
    """Every line of every licence's current version (an open licence's line 0)."""
    query = select(
        licence_line.c.number,
        licence_line.c.line_number,
        licence.c.type,
        licence.c.valid_from,
        licence_line.c.control_list_entry,
        licence_line.c.unit,
        licence_line.c.quantity,
        licence_line.c.currency,
        licence_line.c.value,
        licence_line.c.destinations,
    ).join(licence, licence.c.number == licence_line.c.number)
    return {
        (r.number, r.line_number): LineFacts(
            licence_number=r.number,
            line_number=r.line_number,
            licence_type=r.type,
            valid_from=r.valid_from,
            control_list_entry=r.control_list_entry,
            unit=r.unit,
            quantity=r.quantity,
            currency=r.currency,
            value=r.value,
            destinations=tuple((r.destinations or "").split()),
        )
        for r in conn.execute(query)
    }


def dropped_lines(
    conn: Connection, keys: Iterable[tuple[str, int]]
) -> dict[tuple[str, int], LineFacts]:
    """Lines of `keys` that the licence's current version no longer has, as the last version
    having them said (unit, currency, entry), with no ceiling left."""
    wanted = set(keys)
    if not wanted:
        return {}
    dates = {
        number: (kind, valid_from)
        for number, kind, valid_from in conn.execute(
            select(licence.c.number, licence.c.type, licence.c.valid_from).where(
                licence.c.number.in_(sorted({number for number, _ in wanted}))
            )
        )
    }
    found = {}
    for key, (_, line) in last_versions_of_lines(conn, wanted).items():
        kind, valid_from = dates[key[0]]
        found[key] = LineFacts(
            licence_number=key[0],
            line_number=key[1],
            licence_type=kind,
            valid_from=valid_from,
            control_list_entry=line.control_list_entry,
            unit=line.unit,
            quantity=None,
            currency=line.currency,
            value=None,
            destinations=line.destinations,
            current=False,
        )
    return found


def movements_between(conn: Connection, start: datetime, end: datetime) -> list[MovementFact]:
    """Every movement recorded from `start` (inclusive) to `end` (exclusive), in id order."""
    query = (
        select(
            movement.c.at,
            movement.c.licence_number,
            movement.c.line_number,
            movement.c.kind,
            movement.c.quantity,
            movement.c.value,
            movement.c.mrn,
            movement.c.goods_item,
        )
        .where(movement.c.at >= start, movement.c.at < end)
        .order_by(movement.c.id)
    )
    return [
        MovementFact(
            _utc(r.at),
            r.licence_number,
            r.line_number,
            r.kind,
            r.quantity,
            r.value,
            r.mrn,
            r.goods_item,
        )
        for r in conn.execute(query)
    ]


def used_before(conn: Connection, end: datetime) -> dict[tuple[str, int], tuple[Decimal, Decimal]]:
    """Per line, the sums of its movements (quantity, value) recorded before `end`."""
    query = (
        select(
            movement.c.licence_number,
            movement.c.line_number,
            func.sum(movement.c.quantity),
            func.sum(movement.c.value),
        )
        .where(movement.c.at < end)
        .group_by(movement.c.licence_number, movement.c.line_number)
    )
    # The sums keep the columns' type (Micro): they come back as Decimals.
    return {
        (number, line): (quantity or Decimal(0), value or Decimal(0))
        for number, line, quantity, value in conn.execute(query)
    }


def acted_on_documents(conn: Connection, mrns: Iterable[str]) -> dict[str, str]:
    """Per MRN, the declaration the bridge acts on as stored (JSON, bridge.core.acted_on);
    MRNs without one (never released, or released before it was kept) are left out."""
    wanted = sorted({mrn for mrn in mrns if mrn})
    found: dict[str, str] = {}
    for at in range(0, len(wanted), _CHUNK):
        chunk = wanted[at : at + _CHUNK]
        query = select(declaration.c.mrn, declaration.c.acted_on).where(
            declaration.c.mrn.in_(chunk), declaration.c.acted_on.is_not(None)
        )
        found.update({mrn: text for mrn, text in conn.execute(query)})
    return found


def refusals_between(conn: Connection, start: datetime, end: datetime) -> list[Event]:
    """(time, code) of every refused write-off recorded in the range."""
    query = select(refusal.c.at, refusal.c.code).where(refusal.c.at >= start, refusal.c.at < end)
    return [Event(_utc(at), code) for at, code in conn.execute(query)]


def alerts_between(conn: Connection, start: datetime, end: datetime) -> list[Event]:
    """(time, kind) of every alert raised in the range."""
    query = select(alert.c.at, alert.c.kind).where(alert.c.at >= start, alert.c.at < end)
    return [Event(_utc(at), kind) for at, kind in conn.execute(query)]

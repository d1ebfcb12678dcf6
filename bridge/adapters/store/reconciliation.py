"""The ledger query behind reconciliation: one pass over the current licence lines with each
line's running total (line_total), plus the few lines a later version dropped."""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from decimal import Decimal
from operator import attrgetter

from sqlalchemy import Connection, func, select

from bridge.adapters.store.licences import last_versions_of_lines
from bridge.adapters.store.schema import (
    Micro,
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


# The current lines with their totals, and the licences with their current certificate's
# delivery, read through the driver: a million lines are a million rows, and SQLAlchemy's
# per-row result processing (four Micro conversions a row) cost more than the query. The join
# is _CURRENT_CERTIFICATE's. The licences are joined to their lines in Python, by number: on
# SQLite, looking up the licence and its certificate per line doubled the query's time. Indexes
# carry both (EXPLAIN): SQLite walks licence_line's primary key and looks each total up by
# line_total's, PostgreSQL merges the two primary keys; a licence's certificate comes from
# ix_outbox_certificate_state (or a hash join over all of them). The count of every total comes
# with the lines, in the same statement (one snapshot): only when there are totals beyond the
# lines' can a line a later version dropped exist, and only then is line_total searched for them.
_LINES = """
SELECT l.number, l.line_number, l.control_list_entry, l.unit, l.quantity,
       coalesce(t.quantity, 0), l.currency, l.value, coalesce(t.value, 0),
       coalesce(t.movements, 0), t.line_number,
       (SELECT count(*) FROM line_total {totals_where})
FROM licence_line l
LEFT OUTER JOIN line_total t ON t.licence_number = l.number AND t.line_number = l.line_number
{where}
ORDER BY l.number, l.line_number
"""
_LICENCES = """
SELECT h.number, h.type, h.status, coalesce(o.status, 'none')
FROM licence h
LEFT OUTER JOIN outbox o
  ON o.licence_number = h.number AND o.licence_version = h.current_version
     AND o.kind = 'certificate'
{where}
"""
_ORDER = attrgetter("licence_number", "line_number")
_NO_CONTINGENCY = (0, Decimal(0), Decimal(0))


class _Decimals(dict):
    """Stored millionths -> their Decimal, as the Micro column type gives it, converted once per
    distinct value: written-off totals repeat a lot (unit write-offs), round ceilings too."""

    def __init__(self, dialect) -> None:
        super().__init__({None: None})
        self._convert = Micro().process_result_value
        self._dialect = dialect

    def __missing__(self, stored: int) -> Decimal:
        value = self[stored] = self._convert(stored, self._dialect)
        return value


_collector_lock = threading.Lock()
_collector_holders = 0
_collector_was_enabled = False


@contextmanager
def _without_cycle_collection() -> Iterator[None]:
    """The cyclic garbage collector paused while a million rows are made: every row is a new
    container the collector would otherwise walk again at each of its full passes (half the
    time of building the rows). The rows hold no cycles; what other threads leave meanwhile is
    collected by its next full pass. Counted, so that overlapping readers resume it only once
    all are done, and only if it ran before."""
    global _collector_holders, _collector_was_enabled
    with _collector_lock:
        if _collector_holders == 0:
            _collector_was_enabled = gc.isenabled()
            gc.disable()
        _collector_holders += 1
    try:
        yield
    finally:
        with _collector_lock:
            _collector_holders -= 1
            if _collector_holders == 0 and _collector_was_enabled:
                if gc.get_freeze_count() == 0:
                    # What was made meanwhile goes to the oldest generation as it is, not
                    # walked at once by a young pass over a million rows (freeze, then
                    # unfreeze: two list moves); skipped when someone else froze objects.
                    gc.freeze()
                    gc.unfreeze()
                gc.enable()


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
    contingent = _contingency_totals(conn, licence_number)
    with _without_cycle_collection() if licence_number is None else nullcontext():
        rows, ordered, dropped_possible = _current_line_rows(conn, licence_number, contingent)
        if dropped_possible:
            dropped = _dropped_line_rows(conn, licence_number, contingent)
            ordered = ordered and not dropped
            rows += dropped
        if not ordered:  # Python's order, whatever the database's collation
            rows.sort(key=_ORDER)
    return rows


def _driver_rows(conn: Connection, statement: str, licence_number: str | None, filters: dict):
    """The rows of `statement` (its {placeholders} filled from `filters`, each filter on
    `licence_number` when one is given) as the driver gives them: plain tuples."""
    paramstyle = conn.dialect.paramstyle
    if paramstyle not in ("qmark", "format", "pyformat"):
        raise NotImplementedError(f"reconciliation through a {paramstyle} driver")
    marker = "?" if paramstyle == "qmark" else "%s"
    if licence_number is None:
        text, parameters = statement.format(**dict.fromkeys(filters, "")), ()
    else:
        wheres = {key: f"WHERE {column} = {marker}" for key, column in filters.items()}
        text, parameters = statement.format(**wheres), (licence_number,) * len(filters)
    result = conn.exec_driver_sql(text, parameters)
    try:
        return result.cursor.fetchall()
    finally:
        result.close()


def _current_line_rows(
    conn: Connection,
    licence_number: str | None,
    contingent: dict[tuple[str, int], tuple[int, Decimal, Decimal]],
) -> tuple[list[ReconciliationRow], bool, bool]:
    """The rows of the current lines; whether they came in Python's order of (licence, line)
    already; whether a line a later version dropped may exist."""
    heads: dict[str, tuple[str, str, str] | list[tuple[str, str, str]]] = {}
    for number, kind, status, sent in _driver_rows(
        conn, _LICENCES, licence_number, {"where": "h.number"}
    ):
        seen = heads.get(number)
        if seen is None:
            heads[number] = (kind, status, sent)
        elif type(seen) is list:
            seen.append((kind, status, sent))
        else:  # two certificate rows for the current version: each line twice, as joined
            heads[number] = [seen, (kind, status, sent)]
    found = _driver_rows(
        conn,
        _LINES,
        licence_number,
        {"totals_where": "licence_number", "where": "l.number"},
    )
    decimals = _Decimals(conn.dialect)
    make = tuple.__new__  # the named tuple's fields in order, without its keyword parsing
    none = _NO_CONTINGENCY
    rows: list[ReconciliationRow] = []
    append = rows.append
    with_totals = 0
    ordered = True
    last_number, last_line = "", -1
    for number, line, entry, unit, quantity, used, currency, value, spent, count, total, _ in found:
        if total is not None:
            with_totals += 1
        if number < last_number or (number == last_number and line < last_line):
            ordered = False
        last_number, last_line = number, line
        head = heads.get(number)
        if head is None:  # a line without its licence: no row, as in an inner join
            continue
        extra = contingent.get((number, line), none) if contingent else none
        for kind, status, sent in head if type(head) is list else (head,):
            append(
                make(
                    ReconciliationRow,
                    (
                        number,
                        line,
                        kind,
                        status,
                        entry,
                        unit,
                        decimals[quantity],
                        decimals[used],
                        currency,
                        decimals[value],
                        decimals[spent],
                        count,
                        sent,
                        *extra,
                        None,
                    ),
                )
            )
    if not found:
        return rows, True, True
    return rows, ordered, found[0][11] != with_totals


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

"""Each licence line's running totals (`line_total`): the sums of its movements, kept by the
database in the same transaction as every movement, so that a balance is one row to read
whatever the line's history (a write-off batch, reconciliation, availability).

Triggers on `movement` do the bookkeeping, so no path that writes a movement (the consumer,
manual acts, a bulk load, a hand-written INSERT) can leave the totals behind: on SQLite a row
trigger per inserted, updated or deleted movement; on PostgreSQL a statement trigger per
statement, which adds up the statement's rows (its transition table) in one upsert, in line
order. The upsert locks the line's total row until the transaction ends, so two writers of one
line take turns; the rules still serialise on the licence row before they read (see the
ledger's locking).

The ledger's first migration (bridge/adapters/store/migrations) installs the triggers on a ledger
that lacks them, a new one or one from before this table, and back-fills the totals from the
movements in the same transaction (`install_line_totals`), under a lock that keeps writers of
movements out meanwhile; on PostgreSQL they run as their owner (SECURITY DEFINER), so the
bridge's runtime role only reads line_total. `line_drift`
compares the totals with the movements' sums, for tests and for an operator in doubt."""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal

from sqlalchemy import Connection, func, select, type_coerce

from bridge.adapters.store.schema import Micro, line_total, movement

TRIGGERS = (
    "movement_line_total_insert",
    "movement_line_total_update",
    "movement_line_total_delete",
)
_CHUNK = 500  # licence numbers per IN list

# The bodies of the SQLite triggers: add the NEW row to its line, take the OLD row off its line
# (dropping a total that no movement is left in).
_SQLITE_ADD_NEW = """
  INSERT INTO line_total (licence_number, line_number, quantity, value, movements)
  VALUES (NEW.licence_number, NEW.line_number, NEW.quantity, NEW.value, 1)
  ON CONFLICT (licence_number, line_number) DO UPDATE SET
    quantity = quantity + excluded.quantity,
    value = value + excluded.value,
    movements = movements + 1;"""
_SQLITE_TAKE_OLD = """
  UPDATE line_total SET
    quantity = quantity - OLD.quantity,
    value = value - OLD.value,
    movements = movements - 1
  WHERE licence_number = OLD.licence_number AND line_number = OLD.line_number;
  DELETE FROM line_total
  WHERE licence_number = OLD.licence_number AND line_number = OLD.line_number
    AND movements = 0;"""
_SQLITE_TRIGGERS = (
    "CREATE TRIGGER IF NOT EXISTS movement_line_total_insert AFTER INSERT ON movement"
    f" BEGIN{_SQLITE_ADD_NEW}\nEND",
    "CREATE TRIGGER IF NOT EXISTS movement_line_total_update"
    " AFTER UPDATE OF licence_number, line_number, quantity, value ON movement"
    f" BEGIN{_SQLITE_TAKE_OLD}{_SQLITE_ADD_NEW}\nEND",
    "CREATE TRIGGER IF NOT EXISTS movement_line_total_delete AFTER DELETE ON movement"
    f" BEGIN{_SQLITE_TAKE_OLD}\nEND",
)

# Transition tables: `added` (the statement's new rows), `removed` (its old rows).
_PG_ADD = """
  INSERT INTO line_total AS t (licence_number, line_number, quantity, value, movements)
  SELECT licence_number, line_number, sum(quantity), sum(value), count(*)
  FROM added
  GROUP BY licence_number, line_number
  ORDER BY licence_number, line_number
  ON CONFLICT (licence_number, line_number) DO UPDATE SET
    quantity = t.quantity + excluded.quantity,
    value = t.value + excluded.value,
    movements = t.movements + excluded.movements;
"""
_PG_REMOVE = """
  UPDATE line_total AS t SET
    quantity = t.quantity - r.quantity,
    value = t.value - r.value,
    movements = t.movements - r.movements
  FROM (
    SELECT licence_number, line_number, sum(quantity) AS quantity, sum(value) AS value,
           count(*) AS movements
    FROM removed
    GROUP BY licence_number, line_number
    ORDER BY licence_number, line_number
  ) AS r
  WHERE t.licence_number = r.licence_number AND t.line_number = r.line_number;
  DELETE FROM line_total AS t
  USING (SELECT DISTINCT licence_number, line_number FROM removed) AS r
  WHERE t.licence_number = r.licence_number AND t.line_number = r.line_number
    AND t.movements = 0;
"""


def _pg_function(name: str, body: str) -> str:
    # SECURITY DEFINER: the triggers write line_total as the function's owner (the role that
    # migrates), so the bridge's runtime role needs no right on line_total beyond SELECT
    # (bridge.adapters.store.migrate.grant_runtime); the search path is fixed to the one the
    # owner created them with, so a caller's cannot redirect the table names.
    return (
        f"CREATE OR REPLACE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql"
        " SECURITY DEFINER SET search_path FROM CURRENT AS $body$\n"
        f"BEGIN\n{body}\n  RETURN NULL;\nEND\n$body$"
    )


PG_FUNCTIONS = (
    _pg_function("line_total_add", _PG_ADD),
    _pg_function("line_total_remove", _PG_REMOVE),
    _pg_function("line_total_move", _PG_REMOVE + _PG_ADD),
)
_PG_TRIGGERS = (
    *PG_FUNCTIONS,
    "DROP TRIGGER IF EXISTS movement_line_total_insert ON movement",
    "CREATE TRIGGER movement_line_total_insert AFTER INSERT ON movement"
    " REFERENCING NEW TABLE AS added FOR EACH STATEMENT EXECUTE FUNCTION line_total_add()",
    "DROP TRIGGER IF EXISTS movement_line_total_update ON movement",
    "CREATE TRIGGER movement_line_total_update AFTER UPDATE ON movement"
    " REFERENCING OLD TABLE AS removed NEW TABLE AS added"
    " FOR EACH STATEMENT EXECUTE FUNCTION line_total_move()",
    "DROP TRIGGER IF EXISTS movement_line_total_delete ON movement",
    "CREATE TRIGGER movement_line_total_delete AFTER DELETE ON movement"
    " REFERENCING OLD TABLE AS removed FOR EACH STATEMENT EXECUTE FUNCTION line_total_remove()",
)

_BACKFILL = (
    "DELETE FROM line_total",
    "INSERT INTO line_total (licence_number, line_number, quantity, value, movements)"
    " SELECT licence_number, line_number, sum(quantity), sum(value), count(*)"
    " FROM movement GROUP BY licence_number, line_number",
)


def _lock_movements(conn: Connection) -> None:
    """Keep writers of movements out until the transaction ends (SQLite: its write lock;
    PostgreSQL: a lock on movement that conflicts with INSERT, UPDATE and DELETE)."""
    if conn.dialect.name == "sqlite":
        if not conn.connection.driver_connection.in_transaction:
            conn.exec_driver_sql("BEGIN IMMEDIATE")
    elif conn.dialect.name == "postgresql":
        conn.exec_driver_sql("LOCK TABLE movement IN SHARE ROW EXCLUSIVE MODE")


def triggers_installed(conn: Connection) -> bool:
    """Whether all three triggers that keep line_total are on movement."""
    names = "', '".join(TRIGGERS)
    if conn.dialect.name == "sqlite":
        query = f"SELECT count(*) FROM sqlite_master WHERE type = 'trigger' AND name IN ('{names}')"
    elif conn.dialect.name == "postgresql":
        query = (
            "SELECT count(*) FROM pg_trigger"
            f" WHERE tgrelid = 'movement'::regclass AND tgname IN ('{names}')"
        )
    else:
        raise NotImplementedError(f"line totals on {conn.dialect.name}")
    return conn.exec_driver_sql(query).scalar_one() == len(TRIGGERS)


def install_line_totals(conn: Connection) -> int:
    """Put the triggers on movement and back-fill line_total from the movements, in the
    caller's transaction, movements locked meanwhile. Returns the lines back-filled."""
    _lock_movements(conn)
    statements = _SQLITE_TRIGGERS if conn.dialect.name == "sqlite" else _PG_TRIGGERS
    for statement in statements:
        conn.exec_driver_sql(statement)
    return backfill_line_totals(conn)


def backfill_line_totals(conn: Connection) -> int:
    """line_total computed again from every movement, in the caller's transaction (with the
    triggers in place, so that nothing written after it is missed). Returns the lines."""
    _lock_movements(conn)
    for statement in _BACKFILL:
        conn.exec_driver_sql(statement)
    return conn.execute(select(func.count()).select_from(line_total)).scalar_one()


def drop_line_total_triggers(conn: Connection) -> None:
    """Take the triggers off movement (a bulk load that back-fills afterwards, with
    `install_line_totals`); until then line_total is not kept."""
    for name in TRIGGERS:
        if conn.dialect.name == "sqlite":
            conn.exec_driver_sql(f"DROP TRIGGER IF EXISTS {name}")
        else:
            conn.exec_driver_sql(f"DROP TRIGGER IF EXISTS {name} ON movement")


def totals_of_licences(
    conn: Connection, numbers: Iterable[str]
) -> dict[tuple[str, int], tuple[Decimal, Decimal]]:
    """(quantity, value) written off so far on every line of these licences that has
    movements, by (licence number, line number)."""
    ordered = sorted(set(numbers))
    totals: dict[tuple[str, int], tuple[Decimal, Decimal]] = {}
    for start in range(0, len(ordered), _CHUNK):
        query = select(
            line_total.c.licence_number,
            line_total.c.line_number,
            line_total.c.quantity,
            line_total.c.value,
        ).where(line_total.c.licence_number.in_(ordered[start : start + _CHUNK]))
        for number, line_number, quantity, value in conn.execute(query):
            totals[(number, line_number)] = (quantity, value)
    return totals


def line_drift(conn: Connection) -> list[tuple[str, int, tuple, tuple]]:
    """Lines whose line_total row differs from the sums of their movements:
    (licence, line, (quantity, value, movements) from line_total, the same from movement).
    Empty when the totals are right; a line without movements must have no row."""
    summed = {
        (number, line_number): (quantity, value, count)
        for number, line_number, quantity, value, count in conn.execute(
            select(
                movement.c.licence_number,
                movement.c.line_number,
                type_coerce(func.sum(movement.c.quantity), Micro()),
                type_coerce(func.sum(movement.c.value), Micro()),
                func.count(),
            ).group_by(movement.c.licence_number, movement.c.line_number)
        )
    }
    kept = {
        (row.licence_number, row.line_number): (row.quantity, row.value, row.movements)
        for row in conn.execute(select(line_total))
    }
    missing = (None, None, 0)
    drift = []
    for key in sorted(summed.keys() | kept.keys()):
        has, should = kept.get(key, missing), summed.get(key, missing)
        if has != should:
            drift.append((key[0], key[1], has, should))
    return drift


__all__ = [
    "TRIGGERS",
    "backfill_line_totals",
    "drop_line_total_triggers",
    "install_line_totals",
    "line_drift",
    "totals_of_licences",
    "triggers_installed",
]

"""The one database engine factory for the ledger, and how writers take turns on it.

Writers serialise on what they change, the same way on every path (customs batches, manual
movements, status changes):

- SQLite has one writer at a time: a writer takes the database's write lock with BEGIN IMMEDIATE
  before it reads anything it will decide on (`begin_writing`), so no other writer can commit in
  between its read and its write.
- PostgreSQL runs at READ COMMITTED and a writer locks the rows it decides on before reading
  them: the declarations of its MRNs, then its licences, each in sorted order so that two
  writers never wait for each other in a circle (bridge.adapters.store.ledger, `lock_licences`).
  Every statement after a lock sees what the previous holder committed. What no row protects yet (a
  first event of an MRN, a message id) is protected by its primary key: two writers inserting it at
  once end in a unique violation for the later one, whose transaction runs again.

`run_transaction` runs a unit of work again when the database aborted it to resolve such a
conflict (deadlock, serialisation failure, a concurrent insert of the same key)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

from sqlalchemy import Connection, Engine, Text, create_engine, event, inspect, select
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.schema import CreateIndex

from bridge.adapters.store.line_totals import ensure_line_totals
from bridge.adapters.store.schema import licence, metadata

log = logging.getLogger(__name__)

T = TypeVar("T")

# PostgreSQL SQLSTATEs after which the same transaction, run again, can succeed.
CONFLICT_STATES = {
    "40001": "serialization failure",
    "40P01": "deadlock",
    "23505": "unique violation (a concurrent insert of the same key)",
}
CONFLICT_ATTEMPTS = 8
_LOCK_CHUNK = 500  # keys per locking statement


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")  # readers do not block the writer
    cursor.execute("PRAGMA synchronous=FULL")  # a commit is on disk before a message is acked
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def make_engine(url: str, *, create: bool = True) -> Engine:
    """An engine for `url` with the ledger's tables created (idempotent), a ledger of an
    earlier release upgraded in place (`upgrade_schema`), and the line totals kept by the
    database installed and back-filled where they are not yet
    (bridge.adapters.store.line_totals)."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": 30})
        event.listen(engine, "connect", _sqlite_pragmas)
    else:
        options = {}
        if parsed.get_driver_name() == "psycopg2":
            # An UPDATE with many parameter sets goes in pages (psycopg2's execute_batch), not
            # one round trip per row; INSERTs go as multi-row VALUES either way.
            options["executemany_mode"] = "values_plus_batch"
        # Stated, not inherited from the server's default: the locking above assumes it.
        engine = create_engine(url, pool_pre_ping=True, isolation_level="READ COMMITTED", **options)
    if create:
        metadata.create_all(engine)
        upgrade_schema(engine)
        ensure_line_totals(engine)
    return engine


def upgrade_schema(engine: Engine) -> list[str]:
    """Bring a ledger made by an earlier release up to this schema, in place: create_all adds
    missing tables but not missing columns or indexes, so each column this release added
    (always nullable or with a server default) is added, on PostgreSQL a bounded text column
    that this release made unbounded is widened, and each index a table lacks is created.
    Idempotent; returns the statements it ran."""
    ran: list[str] = []
    new_indexes: list[str] = []  # after the columns: an index may be on a column added here
    with engine.begin() as conn:
        found = inspect(conn)
        for table in metadata.sorted_tables:
            indexes = {index["name"] for index in found.get_indexes(table.name)}
            for index in sorted(table.indexes, key=lambda i: i.name or ""):
                if index.name not in indexes:
                    new_indexes.append(str(CreateIndex(index).compile(dialect=conn.dialect)))
            existing = {c["name"]: c for c in found.get_columns(table.name)}
            for column in table.columns:
                if column.name not in existing:
                    if not column.nullable and column.server_default is None:
                        raise RuntimeError(
                            f"ledger table {table.name} lacks column {column.name}, which cannot "
                            "be added in place (not nullable, no default): migrate it by hand"
                        )
                    kind = column.type.compile(dialect=conn.dialect)
                    ran.append(f"ALTER TABLE {table.name} ADD COLUMN {column.name} {kind}")
                elif (
                    conn.dialect.name == "postgresql"
                    and isinstance(column.type, Text)
                    and getattr(existing[column.name]["type"], "length", None)
                ):
                    ran.append(f"ALTER TABLE {table.name} ALTER COLUMN {column.name} TYPE TEXT")
        ran += new_indexes
        for statement in ran:
            log.info("upgrading the ledger: %s", statement)
            conn.exec_driver_sql(statement)
    return ran


def utcnow() -> datetime:
    return datetime.now(UTC)


def begin_writing(conn: Connection) -> None:
    """On SQLite, open the transaction with the database's write lock (BEGIN IMMEDIATE), unless
    the connection is in a transaction already (its driver opens one only at the first write,
    so an open one holds the lock). Elsewhere nothing: rows are locked one by one."""
    if conn.dialect.name != "sqlite":
        return
    driver = conn.connection.driver_connection
    if not driver.in_transaction:
        conn.exec_driver_sql("BEGIN IMMEDIATE")


def lock_licences(conn: Connection, numbers: Iterable[str]) -> None:
    """Hold these licences until the transaction ends: every write-off, manual movement and
    status change of a licence takes this lock before it reads the licence's totals or status.
    Numbers the ledger does not hold are skipped."""
    begin_writing(conn)
    if conn.dialect.name == "sqlite":
        return
    ordered = sorted(set(numbers))
    for start in range(0, len(ordered), _LOCK_CHUNK):
        # FOR NO KEY UPDATE: conflicts with every writer of the row, not with the key-share
        # locks that inserts of licence lines and versions take on it.
        conn.execute(
            select(licence.c.number)
            .where(licence.c.number.in_(ordered[start : start + _LOCK_CHUNK]))
            .order_by(licence.c.number)
            .with_for_update(key_share=True)
        ).all()


def conflict(error: BaseException) -> str | None:
    """What conflict with another transaction aborted this one, or None when it was not one."""
    if not isinstance(error, DBAPIError):
        return None
    return CONFLICT_STATES.get(getattr(error.orig, "pgcode", None) or "")


def run_transaction(
    engine: Engine,
    work: Callable[[Connection], T],
    *,
    attempts: int = CONFLICT_ATTEMPTS,
    on_conflict: Callable[[str], None] | None = None,
) -> T:
    """`work` in one transaction, committed; run again from the start (a fresh transaction,
    fresh reads) when the database aborted it over a conflict with a concurrent one, up to
    `attempts` times in all. Any other error, or the last conflict, is raised."""
    for attempt in range(1, attempts + 1):
        try:
            with engine.begin() as conn:
                return work(conn)
        except DBAPIError as error:
            what = conflict(error)
            if what is None or attempt == attempts:
                raise
            log.info("transaction aborted by a %s; running it again (%d)", what, attempt)
            if on_conflict is not None:
                on_conflict(what)
    raise AssertionError("unreachable")

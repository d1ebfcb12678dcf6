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

from sqlalchemy import Connection, Engine, create_engine, event, select
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import DBAPIError

from bridge.adapters.store.migrate import upgrade
from bridge.adapters.store.schema import licence

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


# The PostgreSQL driver installed with the bridge; a URL naming none (postgresql://, as an
# Airflow `postgres` Connection or a libpq-style DSN gives it) is served by this one.
POSTGRES_DRIVER = "psycopg2"


def engine_url(url: str | URL) -> URL:
    """`url` as SQLAlchemy should open it: `postgres://` (Heroku, Airflow, libpq spelling) read
    as `postgresql://`, and a PostgreSQL URL without a driver given the installed one (SQLAlchemy
    2.1 would otherwise look for psycopg 3). Any other URL is returned unchanged."""
    if isinstance(url, str) and url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://") :]
    parsed = make_url(url)
    if parsed.drivername == "postgresql":
        parsed = parsed.set(drivername=f"postgresql+{POSTGRES_DRIVER}")
    return parsed


def make_engine(url: str | URL, *, create: bool = True) -> Engine:
    """An engine for `url`; with `create`, the ledger brought to this release's schema by its
    migrations (bridge.adapters.store.migrate.upgrade: a new ledger created, one of an earlier
    release upgraded, one already at this release left alone after one read). A runtime role
    that may not migrate gets a LedgerSchemaError naming what to run instead."""
    parsed = url = engine_url(url)
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
        upgrade(engine)
    return engine


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

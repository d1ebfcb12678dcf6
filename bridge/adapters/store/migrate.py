"""The ledger's schema, moved by Alembic migrations (bridge/adapters/store/migrations): configured
here in code, no alembic.ini, so they run from an installed package.

`upgrade` brings any ledger to this release's schema: a new, empty database; a ledger made by a
release before migrations (no alembic_version table: the first revision completes what it lacks,
as the old in-place upgrade did); a ledger at an older revision. Every revision up to head runs
in one transaction under a lock (PostgreSQL: an advisory lock; SQLite: the write lock), so two
processes starting at once migrate once. A ledger already at head costs one read.

On PostgreSQL the schema belongs to an owner role that migrates; the bridge's processes run as a
runtime role that may not UPDATE or DELETE the chained and audit tables (`grant_runtime`,
docs/ledger-audit.md). Opened by the runtime role, a ledger behind this release is an error
naming what to run, not a half-made migration."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Connection, Engine, inspect, text
from sqlalchemy.exc import DBAPIError

from bridge.adapters.store.schema import metadata
from bridge.core.errors import BridgeError

if TYPE_CHECKING:
    from alembic.config import Config

log = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
_LOCK_KEY = 0x656C6272  # "elbr": the advisory lock migrations take on PostgreSQL
INSUFFICIENT_PRIVILEGE = "42501"
# This release's head revision, known without Alembic: a process opening a ledger already at it
# (every start but the first) then needs one read and never loads Alembic, which is a tenth of a
# consumer's memory (W6, docs/performance.md). Alembic is loaded only to migrate or list;
# tests/integration/test_migrations.py holds this to the head Alembic finds in versions/.
HEAD = "0007"

# Tables the runtime role may only read and append to: the hash-chained ledger and the audit.
APPEND_ONLY = ("movement", "licence_event", "query_audit")
# Tables the runtime role only reads: kept by the database (line_total, by triggers that run as
# the owner) or by migrations.
READ_ONLY = ("line_total", "alembic_version")


class LedgerSchemaError(BridgeError):
    """The ledger's schema is not this release's and cannot be moved by whoever opened it."""


def alembic_config() -> Config:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("path_separator", "os")
    return config


_heads: tuple[str, ...] | None = None


def head_revision() -> str:
    """The revision this release's schema is at."""
    global _heads
    if _heads is None:
        from alembic.script import ScriptDirectory

        _heads = tuple(ScriptDirectory.from_config(alembic_config()).get_heads())
    (head,) = _heads
    return head


def current_revision(connectable: Engine | Connection) -> str | None:
    """The revision the ledger is at: None for an empty database or a ledger made before
    migrations (`is_pre_migration_ledger` tells them apart)."""
    if isinstance(connectable, Engine):
        with connectable.connect() as conn:
            return current_revision(conn)
    from alembic.runtime.migration import MigrationContext

    return MigrationContext.configure(connectable).get_current_revision()


def is_pre_migration_ledger(conn: Connection) -> bool:
    """A ledger made by a release before migrations: the ledger's tables without alembic_version
    (recognised by its licence and movement tables)."""
    names = set(inspect(conn).get_table_names())
    return "alembic_version" not in names and {"licence", "movement"} <= names


def history() -> list[tuple[str, str | None, str]]:
    """Every revision, oldest first: (revision, the one before, what it does)."""
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(alembic_config())
    revisions = list(script.walk_revisions())
    revisions.reverse()
    return [(r.revision, r.down_revision, (r.doc or "").strip()) for r in revisions]  # type: ignore[misc]


def upgrade(engine: Engine, *, revision: str = "head") -> tuple[str | None, str]:
    """Run the migrations from where the ledger is to `revision` (default head), in one
    transaction; returns (revision before, revision after). Nothing to do costs one read."""
    if revision == "head" and _at_head(engine):
        return HEAD, HEAD
    from alembic import command

    target = head_revision() if revision == "head" else revision
    try:
        before = current_revision(engine)
    except DBAPIError as error:
        if _pgcode(error) == INSUFFICIENT_PRIVILEGE:
            raise LedgerSchemaError(
                "the database user may not read the ledger's schema revision"
                f" ({_first_line(error)}): the owner grants the runtime role its rights with"
                " `elbridge db grant --runtime-role NAME` (or `db upgrade --runtime-role NAME`)"
            ) from None
        raise
    if before == target:
        return before, target
    config = alembic_config()
    try:
        with engine.begin() as conn:
            _lock(conn)
            before = current_revision(conn)  # again, under the lock: another may have done it
            if before != target:
                if before is None and is_pre_migration_ledger(conn):
                    log.info("the ledger was made before migrations: bringing it to %s", target)
                config.attributes["connection"] = conn
                command.upgrade(config, target)
    except DBAPIError as error:
        if _pgcode(error) == INSUFFICIENT_PRIVILEGE:
            raise LedgerSchemaError(
                f"the ledger's schema is at revision {before or 'none'}, this release needs"
                f" {target}, and the database user may not change it ({_first_line(error)}):"
                " run `elbridge db upgrade` with the owner's URL (ELBRIDGE_DATABASE_OWNER_URL"
                " or --url)"
            ) from None
        raise
    log.info("ledger schema: %s -> %s", before or "none", target)
    return before, target


def _at_head(engine: Engine) -> bool:
    """Whether the ledger's alembic_version names this release's head (read with plain SQL; any
    doubt, such as no such table, is answered by the full path)."""
    try:
        with engine.connect() as conn:
            rows = conn.execute(text("SELECT version_num FROM alembic_version")).fetchall()
    except DBAPIError:
        return False
    return [row[0] for row in rows] == [HEAD]


def _pgcode(error: DBAPIError) -> str | None:
    return getattr(error.orig, "pgcode", None)


def _first_line(error: DBAPIError) -> str:
    return str(error.orig).strip().splitlines()[0]


def _lock(conn: Connection) -> None:
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_LOCK_KEY})")
    elif conn.dialect.name == "sqlite" and not conn.connection.driver_connection.in_transaction:
        conn.exec_driver_sql("BEGIN IMMEDIATE")  # the write lock, as every writer takes it


def grant_runtime(engine: Engine, role: str) -> list[str]:
    """On PostgreSQL, give the runtime role what the bridge's processes need and no more:
    SELECT and INSERT on the chained and audit tables (APPEND_ONLY), SELECT on READ_ONLY,
    SELECT, INSERT, UPDATE and DELETE on the others, USAGE on the schema and the id sequences.
    Idempotent (each table's grants are revoked first). Run by the owner after each upgrade.
    Returns the statements run."""
    if engine.dialect.name != "postgresql":
        raise LedgerSchemaError(
            f"database roles are a PostgreSQL matter; a {engine.dialect.name} ledger has none"
        )
    with engine.begin() as conn:
        preparer = conn.dialect.identifier_preparer
        who = preparer.quote(role)
        exists = conn.exec_driver_sql(
            "SELECT 1 FROM pg_roles WHERE rolname = %(role)s", {"role": role}
        ).first()
        if exists is None:
            raise LedgerSchemaError(f"there is no database role {role!r} to grant to")
        schema = conn.exec_driver_sql("SELECT current_schema()").scalar_one()
        statements = [f"GRANT USAGE ON SCHEMA {preparer.quote(schema)} TO {who}"]
        tables = [*sorted(metadata.tables), "alembic_version"]
        for table in tables:
            name = preparer.quote(table)
            if table in APPEND_ONLY:
                rights = "SELECT, INSERT"
            elif table in READ_ONLY:
                rights = "SELECT"
            else:
                rights = "SELECT, INSERT, UPDATE, DELETE"
            statements += [
                f"REVOKE ALL ON {name} FROM {who}",
                f"GRANT {rights} ON {name} TO {who}",
            ]
        statements.append(
            f"GRANT USAGE ON ALL SEQUENCES IN SCHEMA {preparer.quote(schema)} TO {who}"
        )
        for statement in statements:
            conn.exec_driver_sql(statement)
    return statements

"""The last release's ledger (baseline): created, or completed from an earlier one.

The ledger as the last release before migrations left it, from an empty database or from a
ledger of any earlier release: missing tables created; on existing tables the missing columns
(each nullable or with a default) added, bounded text columns since made unbounded widened on
PostgreSQL, missing indexes created (what that release's in-place upgrade did); the triggers
that keep line_total installed and the totals back-filled where they are not.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import logging

from alembic import op
from sqlalchemy import Connection, Text, inspect
from sqlalchemy.schema import CreateIndex

from bridge.adapters.store.line_totals import install_line_totals, triggers_installed
from bridge.adapters.store.migrations.baseline import metadata

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

log = logging.getLogger(__name__)


def upgrade() -> None:
    conn = op.get_bind()
    metadata.create_all(conn)  # the tables a ledger lacks (all of them in an empty database)
    for statement in completing_statements(conn):
        log.info("completing the ledger: %s", statement)
        conn.exec_driver_sql(statement)
    if not triggers_installed(conn):
        install_line_totals(conn)


def completing_statements(conn: Connection) -> list[str]:
    """What an existing ledger lacks of the baseline: columns, widened text columns, then
    indexes (an index may be on a column added here)."""
    ran: list[str] = []
    new_indexes: list[str] = []
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
    return ran + new_indexes


def downgrade() -> None:
    raise NotImplementedError("the first revision has nothing before it: drop the database")

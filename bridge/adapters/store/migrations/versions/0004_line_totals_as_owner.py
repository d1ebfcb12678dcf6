"""The triggers that keep line_total run as their owner (PostgreSQL).

On PostgreSQL the functions of the triggers that keep line_total run as their owner (SECURITY
DEFINER, search path fixed), so that the runtime role, which may only read line_total, can still
write movements. Nothing on SQLite (no roles).

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

from alembic import op

from bridge.adapters.store.line_totals import PG_FUNCTIONS

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    conn = op.get_bind()
    if conn.dialect.name == "postgresql":
        for statement in PG_FUNCTIONS:
            conn.exec_driver_sql(statement)


def downgrade() -> None:
    conn = op.get_bind()
    if conn.dialect.name == "postgresql":
        for name in ("line_total_add", "line_total_remove", "line_total_move"):
            conn.exec_driver_sql(f"ALTER FUNCTION {name}() SECURITY INVOKER RESET search_path")

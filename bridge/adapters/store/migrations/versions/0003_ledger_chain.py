"""Hash chains on movement and licence_event; the rows already there linked.

The hash chains (docs/ledger-audit.md): chain_seq, chain_prev and chain_hash on movement and
licence_event, a unique index on (licence_number, chain_seq) for each, and every existing row
linked into its licence's chain in the order it was written (id order).

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from bridge.adapters.store.chain import link_unchained_rows
from bridge.core.ledger_chain import LICENCE_EVENT, MOVEMENT

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

_TABLES = ("movement", "licence_event")


def upgrade() -> None:
    conn = op.get_bind()
    for table in _TABLES:
        op.add_column(table, sa.Column("chain_seq", sa.Integer))
        op.add_column(table, sa.Column("chain_prev", sa.String(64)))
        op.add_column(table, sa.Column("chain_hash", sa.String(64)))
    postgres = conn.dialect.name == "postgresql"
    if postgres:
        # Writing the links changes no amount: the line totals' update trigger need not run.
        conn.exec_driver_sql("ALTER TABLE movement DISABLE TRIGGER movement_line_total_update")
    link_unchained_rows(conn, MOVEMENT)
    link_unchained_rows(conn, LICENCE_EVENT)
    if postgres:
        conn.exec_driver_sql("ALTER TABLE movement ENABLE TRIGGER movement_line_total_update")
    for table in _TABLES:
        op.create_index(f"ix_{table}_chain", table, ["licence_number", "chain_seq"], unique=True)


def downgrade() -> None:
    for table in _TABLES:
        op.drop_index(f"ix_{table}_chain", table_name=table)
        with op.batch_alter_table(table) as batch:
            batch.drop_column("chain_hash")
            batch.drop_column("chain_prev")
            batch.drop_column("chain_seq")

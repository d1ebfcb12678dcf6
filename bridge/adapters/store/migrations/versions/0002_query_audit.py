"""query_audit: the query service's audit of every question.

Every question put to the query service, answered or refused (who, how they
proved it, when, about which holder or licence, what came of it).

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "query_audit",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("identity", sa.String(200)),
        sa.Column("authentication", sa.String(20), nullable=False),
        sa.Column("credential", sa.String(500)),
        sa.Column("client_address", sa.String(100)),
        sa.Column("operation", sa.String(60), nullable=False),
        sa.Column("holder_eori", sa.String(40)),
        sa.Column("licence_number", sa.String(70)),
        sa.Column("outcome", sa.String(20), nullable=False),
        sa.Column("code", sa.String(40)),
        sa.Column("reason", sa.Text),
    )
    op.create_index("ix_query_audit_at", "query_audit", ["at"])
    op.create_index("ix_query_audit_identity", "query_audit", ["identity"])


def downgrade() -> None:
    op.drop_table("query_audit")

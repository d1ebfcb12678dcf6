"""alert_state: alerts are open until an officer acknowledges them.

Adds to `alert` its state (`open` or `acknowledged`, every existing alert open), who
acknowledged it and when, and an index on the state (the console's inbox and the metrics count
the open ones).

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("alert", sa.Column("state", sa.String(20), nullable=False, server_default="open"))
    op.add_column("alert", sa.Column("acknowledged_by", sa.String(200)))
    op.add_column("alert", sa.Column("acknowledged_at", sa.DateTime(timezone=True)))
    op.create_index("ix_alert_state", "alert", ["state"])


def downgrade() -> None:
    op.drop_index("ix_alert_state", table_name="alert")
    with op.batch_alter_table("alert") as batch:
        batch.drop_column("acknowledged_at")
        batch.drop_column("acknowledged_by")
        batch.drop_column("state")

"""quarantine_replayed_by: who replayed a quarantined message.

Adds to `quarantine` the person whose replay was the last (an officer in the console, or the
operator's name on the command line), beside when and with what outcome. Rows replayed before
this revision keep it empty.

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("quarantine", sa.Column("replayed_by", sa.String(200)))


def downgrade() -> None:
    with op.batch_alter_table("quarantine") as batch:
        batch.drop_column("replayed_by")

"""outbox_retry_budget: deliveries retried for a time, failures told apart, retries recorded.

Adds to `outbox` when the current attempt series first failed (the retry budget,
ELBRIDGE_SOAP_RETRY_BUDGET_HOURS, is counted from it), why a failed row failed (`failure`:
refused by customs, the retry budget spent, invalid as built, or a status update whose
certificate failed), and who last sent a failed row again and when (`elbridge outbox retry`).
Rows failed before this revision get their `failure` from their recorded reason; their first
failure is unknown and stays empty.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

_outbox = sa.table(
    "outbox",
    sa.column("kind", sa.String),
    sa.column("status", sa.String),
    sa.column("attempts", sa.Integer),
    sa.column("last_error", sa.Text),
    sa.column("failure", sa.String),
)


def upgrade() -> None:
    op.add_column("outbox", sa.Column("first_failed_at", sa.DateTime(timezone=True)))
    op.add_column("outbox", sa.Column("failure", sa.String(20)))
    op.add_column("outbox", sa.Column("retried_at", sa.DateTime(timezone=True)))
    op.add_column("outbox", sa.Column("retried_by", sa.String(200)))
    # Why the rows failed so far, read from the reasons the releases before wrote (first match
    # wins: each statement only fills rows still without a failure).
    failed = (_outbox.c.status == "failed") & _outbox.c.failure.is_(None)
    for condition, failure in (
        (_outbox.c.last_error.like("gave up after %"), "budget"),
        (
            (_outbox.c.kind == "status") & _outbox.c.last_error.like("the certificate of %"),
            "orphan",
        ),
        ((_outbox.c.kind == "certificate") & (_outbox.c.attempts == 0), "invalid"),
        (sa.true(), "refused"),
    ):
        op.execute(_outbox.update().where(failed & condition).values(failure=failure))


def downgrade() -> None:
    with op.batch_alter_table("outbox") as batch:
        batch.drop_column("retried_by")
        batch.drop_column("retried_at")
        batch.drop_column("failure")
        batch.drop_column("first_failed_at")

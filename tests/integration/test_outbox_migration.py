"""Migration 0005 (the outbox's retry budget) on a ledger that has delivered, failed and waiting
messages: every row kept, each failed one told why from the reason it was stored with, and a
certificate that spent its attempts under the old rule can be sent again. Both databases."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import insert, select

from bridge.adapters.store.db import make_engine
from bridge.adapters.store.migrate import upgrade
from bridge.adapters.store.migrations import baseline
from bridge.adapters.store.schema import outbox
from bridge.services.outbox import outbox_listing, retry_failed, undelivered

AT = datetime(2026, 10, 1, 9, 0, tzinfo=UTC)

# (licence, kind, status, attempts, last_error) as the release before 0005 left them.
OLD_ROWS = [
    ("DE-1", "certificate", "delivered", 1, None),
    ("DE-2", "certificate", "failed", 8, "gave up after 8 attempts; last: HTTP 503 from x"),
    ("DE-3", "certificate", "failed", 1, "customs answered Client fault INVALID_MESSAGE: bad"),
    ("DE-4", "certificate", "failed", 0, "/Certificate/Holder/EORI: pattern (got 'FR 1')"),
    ("DE-4", "status", "failed", 0, "the certificate of licence DE-4 version 1 failed, so"),
    ("DE-5", "certificate", "pending", 3, "connection to x refused (nothing listening?)"),
]


def test_an_older_ledger_s_outbox_upgrades_and_its_failures_are_told_apart(ledger_url):
    engine = make_engine(ledger_url, create=False)
    upgrade(engine, revision="0004")
    old_outbox = baseline.metadata.tables["outbox"]
    with engine.begin() as conn:
        conn.execute(
            insert(old_outbox),
            [
                dict(message_id=f"m-{n}", kind=kind, licence_number=number, licence_version=1,
                     document="<c/>", status=status, attempts=attempts, next_attempt_at=AT,
                     last_error=error, created_at=AT)
                for n, (number, kind, status, attempts, error) in enumerate(OLD_ROWS)
            ],
        )  # fmt: skip

    assert upgrade(engine)[0] == "0004"

    with engine.connect() as conn:
        rows = conn.execute(
            select(outbox.c.licence_number, outbox.c.kind, outbox.c.status, outbox.c.failure,
                   outbox.c.attempts, outbox.c.first_failed_at, outbox.c.retried_by)
            .order_by(outbox.c.id)
        ).all()  # fmt: skip
    assert [tuple(row) for row in rows] == [
        ("DE-1", "certificate", "delivered", None, 1, None, None),
        ("DE-2", "certificate", "failed", "budget", 8, None, None),
        ("DE-3", "certificate", "failed", "refused", 1, None, None),
        ("DE-4", "certificate", "failed", "invalid", 0, None, None),
        ("DE-4", "status", "failed", "orphan", 0, None, None),
        ("DE-5", "certificate", "pending", None, 3, None, None),
    ]
    now = AT + timedelta(days=3)
    late = undelivered(engine, now=now, older_than=timedelta(hours=1))
    assert [(r["licence"], r["kind"], r["status"]) for r in late] == [
        (number, kind, status) for number, kind, status, *_ in OLD_ROWS if status != "delivered"
    ]
    # The certificate the old rule failed after 8 attempts goes again; the one never valid not.
    report = retry_failed(engine, all_failed=True, actor="operator", now=now)
    assert sorted(r["licence"] for r in report.requeued) == ["DE-2", "DE-3"]
    assert {(r["licence"], r["kind"]) for r in report.skipped} == {
        ("DE-4", "certificate"),
        ("DE-4", "status"),
    }
    (waiting,) = outbox_listing(engine, licence="DE-2")
    assert (waiting["status"], waiting["retried_by"], waiting["next_attempt_at"]) == (
        "pending",
        "operator",
        now,
    )
    engine.dispose()

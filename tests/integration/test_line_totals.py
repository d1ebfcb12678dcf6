"""The per-line running totals (line_total): kept by the database with every movement, whoever
writes it, and back-filled on a ledger that predates them."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from sqlalchemy import delete, insert, inspect, select, update

from bridge.adapters.store.db import make_engine
from bridge.adapters.store.line_totals import (
    drop_line_total_triggers,
    install_line_totals,
    line_drift,
    totals_of_licences,
    triggers_installed,
)
from bridge.adapters.store.migrate import current_revision, head_revision
from bridge.adapters.store.reconciliation import reconciliation_rows
from bridge.adapters.store.schema import line_total, movement
from bridge.testkit.previous_release import previous_release_ledger

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def _movements(*rows: tuple[str, int, str, str]) -> list[dict]:
    return [
        {
            "licence_number": number,
            "line_number": line,
            "kind": "write_off",
            "quantity": Decimal(quantity),
            "value": Decimal(value),
            "actor": "test",
            "at": NOW,
        }
        for number, line, quantity, value in rows
    ]


def _totals(conn) -> dict[tuple[str, int], tuple[Decimal, Decimal, int]]:
    return {
        (r.licence_number, r.line_number): (r.quantity, r.value, r.movements)
        for r in conn.execute(select(line_total))
    }


def test_every_inserted_movement_is_added_to_its_lines_total(engine):
    with engine.begin() as conn:
        conn.execute(
            insert(movement),
            _movements(
                ("DE-1", 1, "4", "20000.00"),
                ("DE-1", 1, "-1", "-5000.00"),
                ("DE-1", 2, "2.500001", "0"),
                ("FR-7", 1, "0.000001", "0.01"),
            ),
        )
        conn.execute(insert(movement).values(**_movements(("DE-1", 2, "0.5", "0"))[0]))
    with engine.connect() as conn:
        assert _totals(conn) == {
            ("DE-1", 1): (Decimal(3), Decimal(15000), 2),
            ("DE-1", 2): (Decimal("3.000001"), Decimal(0), 2),
            ("FR-7", 1): (Decimal("0.000001"), Decimal("0.01"), 1),
        }
        assert totals_of_licences(conn, ["DE-1", "XX-404"]) == {
            ("DE-1", 1): (Decimal(3), Decimal(15000)),
            ("DE-1", 2): (Decimal("3.000001"), Decimal(0)),
        }
        assert line_drift(conn) == []


def test_a_movement_rolled_back_leaves_no_total(engine):
    with engine.connect() as conn:
        conn.execute(insert(movement), _movements(("DE-1", 1, "4", "1")))
        conn.rollback()
        assert _totals(conn) == {}


def test_updated_and_deleted_movements_move_the_totals_too(engine):
    with engine.begin() as conn:
        conn.execute(
            insert(movement),
            _movements(("DE-1", 1, "4", "10"), ("DE-1", 1, "1", "1"), ("DE-1", 2, "7", "0")),
        )
    with engine.begin() as conn:
        first = conn.execute(select(movement.c.id).order_by(movement.c.id)).scalars().first()
        conn.execute(
            update(movement).where(movement.c.id == first).values(line_number=3, quantity=5)
        )
        conn.execute(delete(movement).where(movement.c.line_number == 2))
    with engine.connect() as conn:
        assert _totals(conn) == {
            ("DE-1", 1): (Decimal(1), Decimal(1), 1),
            ("DE-1", 3): (Decimal(5), Decimal(10), 1),
        }  # line 2 lost its only movement: no row, as a sum over no movements has none
        assert line_drift(conn) == []


def test_a_ledger_without_totals_is_back_filled_when_opened(ledger_url):
    engine = previous_release_ledger(ledger_url)
    with engine.begin() as conn:
        # A ledger from before line_total: movements written with nothing keeping totals.
        drop_line_total_triggers(conn)
        conn.execute(
            insert(movement),
            _movements(("DE-1", 1, "4", "10"), ("DE-1", 1, "2", "5"), ("IT-3", 4, "1", "0")),
        )
        conn.execute(delete(line_total))
        assert not triggers_installed(conn)
        assert len(line_drift(conn)) == 2
    engine.dispose()

    engine = make_engine(ledger_url)  # opening it installs the triggers and back-fills
    try:
        with engine.begin() as conn:
            assert triggers_installed(conn)
            assert line_drift(conn) == []
            assert _totals(conn)[("DE-1", 1)] == (Decimal(6), Decimal(15), 2)
            conn.execute(insert(movement), _movements(("IT-3", 4, "1.5", "0")))
        with engine.connect() as conn:
            assert _totals(conn)[("IT-3", 4)] == (Decimal("2.5"), Decimal(0), 2)
            assert line_drift(conn) == []
    finally:
        engine.dispose()


def test_installing_again_recomputes_totals_that_went_wrong(engine):
    with engine.begin() as conn:
        conn.execute(insert(movement), _movements(("DE-1", 1, "4", "10")))
        conn.execute(update(line_total).values(quantity=Decimal(99)))  # by hand, wrongly
        assert line_drift(conn) == [
            ("DE-1", 1, (Decimal(99), Decimal(10), 1), (Decimal(4), Decimal(10), 1))
        ]
        assert install_line_totals(conn) == 1
        assert line_drift(conn) == []


def test_reconciliation_reads_the_totals_of_lines_with_and_without_movements(engine):
    from tests.integration.test_reconcile import _seed

    _seed(engine, [(1, "4", "20000.00"), (1, "-1", "-5000.00")])
    with engine.connect() as conn:
        rows = {row.line_number: row for row in reconciliation_rows(conn)}
        assert (rows[1].written_off_quantity, rows[1].movements) == (Decimal(3), 2)
        assert (rows[2].written_off_quantity, rows[2].movements) == (Decimal(0), 0)
        assert line_drift(conn) == []


def test_a_ledger_from_before_line_total_is_upgraded_when_opened(ledger_url):
    engine = previous_release_ledger(ledger_url)
    with engine.begin() as conn:
        # The previous release: no line_total (so no triggers), no certificate-state index.
        drop_line_total_triggers(conn)
        conn.exec_driver_sql("DROP TABLE line_total")
        conn.exec_driver_sql("DROP INDEX ix_outbox_certificate_state")
        conn.execute(insert(movement), _movements(("DE-1", 1, "4", "10"), ("DE-1", 2, "1", "0")))
    engine.dispose()

    reopened = make_engine(ledger_url)
    try:
        indexes = {i["name"] for i in inspect(reopened).get_indexes("outbox")}
        assert "ix_outbox_certificate_state" in indexes
        with reopened.begin() as conn:
            assert triggers_installed(conn)
            assert _totals(conn) == {
                ("DE-1", 1): (Decimal(4), Decimal(10), 1),
                ("DE-1", 2): (Decimal(1), Decimal(0), 1),
            }
        assert current_revision(reopened) == head_revision()  # migrated to this release
    finally:
        reopened.dispose()

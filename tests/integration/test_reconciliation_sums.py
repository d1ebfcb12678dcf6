"""Reconciliation read fast (one driver-level pass over the lines and their line_total rows)
against the same answer computed independently from the audit trail: the movements summed per
line, the lines, licences and certificates read through SQLAlchemy, row for row and with the
same Decimals, on a messy synthetic stream plus the hand-made cases the stream never makes
(contingency write-offs, a dropped line, a line no version had, extreme amounts, undelivered
certificates, licence numbers whose order depends on case)."""

from __future__ import annotations

import gc
import threading
from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

from sqlalchemy import func, insert, select, update

from bridge.adapters.mqtt.client import Received
from bridge.adapters.store.db import make_engine
from bridge.adapters.store.licences import last_versions_of_lines, save_licence
from bridge.adapters.store.reconciliation import reconciliation_rows
from bridge.adapters.store.schema import licence, licence_line, movement, outbox
from bridge.core.reconcile import ReconciliationRow
from bridge.services.config import Settings
from bridge.services.consumer import ConsumeReport, store_batch
from bridge.testkit import streams
from bridge.testkit.licences import licences as synthetic_licences
from tests.fixtures_mqtt import store_licences
from tests.hostile.corpus import hostile_licences

NOW = datetime(2026, 12, 6, 9, 0, tzinfo=UTC)


def _from_movements(conn) -> list[ReconciliationRow]:
    """The reconciliation as the audit trail alone says it: every sum over movement."""

    def sums(*where):
        query = select(
            movement.c.licence_number,
            movement.c.line_number,
            func.count(),
            func.sum(movement.c.quantity),
            func.sum(movement.c.value),
        ).group_by(movement.c.licence_number, movement.c.line_number)
        return {(r[0], r[1]): (r[2], r[3], r[4]) for r in conn.execute(query.where(*where))}

    moved = sums()
    contingent = sums(movement.c.contingency == 1)
    heads = {r.number: r for r in conn.execute(select(licence))}
    certificates: dict[str, list[str]] = {}
    for number, version, status in conn.execute(
        select(outbox.c.licence_number, outbox.c.licence_version, outbox.c.status).where(
            outbox.c.kind == "certificate"
        )
    ):
        if number in heads and heads[number].current_version == version:
            certificates.setdefault(number, []).append(status)

    def row(number, line_number, **fields):
        count, quantity, value = moved.get((number, line_number), (0, Decimal(0), Decimal(0)))
        extra = contingent.get((number, line_number))
        head = heads[number]
        return [
            ReconciliationRow(
                licence_number=number,
                line_number=line_number,
                licence_type=head.type,
                status=head.status,
                written_off_quantity=quantity,
                written_off_value=value,
                movements=count,
                certificate=sent,
                **fields,
                **(
                    {}
                    if extra is None
                    else dict(
                        contingency_movements=extra[0],
                        contingency_quantity=extra[1],
                        contingency_value=extra[2],
                    )
                ),
            )
            for sent in certificates.get(number, ["none"])
        ]

    expected = []
    current = set()
    for line in conn.execute(select(licence_line)):
        if line.number not in heads:
            continue
        current.add((line.number, line.line_number))
        expected += row(
            line.number,
            line.line_number,
            control_list_entry=line.control_list_entry,
            unit=line.unit,
            authorised_quantity=line.quantity,
            currency=line.currency,
            authorised_value=line.value,
        )
    dropped = [key for key in moved if key not in current and key[0] in heads]
    last_seen = last_versions_of_lines(conn, dropped)
    for number, line_number in dropped:
        version, line = last_seen.get((number, line_number), (heads[number].current_version, None))
        expected += row(
            number,
            line_number,
            control_list_entry=line.control_list_entry if line else "",
            unit=line.unit if line else None,
            authorised_quantity=None,
            currency=line.currency if line else None,
            authorised_value=None,
            dropped_in_version=version,
        )
    expected.sort(key=lambda r: (r.licence_number, r.line_number))
    return expected


def _assert_same(conn) -> list[ReconciliationRow]:
    rows = reconciliation_rows(conn)
    expected = _from_movements(conn)
    keys = [(r.licence_number, r.line_number) for r in rows]
    assert keys == sorted(keys)
    # The same Decimals, not only equal ones (1E+2 and 100 are equal, but print apart); a line
    # repeated (two certificate rows for a version) in any order of its repeats.
    assert sorted(map(repr, rows)) == sorted(map(repr, expected))
    for number in sorted({r.licence_number for r in expected}):
        assert sorted(map(repr, reconciliation_rows(conn, number))) == sorted(
            repr(r) for r in expected if r.licence_number == number
        )
    return rows


def _messy_ledger(engine, ledger_url: str, home: Path) -> list:
    made = list(synthetic_licences(60, seed=141, scale=1000, holders=6))
    made += hostile_licences()
    # Numbers whose order depends on case and on bytes beyond ASCII.
    made += [replace(made[0], number=f"{made[0].number}{tail}") for tail in ("a", "B", "É")]
    store_licences(engine, made)
    events = streams.event_stream(
        made[:60], 400, seed=142, duplicates=0.1, reorder=0.15, amendments=0.15,
        invalidations=0.08, bad=0.03,
    )  # fmt: skip
    batch = [Received("synthetic", e.envelope, i, 1, 1, False) for i, e in enumerate(events)]
    settings = Settings(home=home, database_url=ledger_url)
    report = ConsumeReport()
    for start in range(0, len(batch), 50):
        store_batch(settings, engine, batch[start : start + 50], threading.Event(), report)
    assert report.applied > 0
    return made


def _movement(number: str, line: int, quantity: str, value: str, contingency=None) -> dict:
    return {
        "licence_number": number,
        "line_number": line,
        "kind": "write_off",
        "quantity": Decimal(quantity),
        "value": Decimal(value),
        "actor": "test",
        "at": NOW,
        "contingency": contingency,
    }


def test_reconciliation_equals_the_sums_of_movements(ledger_url: str, tmp_path: Path):
    engine = make_engine(ledger_url)
    try:
        made = _messy_ledger(engine, ledger_url, tmp_path)
        with engine.connect() as conn:
            rows = _assert_same(conn)  # no dropped line: the driver-level pass alone
        assert all(r.dropped_in_version is None for r in rows)
        assert any(r.movements for r in rows)
        # The collector, paused while the rows are made, runs again; and stays off if it was.
        assert gc.isenabled()
        gc.disable()
        try:
            with engine.connect() as conn:
                assert reconciliation_rows(conn) == rows
            assert not gc.isenabled()
        finally:
            gc.enable()

        first, second = made[1], made[2]
        third = next(x for x in made[3:60] if len(x.lines) > 1)
        with engine.begin() as conn:
            conn.execute(
                insert(movement),
                [
                    _movement(first.number, first.lines[0].line_number, "3.000001", "10.5", 1),
                    _movement(first.number, first.lines[0].line_number, "-1", "0", 1),
                    _movement(second.number, second.lines[-1].line_number, "999999999.999999", "0"),
                    _movement(second.number, second.lines[-1].line_number, "100", "100.00"),
                    _movement(third.number, third.lines[-1].line_number, "1", "1"),
                    _movement(third.number, 99, "2", "7"),  # a line no version had
                    _movement(made[-1].number, made[-1].lines[0].line_number, "0.5", "1", 1),
                    # Round sums, which the ledger gives as 1E+3 (Micro normalises).
                    _movement(made[-2].number, made[-2].lines[0].line_number, "1000", "1000"),
                    _movement("XX-NOT-A-LICENCE", 1, "1", "1"),  # no licence: no row
                ],
            )
            conn.execute(
                update(outbox)
                .where(outbox.c.licence_number.in_([first.number, third.number]))
                .values(status="failed")
            )
            # A second certificate row for the version in force (sent again): its lines twice.
            conn.execute(
                insert(outbox).values(
                    message_id="again-1",
                    kind="certificate",
                    licence_number=second.number,
                    licence_version=conn.execute(
                        select(licence.c.current_version).where(licence.c.number == second.number)
                    ).scalar_one(),
                    document="<again/>",
                    status="pending",
                    attempts=0,
                    next_attempt_at=NOW,
                    created_at=NOW,
                )
            )
            # A later version without its last line: the line's usage stays, as dropped.
            fewer = replace(third, lines=third.lines[:-1])
            save_licence(conn, fewer, source="test", now=NOW, explicit_version=False)
        with engine.connect() as conn:
            rows = _assert_same(conn)
        dropped = {(r.licence_number, r.line_number) for r in rows if r.dropped_in_version}
        assert {(third.number, 99), (third.number, third.lines[-1].line_number)} <= dropped
        assert any(r.contingency_movements for r in rows)
        assert {r.certificate for r in rows} >= {"delivered", "failed", "none", "pending"}
        twice = [
            r
            for r in rows
            if (r.licence_number, r.line_number) == (second.number, second.lines[0].line_number)
        ]
        assert sorted(r.certificate for r in twice) == ["delivered", "pending"]
    finally:
        engine.dispose()

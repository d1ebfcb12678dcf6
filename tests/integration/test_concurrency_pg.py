"""Writers at the same time, on PostgreSQL and SQLite: four consumer processes on one MQTT v5
shared subscription against a few heavily contended licences while an officer writes off by
hand; a manual act and a customs batch on one licence; two certificate runs at once.

What must hold whatever the interleaving: no lost update (every line's written-off total is the
sum of the write-offs the ledger answered `applied`, and of the manual ones it accepted), no
overdraw (no line below zero), each write-off once, every message processed once and acked."""

from __future__ import annotations

import logging
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass, replace
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import func, insert, select

from bridge.adapters.store.db import lock_licences
from bridge.adapters.store.ledger import pending_results
from bridge.adapters.store.line_totals import line_drift
from bridge.adapters.store.outbox import NewMessage, add_new_messages, outbox_rows
from bridge.adapters.store.reconciliation import reconciliation_rows
from bridge.adapters.store.schema import movement, processed_message, refusal, usage
from bridge.core.envelope import build_envelope, mrn_from_lrn, read_event
from bridge.core.errors import Rejected
from bridge.services.authority import manual_write_off
from bridge.services.config import Settings, settings_env
from bridge.services.consumer import consume
from bridge.services.customs_events import publish_events
from bridge.services.declarations import apply_declarations
from bridge.services.ledger_audit import verify_ledger
from bridge.services.mqtt_endpoints import open_session
from bridge.services.outbox import certify_pending
from bridge.testkit.declaration_plans import DeclarationPlan, DocumentPlan, GoodsItemPlan
from bridge.testkit.declarations import render_declaration
from tests.commit_hooks import before_first_commit
from tests.fixtures_mqtt import RELEASED_AT, kg_line, store_licences, uk_licence
from tests.fixtures_soap import chemicals_licence, global_licence, individual_licence

PROJECT = Path(__file__).resolve().parents[2]
CONSUMERS = 4
DECLARATIONS = 2400
DUPLICATE_EVERY = 25  # every 25th declaration is published twice in a row (to two consumers)
MANUAL_ACTS = 40
CN = "93063030"
CN_2 = "93059100"
OFFICER = "Officer on duty (ECJU)"

# Four licences, five lines, 7,000 kg in all; the declarations ask for about 12,000 kg.
CONTENDED = [
    uk_licence("GBSIEC4000001-0001", "GB100000000001", kg_line(1, CN, "2000", "PK")),
    uk_licence("GBSIEC4000002-0001", "GB100000000002", kg_line(1, CN, "1500", "PK")),
    uk_licence(
        "GBSIEC4000003-0001",
        "GB100000000003",
        kg_line(1, CN, "1000", "PK"),
        kg_line(2, CN_2, "900", "PK"),
    ),
    uk_licence("GBSIEC4000004-0001", "GB100000000004", kg_line(1, CN, "1600", "PK")),
]
_LINES = [(lic, line.line_number) for lic in CONTENDED for line in lic.lines]


@dataclass(frozen=True)
class Planned:
    message_id: str
    mrn: str
    licence_number: str
    line_number: int
    quantity: Decimal
    envelope: bytes


def _declaration(serial: int, rng: random.Random) -> Planned:
    """A minimal DEC-DMS export declaration writing `quantity` kg off one contended line."""
    licence, line_number = rng.choice(_LINES)
    cn = licence.line(line_number).cn_code
    quantity = Decimal(rng.randint(1, 9))
    mrn = mrn_from_lrn(f"c4-{serial}", year=2026, country="GB")
    document = DocumentPlan(
        category="X",
        type_code="002",
        reference=licence.number,
        status="EA",
        quantity=str(quantity),
        unit="KGM",
    )
    plan = DeclarationPlan(
        mrn=mrn,
        lrn=f"GB{serial:09d}LRN",
        country="GB",
        currency="GBP",
        exporter_eori=licence.holder_eori,
        declarant_eori=licence.holder_eori,
        goods_items=(
            GoodsItemPlan(
                sequence=1,
                cn=cn,  # the rules find the line by its CN code
                description="cartridges",
                destination="PK",
                documents=(document,),
                gross_mass=Decimal(10),
                statistical_value=Decimal(1000),
            ),
        ),
        minimal=True,
    )
    message_id = f"{mrn}-released-v1"
    envelope = build_envelope(
        message_id=message_id,
        mrn=mrn,
        event="released",
        event_time=RELEASED_AT + timedelta(seconds=serial),
        payload=render_declaration(plan),
    )
    return Planned(message_id, mrn, licence.number, line_number, quantity, envelope)


def _consumer(settings: Settings, client_id: str, log: Path) -> subprocess.Popen:
    env = dict(os.environ)
    env.update(settings_env(replace(settings, mqtt_client_id=client_id)))
    with log.open("wb") as output:
        return subprocess.Popen(
            [sys.executable, "-m", "bridge.entrypoints.consumer", "--idle-seconds", "4"],
            cwd=PROJECT,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


_REPORT = re.compile(r"^consume: (.*), seconds=", re.MULTILINE)
_CONFLICT = re.compile(r"transaction aborted by a (.+?); running it again")


def _report(log: Path) -> dict[str, int]:
    """The counts a consumer process printed as it ended."""
    (line,) = _REPORT.findall(log.read_text())
    return {name: int(value) for name, value in (part.split("=") for part in line.split(", "))}


def _officer(engine, stop: threading.Event, accepted: list, refused: list, failed: list) -> None:
    """Manual write-offs of 3 kg, round the contended lines, while the consumers run. Each is
    accepted or refused by the rules; one that failed otherwise (a conflict with a consumer
    the service did not run again) lands in `failed`."""
    for act in range(MANUAL_ACTS):
        if stop.wait(0.05):
            return
        licence, line_number = _LINES[act % len(_LINES)]
        try:
            manual_write_off(
                engine,
                licence.number,
                line_number,
                Decimal(3),
                "KGM",
                reason="sample taken at the border",
                actor=OFFICER,
                now=RELEASED_AT,
            )
        except Rejected:
            refused.append((licence.number, line_number))
        except Exception as error:  # reported by the test, not lost with the thread
            failed.append(error)
        else:
            accepted.append((licence.number, line_number))


def test_four_consumers_on_a_shared_subscription_never_overdraw_and_write_off_each_once(
    mqtt_settings, engine, tmp_path
):
    store_licences(engine, CONTENDED)
    settings = replace(
        mqtt_settings,
        mqtt_shared_group=f"writeoff-{uuid.uuid4().hex[:6]}",
        batch_size=40,
        batch_wait_ms=20,
    )
    client_ids = [f"{settings.mqtt_client_id}-{n}" for n in range(CONSUMERS)]
    for client_id in client_ids:  # the group's sessions exist before anything is published
        open_session(replace(settings, mqtt_client_id=client_id))

    rng = random.Random(20260302)
    planned = [_declaration(serial, rng) for serial in range(DECLARATIONS)]
    stream = []
    for n, declaration in enumerate(planned):
        stream.append(declaration.envelope)
        if n % DUPLICATE_EVERY == 0:  # the next in the round goes to another consumer
            stream.append(declaration.envelope)
    by_id = {p.message_id: p for p in planned}

    logs = [tmp_path / f"consumer-{n}.log" for n in range(CONSUMERS)]
    consumers = [
        _consumer(settings, client_id, log) for client_id, log in zip(client_ids, logs, strict=True)
    ]
    stop_officer = threading.Event()
    manual_accepted: list = []
    manual_refused: list = []
    manual_failed: list = []
    officer = threading.Thread(
        target=_officer,
        args=(engine, stop_officer, manual_accepted, manual_refused, manual_failed),
    )
    started = time.monotonic()
    try:
        deadline = time.monotonic() + 60
        while not all("connected" in log.read_text() for log in logs):
            assert time.monotonic() < deadline, "the consumers did not connect"
            assert all(c.poll() is None for c in consumers), [log.read_text() for log in logs]
            time.sleep(0.05)
        officer.start()
        assert publish_events(settings, stream) == len(stream)
        for consumer, log in zip(consumers, logs, strict=True):
            assert consumer.wait(240) == 0, log.read_text()
    finally:
        stop_officer.set()
        if officer.is_alive():
            officer.join(60)
        for consumer in consumers:
            if consumer.poll() is None:
                os.killpg(consumer.pid, signal.SIGKILL)
                consumer.wait(10)
    seconds = time.monotonic() - started
    reports = [_report(log) for log in logs]
    conflicts = Counter(
        kind for log in logs for kind in _CONFLICT.findall(log.read_text())
    )  # transactions another consumer's aborted, run again (run_transaction)

    # Every message was taken once and acked: the four sessions hold nothing more.
    assert sum(r["messages"] for r in reports) == len(stream)
    assert all(r["messages"] > 0 for r in reports), reports  # the group shared the stream
    for client_id in client_ids:
        again = consume(replace(settings, mqtt_client_id=client_id), engine, idle_seconds=0.5)
        assert again.messages == 0

    with engine.connect() as conn:
        outcomes = dict(
            conn.execute(select(processed_message.c.message_id, processed_message.c.outcome)).all()
        )
        write_offs = conn.execute(
            select(
                movement.c.mrn,
                movement.c.licence_number,
                movement.c.line_number,
                movement.c.quantity,
            ).where(movement.c.kind == "write_off")
        ).all()
        manual = conn.execute(
            select(movement.c.licence_number, movement.c.line_number, func.count())
            .where(movement.c.kind == "manual_write_off")
            .group_by(movement.c.licence_number, movement.c.line_number)
        ).all()
        usage_keys = conn.execute(select(func.count()).select_from(usage)).scalar_one()
        refusal_codes = Counter(conn.execute(select(refusal.c.code)).scalars())
        lines = {(r.licence_number, r.line_number): r for r in reconciliation_rows(conn)}
        unpublished = pending_results(conn)

    # Every message processed exactly once: each id once, applied or refused, and the
    # duplicates recognised as such.
    assert set(outcomes) == set(by_id)
    assert set(outcomes.values()) <= {"applied", "refused"}
    applied = [by_id[key] for key, outcome in outcomes.items() if outcome == "applied"]
    refused = [by_id[key] for key, outcome in outcomes.items() if outcome == "refused"]
    assert sum(r["applied"] for r in reports) == len(applied)
    assert sum(r["refused"] for r in reports) == len(refused)
    assert sum(r["duplicates"] for r in reports) == len(stream) - len(planned)
    assert refused, "demand exceeds the ceilings: some declarations must be refused"
    assert unpublished == []  # every result reached the broker

    # Each write-off once: one movement per applied declaration, with its quantity.
    assert sorted((m.mrn, m.licence_number, m.line_number, m.quantity) for m in write_offs) == (
        sorted((p.mrn, p.licence_number, p.line_number, p.quantity) for p in applied)
    )
    assert usage_keys == len(applied)

    # Every manual act ran to a decision: none failed over a conflict with a consumer.
    assert manual_failed == []
    assert len(manual_accepted) + len(manual_refused) == MANUAL_ACTS

    # No lost update, no overdraw: each line's total is what was applied and accepted by hand.
    expected: dict[tuple[str, int], Decimal] = defaultdict(Decimal)
    for p in applied:
        expected[(p.licence_number, p.line_number)] += p.quantity
    assert sorted((n, line, count) for n, line, count in manual) == sorted(
        (n, line, count) for (n, line), count in Counter(manual_accepted).items()
    )
    for key, count in Counter(manual_accepted).items():
        expected[key] += 3 * count
    for key, row in lines.items():
        assert row.written_off_quantity == expected[key], key
        assert row.remaining_quantity == row.authorised_quantity - expected[key]
        assert row.remaining_quantity >= 0, f"{key} overdrawn: {row.remaining_quantity}"
    # The totals the database kept under four writers are the sums of the movements.
    with engine.connect() as conn:
        assert line_drift(conn) == []
    # Each licence's hash chain took the writers in turn: no fork, no gap (docs/ledger-audit.md).
    audit = verify_ledger(engine)
    assert audit.intact, audit.problems()
    assert audit.counts["movement"].rows >= len(write_offs) + len(manual_accepted)
    # Balances only went down, so a refused declaration cannot fit in what is left now: none
    # was refused on totals another consumer had not committed.
    for p in refused:
        assert p.quantity > lines[(p.licence_number, p.line_number)].remaining_quantity, p
    for key in manual_refused:
        assert lines[key].remaining_quantity < 3, key

    print(
        f"\n4 consumers, {settings.ledger_url.split(':')[0]}: {len(stream)} messages"
        f" ({len(planned)} declarations, {len(stream) - len(planned)} duplicates) in"
        f" {seconds:.1f} s; applied {len(applied)}, refused {len(refused)}"
        f" {dict(refusal_codes)}; manual {len(manual_accepted)} accepted,"
        f" {len(manual_refused)} refused; conflicts retried {dict(conflicts)};"
        f" per consumer {[r['messages'] for r in reports]};"
        f" remaining {[f'{r.remaining_quantity:f}' for _, r in sorted(lines.items())]}"
    )


def _declaration_for(licence_number: str) -> Planned:
    return next(
        planned
        for serial in range(1000)
        if (planned := _declaration(serial, random.Random(serial))).licence_number == licence_number
    )


def _event(planned: Planned):
    return read_event(planned.envelope, max_bytes=Settings().max_message_bytes)


def test_a_manual_write_off_waits_for_a_customs_batch_and_sees_its_total(engine):
    licence = CONTENDED[0]  # 2,000 kg
    store_licences(engine, [licence])
    declaration = _declaration_for(licence.number)
    outcome: list = []

    def officer() -> None:
        try:
            outcome.append(
                manual_write_off(
                    engine,
                    licence.number,
                    1,
                    Decimal(2000) - declaration.quantity + 1,  # fits before the batch only
                    "KGM",
                    reason="seized at the border",
                    actor=OFFICER,
                    now=RELEASED_AT,
                )
            )
        except Rejected as refused:
            outcome.append(refused)

    with engine.begin() as conn:
        result = apply_declarations(
            conn, [_event(declaration)], now=RELEASED_AT, settings=Settings()
        )
        assert result.count("applied") == 1
        other = threading.Thread(target=officer)
        other.start()
        other.join(timeout=1.0)
        assert other.is_alive(), "the manual act must wait for the batch to commit"
    other.join(30)
    (refused,) = outcome
    assert isinstance(refused, Rejected), refused
    assert {p.code for p in refused.problems} == {"over-use"}
    with engine.connect() as conn:
        (row,) = reconciliation_rows(conn, licence.number)
    assert row.written_off_quantity == declaration.quantity


def test_a_customs_batch_waits_for_a_manual_write_off_and_refuses_what_no_longer_fits(engine):
    licence = CONTENDED[1]  # 1,500 kg
    store_licences(engine, [licence])
    declaration = _declaration_for(licence.number)
    results: list = []

    def consumer() -> None:
        with engine.begin() as conn:
            batch = apply_declarations(
                conn, [_event(declaration)], now=RELEASED_AT, settings=Settings()
            )
            results.append(batch)

    other = threading.Thread(target=consumer)
    waiting: list[bool] = []

    def start_the_batch() -> None:  # the manual act is recorded, not yet committed
        other.start()
        other.join(timeout=1.0)
        waiting.append(other.is_alive())

    with before_first_commit(engine, start_the_batch):
        manual_write_off(
            engine,
            licence.number,
            1,
            Decimal(1500) - declaration.quantity + 1,  # leaves 1 kg less than the declaration
            "KGM",
            reason="re-exported under another licence",
            actor=OFFICER,
            now=RELEASED_AT,
        )
    assert waiting == [True], "the batch must wait for the manual act to commit"
    other.join(30)
    (result,) = results
    assert (result.count("refused"), result.count("applied")) == (1, 0)
    with engine.connect() as conn:
        (row,) = reconciliation_rows(conn, licence.number)
    assert row.remaining_quantity == declaration.quantity - 1


def test_a_manual_write_off_aborted_over_a_deadlock_runs_again_from_fresh_reads(engine, caplog):
    if engine.dialect.name != "postgresql":
        pytest.skip("SQLite has one writer at a time: no two transactions to deadlock")
    licence = CONTENDED[3]  # 1,600 kg
    store_licences(engine, [licence])
    caplog.set_level(logging.INFO, logger="bridge.adapters.store.db")
    outcome: list = []

    def officer() -> None:
        try:
            outcome.append(
                manual_write_off(
                    engine,
                    licence.number,
                    1,
                    Decimal(5),
                    "KGM",
                    reason="sample taken at the border",
                    actor=OFFICER,
                    now=RELEASED_AT,
                )
            )
        except Exception as error:  # reported by the test, not lost with the thread
            outcome.append(error)

    act = threading.Thread(target=officer)
    # A writer outside the lock order: it writes a movement on the line first (holding the
    # line's total row), then wants the licence the manual act holds while it waits for that
    # row. PostgreSQL aborts one of the two; the act, waiting first, is the one it picks.
    with engine.connect() as other, other.begin():
        other.exec_driver_sql("SET LOCAL deadlock_timeout = '20s'")
        other.execute(
            insert(movement).values(
                licence_number=licence.number,
                line_number=1,
                kind="write_off",
                quantity=Decimal(100),
                value=Decimal(0),
                actor="customs-declaration",
                reason="written by hand, out of the lock order",
                at=RELEASED_AT,
            )
        )
        act.start()
        deadline = time.monotonic() + 10
        while not _waiting_for_a_lock(engine):
            assert time.monotonic() < deadline, "the manual act never waited for the row"
            time.sleep(0.05)
        lock_licences(other, [licence.number])  # the deadlock; the act is aborted
    act.join(30)
    (result,) = outcome
    assert not isinstance(result, BaseException), result
    assert "transaction aborted by a deadlock; running it again" in caplog.text
    # Run again from fresh reads: it saw the other writer's 100 kg and was recorded once.
    assert result.line.written_off_quantity == Decimal(105)
    with engine.connect() as conn:
        manual = conn.execute(
            select(func.count()).where(movement.c.kind == "manual_write_off")
        ).scalar_one()
        (row,) = reconciliation_rows(conn, licence.number)
    assert manual == 1 and row.written_off_quantity == Decimal(105)


def _waiting_for_a_lock(engine) -> bool:
    """Whether a session on this ledger's database waits for a lock."""
    with engine.connect() as conn:
        waiting = conn.exec_driver_sql(
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE datname = current_database() AND wait_event_type = 'Lock'"
        )
        return bool(waiting.scalar_one())


def test_two_certificate_runs_at_once_queue_each_certificate_once(engine):
    licences = [individual_licence(), global_licence(), chemicals_licence()]
    store_licences(engine, licences, known_to_customs=False)
    reports: list = []
    errors: list = []
    start = threading.Barrier(2)

    def run() -> None:
        start.wait()
        try:
            reports.append(certify_pending(engine, now=RELEASED_AT))
        except Exception as error:  # a collision on the outbox key would land here
            errors.append(error)

    runs = [threading.Thread(target=run) for _ in range(2)]
    for thread in runs:
        thread.start()
    for thread in runs:
        thread.join(60)
    assert errors == []
    assert sum(r.certified for r in reports) == len(licences)
    assert sum(r.invalid for r in reports) == 0
    with engine.connect() as conn:
        rows = outbox_rows(conn)
    assert sorted(r["licence_number"] for r in rows) == sorted(x.number for x in licences)


def test_the_same_outbox_messages_queued_by_two_transactions_are_written_once(engine):
    messages = [
        NewMessage(f"m-{n}", "certificate", f"LIC-{n}", 1, "<certificate/>", "pending")
        for n in range(3)
    ]
    second: list = []

    def other_run() -> None:
        with engine.begin() as conn:
            second.append(add_new_messages(conn, messages, now=RELEASED_AT))

    with engine.begin() as conn:
        first = add_new_messages(conn, messages[:2], now=RELEASED_AT)
        other = threading.Thread(target=other_run)
        other.start()
        other.join(timeout=1.0)
        assert other.is_alive(), "the second insert must wait for the first transaction"
    other.join(30)
    assert first == {"m-0", "m-1"}
    assert second == [{"m-2"}]
    with engine.connect() as conn:
        assert sorted(r["message_id"] for r in outbox_rows(conn)) == ["m-0", "m-1", "m-2"]

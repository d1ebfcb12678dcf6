"""Exactly once across a real crash: the consumer process is SIGKILLed mid-stream and started
again; every event is applied once and nothing stays unacked."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path

from sqlalchemy import func, select

from bridge.adapters.store.schema import movement, processed_message, usage
from bridge.core.envelope import mrn_from_lrn
from bridge.services.config import settings_env
from bridge.services.consumer import consume
from bridge.services.customs_events import envelope_for_declaration_file, publish_events
from tests.fixtures_mqtt import RELEASED_AT, store_licences, tt_ex010a_licence

PROJECT = Path(__file__).resolve().parents[2]
EVENTS = 2500


def _consumer(settings, log: Path, idle_seconds: float) -> subprocess.Popen:
    env = dict(os.environ)
    env.update(settings_env(replace(settings, batch_size=50, batch_wait_ms=20)))
    with log.open("ab") as output:
        return subprocess.Popen(
            [
                sys.executable,
                "-m",
                "bridge.entrypoints.consumer",
                "--idle-seconds",
                str(idle_seconds),
            ],
            cwd=PROJECT,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def _processed(engine) -> int:
    """How many messages the ledger recorded, read while a consumer process writes to it."""
    with engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(processed_message)).scalar_one()


def test_sigkill_mid_stream_then_restart_applies_every_event_once(
    mqtt_settings, engine, wco_samples, tmp_path
):
    store_licences(engine, [tt_ex010a_licence(quantity="1000000")])
    assert consume(mqtt_settings, engine, idle_seconds=0.1).messages == 0  # the session exists
    envelopes = [
        envelope_for_declaration_file(
            wco_samples / "TT_EX010a.xml",
            event="released",
            mrn=mrn_from_lrn(f"crash-{n}", year=2026, country="GB"),
            event_time=RELEASED_AT,
        )
        for n in range(EVENTS)
    ]
    assert publish_events(mqtt_settings, envelopes) == EVENTS
    log = tmp_path / "consumer.log"

    victim = _consumer(mqtt_settings, log, idle_seconds=5)
    deadline = time.monotonic() + 60
    while _processed(engine) < 300 and victim.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    os.killpg(victim.pid, signal.SIGKILL)  # no goodbye: no ack, no disconnect, no cleanup
    assert victim.wait(10) == -signal.SIGKILL
    at_kill = _processed(engine)
    assert 300 <= at_kill < EVENTS, f"the kill came at {at_kill} of {EVENTS}: {log.read_text()}"

    survivor = _consumer(mqtt_settings, log, idle_seconds=1.5)
    assert survivor.wait(120) == 0, log.read_text()

    with engine.connect() as conn:
        processed = conn.execute(select(func.count()).select_from(processed_message)).scalar_one()
        moves, total = conn.execute(select(func.count(), func.sum(movement.c.quantity))).one()
        repeated = conn.execute(
            select(movement.c.mrn).group_by(movement.c.mrn).having(func.count() > 1)
        ).all()
        keys = conn.execute(select(func.count()).select_from(usage)).scalar_one()
    assert processed == moves == keys == EVENTS
    assert total == EVENTS * 10  # 10 kg each
    assert repeated == []
    # Nothing is left in the session: everything was acked after its commit.
    assert consume(mqtt_settings, engine, idle_seconds=0.5).messages == 0


def test_sigterm_stops_after_the_current_batch(mqtt_settings, engine, wco_samples, tmp_path):
    store_licences(engine, [tt_ex010a_licence(quantity="1000000")])
    assert consume(mqtt_settings, engine, idle_seconds=0.1).messages == 0
    count = 1500
    envelopes = [
        envelope_for_declaration_file(
            wco_samples / "TT_EX010a.xml",
            event="released",
            mrn=mrn_from_lrn(f"term-{n}", year=2026, country="GB"),
            event_time=RELEASED_AT,
        )
        for n in range(count)
    ]
    publish_events(mqtt_settings, envelopes)
    log = tmp_path / "consumer.log"
    consumer = _consumer(mqtt_settings, log, idle_seconds=5)
    deadline = time.monotonic() + 60
    while _processed(engine) < 100 and time.monotonic() < deadline:
        time.sleep(0.005)
    consumer.send_signal(signal.SIGTERM)
    assert consumer.wait(30) == 0, log.read_text()
    stopped_at = _processed(engine)
    assert "consume: messages=" in log.read_text()
    assert stopped_at < count

    rest = consume(mqtt_settings, engine, idle_seconds=1.0)
    with engine.connect() as conn:
        moves = conn.execute(select(func.count()).select_from(movement)).scalar_one()
    assert moves == count
    assert rest.applied == count - stopped_at and rest.duplicates == 0  # all acked on the way out


def test_a_broker_restart_mid_stream_loses_and_doubles_nothing(
    mqtt_settings, mosquitto, engine, wco_samples
):
    store_licences(engine, [tt_ex010a_licence(quantity="1000000")])
    assert consume(mqtt_settings, engine, idle_seconds=0.1).messages == 0
    count = 1500
    publish_events(
        mqtt_settings,
        [
            envelope_for_declaration_file(
                wco_samples / "TT_EX010a.xml",
                event="released",
                mrn=mrn_from_lrn(f"restart-{n}", year=2026, country="GB"),
                event_time=RELEASED_AT,
            )
            for n in range(count)
        ],
    )
    settings = mqtt_settings.with_overrides(batch_size=50, batch_wait_ms=20)
    reports: list = []
    worker = threading.Thread(
        target=lambda: reports.append(consume(settings, engine, idle_seconds=2.5, max_seconds=60))
    )
    worker.start()
    deadline = time.monotonic() + 30
    while _processed(engine) < 200 and time.monotonic() < deadline:
        time.sleep(0.005)
    at_restart = _processed(engine)
    mosquitto.restart()  # the consumer reconnects to its persisted session
    assert at_restart < count
    worker.join(90)
    assert not worker.is_alive()

    with engine.connect() as conn:
        moves = conn.execute(select(func.count()).select_from(movement)).scalar_one()
        processed = conn.execute(select(func.count()).select_from(processed_message)).scalar_one()
    assert moves == processed == count
    assert reports[0].applied == count
    assert consume(mqtt_settings, engine, idle_seconds=0.5).messages == 0
    # Every event's result reached the broker in the end: the restart delayed some, lost none.
    with engine.connect() as conn:
        states = conn.execute(
            select(processed_message.c.result_state, func.count()).group_by(
                processed_message.c.result_state
            )
        ).all()
    assert states == [("published", count)]

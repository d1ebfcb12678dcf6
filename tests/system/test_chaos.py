"""The fault-injection suite (chaos/) at its tiny size on each database, as CI runs it, and the
pieces it relies on: the oracle's own rules, the hostile messages and full declarations the
generator adds, the simulator's extra faults, and a consumer started while the ledger is away.

No assertion on speed: only that every check of the run passed and that the faults happened."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import func, select

from bridge.adapters.processes import spawn, stop_group
from bridge.adapters.store.db import make_engine
from bridge.adapters.store.schema import processed_message, quarantine
from bridge.core.certificate import build_certificate
from bridge.core.envelope import read_event
from bridge.core.errors import DeliveryError, Rejected
from bridge.services.config import Settings
from bridge.services.customs_events import publish_events
from bridge.services.mqtt_endpoints import open_session
from bridge.services.mqtt_endpoints import subscriber as DeclarationSubscriber
from bridge.services.outbox import CustomsClient
from bridge.testkit.customs_traffic_stream import TrafficEvent, traffic_stream
from bridge.testkit.declaration_plans import PlannedWriteOff
from bridge.testkit.licences import licences as synthetic_licences
from bridge.testkit.streams import HOSTILE_KINDS, SynthEvent, event_stream
from chaos.faults import PostgresRefusal
from chaos.oracle import Oracle
from chaos.sizes import SIZES
from tests.fixtures_soap import individual_licence

PROJECT = Path(__file__).resolve().parents[2]
CHECKS = {
    "balances",
    "write-offs once",
    "events once",
    "quarantine exact",
    "nothing unacknowledged",
    "results published",
    "certificates once",
    "status updates once",
    "licence statuses",
    "consumer never crashed",
    "faults as planned",
}


def _databases() -> list[str]:
    wanted = os.environ.get("ELBRIDGE_TEST_DATABASES", "sqlite,postgresql").split(",")
    return [w.strip() for w in wanted if w.strip()]


# ----------------------------------------------------------------------------- the run


@pytest.mark.parametrize("database", _databases())
def test_the_tiny_fault_injection_run_passes_every_check(database: str, tmp_path: Path):
    out = tmp_path / "chaos.json"
    command = [sys.executable, "-m", "chaos", "--size", "tiny", "--database", database]
    run = subprocess.Popen(
        [*command, "--quiet", "--json", str(out), "--workdir", str(tmp_path / "work")],
        cwd=PROJECT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        stdout, stderr = run.communicate(timeout=300)
    except subprocess.TimeoutExpired:
        run.terminate()  # SIGTERM: the run stops everything it started before it exits
        stdout, stderr = run.communicate(timeout=60)
        raise AssertionError(f"the tiny run took over 5 minutes:\n{stdout[-3000:]}") from None
    document = json.loads(out.read_text())
    failed = [c for c in document["checks"] if not c["passed"]]
    assert run.returncode == 0 and not failed, stdout[-6000:] + stderr[-3000:]
    assert {c["name"] for c in document["checks"]} == CHECKS
    assert document["passed"] is True and document["error"] is None

    size, figures = SIZES["tiny"], document["figures"]
    assert figures["messages_published"] == size.events
    assert figures["consumer_kills"] >= size.consumer_kills
    assert figures["consumer_starts"] == figures["consumer_kills"] + 1
    assert figures["broker_restarts"] >= size.broker_restarts
    assert figures["outage_seconds"] >= size.outage_seconds[database]
    assert figures["outage"]["consumer_waits_logged"] >= 1  # it met the outage, and waited
    assert figures["sync_kills"] >= size.sync_kills
    assert figures["soap_faults"] > 0 and figures["unreadable_messages"] > 0
    assert figures["stream"]["redelivery"] > 0 and figures["stream"]["amended"] > 0
    assert figures["stream"]["invalidated"] > 0
    assert figures["stream"]["amended (partial)"] > 0
    assert figures["stream"]["released (irrelevant)"] > 0
    assert "ALL CHECKS PASSED" in stdout


# -------------------------------------------------------------------------- the oracle


def _event(message_id, mrn, kind, version, *write_offs, bad=None, envelope=b"{}"):
    return SynthEvent(envelope, message_id, mrn, kind, version, 0, tuple(write_offs), bad=bad)


def _write_off(quantity: str, line: int = 1, item: int = 1) -> PlannedWriteOff:
    return PlannedWriteOff(
        item, "X002", "DE-EA-2026-004711", line, Decimal(quantity), Decimal(0), False
    )


def _oracle() -> Oracle:
    return Oracle.for_licences([individual_licence()])


def test_the_oracle_keeps_the_highest_version_whatever_the_arrival_order():
    release = _event("m1", "26DE1", "released", 1, _write_off("10"))
    amendment = _event("m2", "26DE1", "amended", 2, _write_off("4"))
    for order in ([release, amendment], [amendment, release]):
        oracle = _oracle()
        for event in order:
            oracle.add(event)
        assert oracle.document_write_offs() == {
            ("26DE1", 1, "X002", "DE-EA-2026-004711"): (Decimal(4), Decimal(0))
        }
        line = ("DE-EA-2026-004711", 1)
        authorised = oracle.ceilings[line].quantity
        assert oracle.balances()[line][0] == authorised - 4


def test_the_oracle_writes_nothing_off_an_invalidated_declaration_and_ignores_redeliveries():
    oracle = _oracle()
    release = _event("m1", "26DE1", "released", 1, _write_off("10"))
    other = _event("m3", "26DE2", "released", 1, _write_off("7", line=2))
    for event in (release, release, other, _event("m2", "26DE1", "invalidated", 1), other):
        oracle.add(event)
    assert oracle.line_totals()[("DE-EA-2026-004711", 1)] == (0, 0)
    assert oracle.line_totals()[("DE-EA-2026-004711", 2)] == (7, 0)
    assert oracle.redeliveries == 2
    assert oracle.valid_ids == {"m1", "m2", "m3"}


def test_the_oracle_expects_each_unreadable_payload_once_and_a_used_up_licence_exhausted():
    oracle = _oracle()
    for _ in range(2):
        oracle.add(_event("u1", None, "unreadable", 0, bad="not-json", envelope=b"<<x>>"))
    oracle.add(_event("u2", None, "unreadable", 0, bad="not-json", envelope=b"<<y>>"))
    assert oracle.bad_payloads == {b"<<x>>": "not-json", b"<<y>>": "not-json"}
    assert oracle.expected_processed == 2
    licence = individual_licence()
    for n, line in enumerate(licence.lines):
        oracle.add(
            _event(
                f"m{n}", f"26DE{n}", "released", 1, _write_off(str(line.quantity), line.line_number)
            )
        )
    assert oracle.used_up() == {licence.number}


def _partial(message_id, mrn, version, items, *write_offs):
    return TrafficEvent(
        b"{}",
        message_id,
        mrn,
        "amended",
        version,
        0,
        tuple(write_offs),
        partial=True,
        carried_items=frozenset(items),
    )


def test_the_oracle_merges_partial_amendments_in_version_order_whatever_the_arrival():
    release = _event("m1", "26DE1", "released", 1, _write_off("10"), _write_off("5", 2, item=2))
    lowered = _partial("m2", "26DE1", 2, {1}, _write_off("7"))
    removed = _partial("m3", "26DE1", 3, {2})  # item 2 carried without its document
    for order in ([release, lowered, removed], [removed, lowered, release, lowered]):
        oracle = _oracle()
        for event in order:
            oracle.add(event)
        assert oracle.document_write_offs() == {
            ("26DE1", 1, "X002", "DE-EA-2026-004711"): (Decimal(7), Decimal(0))
        }
        assert oracle.line_totals()[("DE-EA-2026-004711", 2)] == (0, 0)
    oracle = _oracle()
    for event in (release, lowered, _event("m4", "26DE1", "invalidated", 4)):
        oracle.add(event)
    assert oracle.document_write_offs() == {}


def test_the_oracle_expects_irrelevant_declarations_ignored_and_writes_nothing_for_them():
    oracle = _oracle()
    oracle.add(TrafficEvent(b"{}", "i1", "26DE9", "released", 1, 0, irrelevant=True))
    assert oracle.irrelevant_ids == {"i1"} and oracle.document_write_offs() == {}
    assert oracle.kinds == {"released (irrelevant)": 1}


def test_the_stream_adds_valid_partial_amendments_and_irrelevant_declarations():
    licences = list(synthetic_licences(30, seed=3, scale=1000))
    events = list(
        traffic_stream(licences, 600, seed=4, partial_amendments=0.2, irrelevant=0.1, minimal=True)
    )
    partial = [e for e in events if getattr(e, "partial", False)]
    irrelevant = [e for e in events if getattr(e, "irrelevant", False)]
    assert len(events) == 600 and len(partial) > 30 and len(irrelevant) > 30
    for event in partial + irrelevant:
        read = read_event(event.envelope, max_bytes=2 * 1024 * 1024)
        assert read.declaration is not None
    for event in partial:
        declaration = read_event(event.envelope, max_bytes=2 * 1024 * 1024).declaration
        assert declaration.exporter_eori is None  # only the goods item it changes
        assert {item.sequence for item in declaration.goods_items} == event.carried_items


# ------------------------------------------------------------- generator and simulator


def test_the_hostile_messages_of_the_stream_are_refused_with_a_reason():
    licences = list(synthetic_licences(20, seed=3, scale=1000))
    events = list(event_stream(licences, 120, seed=4, bad=1.0, bad_kinds=HOSTILE_KINDS))
    assert {e.bad for e in events} == set(HOSTILE_KINDS)
    for event in events:
        with pytest.raises(Rejected) as refused:
            read_event(event.envelope, max_bytes=2 * 1024 * 1024)
        assert refused.value.problems[0].code in ("xml-refused", "bad-envelope"), event.bad


def test_a_minimal_stream_writes_some_declarations_in_full_when_asked():
    licences = list(synthetic_licences(20, seed=3, scale=1000))

    def sizes(share: float) -> list[int]:
        stream = event_stream(licences, 200, seed=4, minimal=True, full_share=share)
        return [len(e.envelope) for e in stream]

    assert max(sizes(0.0)) < 5_000
    full = [n for n in sizes(0.3) if n > 10_000]
    assert 30 <= len(full) <= 90


@pytest.mark.parametrize(
    ("kind", "code"), [("http502", "http-502"), ("drop_after_store", "connection-dropped")]
)
def test_the_simulators_extra_faults_are_transient_and_a_stored_one_comes_back_duplicate(
    customs_simulator_factory, kind: str, code: str
):
    simulator = customs_simulator_factory(next=1, kinds=[kind])
    client = CustomsClient(Settings(soap_url=simulator.url, soap_timeout=2))
    certificate = build_certificate(individual_licence())
    with pytest.raises(DeliveryError) as failed:
        client.submit_certificate("c-1", certificate, datetime.now(UTC))
    assert (failed.value.transient, failed.value.code) == (True, code)
    answer = client.submit_certificate("c-1", certificate, datetime.now(UTC))
    assert answer.status == ("DUPLICATE" if kind == "drop_after_store" else "ACCEPTED")
    assert len(simulator.received()) == 1
    assert simulator.stats()[f"injected_{kind}"] == 1


# ------------------------------------------------------ a consumer started in an outage


@pytest.mark.skipif("postgresql" not in _databases(), reason="PostgreSQL not among the databases")
def test_a_consumer_started_while_the_ledger_refuses_connections_waits_for_it(
    postgres_cluster, mosquitto, tmp_path: Path
):
    url = postgres_cluster.create_database("chaos_started_in_outage")
    make_engine(url).dispose()
    settings = Settings(
        home=tmp_path,
        database_url=url,
        mqtt_host=mosquitto.host,
        mqtt_port=mosquitto.port,
        mqtt_client_id="elbridge-started-in-outage",
        mqtt_topic="test/outage/declarations",
    )
    open_session(settings)
    publish_events(settings, [b"<<not a declaration event>>"])
    outage = PostgresRefusal(url)
    log = tmp_path / "consumer.log"
    outage.begin()
    try:
        env = {
            "ELBRIDGE_HOME": str(tmp_path),
            "ELBRIDGE_DATABASE_URL": url,
            "ELBRIDGE_MQTT_HOST": mosquitto.host,
            "ELBRIDGE_MQTT_PORT": str(mosquitto.port),
            "ELBRIDGE_MQTT_CLIENT_ID": settings.mqtt_client_id,
            "ELBRIDGE_MQTT_TOPIC": settings.mqtt_topic,
        }
        consumer = spawn(
            [sys.executable, "-m", "bridge.entrypoints.consumer", "--idle-seconds", "2"], env, log
        )
        try:
            deadline = time.monotonic() + 30
            while "ledger unavailable at start" not in log.read_text(errors="replace"):
                assert consumer.poll() is None, log.read_text()  # it waits, it does not exit
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.1)
            outage.end()
            assert consumer.wait(60) == 0, log.read_text()
        finally:
            stop_group(consumer)
    finally:
        outage.end()
        outage.dispose()
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            assert conn.execute(select(func.count()).select_from(quarantine)).scalar_one() == 1
            outcomes = conn.execute(select(processed_message.c.outcome)).scalars().all()
    finally:
        engine.dispose()
    assert outcomes == ["quarantined"]


# --------------------------------------------------- a consumer started in a broker restart


def test_a_subscriber_started_while_the_broker_restarts_connects_once_it_is_back(mosquitto):
    settings = Settings(
        mqtt_host=mosquitto.host,
        mqtt_port=mosquitto.port,
        mqtt_client_id="elbridge-started-in-restart",
        mqtt_topic="test/restart/declarations",
    )
    mosquitto.stop()
    back = threading.Timer(1.5, mosquitto.start)
    back.start()
    try:
        subscriber = DeclarationSubscriber(settings).start(timeout=15)  # refused at first
    finally:
        back.join()
    try:
        assert subscriber.subscribed.is_set() and mosquitto.running
    finally:
        subscriber.close()

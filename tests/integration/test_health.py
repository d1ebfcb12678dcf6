"""/health, /ready and /metrics on real parts (docs/health-and-metrics.md): a real mosquitto
stopped and started again, the real customs simulator stopped, SQLite and PostgreSQL ledgers
filled by the real ingest, certification, consumer and quarantine; the metrics read back with
prometheus_client's own parser and compared with counts made here in plain SQL."""

from __future__ import annotations

import json
import math
import shutil
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import text, update
from starlette.applications import Starlette
from starlette.testclient import TestClient

from bridge.adapters.mqtt.publisher import Publisher
from bridge.adapters.store.alerts import acknowledge_alerts, raise_alert
from bridge.adapters.store.db import make_engine
from bridge.adapters.store.ledger import insert_refusals
from bridge.adapters.store.schema import outbox
from bridge.core.ledger_state import Refusal
from bridge.core.paths import MAPPINGS_DIR
from bridge.entrypoints import health_routes
from bridge.entrypoints.demo import DEMO_EVENTS, declaration_bytes
from bridge.services.config import Settings, mqtt_options
from bridge.services.consumer import consume
from bridge.services.customs_events import envelope_for_declaration_file, publish_events
from bridge.services.health import gather_status
from bridge.services.ingest import ingest_inbox
from bridge.services.outbox import certify_pending
from bridge.services.signing import certificate_signer

# The scrape's time; the ledger is filled relative to it, and near the wall clock, since
# `elbridge status` (tests/system/test_status_cli.py) reads the same ledger at its own now.
NOW = datetime.now(UTC).replace(microsecond=0)
QUEUED_AT = NOW - timedelta(hours=3)  # when the certificates were queued
DELAYS = [10, 20, 30, 40, 50, 60, 70, 80, 90, 100]  # seconds from queueing to delivery
FAILED_LICENCE = "AGG-2025-001234"  # no declaration quotes it
PENDING_LICENCE = "SG-2025-000220"


def probe_app(settings: Settings, engine, now: datetime = NOW) -> TestClient:
    """The health routes as the console includes them: settings, ledger and clock in the app's
    state."""
    app = Starlette(routes=health_routes.routes)
    app.state.settings, app.state.engine, app.state.clock = settings, engine, lambda: now
    return TestClient(app)


@pytest.fixture
def settings(mqtt_settings, customs_simulator) -> Settings:
    return replace(mqtt_settings, soap_url=customs_simulator.url, health_timeout=5.0)


# ------------------------------------------------------------------------------- /ready


def test_ready_names_the_broker_while_mosquitto_is_stopped_and_recovers(
    settings, engine, mosquitto
):
    client = probe_app(settings, engine)
    first = client.get("/ready")
    assert first.status_code == 200, first.text
    assert first.json()["down"] == []
    assert set(first.json()["dependencies"]) == {"ledger", "broker", "customs"}

    mosquitto.stop()
    down = client.get("/ready")
    assert down.status_code == 503
    body = down.json()
    assert body["down"] == ["broker"]
    reason = body["dependencies"]["broker"]["reason"]
    assert f"127.0.0.1:{mosquitto.port}" in reason and "not reachable" in reason
    assert body["dependencies"]["ledger"]["up"] and body["dependencies"]["customs"]["up"]
    assert client.get("/health").status_code == 200  # alive all the same

    mosquitto.start()
    again = client.get("/ready")
    assert again.status_code == 200, again.text
    assert again.json()["down"] == []


def test_ready_names_customs_when_the_simulator_is_down(settings, engine, customs_simulator):
    client = probe_app(settings, engine)
    assert client.get("/ready").status_code == 200
    customs_simulator.stop()
    answer = client.get("/ready")
    assert answer.status_code == 503
    assert answer.json()["down"] == ["customs"]
    reason = answer.json()["dependencies"]["customs"]["reason"]
    assert settings.soap_url in reason and "refused" in reason
    # Narrowed to what a pod that serves only the ledger needs, it is ready.
    assert client.get("/ready?check=ledger,broker").status_code == 200
    assert client.get("/ready?check=nonsense").status_code == 400


def test_ready_names_a_ledger_that_cannot_be_read(tmp_path, mosquitto, customs_simulator):
    missing = tmp_path / "nowhere" / "ledger.db"
    engine = make_engine(f"sqlite:///{missing}", create=False)
    settings = Settings(
        home=tmp_path,
        mqtt_host=mosquitto.host,
        mqtt_port=mosquitto.port,
        soap_url=customs_simulator.url,
    )
    answer = probe_app(settings, engine).get("/ready")
    assert answer.status_code == 503
    assert answer.json()["down"] == ["ledger"]
    assert str(missing) in answer.json()["dependencies"]["ledger"]["reason"]
    assert not missing.exists()  # a probe creates no ledger


def test_the_console_serves_the_probes_without_a_login(settings, engine):
    from bridge.entrypoints.console.app import create_app

    client = TestClient(create_app(settings, engine), follow_redirects=False)
    assert client.get("/health").status_code == 200
    assert client.get("/ready").status_code == 200
    assert client.get("/metrics").status_code == 200
    assert client.get("/licences").status_code == 303  # the pages still want a login


def test_a_metrics_token_guards_ready_and_metrics_not_health(settings, engine):
    token = "probe-" + "x" * 20  # made for this test
    client = probe_app(replace(settings, metrics_token=token), engine)
    assert client.get("/health").status_code == 200
    for path in ("/ready", "/metrics"):
        refused = client.get(path)
        assert refused.status_code == 401
        assert refused.headers["www-authenticate"].startswith("Bearer")
        assert client.get(path, headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert client.get(path, headers={"Authorization": f"Bearer {token}"}).status_code == 200


# ------------------------------------------------------------------------------- /metrics


def fill_ledger(settings: Settings, engine, wco_samples) -> None:
    """The ledger as a working bridge leaves it: national files ingested (rejects kept),
    certificates queued, delivered after known delays, one failed, one still pending; the
    demo's declaration events and one unreadable message through mosquitto and the consumer;
    two alerts more, one of them acknowledged."""
    inbox = settings.inbox
    inbox.mkdir(parents=True, exist_ok=True)
    for sample in sorted((MAPPINGS_DIR / "samples").iterdir()):
        if sample.is_file():
            shutil.copyfile(sample, inbox / sample.name)
    ingest_inbox(engine, inbox, now=QUEUED_AT)
    certify_pending(engine, now=QUEUED_AT, signer=certificate_signer(settings))
    with engine.begin() as conn:
        ids = conn.execute(
            text("SELECT id, licence_number FROM outbox WHERE status = 'pending' ORDER BY id")
        ).all()
        others = [
            row_id for row_id, number in ids if number not in (FAILED_LICENCE, PENDING_LICENCE)
        ]
        assert len(others) >= len(DELAYS)
        for row_id, delay in zip(others, DELAYS, strict=False):
            at = QUEUED_AT + timedelta(seconds=delay)
            conn.execute(
                update(outbox)
                .where(outbox.c.id == row_id)
                .values(status="delivered", delivered_at=at, last_attempt_at=at, attempts=1)
            )
        for row_id in others[len(DELAYS) :]:  # any more: delivered at the last delay
            at = QUEUED_AT + timedelta(seconds=DELAYS[-1])
            conn.execute(
                update(outbox)
                .where(outbox.c.id == row_id)
                .values(status="delivered", delivered_at=at, last_attempt_at=at, attempts=1)
            )
        failed_at = QUEUED_AT + timedelta(minutes=5)
        conn.execute(
            update(outbox)
            .where(outbox.c.licence_number == FAILED_LICENCE)
            .values(
                status="failed",
                failure="refused",
                last_attempt_at=failed_at,
                last_error="refused by customs",
            )
        )

    assert consume(settings, engine, idle_seconds=0.1).messages == 0  # the session exists
    sent = settings.home / "declarations"
    sent.mkdir(exist_ok=True)
    envelopes = []
    for number, event in enumerate(DEMO_EVENTS, 1):
        path = sent / f"{number:02d}_{event.file}"
        path.write_bytes(declaration_bytes(wco_samples, event))
        envelopes.append(
            envelope_for_declaration_file(
                path, event=event.event, mrn=event.mrn, event_time=datetime.now(UTC)
            )
        )
    publish_events(settings, envelopes)
    with Publisher(mqtt_options(settings)).start() as raw:
        raw.publish(settings.mqtt_topic, [b"\x1b[31mnot an envelope at all\x1b[0m"])
    report = consume(settings, engine, idle_seconds=1.0, max_seconds=60)
    assert report.messages == len(envelopes) + 1

    with engine.begin() as conn:
        raise_alert(conn, "ceiling-below-usage", "a ceiling lowered below usage", now=NOW)
        raise_alert(conn, "exhausted", "a licence exhausted", now=NOW)
        (acknowledged,) = conn.execute(
            text("SELECT id FROM alert WHERE kind = 'exhausted'")
        ).scalars()
        assert acknowledge_alerts(conn, [acknowledged], actor="A. Officer", now=NOW)


def _families(body: str) -> dict[str, dict[tuple, float]]:
    """{sample name: {sorted label items: value}} from a text exposition."""
    found: dict[str, dict[tuple, float]] = {}
    for family in text_string_to_metric_families(body):
        for sample in family.samples:
            found.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return found


def _one(found, name: str, **labels) -> float:
    return found[name][tuple(sorted(labels.items()))]


def _sql(engine, query: str) -> list[tuple]:
    with engine.connect() as conn:
        return [tuple(row) for row in conn.execute(text(query))]


def nearest_rank(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[math.ceil(fraction * len(ordered)) - 1]


def test_metrics_show_what_the_ledger_holds(settings, engine, wco_samples):
    fill_ledger(settings, engine, wco_samples)
    answer = probe_app(settings, engine).get("/metrics")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/plain; version=0.0.4")
    found = _families(answer.text)

    for dependency in ("ledger", "broker", "customs"):
        assert _one(found, "elbridge_dependency_up", dependency=dependency) == 1.0
    assert _one(found, "elbridge_ready") == 1.0

    outcomes = dict(
        _sql(engine, "SELECT outcome, COUNT(*) FROM processed_message GROUP BY outcome")
    )
    assert {"applied", "refused", "ignored", "quarantined"} <= set(outcomes)
    for outcome in ("applied", "refused", "ignored", "quarantined", "duplicate", "stale", "held"):
        assert _one(found, "elbridge_declaration_events_total", outcome=outcome) == outcomes.get(
            outcome, 0
        ), outcome
    ((refused,),) = _sql(engine, "SELECT COUNT(*) FROM refusal")
    ((rejected,),) = _sql(engine, "SELECT COUNT(*) FROM reject")
    ((quarantined,),) = _sql(engine, "SELECT COUNT(*) FROM quarantine")
    assert refused >= 1 and rejected >= 1 and quarantined >= 1
    ((documents,),) = _sql(
        engine,
        "SELECT COUNT(*) FROM (SELECT DISTINCT message_id, goods_item, document_code,"
        " document_ref FROM refusal) d",
    )
    assert _one(found, "elbridge_refused_documents_total") == documents
    for code, number in _sql(engine, "SELECT code, COUNT(*) FROM refusal GROUP BY code"):
        assert _one(found, "elbridge_refusals_total", code=code) == number
    assert _one(found, "elbridge_rejected_records_total") == rejected
    assert _one(found, "elbridge_quarantined_messages_total") == quarantined
    assert _one(found, "elbridge_quarantine_unsettled_messages") == quarantined  # none replayed
    for kind, number in _sql(engine, "SELECT kind, COUNT(*) FROM movement GROUP BY kind"):
        assert _one(found, "elbridge_movements_total", kind=kind) == number

    statuses = dict(_sql(engine, "SELECT status, COUNT(*) FROM outbox GROUP BY status"))
    assert statuses["failed"] == 1 and statuses["pending"] >= 1
    for status, number in statuses.items():
        assert _one(found, "elbridge_outbox_messages", status=status) == number
    # The pending certificate was queued three hours before the scrape, the failed one failed
    # five minutes after it was queued.
    assert _one(found, "elbridge_outbox_oldest_pending_age_seconds") == 3 * 3600
    assert _one(found, "elbridge_outbox_oldest_failed_age_seconds") == 3 * 3600 - 300
    # What customs do not have and should, as the licences DAG's alarm counts it.
    assert (
        _one(found, "elbridge_outbox_undelivered_messages", status="pending") == statuses["pending"]
    )
    assert _one(found, "elbridge_outbox_undelivered_messages", status="failed") == 1
    failures = dict(
        _sql(
            engine, "SELECT failure, COUNT(*) FROM outbox WHERE status = 'failed' GROUP BY failure"
        )
    )
    assert failures == {"refused": 1}
    assert _one(found, "elbridge_outbox_failed_messages", failure="refused") == 1

    delays = [
        (_utc(done) - _utc(queued)).total_seconds()
        for queued, done in _sql(
            engine,
            "SELECT created_at, delivered_at FROM outbox"
            " WHERE status = 'delivered' AND delivered_at IS NOT NULL",
        )
    ]
    assert len(delays) >= len(DELAYS)
    name = "elbridge_outbox_delivery_latency_seconds"
    assert _one(found, name, quantile="0.5") == pytest.approx(nearest_rank(delays, 0.5))
    assert _one(found, name, quantile="0.95") == pytest.approx(nearest_rank(delays, 0.95))
    assert _one(found, f"{name}_count") == len(delays)
    assert _one(found, f"{name}_sum") == pytest.approx(sum(delays), abs=0.01)

    open_alerts = dict(
        _sql(engine, "SELECT kind, COUNT(*) FROM alert WHERE state = 'open' GROUP BY kind")
    )
    assert "exhausted" not in open_alerts and open_alerts["over-use"] >= 1
    assert _one(found, "elbridge_open_alerts") == sum(open_alerts.values())
    for kind, number in open_alerts.items():
        assert _one(found, "elbridge_open_alerts_by_kind", kind=kind) == number

    problems = gather_status(settings, engine, now=NOW).problems
    assert (
        _one(found, "elbridge_problems") == len(problems) == 4
    )  # failed, overdue, alerts, quarantine


def test_a_document_refused_for_two_reasons_counts_once_and_under_each_code(settings, engine):
    def refused(item: int, code: str) -> Refusal:
        return Refusal("26DE1", item, "X002", "DE/1", "DE/1", 1, code, f"{code} (why)", "m-1")

    with engine.begin() as conn:
        insert_refusals(
            conn,
            [refused(1, "over-use"), refused(1, "licence-expired"), refused(2, "over-use")],
            NOW,
        )
    found = _families(probe_app(settings, engine).get("/metrics").text)
    assert _one(found, "elbridge_refused_documents_total") == 2
    assert _one(found, "elbridge_refusals_total", code="over-use") == 2
    assert _one(found, "elbridge_refusals_total", code="licence-expired") == 1
    figures = gather_status(settings, engine, now=NOW).figures
    assert (figures.refused_documents, figures.refusals) == (
        2,
        {"over-use": 2, "licence-expired": 1},
    )


def test_metrics_still_answer_while_the_ledger_is_down(tmp_path, mosquitto):
    settings = Settings(home=tmp_path, mqtt_host=mosquitto.host, mqtt_port=mosquitto.port)
    engine = make_engine(f"sqlite:///{tmp_path / 'gone' / 'ledger.db'}", create=False)
    answer = probe_app(settings, engine).get("/metrics")
    assert (
        answer.status_code == 200
    )  # Prometheus sees the outage in the figures, not a failed scrape
    found = _families(answer.text)
    assert _one(found, "elbridge_dependency_up", dependency="ledger") == 0.0
    assert _one(found, "elbridge_dependency_up", dependency="broker") == 1.0
    assert _one(found, "elbridge_ready") == 0.0
    assert "elbridge_declaration_events_total" not in found


def test_openmetrics_when_the_scraper_asks_for_it(settings, engine):
    answer = probe_app(settings, engine).get(
        "/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"}
    )
    assert answer.headers["content-type"].startswith("application/openmetrics-text")
    assert answer.text.rstrip().endswith("# EOF")
    assert "# UNIT elbridge_outbox_oldest_pending_age_seconds seconds" in answer.text


def _utc(moment):
    if isinstance(moment, str):
        moment = datetime.fromisoformat(moment)
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


def test_status_as_json_is_plain_data(settings, engine):
    status = gather_status(settings, engine, now=NOW)
    data = json.loads(json.dumps(status.as_dict()))
    assert data["ready"] is True and data["figures"]["outbox"]["pending"] == 0

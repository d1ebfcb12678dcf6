"""`elbridge status [--json]` as operators run it (a subprocess, settings from the environment)
against a real mosquitto, the real customs simulator and both ledgers; and the query service's
/ready and /metrics served over HTTP by its own process."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from dataclasses import replace
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import text

from bridge.entrypoints.query_service import start_query_service
from bridge.services.config import Settings, settings_env
from tests.integration.test_health import fill_ledger, probe_app

SETTINGS = (
    "database_url",
    "mqtt_host",
    "mqtt_port",
    "mqtt_client_id",
    "mqtt_topic",
    "soap_url",
    "health_timeout",
)


ELBRIDGE = (sys.executable, "-m", "bridge.entrypoints.cli")


def elbridge_status(settings: Settings, *argv: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ELBRIDGE_")}
    env.update(settings_env(settings, SETTINGS))
    return subprocess.run(
        [*ELBRIDGE, "status", "--home", str(settings.home), *argv],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )


@pytest.fixture
def settings(mqtt_settings, customs_simulator) -> Settings:
    return replace(mqtt_settings, soap_url=customs_simulator.url, health_timeout=5.0)


def _sql(engine, query: str) -> dict:
    with engine.connect() as conn:
        return {row[0]: row[1] for row in conn.execute(text(query))}


def test_status_json_tells_the_same_figures_as_the_ledger_and_the_metrics(
    settings, engine, wco_samples
):
    fill_ledger(settings, engine, wco_samples)
    done = elbridge_status(settings, "--json")
    # Everything is up, but certificates failed, alerts are open, a message is in quarantine.
    assert done.returncode == 4, done.stderr
    status = json.loads(done.stdout)
    assert status["ready"] is True
    assert [d["name"] for d in status["dependencies"] if d["up"]] == ["ledger", "broker", "customs"]
    figures = status["figures"]

    outcomes = _sql(engine, "SELECT outcome, COUNT(*) FROM processed_message GROUP BY outcome")
    assert {k: v for k, v in figures["events"].items() if v} == outcomes
    assert figures["outbox"] == {
        **{"pending": 0, "delivered": 0, "failed": 0},
        **_sql(engine, "SELECT status, COUNT(*) FROM outbox GROUP BY status"),
    }
    assert figures["open_alerts"] == _sql(
        engine, "SELECT kind, COUNT(*) FROM alert WHERE state = 'open' GROUP BY kind"
    )
    assert (
        figures["refused_documents"]
        == _sql(
            engine,
            "SELECT 1, COUNT(*) FROM (SELECT DISTINCT message_id, goods_item, document_code,"
            " document_ref FROM refusal) d",
        )[1]
    )
    assert figures["refusals"] == _sql(engine, "SELECT code, COUNT(*) FROM refusal GROUP BY code")
    assert figures["rejected_records"] == _sql(engine, "SELECT 1, COUNT(*) FROM reject")[1]
    assert figures["quarantine_unsettled"] == _sql(engine, "SELECT 1, COUNT(*) FROM quarantine")[1]

    metrics = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(
            probe_app(settings, engine).get("/metrics").text
        )
        for sample in family.samples
    }
    for outcome, number in figures["events"].items():
        assert metrics[("elbridge_declaration_events_total", (("outcome", outcome),))] == number
    for state, number in figures["outbox"].items():
        assert metrics[("elbridge_outbox_messages", (("status", state),))] == number
    assert metrics[("elbridge_open_alerts", ())] == figures["open_alert_count"]
    latency = figures["latency"]
    assert metrics[("elbridge_outbox_delivery_latency_seconds_count", ())] == latency["count"]
    assert metrics[("elbridge_outbox_delivery_latency_seconds_sum", ())] == pytest.approx(
        latency["total_seconds"]
    )
    assert len(status["problems"]) == metrics[("elbridge_problems", ())] == 4

    table = elbridge_status(settings)
    assert table.returncode == 4
    assert "READY" in table.stdout and "Needs a person:" in table.stdout
    assert "1 outbox message(s) failed: see `elbridge outbox list --status failed`" in table.stdout
    assert figures["refusals"]  # the filled ledger has refusals: each code is named with its count
    for code, number in figures["refusals"].items():
        assert f"{number} {code}" in table.stdout
        assert metrics[("elbridge_refusals_total", (("code", code),))] == number


def test_status_names_the_broker_while_it_is_down(settings, engine, mosquitto):
    mosquitto.stop()
    done = elbridge_status(settings, "--json")
    assert done.returncode == 1, done.stderr
    status = json.loads(done.stdout)
    down = [d for d in status["dependencies"] if not d["up"]]
    assert [d["name"] for d in down] == ["broker"]
    assert f"127.0.0.1:{mosquitto.port}" in down[0]["reason"]
    table = elbridge_status(settings)
    assert table.returncode == 1
    assert "NOT READY: down: broker" in table.stdout


def test_status_names_customs_while_they_are_down(settings, engine, customs_simulator):
    customs_simulator.stop()
    done = elbridge_status(settings, "--json")
    assert done.returncode == 1
    down = [d for d in json.loads(done.stdout)["dependencies"] if not d["up"]]
    assert [d["name"] for d in down] == ["customs"]
    assert settings.soap_url in down[0]["reason"]


def test_status_is_0_when_ready_and_nothing_needs_a_person(settings, engine):
    done = elbridge_status(settings)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Nothing needs a person." in done.stdout


def test_status_refuses_an_unknown_dependency(settings):
    done = elbridge_status(settings, "--check", "ledger,moon")
    assert done.returncode == 2
    assert "--check" in done.stderr and "ledger, broker, customs" in done.stderr


def test_the_query_service_serves_ready_and_metrics(tmp_path: Path, ledger_url, engine):
    with socket.socket() as probe:  # a port nothing listens on, for the broker
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    environment = {"ELBRIDGE_MQTT_PORT": str(closed)}
    with start_query_service(
        tmp_path / "query-service", ledger_url, environment=environment
    ) as service:
        base = service.url.rsplit("/", 1)[0]
        with urllib.request.urlopen(f"{base}/ready", timeout=30) as answer:
            ready = json.loads(answer.read())
        assert answer.status == 200
        assert list(ready["dependencies"]) == ["ledger"]  # a query service needs nothing else
        with urllib.request.urlopen(f"{base}/metrics", timeout=30) as answer:
            body = answer.read().decode()
        names = {family.name for family in text_string_to_metric_families(body)}
        assert {"elbridge_dependency_up", "elbridge_outbox_messages"} <= names
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(f"{base}/ready?check=broker", timeout=30)
        assert refused.value.code == 503
        assert json.loads(refused.value.read())["down"] == ["broker"]

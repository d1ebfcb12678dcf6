"""What an operator sees in Airflow, checked through Airflow's own REST API on a real
`airflow standalone` with the project's DAGs and plugin: a run that rejected national records,
set an unreadable file aside, refused a write-off, quarantined a message, and left
certificates undelivered while customs are away, is not green; the reasons are readable
WARNING lines in the task logs, the counts are in XCom; an idle write-off run is told apart
from one that processed events; the console is in Airflow's navigation.

One standalone serves every check (starting one takes most of the time). Customs answer 503
to everything, the alarm threshold is 0 minutes (pending at all is too long), and a scheduled
write-off run lasts 15 seconds instead of an hour."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from bridge.core.paths import MAPPINGS_DIR
from bridge.entrypoints.airflow_standalone import AirflowStandalone, start_airflow
from bridge.services.config import load_settings
from bridge.services.customs_events import envelope_for_declaration_file, publish_events
from tests.fixtures_airflow import DAGS_FOLDER

pytestmark = pytest.mark.slow

LICENCES = "licences_to_customs"
DECLARATIONS = "declarations_to_writeoffs"
MRN = "26GBVISIBLE0000001"
UNKNOWN_LICENCE = "GBSIEXYK3ZZZPADR-9999"


def _wait_for(what: str, found: Callable[[], Any], timeout: float, airflow: AirflowStandalone):
    deadline = time.monotonic() + timeout
    while not (result := found()):
        airflow._check_alive()
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(1)
    return result


def _warnings(airflow: AirflowStandalone, dag_id: str, run_id: str, task_id: str) -> list[str]:
    """The WARNING lines of a task's log, as the API serves them."""
    lines = airflow.task_log(dag_id, run_id, task_id)
    return [line["event"] for line in lines if line.get("level") == "warning"]


def _finished_runs(airflow: AirflowStandalone, dag_id: str) -> list[dict[str, Any]]:
    return [r for r in airflow.dag_runs(dag_id) if r["state"] in ("success", "failed")]


def test_an_operator_sees_every_problem_in_airflow(
    tmp_path, mosquitto, customs_simulator, wco_samples
):
    home = tmp_path / "bridge"
    inbox = home / "inbox"
    inbox.mkdir(parents=True)
    for sample in sorted(MAPPINGS_DIR.joinpath("samples").iterdir()):
        (inbox / sample.name).write_bytes(sample.read_bytes())
    (inbox / "licences-broken.json").write_text("{ this is not JSON")
    ledger_url = f"sqlite:///{tmp_path / 'ledger.db'}"
    customs_simulator.set_faults(rate=1.0, kinds=["http503"])  # customs are away
    env = {
        "ELBRIDGE_HOME": str(home),
        "ELBRIDGE_UNDELIVERED_ALARM_MINUTES": "0",
        "ELBRIDGE_DECLARATION_RUN_MINUTES": "0.25",
        "AIRFLOW_CONN_ELBRIDGE_LEDGER": json.dumps({"conn_type": "generic", "host": ledger_url}),
        "AIRFLOW_CONN_ELBRIDGE_MQTT": json.dumps(
            {"conn_type": "generic", "host": mosquitto.host, "port": mosquitto.port}
        ),
        "AIRFLOW_CONN_ELBRIDGE_CUSTOMS_SOAP": json.dumps(
            {"conn_type": "http", "host": customs_simulator.url}
        ),
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
    }
    with start_airflow(tmp_path / "airflow", dags_folder=DAGS_FOLDER, env=env) as airflow:
        # -- licences: rejects, an unreadable file, certificates customs do not take ----------
        # Unpaused, each DAG's first scheduled run starts at once (the latest slot not run).
        airflow.unpause(LICENCES)
        airflow.unpause(DECLARATIONS)  # its first, idle, runs go on meanwhile

        def ingesting() -> str | None:
            for run in _finished_runs(airflow, LICENCES):
                ingested = airflow.xcom(LICENCES, run["dag_run_id"], "ingest_national_files")
                if ingested and ingested["files"]:
                    return run["dag_run_id"]
            return None

        run_id = _wait_for("the licences run that read the inbox", ingesting, 150, airflow)
        airflow.pause(LICENCES)
        assert airflow.dag_run(LICENCES, run_id)["state"] == "failed"
        assert airflow.task_states(LICENCES, run_id) == {
            "ingest_national_files": "success",
            "certify_new_versions": "success",
            "deliver_certificates": "success",  # transient refusals: the certificates wait
            "check_undelivered_certificates": "failed",
            "report_problems": "failed",
            "fail_if_a_step_failed": "skipped",
        }
        ingested = airflow.xcom(LICENCES, run_id, "ingest_national_files")
        assert ingested["rejected"] >= 1
        assert ingested["problems"]["rejected_records"] == ingested["rejected"]
        assert ingested["problems"]["unreadable_files"] == 1
        assert airflow.xcom(LICENCES, run_id, "report_problems", "problems") == ingested["problems"]
        certified = airflow.xcom(LICENCES, run_id, "certify_new_versions")["certified"]
        alarm = airflow.xcom(LICENCES, run_id, "check_undelivered_certificates", "problems")
        assert alarm["certificates"] == alarm["undelivered"] == certified > 0

        warnings = _warnings(airflow, LICENCES, run_id, "ingest_national_files")
        rejected = [w for w in warnings if w.startswith("rejected national record: ")]
        assert len(rejected) == min(ingested["rejected"], 20)
        assert all(" at " in w and "(mapping " in w and w.count(": ") >= 2 for w in rejected)
        assert any(
            w.startswith("unreadable national file: licences-broken.json (moved to")
            for w in warnings
        )
        undelivered = _warnings(airflow, LICENCES, run_id, "check_undelivered_certificates")
        assert len([w for w in undelivered if w.startswith("undelivered certificate: ")]) == min(
            certified, 20
        )
        assert any("pending" in w and "503" in w for w in undelivered)

        # -- write-offs: an idle run, then one that refused and quarantined -------------------
        idle = _wait_for(
            "an idle write-off run", lambda: _finished_runs(airflow, DECLARATIONS), 120, airflow
        )[-1]
        # A release quoting a licence the ledger does not hold: that write-off is refused.
        sample = (wco_samples / "TT_EX004a.xml").read_bytes()
        unknown = tmp_path / "unknown-licence.xml"
        unknown.write_bytes(sample.replace(b"GBSIEXYK3ZZZPADR-0002", UNKNOWN_LICENCE.encode()))
        envelope = envelope_for_declaration_file(
            unknown, event="released", mrn=MRN, event_time=datetime.now(UTC)
        )
        settings = load_settings(mqtt_host=mosquitto.host, mqtt_port=mosquitto.port)
        publish_events(settings, [envelope, b"garbage, not an envelope"])

        def processed() -> dict[str, Any] | None:
            for run in _finished_runs(airflow, DECLARATIONS):
                summary = airflow.xcom(DECLARATIONS, run["dag_run_id"], "drain_declaration_events")
                if summary and summary["messages"]:
                    return run
            return None

        busy = _wait_for("the write-off run that took the events", processed, 120, airflow)
        airflow.pause(DECLARATIONS)

        assert idle["state"] == "success"
        assert airflow.task_states(DECLARATIONS, idle["dag_run_id"]) == {
            "drain_declaration_events": "success",
            "record_writeoffs": "skipped",
            "report_problems": "success",
        }
        assert (
            airflow.asset_events(source_dag_id=DECLARATIONS, source_run_id=idle["dag_run_id"]) == []
        )

        busy_id = busy["dag_run_id"]
        assert busy["state"] == "failed"
        assert airflow.task_states(DECLARATIONS, busy_id) == {
            "drain_declaration_events": "success",
            "record_writeoffs": "success",
            "report_problems": "failed",
        }
        summary = airflow.xcom(DECLARATIONS, busy_id, "drain_declaration_events")
        assert (summary["messages"], summary["quarantined"]) == (2, 1)
        assert summary["problems"]["quarantined_messages"] == 1
        assert summary["problems"]["refused_write_offs"] >= 1
        (event,) = airflow.asset_events(source_dag_id=DECLARATIONS, source_run_id=busy_id)
        assert event["extra"]["messages"] == 2
        drained = _warnings(airflow, DECLARATIONS, busy_id, "drain_declaration_events")
        assert any(
            w.startswith(f"refused write-off: MRN {MRN} item 2: X002 {UNKNOWN_LICENCE}")
            and f"licence-unknown: licence {UNKNOWN_LICENCE} is not in the ledger" in w
            for w in drained
        ), drained
        assert any(w.startswith("quarantined message: ") for w in drained)

        # -- the console in Airflow's navigation ---------------------------------------------
        (plugin,) = [p for p in airflow.plugins() if p["name"] == "elbridge"]
        (view,) = plugin["external_views"]
        assert (view["name"], view["href"], view["destination"]) == (
            "Authority console",
            "/elbridge-console/",
            "nav",
        )
        assert plugin["fastapi_apps"][0]["url_prefix"] == "/elbridge-console"
        login = _get(f"{airflow.url}/elbridge-console/login")
        assert login.status == 200 and "authority console" in login.text.lower()


class _Page:
    def __init__(self, status: int, text: str) -> None:
        self.status, self.text = status, text


def _get(url: str) -> _Page:
    try:
        with urllib.request.urlopen(url, timeout=30) as answer:
            return _Page(answer.status, answer.read().decode())
    except urllib.error.HTTPError as error:
        return _Page(error.code, error.read().decode(errors="replace"))

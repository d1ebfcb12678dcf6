"""The launcher the demo uses: a real `airflow standalone` on a free 127.0.0.1 port, driven
through its REST API with fixed credentials, and stopped with every process it started."""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from bridge.entrypoints.airflow_standalone import (
    PASSWORDS_FILE,
    StandaloneError,
    live_processes_in_group,
    start_airflow,
)
from tests.fixtures_airflow import DAGS_FOLDER, PROJECT_DAG_IDS

PASSWORD = "test-only-password"


def _processes_with(variable: str, value: str) -> list[int]:
    """Pids of this user's processes whose environment has variable=value."""
    wanted = f"{variable}={value}".encode()
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            environ = Path(f"/proc/{name}/environ").read_bytes().split(b"\0")
            state = Path(f"/proc/{name}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if wanted in environ and state != "Z":
            found.append(int(name))
    return found


def _status(url: str, body: dict | None = None) -> int:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data, {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status
    except urllib.error.HTTPError as error:
        return error.code


def test_standalone_serves_our_dags_runs_one_and_stops_as_a_group(tmp_path, engine, ledger_url):
    airflow_home = tmp_path / "airflow"
    bridge_home = tmp_path / "bridge"
    env = {
        "ELBRIDGE_HOME": str(bridge_home),
        "AIRFLOW_CONN_ELBRIDGE_LEDGER": json.dumps({"conn_type": "generic", "host": ledger_url}),
        # Only the DAG this test unpauses runs: the others would poll absent services.
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
    }
    airflow = start_airflow(airflow_home, dags_folder=DAGS_FOLDER, env=env, password=PASSWORD)
    pgid = airflow.pgid
    try:
        assert airflow.url.startswith("http://127.0.0.1:")
        assert len(live_processes_in_group(pgid)) >= 4  # standalone and its components
        seeded = airflow_home / PASSWORDS_FILE
        assert json.loads(seeded.read_text()) == {"admin": PASSWORD}
        assert seeded.stat().st_mode & 0o077 == 0

        # The fixed login opens the API; a wrong one and no token are refused.
        assert airflow.token()
        login = f"{airflow.url}/auth/token"
        assert _status(login, {"username": "admin", "password": "wrong"}) == 401
        assert _status(f"{airflow.url}/api/v2/dags") == 401

        for dag_id in PROJECT_DAG_IDS:
            assert airflow.wait_for_dag(dag_id, timeout=60)["is_paused"] is True
        assert airflow.import_errors() == []

        airflow.unpause("daily_reconciliation")
        run_id = airflow.trigger_dag("daily_reconciliation")
        assert airflow.wait_for_run("daily_reconciliation", run_id, timeout=90) == "success"
        assert run_id in {run["dag_run_id"] for run in airflow.dag_runs("daily_reconciliation")}
        result = airflow.task_result("daily_reconciliation", run_id, "write_reconciliation")
        assert result["lines"] == 0 and result["over_used_lines"] == []
        day = result["date"]  # a run by hand reports today so far
        assert Path(result["csv"]) == bridge_home / "reports" / day / "data" / "reconciliation.csv"
        assert Path(result["csv"]).read_text().startswith("licence_number,line_number,")
        # The day's reports for people, published as an event of the reports Asset.
        (event,) = airflow.asset_events(source_dag_id="daily_reconciliation", source_run_id=run_id)
        assert event["name"] == "elbridge_daily_reports"
        assert event["extra"]["day"] == day
        assert (Path(event["extra"]["folder"]) / "index.html").is_file()

        with pytest.raises(StandaloneError, match="no_such_dag not known"):
            airflow.trigger_dag("no_such_dag", timeout=2)
    finally:
        airflow.stop()

    assert airflow.process.returncode is not None
    assert live_processes_in_group(pgid) == []
    assert _processes_with("AIRFLOW_HOME", str(airflow_home.resolve())) == []

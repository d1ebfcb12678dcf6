"""The DAGs: integrity (they import, are owned, documented, tagged, retried and scheduled as
promised), parsing that touches nothing outside, the Airflow wiring of Connections into
Settings, and real runs through `dag.test()` against a real ledger, broker and SOAP simulator.

Airflow is imported inside the tests, after the `airflow_env` fixture has set its home."""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import os
import re
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import func, insert, select, update

from bridge.adapters.store.licences import save_licence
from bridge.adapters.store.schema import (
    licence,
    licence_version,
    movement,
    outbox,
    processed_message,
    reject,
)
from bridge.core.errors import ConfigError
from bridge.core.model import Licence, LicenceLine, LicenceType
from bridge.services.config import load_settings
from tests.fixtures_airflow import DAGS_FOLDER, PROJECT, PROJECT_DAG_IDS, airflow_settings, run_dag

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


@pytest.fixture
def bridge_env(airflow_env: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A clean bridge environment for one test: its own home, nothing inherited."""
    for name in list(os.environ):
        if name.startswith(("ELBRIDGE_", "AIRFLOW_CONN_ELBRIDGE", "AIRFLOW_VAR_ELBRIDGE")):
            monkeypatch.delenv(name)
    home = tmp_path / "home"
    monkeypatch.setenv("ELBRIDGE_HOME", str(home))
    return home


def _task_log(capfd: pytest.CaptureFixture, caplog: pytest.LogCaptureFixture) -> str:
    """What the tasks of a `dag.test()` run logged (through logging, or printed) since the
    last call: the lines an operator reads in the task logs."""
    text = "".join(capfd.readouterr()) + caplog.text
    caplog.clear()
    return text


def _connection(monkeypatch: pytest.MonkeyPatch, conn_id: str, value: dict | str) -> None:
    """An Airflow Connection as the operator would give it in the environment."""
    text = value if isinstance(value, str) else json.dumps(value)
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", text)


# -- integrity ------------------------------------------------------------------------------


def test_the_dag_folder_imports_every_dag_without_errors_or_warnings(dagbag):
    assert dagbag.import_errors == {}
    assert set(dagbag.dags) == PROJECT_DAG_IDS
    assert dagbag.captured_warnings == {}


@pytest.mark.parametrize("dag_id", sorted(PROJECT_DAG_IDS))
def test_every_dag_is_owned_documented_tagged_and_retried(dagbag, dag_id):
    dag = dagbag.dags[dag_id]
    assert "elbridge" in dag.tags and len(dag.tags) >= 2
    assert dag.doc_md and dag.doc_md.lstrip().startswith("###") and len(dag.doc_md) > 300
    assert dag.catchup is False
    assert dag.max_active_runs == 1
    for task in dag.tasks:
        assert task.owner == "elbridge", task.task_id
        if task.trigger_rule.value == "one_failed":
            continue  # it only reports failures upstream; running it again changes nothing
        assert task.retries >= 1, task.task_id
        assert task.retry_delay > timedelta(0), task.task_id
        assert task.execution_timeout is not None, task.task_id


def test_each_dag_runs_on_its_promised_schedule(dagbag):
    from airflow.sdk import CronDataIntervalTimetable

    assert dagbag.dags["licences_to_customs"].schedule == "*/2 * * * *"
    # Long-lived runs, one after the other (each consumes for ELBRIDGE_DECLARATION_RUN_MINUTES).
    assert dagbag.dags["declarations_to_writeoffs"].schedule == "@continuous"
    daily = dagbag.dags["daily_reconciliation"]
    # A data interval per UTC day: the run for a day starts once the day is over.
    assert isinstance(daily.timetable, CronDataIntervalTimetable)
    assert (daily.timetable.expression, str(daily.timetable.timezone)) == ("0 0 * * *", "UTC")


def test_licences_are_ingested_then_certified_then_delivered(dagbag):
    dag = dagbag.dags["licences_to_customs"]
    downstream = {task.task_id: task.downstream_task_ids for task in dag.tasks}
    assert downstream == {
        "ingest_national_files": {
            "certify_new_versions",
            "fail_if_a_step_failed",
            "report_problems",
        },
        "certify_new_versions": {"deliver_certificates", "fail_if_a_step_failed"},
        "deliver_certificates": {"check_undelivered_certificates", "fail_if_a_step_failed"},
        "check_undelivered_certificates": set(),
        "report_problems": set(),
        "fail_if_a_step_failed": set(),
    }
    # Certificates that are ready go out even when an earlier step failed; the run still fails.
    # The verdicts run whatever happened before them.
    assert {task.task_id: task.trigger_rule.value for task in dag.tasks} == {
        "ingest_national_files": "all_success",
        "certify_new_versions": "all_done",
        "deliver_certificates": "all_done",
        "check_undelivered_certificates": "all_done",
        "report_problems": "all_done",
        "fail_if_a_step_failed": "one_failed",
    }


def test_the_dags_name_the_assets_they_emit(dagbag):
    def outlets(dag_id: str) -> dict[str, list[str]]:
        return {
            task.task_id: [outlet.name for outlet in task.outlets]
            for task in dagbag.dags[dag_id].tasks
            if task.outlets
        }

    assert outlets("licences_to_customs") == {
        "deliver_certificates": ["elbridge_certificates_delivered"]  # an alias: no event when idle
    }
    assert outlets("declarations_to_writeoffs") == {"record_writeoffs": ["elbridge_write_offs"]}
    assert outlets("daily_reconciliation") == {"publish_reports": ["elbridge_daily_reports"]}


def test_a_declaration_run_drains_then_records_and_judges(dagbag):
    dag = dagbag.dags["declarations_to_writeoffs"]
    assert {task.task_id: task.downstream_task_ids for task in dag.tasks} == {
        "drain_declaration_events": {"record_writeoffs", "report_problems"},
        "record_writeoffs": set(),
        "report_problems": set(),
    }
    assert dag.get_task("report_problems").trigger_rule.value == "all_done"
    # A long scheduled run is not cut short by its own timeout.
    assert dag.get_task("drain_declaration_events").execution_timeout > timedelta(hours=4)


PARSE_PROBE = textwrap.dedent(
    """
    import json, socket, sys

    def refuse(*args, **kwargs):
        raise OSError("a DAG file opened a network connection at parse time")

    socket.socket.connect = refuse
    socket.create_connection = refuse
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=sys.argv[1])
    print(json.dumps({
        "errors": bag.import_errors,
        "dags": sorted(bag.dags),
        "seconds": {s.file: s.duration.total_seconds() for s in bag.dagbag_stats},
        "imported": sorted(m for m in sys.modules if m.split(".")[0] in ("bridge", "zeep", "paho")),
    }))
    """
)


def test_dag_files_parse_fast_offline_and_without_reaching_the_ledger(tmp_path):
    """Parsing in a fresh process, with sockets refused and every endpoint impossible: the DAG
    files import nothing of the bridge (so no service, ledger or secret is touched)."""
    impossible = tmp_path / "no-such-dir" / "x"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "ELBRIDGE_"))}
    env.update(airflow_settings(tmp_path / "airflow-home"))
    env.update(
        {
            "ELBRIDGE_HOME": str(impossible / "home"),
            "ELBRIDGE_DATABASE_URL": f"sqlite:///{impossible / 'ledger.db'}",
            "ELBRIDGE_MQTT_HOST": "256.0.0.1",
            "AIRFLOW_CONN_ELBRIDGE_LEDGER": "postgresql://nobody:pw@256.0.0.1:1/none",
            "AIRFLOW_CONN_ELBRIDGE_CUSTOMS_SOAP": "http://256.0.0.1:1/certex",
        }
    )
    done = subprocess.run(
        [sys.executable, "-c", PARSE_PROBE, str(DAGS_FOLDER)],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    parsed = json.loads(done.stdout.strip().splitlines()[-1])
    assert parsed["errors"] == {}
    assert parsed["dags"] == sorted(PROJECT_DAG_IDS)
    assert parsed["imported"] == []
    assert max(parsed["seconds"].values()) < 1.0, parsed["seconds"]
    assert not (tmp_path / "no-such-dir").exists()


# -- wiring: Settings from Airflow Connections and the settings Variable ---------------------


def test_without_connections_settings_come_from_the_environment(bridge_env, monkeypatch):
    from bridge.entrypoints.airflow_wiring import settings_from_airflow

    monkeypatch.setenv("ELBRIDGE_MQTT_PORT", "1999")
    assert settings_from_airflow() == load_settings()
    assert settings_from_airflow().mqtt_port == 1999
    assert settings_from_airflow().home == bridge_env


def test_the_ledger_connection_takes_a_full_url_or_a_sqlite_path(bridge_env, monkeypatch):
    from bridge.entrypoints.airflow_wiring import settings_from_airflow

    _connection(
        monkeypatch, "elbridge_ledger", {"conn_type": "generic", "host": "sqlite:////srv/l.db"}
    )
    assert settings_from_airflow().ledger_url == "sqlite:////srv/l.db"
    _connection(monkeypatch, "elbridge_ledger", "sqlite:////srv/ledger/ledger.db")
    assert settings_from_airflow().ledger_url == "sqlite:////srv/ledger/ledger.db"
    _connection(monkeypatch, "elbridge_ledger", {"conn_type": "sqlite", "host": "/srv/b.db"})
    assert settings_from_airflow().ledger_url == "sqlite:////srv/b.db"


def test_a_postgres_ledger_connection_becomes_a_sqlalchemy_url(bridge_env, monkeypatch):
    from bridge.entrypoints.airflow_wiring import settings_from_airflow

    _connection(
        monkeypatch, "elbridge_ledger", "postgres://bridge:s%40cret@db.internal:5433/ledger"
    )
    assert settings_from_airflow().ledger_url == (
        "postgresql://bridge:s%40cret@db.internal:5433/ledger"
    )


def test_a_ledger_connection_without_a_url_is_refused_by_name(bridge_env, monkeypatch):
    from bridge.entrypoints.airflow_wiring import settings_from_airflow

    _connection(monkeypatch, "elbridge_ledger", {"conn_type": "generic", "host": "db.internal"})
    with pytest.raises(ConfigError, match=r"elbridge_ledger.*full database URL"):
        settings_from_airflow()


def test_the_mqtt_connection_gives_broker_login_and_session(bridge_env, monkeypatch):
    from bridge.entrypoints.airflow_wiring import settings_from_airflow

    _connection(
        monkeypatch,
        "elbridge_mqtt",
        {
            "conn_type": "mqtt",
            "host": "broker.customs.example",
            "port": 8883,
            "login": "bridge",
            "password": "broker-secret",
            "extra": {"client_id": "elbridge-lv-1", "topic": "lv/declarations"},
        },
    )
    settings = settings_from_airflow()
    assert (settings.mqtt_host, settings.mqtt_port) == ("broker.customs.example", 8883)
    assert (settings.mqtt_username, settings.mqtt_password) == ("bridge", "broker-secret")
    assert (settings.mqtt_client_id, settings.mqtt_topic) == ("elbridge-lv-1", "lv/declarations")
    assert settings.soap_url == load_settings().soap_url  # untouched by another Connection


def test_the_soap_connection_gives_the_endpoint_as_uri_or_as_a_url_in_host(bridge_env, monkeypatch):
    from bridge.entrypoints.airflow_wiring import settings_from_airflow

    _connection(
        monkeypatch,
        "elbridge_customs_soap",
        "https://certex:p%40ss@csw.example:8443/certex/v1?timeout=4.5&retry_budget_hours=2.5",
    )
    settings = settings_from_airflow()
    assert settings.soap_url == "https://csw.example:8443/certex/v1"
    assert (settings.soap_username, settings.soap_password) == ("certex", "p@ss")
    assert (settings.soap_timeout, settings.soap_retry_budget_hours) == (4.5, 2.5)

    _connection(
        monkeypatch,
        "elbridge_customs_soap",
        {"conn_type": "http", "host": "http://127.0.0.1:8099/certex"},
    )
    settings = settings_from_airflow()
    assert settings.soap_url == "http://127.0.0.1:8099/certex"
    assert settings.wsdl_url == "http://127.0.0.1:8099/certex?wsdl"


def test_the_settings_variable_tunes_settings_but_refuses_secrets(
    bridge_env, monkeypatch, tmp_path
):
    from bridge.entrypoints.airflow_wiring import settings_from_airflow

    monkeypatch.setenv(
        "AIRFLOW_VAR_ELBRIDGE_SETTINGS",
        json.dumps({"home": str(tmp_path / "other"), "batch_size": "50", "soap_timeout": 3}),
    )
    settings = settings_from_airflow()
    assert settings.home == tmp_path / "other"
    assert (settings.batch_size, settings.soap_timeout) == (50, 3.0)

    monkeypatch.setenv("AIRFLOW_VAR_ELBRIDGE_SETTINGS", json.dumps({"soap_password": "x"}))
    with pytest.raises(ConfigError, match=r"secret.*Connection"):
        settings_from_airflow()
    monkeypatch.setenv("AIRFLOW_VAR_ELBRIDGE_SETTINGS", json.dumps({"batch_sise": 5}))
    with pytest.raises(ConfigError, match="unknown setting 'batch_sise'"):
        settings_from_airflow()
    monkeypatch.setenv("AIRFLOW_VAR_ELBRIDGE_SETTINGS", json.dumps({"mqtt_port": "eighty"}))
    with pytest.raises(ConfigError, match="mqtt_port='eighty' is not a valid int"):
        settings_from_airflow()


@dataclass(frozen=True)
class _Report:
    file: Path
    new: int
    rejected: list[str]
    quantity: Decimal
    at: datetime


def test_reports_become_plain_json_for_xcom():
    from bridge.entrypoints.airflow_wiring import count, summarise, totals

    reports = [
        _Report(Path("/in/a.csv"), 2, ["row 3: no EORI"], Decimal("2.500000"), NOW),
        _Report(Path("/in/b.csv"), 1, [f"row {n}" for n in range(60)], Decimal(1), NOW),
    ]
    summary = summarise(reports)
    assert json.loads(json.dumps(summary)) == summary
    assert summary[0] == {
        "file": "/in/a.csv",
        "new": 2,
        "rejected": ["row 3: no EORI"],
        "quantity": "2.500000",
        "at": "2026-11-28T12:00:00+00:00",
    }
    assert len(summary[1]["rejected"]) == 51 and summary[1]["rejected"][-1] == "... and 10 more"
    assert totals(reports, ("new", "rejected", "stale")) == {"new": 3, "rejected": 61, "stale": 0}
    assert count(None) == 0
    with pytest.raises(TypeError):
        count("3")


def test_a_report_file_is_replaced_whole_and_readable_by_the_group(tmp_path):
    from bridge.entrypoints.airflow_wiring import write_report

    target = tmp_path / "reports" / "2026-11-28" / "reconciliation.csv"
    write_report(target, "old\n", 0o640)
    write_report(target, "licence_number,line_number\nLV-1,1\n", 0o640)
    assert target.read_text() == "licence_number,line_number\nLV-1,1\n"
    assert [p.name for p in target.parent.iterdir()] == ["reconciliation.csv"]
    assert target.stat().st_mode & 0o777 == 0o640
    # The folders made on the way let the group in, whatever the umask.
    assert target.parent.stat().st_mode & 0o777 == 0o750
    assert (tmp_path / "reports").stat().st_mode & 0o777 == 0o750


def test_the_reports_folder_and_mode_come_from_the_settings(tmp_path):
    from bridge.entrypoints.airflow_wiring import folder_mode, reports_folder, reports_mode

    settings = load_settings(home=tmp_path / "home")
    assert reports_folder(settings) == tmp_path / "home" / "reports"
    assert reports_mode(settings) == 0o640
    shared = load_settings(home=tmp_path, reports_dir=str(tmp_path / "srv"), reports_mode="0644")
    assert (reports_folder(shared), reports_mode(shared)) == (tmp_path / "srv", 0o644)
    assert (folder_mode(0o644), folder_mode(0o600), folder_mode(0o640)) == (0o755, 0o700, 0o750)
    for wrong in ("rw-r-----", "640x", "1777", "0040", "0440"):
        with pytest.raises(ConfigError, match=f"ELBRIDGE_REPORTS_MODE='{wrong}': give an octal"):
            reports_mode(load_settings(home=tmp_path, reports_mode=wrong))


# -- runs through dag.test() ----------------------------------------------------------------


def _licence(number: str = "LV-DU-2026-0042") -> Licence:
    return Licence(
        number=number,
        type=LicenceType.INDIVIDUAL,
        issuing_member_state="LV",
        issuing_authority="Ministry of Foreign Affairs",
        holder_name="Baltic Photonics SIA",
        holder_eori="LV40003123456",
        valid_from=date(2026, 1, 1),
        valid_to=date(2027, 12, 31),
        lines=(
            LicenceLine(
                1, "6A003.b.4.b", "Thermal cameras", "90258080", Decimal(10), "NAR",
                Decimal("50000.00"), "EUR", ("US",),
            ),
            LicenceLine(
                2, "5A002.a.1", "Encryption modules", "85176200", Decimal("2.5"), "KGM",
                None, None, ("US",),
            ),
        ),
    )  # fmt: skip


def _save(engine, *licences: Licence) -> None:
    with engine.begin() as conn:
        for licence in licences:
            save_licence(conn, licence, source="test", now=NOW, explicit_version=False)


def _seed_over_used_licence(engine) -> None:
    licence = _licence()
    _save(engine, licence)
    with engine.begin() as conn:
        for line, quantity, value in ((1, "4", "20000.00"), (2, "3", "0")):
            conn.execute(
                insert(movement).values(
                    licence_number=licence.number,
                    line_number=line,
                    kind="write_off",
                    quantity=Decimal(quantity),
                    value=Decimal(value),
                    actor="test",
                    at=NOW,
                )
            )


def test_daily_reconciliation_reports_the_day_just_over_for_the_group_and_as_an_asset(
    bridge_env, engine, ledger_url, monkeypatch, tmp_path, capfd, caplog
):
    _seed_over_used_licence(engine)
    _save(engine, dataclasses.replace(_licence("LV-DU-2024-0001"), valid_to=date(2025, 6, 30)))
    _connection(monkeypatch, "elbridge_ledger", {"conn_type": "generic", "host": ledger_url})
    reports = tmp_path / "srv" / "reports"
    monkeypatch.setenv("ELBRIDGE_REPORTS_DIR", str(reports))

    # The run of 29 November covers 28 November, the day that has just ended.
    run = run_dag("daily_reconciliation", logical_date=datetime(2026, 11, 29, tzinfo=UTC))
    task_log = _task_log(capfd, caplog)

    assert run.state == "success", run.task_states
    # The licence whose validity ended is expired first, and customs get the status.
    assert run.results["expire_due_licences"]["expired"] == ["LV-DU-2024-0001"]
    with engine.connect() as conn:
        statuses = dict(conn.execute(select(licence.c.number, licence.c.status)).all())
        queued = (
            conn.execute(select(outbox.c.licence_number).where(outbox.c.kind == "status"))
            .scalars()
            .all()
        )
    assert statuses == {"LV-DU-2024-0001": "expired", "LV-DU-2026-0042": "valid"}
    assert queued == ["LV-DU-2024-0001"]
    result = run.results["write_reconciliation"]
    folder = reports / "2026-11-28"
    assert result["date"] == "2026-11-28"
    assert (result["csv"], result["json"]) == (
        str(folder / "data" / "reconciliation.csv"),
        str(folder / "data" / "reconciliation.json"),
    )
    assert result["lines"] == 4 and result["over_used_lines"] == ["LV-DU-2026-0042/2"]
    assert "over-used licence line LV-DU-2026-0042/2: more written off than authorised" in task_log
    lines = list(csv.DictReader(io.StringIO(Path(result["csv"]).read_text())))
    assert [(r["line_number"], r["remaining_quantity"], r["over_used"]) for r in lines] == [
        ("1", "10", ""),
        ("2", "2.5", ""),
        ("1", "6", ""),
        ("2", "-0.5", "yes"),
    ]
    written = json.loads(Path(result["json"]).read_text())
    assert written["summary"]["over_used_lines"] == ["LV-DU-2026-0042/2"]
    # The reports people open, published as the day's Asset event; the group may read them.
    published = run.results["publish_reports"]
    assert (published["date"], published["folder"]) == ("2026-11-28", str(folder))
    files = [Path(f) for f in published["files"]]
    assert {f.suffix for f in files} >= {".html", ".xlsx", ".csv"}
    assert folder / "index.html" in files
    assert all(f.is_file() and f.parent == folder for f in files)
    # Spreadsheet CSV for people (`;`), beside the plain one for programs (`,`).
    assert (folder / "reconciliation.csv").read_text(encoding="utf-8-sig").count(";") > 0
    data = [*files, Path(result["csv"]), Path(result["json"])]
    assert {oct(f.stat().st_mode & 0o777) for f in data} == {oct(0o640)}
    assert {oct(f.stat().st_mode & 0o777) for f in (folder, folder / "data")} == {oct(0o750)}
    event = _asset_events("elbridge_daily_reports")[-1]
    assert event["extra"] == {"day": "2026-11-28", "folder": str(folder), "files": len(files)}


def test_a_daily_run_by_hand_reports_the_day_asked_for(bridge_env, engine, ledger_url, monkeypatch):
    _connection(monkeypatch, "elbridge_ledger", {"conn_type": "generic", "host": ledger_url})
    run = run_dag("daily_reconciliation", run_conf={"day": "2026-06-30"})
    assert run.state == "success", run.task_states
    assert run.results["write_reconciliation"]["date"] == "2026-06-30"
    assert (bridge_env / "reports" / "2026-06-30" / "index.html").is_file()


def _asset_events(name: str) -> list[dict]:
    """The events of the Asset `name` in Airflow's metadata DB, oldest first."""
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session

    with create_session() as session:
        rows = session.scalars(
            select(AssetEvent)
            .join(AssetModel, AssetEvent.asset_id == AssetModel.id)
            .where(AssetModel.name == name)
            .order_by(AssetEvent.id)
        ).all()
        return [{"extra": row.extra, "run_id": row.source_run_id} for row in rows]


def test_a_task_that_cannot_reach_the_ledger_fails_its_run(bridge_env, monkeypatch, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    _connection(
        monkeypatch,
        "elbridge_ledger",
        {"conn_type": "generic", "host": f"sqlite:///{blocker / 'ledger.db'}"},
    )
    run = run_dag("daily_reconciliation")
    assert run.state == "failed"
    assert run.task_states == {
        "expire_due_licences": "failed",
        "write_reconciliation": "upstream_failed",
        "publish_reports": "upstream_failed",
    }
    assert not (bridge_env / "reports").exists()


def _outbox_states(engine) -> dict[str, int]:
    with engine.connect() as conn:
        rows = conn.execute(select(outbox.c.status, func.count()).group_by(outbox.c.status))
        return dict(rows.all())


def _fill_inbox(home: Path) -> list[Path]:
    samples = sorted(p for p in (PROJECT / "mappings" / "samples").iterdir() if p.is_file())
    assert samples, "the national licence samples are missing from mappings/samples"
    inbox = home / "inbox"
    inbox.mkdir(parents=True)
    for sample in samples:
        (inbox / sample.name).write_bytes(sample.read_bytes())
    return samples


def test_licences_to_customs_delivers_the_inbox_once_and_shows_the_rejects_in_red(
    bridge_env, engine, ledger_url, customs_simulator, monkeypatch, capfd, caplog
):
    samples = _fill_inbox(bridge_env)
    (bridge_env / "inbox" / "licences-lv-broken.json").write_text("{not json")
    _connection(monkeypatch, "elbridge_ledger", {"conn_type": "generic", "host": ledger_url})
    _connection(
        monkeypatch, "elbridge_customs_soap", {"conn_type": "http", "host": customs_simulator.url}
    )

    first = run_dag("licences_to_customs")
    task_log = _task_log(capfd, caplog)

    # Everything that could go through went through; the run is red for what could not.
    assert first.state == "failed"
    assert first.task_states == {
        "ingest_national_files": "success",
        "certify_new_versions": "success",
        "deliver_certificates": "success",
        "check_undelivered_certificates": "success",
        "report_problems": "failed",
        "fail_if_a_step_failed": "skipped",
    }
    ingested = first.results["ingest_national_files"]
    assert ingested["files"] == len(samples) + 1
    assert ingested["new"] >= 1
    # The samples carry deliberately broken records: each is one readable WARNING line.
    assert ingested["rejected"] >= 1
    assert ingested["problems"] == {
        "rejected_records": ingested["rejected"],
        "unreadable_files": 1,
        "files_waiting_for_mapping": 0,
        "broken_mappings": 0,
    }
    with engine.connect() as conn:
        rejects = conn.execute(select(reject.c.source, reject.c.problems)).all()
    assert len(rejects) == ingested["rejected"]
    for source, problems in rejects:
        reason = json.loads(problems)[0]["reason"]
        warning = next(line for line in task_log.splitlines() if f"at {source} " in line)
        assert "rejected national record: " in warning and reason in warning
    unreadable = next(
        line for line in task_log.splitlines() if "unreadable national file: " in line
    )
    assert "licences-lv-broken.json (moved to" in unreadable
    assert f"this run needs a person: rejected national records: {len(rejects)}" in task_log
    assert first.results["report_problems"] is None  # failed: its counts are in XCom `problems`
    assert sorted(p.name for p in (bridge_env / "inbox" / "done").iterdir()) == [
        s.name for s in samples
    ]
    certified = first.results["certify_new_versions"]["certified"]
    assert certified >= ingested["new"]
    assert first.results["deliver_certificates"]["delivered"] == certified
    assert _outbox_states(engine) == {"delivered": certified}
    assert len(customs_simulator.received()) == certified
    deliveries = _asset_events("elbridge_certificate_deliveries")
    assert deliveries[-1]["extra"]["delivered"] == certified

    second = run_dag("licences_to_customs")

    assert second.state == "success", second.task_states
    assert second.task_states["report_problems"] == "success"
    assert second.results["ingest_national_files"]["files"] == 0
    assert _outbox_states(engine) == {"delivered": certified}  # nothing certified twice
    assert len(customs_simulator.received()) == certified  # nor sent twice
    # Nothing delivered, no asset event.
    assert len(_asset_events("elbridge_certificate_deliveries")) == len(deliveries)


def test_undelivered_certificates_keep_every_run_red_until_customs_have_them(
    bridge_env, engine, ledger_url, customs_simulator, monkeypatch, capfd, caplog
):
    _save(engine, _licence("LV-DU-2026-0042"), _licence("LV-DU-2026-0043"))
    _connection(monkeypatch, "elbridge_ledger", {"conn_type": "generic", "host": ledger_url})
    _connection(
        monkeypatch, "elbridge_customs_soap", {"conn_type": "http", "host": customs_simulator.url}
    )
    monkeypatch.setenv("ELBRIDGE_UNDELIVERED_ALARM_MINUTES", "0")  # pending at all is too long
    customs_simulator.set_faults(rate=1.0, kinds=["http503"])  # customs are away

    for _ in range(2):  # the alarm stays on from run to run
        run = run_dag("licences_to_customs")
        task_log = _task_log(capfd, caplog)
        assert run.state == "failed"
        assert run.task_states["check_undelivered_certificates"] == "failed"
        assert run.task_states["deliver_certificates"] == "success"  # they wait for customs
        for number in ("LV-DU-2026-0042", "LV-DU-2026-0043"):
            assert re.search(
                rf"undelivered certificate: licence {number} version 1 \(outbox #\d\): pending,"
                rf" queued \d+ min ago: HTTP 503 from {re.escape(customs_simulator.url)}",
                task_log,
            ), task_log
        assert "2 message(s) not at customs: 0 failed, 2 pending for more than 0 min" in (task_log)

    customs_simulator.set_faults()  # customs are back
    monkeypatch.setenv("ELBRIDGE_UNDELIVERED_ALARM_MINUTES", "60")
    _make_due(engine)
    run = run_dag("licences_to_customs")
    assert run.state == "success", run.task_states
    assert run.results["check_undelivered_certificates"]["undelivered"] == 0
    assert len(customs_simulator.received()) == 2


def _make_due(engine) -> None:
    """The outbox's pending messages due now (they would be after their backoff)."""
    with engine.begin() as conn:
        conn.execute(
            update(outbox)
            .where(outbox.c.status == "pending")
            .values(next_attempt_at=datetime.now(UTC) - timedelta(seconds=1))
        )


def test_certificates_that_fail_for_good_fail_the_delivery_task_with_the_reasons(
    bridge_env, engine, ledger_url, customs_simulator, monkeypatch, capfd, caplog
):
    _save(engine, _licence("LV-DU-2026-0042"), _licence("LV-DU-2026-0043"))
    _connection(monkeypatch, "elbridge_ledger", {"conn_type": "generic", "host": ledger_url})
    _connection(  # no retry budget: the first transient failure is the last
        monkeypatch,
        "elbridge_customs_soap",
        {"conn_type": "http", "host": customs_simulator.url, "extra": {"retry_budget_hours": 0}},
    )
    customs_simulator.set_faults(rate=1.0, kinds=["http503"])  # customs never accepts

    run = run_dag("licences_to_customs")
    task_log = _task_log(capfd, caplog)

    assert run.state == "failed"
    assert run.task_states == {
        "ingest_national_files": "success",
        "certify_new_versions": "success",
        "deliver_certificates": "failed",
        "check_undelivered_certificates": "failed",
        "report_problems": "success",
        "fail_if_a_step_failed": "failed",
    }
    assert run.results["certify_new_versions"]["certified"] == 2
    assert _outbox_states(engine) == {"failed": 2}
    assert customs_simulator.received() == []
    for number in ("LV-DU-2026-0042", "LV-DU-2026-0043"):
        assert f"certificate failed for good: licence {number} version 1: gave up after" in (
            task_log
        )
        assert re.search(
            rf"undelivered certificate: licence {number} version 1 \(outbox #\d\): failed"
            r" \(budget\), queued \d+ min ago: gave up after",
            task_log,
        )
    assert "2 message(s) not at customs: 2 failed, 0 pending" in task_log


def test_a_broken_certificate_fails_certification_but_the_others_are_delivered(
    bridge_env, engine, ledger_url, customs_simulator, monkeypatch
):
    _save(engine, _licence("LV-DU-2026-0042"), _licence("LV-DU-2026-0043"))
    with engine.begin() as conn:  # the ledger's copy of one licence can no longer be read
        conn.execute(
            update(licence_version)
            .where(licence_version.c.number == "LV-DU-2026-0043")
            .values(document="{not json")
        )
    _connection(monkeypatch, "elbridge_ledger", {"conn_type": "generic", "host": ledger_url})
    _connection(
        monkeypatch, "elbridge_customs_soap", {"conn_type": "http", "host": customs_simulator.url}
    )

    run = run_dag("licences_to_customs")

    assert run.state == "failed"
    assert run.task_states == {
        "ingest_national_files": "success",
        "certify_new_versions": "failed",
        "deliver_certificates": "success",
        "check_undelivered_certificates": "failed",  # the broken one is failed in the outbox
        "report_problems": "success",
        "fail_if_a_step_failed": "failed",
    }
    assert run.results["deliver_certificates"]["delivered"] == 1
    assert _outbox_states(engine) == {"delivered": 1, "failed": 1}
    assert len(customs_simulator.received()) == 1


def test_an_idle_declaration_run_is_told_apart_from_one_that_wrote_off(
    bridge_env, engine, ledger_url, mosquitto, wco_samples, monkeypatch
):
    from bridge.services.customs_events import envelope_for_declaration_file, publish_events

    _connection(monkeypatch, "elbridge_ledger", {"conn_type": "generic", "host": ledger_url})
    _connection(
        monkeypatch,
        "elbridge_mqtt",
        {"conn_type": "mqtt", "host": mosquitto.host, "port": mosquitto.port},
    )
    # The first run opens the bridge's persistent session; the broker keeps what comes next.
    # Nothing arrived: its record task is skipped and no asset event is emitted.
    opened = run_dag("declarations_to_writeoffs")
    assert opened.state == "success", opened.task_states
    assert opened.task_states == {
        "drain_declaration_events": "success",
        "record_writeoffs": "skipped",
        "report_problems": "success",
    }
    assert opened.results["drain_declaration_events"]["messages"] == 0
    events_before = len(_asset_events("elbridge_write_offs"))  # of earlier tests' runs

    envelope = envelope_for_declaration_file(
        wco_samples / "TT_EX001a.xml", event="released", mrn=None, event_time=NOW
    )
    publish_events(load_settings(mqtt_host=mosquitto.host, mqtt_port=mosquitto.port), [envelope])

    drained = run_dag("declarations_to_writeoffs")

    assert drained.state == "success", drained.task_states
    assert drained.task_states["record_writeoffs"] == "success"
    summary = drained.results["drain_declaration_events"]
    assert (summary["messages"], summary["ignored"]) == (1, 1)  # no licence in it: ignored
    assert summary["problems"] == {"refused_write_offs": 0, "quarantined_messages": 0}
    (event,) = _asset_events("elbridge_write_offs")[events_before:]  # one, of this run
    assert event["extra"]["messages"] == 1 and event["extra"]["ignored"] == 1
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(processed_message)).scalar_one() == 1


def test_a_declaration_run_that_refused_or_quarantined_is_red_with_the_reasons(
    bridge_env, engine, ledger_url, mosquitto, wco_samples, monkeypatch, capfd, caplog
):
    from bridge.services.customs_events import envelope_for_declaration_file, publish_events
    from bridge.services.mqtt_endpoints import open_session

    _connection(monkeypatch, "elbridge_ledger", {"conn_type": "generic", "host": ledger_url})
    _connection(
        monkeypatch,
        "elbridge_mqtt",
        {"conn_type": "mqtt", "host": mosquitto.host, "port": mosquitto.port},
    )
    settings = load_settings(mqtt_host=mosquitto.host, mqtt_port=mosquitto.port)
    open_session(settings)
    # TT_EX004a writes off against licences this ledger does not hold: three documents refused.
    refused = envelope_for_declaration_file(
        wco_samples / "TT_EX004a.xml", event="released", mrn=None, event_time=NOW
    )
    publish_events(settings, [refused, b"<not an envelope at all"])

    events_before = len(_asset_events("elbridge_write_offs"))
    run = run_dag("declarations_to_writeoffs")
    task_log = _task_log(capfd, caplog)

    assert run.state == "failed"
    assert run.task_states == {
        "drain_declaration_events": "success",
        "record_writeoffs": "success",
        "report_problems": "failed",
    }
    summary = run.results["drain_declaration_events"]
    assert (summary["messages"], summary["refused"], summary["quarantined"]) == (2, 1, 1)
    assert summary["problems"] == {"refused_write_offs": 3, "quarantined_messages": 1}
    warnings = [line for line in task_log.splitlines() if "refused write-off: MRN " in line]
    assert len(warnings) == 3
    assert any(
        "X002 GBSIEXYK3ZZZPADR-0002" in line
        and "licence-unknown: licence GBSIEXYK3ZZZPADR-0002 is not in the ledger" in line
        for line in warnings
    )
    quarantined = next(line for line in task_log.splitlines() if "quarantined message: " in line)
    assert "`elbridge quarantine show 1`" in quarantined
    assert (
        "this run needs a person: refused write-offs: 3, quarantined messages: 1; the reasons"
        " are the WARNING lines in the log of drain_declaration_events" in task_log
    )
    (event,) = _asset_events("elbridge_write_offs")[events_before:]
    assert event["extra"]["refused_write_offs"] == 3


def test_a_long_drain_reports_in_slices_and_sums_them(
    bridge_env, engine, ledger_url, mosquitto, wco_samples, caplog
):
    """A scheduled run consumes for its whole length, in slices: what the first slice refused
    is logged before the run ends, and the run's report adds the slices up."""
    import logging

    from bridge.entrypoints.airflow_findings import FindingsLog
    from bridge.entrypoints.airflow_wiring import drain_declarations
    from bridge.services.customs_events import envelope_for_declaration_file, publish_events
    from bridge.services.mqtt_endpoints import open_session

    settings = load_settings(
        mqtt_host=mosquitto.host, mqtt_port=mosquitto.port, database_url=ledger_url
    )
    open_session(settings)
    refused = envelope_for_declaration_file(
        wco_samples / "TT_EX004a.xml", event="released", mrn=None, event_time=NOW
    )
    publish_events(settings, [refused])
    findings = FindingsLog(logging.getLogger("drain-test"))

    with caplog.at_level(logging.WARNING, logger="drain-test"):
        report = drain_declarations(settings, engine, findings, seconds=4.0, slice_seconds=1.5)

    assert report.messages == 1 and report.refused == 1
    assert report.seconds >= 3.5  # it went on after the topic was quiet: a scheduled run's length
    assert findings.counts == {"refused write-off": 3}
    assert len([r for r in caplog.records if "refused write-off" in r.getMessage()]) == 3


# -- the plugin --------------------------------------------------------------------------------


def test_the_plugin_mounts_the_console_in_airflows_api_server_and_lists_it_in_the_nav(
    bridge_env, ledger_url, monkeypatch
):
    """The entry point registers the plugin; Airflow's own plugin loader mounts the console in
    a FastAPI app as its API server does; the console is built on the first request, on the
    ledger of the Connection the DAGs use."""
    from importlib.metadata import entry_points

    from airflow import plugins_manager
    from airflow.api_fastapi.app import init_plugins
    from fastapi import FastAPI
    from starlette.testclient import TestClient

    (entry,) = [e for e in entry_points(group="airflow.plugins") if e.name == "elbridge"]
    assert entry.value == "bridge.entrypoints.airflow_plugin:ElbridgePlugin"
    plugins, errors = plugins_manager._get_plugins()
    # Run from the source tree, the package's metadata is found twice (the egg-info setuptools
    # leaves there, and the installed one): the second sighting is skipped, nothing fails.
    assert all("already registered" in error for error in errors.values()), errors
    (plugin,) = [p for p in plugins if p.name == "elbridge"]
    assert plugin.external_views == [
        {
            "name": "Authority console",
            "href": "/elbridge-console/",
            "destination": "nav",
            "url_route": "elbridge-console",
        }
    ]
    _connection(monkeypatch, "elbridge_ledger", {"conn_type": "generic", "host": ledger_url})
    app = FastAPI()
    init_plugins(app)
    with TestClient(app) as client:
        first = client.get("/elbridge-console/", follow_redirects=False)
        assert first.status_code == 303
        assert first.headers["location"] == "http://testserver/elbridge-console/licences"
        licences = client.get("/elbridge-console/licences", follow_redirects=False)
        assert licences.status_code == 303  # the console's own login applies
        assert licences.headers["location"].startswith("http://testserver/elbridge-console/login")
        login = client.get("/elbridge-console/login")
    assert login.status_code == 200
    assert 'href="http://testserver/elbridge-console/static/console.css"' in login.text
    assert login.headers["x-frame-options"] == "SAMEORIGIN"  # Airflow's UI, same site, frames it

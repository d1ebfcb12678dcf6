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
    assert dagbag.dags["licences_to_customs"].schedule == "*/2 * * * *"
    assert dagbag.dags["declarations_to_writeoffs"].schedule == "@continuous"
    assert dagbag.dags["daily_reconciliation"].schedule == "@daily"


def test_licences_are_ingested_then_certified_then_delivered(dagbag):
    dag = dagbag.dags["licences_to_customs"]
    downstream = {task.task_id: task.downstream_task_ids for task in dag.tasks}
    assert downstream == {
        "ingest_national_files": {"certify_new_versions", "fail_if_a_step_failed"},
        "certify_new_versions": {"deliver_certificates", "fail_if_a_step_failed"},
        "deliver_certificates": {"fail_if_a_step_failed"},
        "fail_if_a_step_failed": set(),
    }
    # Certificates that are ready go out even when an earlier step failed; the run still fails.
    assert {task.task_id: task.trigger_rule.value for task in dag.tasks} == {
        "ingest_national_files": "all_success",
        "certify_new_versions": "all_done",
        "deliver_certificates": "all_done",
        "fail_if_a_step_failed": "one_failed",
    }


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
        "https://certex:p%40ss@csw.example:8443/certex/v1?timeout=4.5&max_attempts=3",
    )
    settings = settings_from_airflow()
    assert settings.soap_url == "https://csw.example:8443/certex/v1"
    assert (settings.soap_username, settings.soap_password) == ("certex", "p@ss")
    assert (settings.soap_timeout, settings.soap_max_attempts) == (4.5, 3)

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


def test_a_report_file_is_replaced_whole(tmp_path):
    from bridge.entrypoints.airflow_wiring import write_report

    target = tmp_path / "reports" / "2026-11-28" / "reconciliation.csv"
    write_report(target, "old\n")
    write_report(target, "licence_number,line_number\nLV-1,1\n")
    assert target.read_text() == "licence_number,line_number\nLV-1,1\n"
    assert [p.name for p in target.parent.iterdir()] == ["reconciliation.csv"]


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


def test_daily_reconciliation_writes_csv_and_json_and_reports_over_use(
    bridge_env, engine, ledger_url, monkeypatch
):
    _seed_over_used_licence(engine)
    _save(engine, dataclasses.replace(_licence("LV-DU-2024-0001"), valid_to=date(2025, 6, 30)))
    _connection(monkeypatch, "elbridge_ledger", {"conn_type": "generic", "host": ledger_url})

    run = run_dag("daily_reconciliation")

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
    day = run.logical_date.astimezone(UTC).date().isoformat()
    folder = bridge_env / "reports" / day
    assert result["date"] == day
    assert (result["csv"], result["json"]) == (
        str(folder / "reconciliation.csv"),
        str(folder / "reconciliation.json"),
    )
    assert result["lines"] == 4 and result["over_used_lines"] == ["LV-DU-2026-0042/2"]
    lines = list(csv.DictReader(io.StringIO((folder / "reconciliation.csv").read_text())))
    assert [(r["line_number"], r["remaining_quantity"], r["over_used"]) for r in lines] == [
        ("1", "10", ""),
        ("2", "2.5", ""),
        ("1", "6", ""),
        ("2", "-0.5", "yes"),
    ]
    written = json.loads((folder / "reconciliation.json").read_text())
    assert written["summary"]["over_used_lines"] == ["LV-DU-2026-0042/2"]


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


def test_licences_to_customs_certifies_and_delivers_the_inbox_once(
    bridge_env, engine, ledger_url, customs_simulator, monkeypatch
):
    samples = _fill_inbox(bridge_env)
    _connection(monkeypatch, "elbridge_ledger", {"conn_type": "generic", "host": ledger_url})
    _connection(
        monkeypatch, "elbridge_customs_soap", {"conn_type": "http", "host": customs_simulator.url}
    )

    first = run_dag("licences_to_customs")

    assert first.state == "success", first.task_states
    ingested = first.results["ingest_national_files"]
    assert ingested["files"] == len(samples)
    assert ingested["new"] >= 1
    # The samples carry deliberately broken records: reported and kept, not a failed run.
    assert ingested["rejected"] >= 1
    assert sorted(p.name for p in (bridge_env / "inbox" / "done").iterdir()) == [
        s.name for s in samples
    ]
    certified = first.results["certify_new_versions"]["certified"]
    assert certified >= ingested["new"]
    assert first.results["deliver_certificates"]["delivered"] == certified
    assert _outbox_states(engine) == {"delivered": certified}
    assert len(customs_simulator.received()) == certified

    second = run_dag("licences_to_customs")

    assert second.state == "success", second.task_states
    assert second.results["ingest_national_files"]["files"] == 0
    assert _outbox_states(engine) == {"delivered": certified}  # nothing certified twice
    assert len(customs_simulator.received()) == certified  # nor sent twice


def test_certificates_that_fail_for_good_fail_the_delivery_task(
    bridge_env, engine, ledger_url, customs_simulator, monkeypatch
):
    _save(engine, _licence("LV-DU-2026-0042"), _licence("LV-DU-2026-0043"))
    _connection(monkeypatch, "elbridge_ledger", {"conn_type": "generic", "host": ledger_url})
    _connection(
        monkeypatch,
        "elbridge_customs_soap",
        {"conn_type": "http", "host": customs_simulator.url, "extra": {"max_attempts": 1}},
    )
    customs_simulator.set_faults(rate=1.0, kinds=["http503"])  # customs never accepts

    run = run_dag("licences_to_customs")

    assert run.state == "failed"
    assert run.task_states == {
        "ingest_national_files": "success",
        "certify_new_versions": "success",
        "deliver_certificates": "failed",
        "fail_if_a_step_failed": "failed",
    }
    assert run.results["certify_new_versions"]["certified"] == 2
    assert _outbox_states(engine) == {"failed": 2}
    assert customs_simulator.received() == []


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
        "fail_if_a_step_failed": "failed",
    }
    assert run.results["deliver_certificates"]["delivered"] == 1
    assert _outbox_states(engine) == {"delivered": 1, "failed": 1}
    assert len(customs_simulator.received()) == 1


def test_declarations_to_writeoffs_drains_the_persistent_session(
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
    opened = run_dag("declarations_to_writeoffs")
    assert opened.state == "success", opened.task_states
    assert opened.results["drain_declaration_events"]["messages"] == 0

    envelope = envelope_for_declaration_file(
        wco_samples / "TT_EX001a.xml", event="released", mrn=None, event_time=NOW
    )
    publish_events(load_settings(mqtt_host=mosquitto.host, mqtt_port=mosquitto.port), [envelope])

    drained = run_dag("declarations_to_writeoffs")

    assert drained.state == "success", drained.task_states
    assert drained.results["drain_declaration_events"]["messages"] == 1
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(processed_message)).scalar_one() == 1

"""The production stack on one machine, as docs/deployment.md runs it: `scripts/deploy-local.sh`
brings up PostgreSQL (ledger and Airflow metadata), Redis, Airflow with the CeleryExecutor,
mosquitto, the query service and the customs simulator over HTTPS; the three DAGs run end to end
under the Celery worker; `stop` leaves no process and no port behind."""

from __future__ import annotations

import json
import os
import shutil
import socket
import ssl
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, func, select, text

from bridge.adapters.soap.query_client import QueryClient
from bridge.adapters.store.schema import licence, processed_message
from bridge.core.paths import MAPPINGS_DIR, PROJECT_ROOT

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

SCRIPT = PROJECT_ROOT / "scripts" / "deploy-local.sh"
MARKER = "ELBRIDGE_DEPLOY_STATE"
DECLARATIONS = ("TT_EX004a.xml", "TT_EX010a.xml", "TT_EX001a.xml")  # two write-offs, one ignored
CERTIFICATES = 12  # the certificates of the three national sample files
DECLARATIONS_DAG = "declarations_to_writeoffs"
LICENCES_DAG = "licences_to_customs"
INGEST_TASK = "ingest_national_files"
DAG_IDS = (LICENCES_DAG, DECLARATIONS_DAG, "daily_reconciliation")


class Stack:
    """The state folder of a stack started by the script, and what the test reads from it."""

    def __init__(self, state: Path) -> None:
        self.state = state

    def run(self, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "ELBRIDGE"))}
        env["ELBRIDGE_DEPLOY_DIR"] = str(self.state)
        return subprocess.run(
            ["bash", str(SCRIPT), *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def secret(self, name: str) -> str:
        return (self.state / "secrets" / name).read_text().strip()

    @property
    def ports(self) -> dict[str, int]:
        lines = (self.state / "ports.env").read_text().split()
        return {k: int(v) for k, v in (line.split("=", 1) for line in lines)}

    def groups(self) -> dict[str, int]:
        return {f.stem: int(f.read_text()) for f in (self.state / "run").glob("*.pid")}

    def log(self, name: str) -> str:
        return (self.state / "logs" / f"{name}.log").read_text(errors="replace")


class AirflowApi:
    """Airflow's REST API v2 as the simple auth manager's admin (a JWT from /auth/token)."""

    def __init__(self, url: str, username: str, password: str) -> None:
        self.url = url
        body = {"username": username, "password": password}
        self.token = self._call("POST", "/auth/token", body, token=None)["access_token"]

    def _call(self, method: str, path: str, body: Any = None, *, token: str | None = "") -> Any:
        headers = {"Accept": "application/json", "Content-Type": "application/json"}
        if token is not None:
            headers["Authorization"] = f"Bearer {token or self.token}"
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.url + path, data, headers, method=method)
        try:
            with urllib.request.urlopen(request, timeout=30) as answer:
                return json.loads(answer.read() or b"null")
        except urllib.error.HTTPError as error:
            raise AssertionError(f"{method} {path}: {error.code} {error.read()[:500]!r}") from None

    def run_once(self, dag_id: str) -> str:
        """Trigger a manual run of `dag_id`, then unpause it; the manual run's id. Queued before
        the DAG is unpaused, the manual run comes before the run the scheduler makes on
        unpausing (a continuous DAG's run consumes for an hour: it must not be first)."""
        run = self._call("POST", f"/api/v2/dags/{dag_id}/dagRuns", {"logical_date": None})
        self._call("PATCH", f"/api/v2/dags/{dag_id}", {"is_paused": False})
        return run["dag_run_id"]

    def runs(self, dag_id: str) -> list[dict[str, Any]]:
        return self._call("GET", f"/api/v2/dags/{dag_id}/dagRuns")["dag_runs"]

    def task_instances(self, dag_id: str, run_id: str = "~") -> list[dict[str, Any]]:
        path = f"/api/v2/dags/{dag_id}/dagRuns/{urllib.request.quote(run_id, safe='~')}"
        return self._call("GET", f"{path}/taskInstances")["task_instances"]

    def result(self, dag_id: str, run_id: str, task_id: str) -> Any:
        path = (
            f"/api/v2/dags/{dag_id}/dagRuns/{urllib.request.quote(run_id, safe='')}"
            f"/taskInstances/{task_id}/xcomEntries/return_value?deserialize=true"
        )
        return self._call("GET", path)["value"]

    def result_if_any(self, dag_id: str, run_id: str, task_id: str) -> Any:
        """The task's return value, or None when it left none (skipped, not run)."""
        try:
            return self.result(dag_id, run_id, task_id)
        except AssertionError as error:
            if ": 404 " in str(error):
                return None
            raise

    def run_state(self, dag_id: str, run_id: str) -> str:
        path = f"/api/v2/dags/{dag_id}/dagRuns/{urllib.request.quote(run_id, safe='')}"
        return self._call("GET", path)["state"]

    def wait_for_run(self, dag_id: str, run_id: str, timeout: float = 240) -> str:
        """Wait until the run finished; its final state."""
        return _wait(
            f"run {run_id} of {dag_id}",
            lambda: (state := self.run_state(dag_id, run_id)) in ("success", "failed") and state,
            timeout,
            lambda: {ti["task_id"]: ti["state"] for ti in self.task_instances(dag_id, run_id)},
        )


def _wait(what: str, done: Callable[[], Any], timeout: float, detail=lambda: "") -> Any:
    deadline = time.monotonic() + timeout
    while not (value := done()):
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not done after {timeout:.0f} s; {detail()}")
        time.sleep(1)
    return value


def _running(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _group_members(pgid: int) -> list[int]:
    members = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                fields = (proc / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[2]) == pgid and fields[0] != "Z":
                members.append(int(proc.name))
    return members


def _family(pgid: int) -> set[tuple[int, int]]:
    """(pid, start time) of the group's processes and all their descendants, also those that
    left the group (PostgreSQL's backends start sessions of their own)."""
    table = {}
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                fields = (proc / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            table[int(proc.name)] = (int(fields[1]), int(fields[2]), int(fields[19]))
    found = {(pid, row[2]) for pid, row in table.items() if row[1] == pgid}
    todo = [pid for pid, _ in found]
    while todo:
        parent = todo.pop()
        for pid, (ppid, _, started) in table.items():
            if ppid == parent and (pid, started) not in found:
                found.add((pid, started))
                todo.append(pid)
    return found


def _still_running(procs: set[tuple[int, int]]) -> list[int]:
    alive = []
    for pid, started in procs:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] != "Z" and int(fields[19]) == started:
            alive.append(pid)
    return sorted(alive)


def _marked_processes(state: Path) -> list[int]:
    wanted = f"{MARKER}={state}".encode()
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                environ = (proc / "environ").read_bytes().split(b"\0")
            except OSError:
                continue
            if wanted in environ and _running(int(proc.name)):
                found.append(int(proc.name))
    return found


def _port_free(port: int) -> bool:
    """Nothing listens on 127.0.0.1:`port` (connections closed a moment ago may still linger in
    TIME_WAIT; a server reusing the address, as every server does, is not kept out by them)."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _https_status(url: str, ca: Path, cert: Path | None = None, key: Path | None = None) -> int:
    context = ssl.create_default_context(cafile=str(ca))
    if cert is not None:
        context.load_cert_chain(str(cert), str(key))
    try:
        with urllib.request.urlopen(url, timeout=10, context=context) as answer:
            return answer.status
    except urllib.error.HTTPError as error:
        return error.code


@pytest.fixture
def stack() -> Iterator[Stack]:
    # Not under pytest's tmp_path: its folders are private to root, and the postgres user must
    # reach the cluster's folder inside the state folder.
    state = Path(tempfile.mkdtemp(prefix="elbridge-deploy-"))
    stack = Stack(state)
    try:
        yield stack
    finally:
        stack.run("stop", timeout=180)
        shutil.rmtree(state, ignore_errors=True)


def test_the_local_production_stack_runs_the_three_dags_under_celery_and_stops_clean(
    stack, wco_samples
):
    # The operator's settings file: a scheduled write-off run consumes for 30 s, not an hour,
    # so that every run of the DAG finishes within the test.
    (stack.state / "elbridge.toml").write_text("declaration_run_minutes = 0.5\n")
    started = stack.run("start")
    assert started.returncode == 0, started.stdout + started.stderr
    groups = stack.groups()
    assert set(groups) >= {
        "postgres", "redis", "mosquitto", "customs-sim", "query-service", "consumer-1",
        "airflow-api-server", "airflow-scheduler", "airflow-dag-processor",
        "airflow-triggerer", "airflow-celery-worker",
    }  # fmt: skip
    assert all(_group_members(pgid) for pgid in groups.values()), stack.run("status").stdout

    # A second start finds everything running and starts nothing.
    again = stack.run("start")
    assert again.returncode == 0, again.stdout + again.stderr
    assert "airflow-celery-worker already running" in again.stdout
    assert stack.groups() == groups

    ports = stack.ports
    tls = stack.state / "tls"
    assert all(key.stat().st_mode & 0o077 == 0 for key in tls.glob("*.key"))
    # The query service speaks HTTPS and wants a client certificate.
    query_wsdl = f"https://127.0.0.1:{ports['QUERY_SERVICE_PORT']}/certex-query?wsdl"
    with pytest.raises((ssl.SSLError, urllib.error.URLError, ConnectionError)):
        _https_status(query_wsdl, tls / "ca.pem")
    assert (
        _https_status(query_wsdl, tls / "ca.pem", tls / "customs.pem", tls / "customs.key") == 200
    )

    airflow = AirflowApi(
        f"http://127.0.0.1:{ports['AIRFLOW_API_PORT']}",
        "admin",
        stack.secret("airflow-admin-password"),
    )
    ledger = create_engine(
        stack.secret("ledger-url").replace("postgresql://", "postgresql+psycopg2://")
    )
    airflow_db = create_engine(
        f"postgresql+psycopg2://airflow:{stack.secret('airflow-db-password')}"
        f"@127.0.0.1:{ports['POSTGRES_PORT']}/airflow"
    )
    try:
        # Licences: national files in the inbox -> the PostgreSQL ledger -> certificates, signed
        # by the stack's issuing authority, over HTTPS (mutual TLS) to the customs simulator,
        # which trusts only that authority (an unsigned certificate would be refused).
        inbox = stack.state / "bridge" / "inbox"
        inbox.mkdir(parents=True, exist_ok=True)
        for sample in (MAPPINGS_DIR / "samples").iterdir():
            shutil.copyfile(sample, inbox / sample.name)
        airflow.run_once(LICENCES_DAG)

        def ingesting() -> str | None:
            """The finished run that read the inbox: the manual one, or the scheduled one the
            cron timetable makes at once on unpausing (its slot comes before the manual run)."""
            for run in airflow.runs(LICENCES_DAG):
                if run["state"] in ("success", "failed"):
                    read = airflow.result_if_any(LICENCES_DAG, run["dag_run_id"], INGEST_TASK)
                    if read and read["files"]:
                        return run["dag_run_id"]
            return None

        run_id = _wait("the licences run that read the inbox", ingesting, 300, airflow.runs)
        # The samples carry deliberately broken national records: the run that read them did
        # its work and is red for operators, the rejects named in its report_problems task.
        assert airflow.run_state(LICENCES_DAG, run_id) == "failed"
        states = {ti["task_id"]: ti["state"] for ti in airflow.task_instances(LICENCES_DAG, run_id)}
        assert states == {
            INGEST_TASK: "success",
            "certify_new_versions": "success",
            "deliver_certificates": "success",
            "check_undelivered_certificates": "success",
            "report_problems": "failed",
            "fail_if_a_step_failed": "skipped",
        }, states
        read = airflow.result(LICENCES_DAG, run_id, INGEST_TASK)
        assert read["problems"]["rejected_records"] == read["rejected"] > 0, read
        with ledger.connect() as conn:
            assert conn.execute(select(func.count()).select_from(licence)).scalar_one() > 0
            outbox = dict(
                conn.execute(text("SELECT status, count(*) FROM outbox GROUP BY status")).all()
            )
        assert outbox == {"delivered": CERTIFICATES}
        received = stack.state / "customs-sim" / "received.db"
        with create_engine(f"sqlite:///{received}").connect() as conn:
            count = conn.execute(text("SELECT count(*) FROM received_certificate")).scalar_one()
        assert count == CERTIFICATES

        # Declarations: published by customs on the broker, shared between the write-off DAG's
        # consumer and the standing consumer, written off in the ledger.
        published = stack.run(
            "customs", "customs-sim", "publish", *(str(wco_samples / f) for f in DECLARATIONS)
        )
        assert published.returncode == 0, published.stdout + published.stderr
        airflow.run_once(DECLARATIONS_DAG)

        def outcomes() -> dict[str, str]:
            with ledger.connect() as conn:
                rows = conn.execute(
                    select(processed_message.c.message_id, processed_message.c.outcome)
                )
                return dict(rows.all())

        done = _wait("the three declaration events", lambda: len(outcomes()) == 3, 240, outcomes)
        assert sorted(outcomes().values()) == ["applied", "applied", "ignored"], done

        def taken_by_dag() -> int:
            """Events the write-off DAG's finished runs consumed (what their task returned)."""
            return sum(
                airflow.result(DECLARATIONS_DAG, run["dag_run_id"], "drain_declaration_events")[
                    "messages"
                ]
                for run in airflow.runs(DECLARATIONS_DAG)
                if run["state"] == "success"
            )

        # The broker hands each member of the shared subscription its share, in turn: the
        # DAG's consumer took some (its run ends once the topic is quiet), the standing
        # consumer the rest.
        _wait(
            "the write-off DAG's share of the events",
            taken_by_dag,
            180,
            lambda: [(run["dag_run_id"], run["state"]) for run in airflow.runs(DECLARATIONS_DAG)],
        )
        assert taken_by_dag() < len(DECLARATIONS)

        # Customs ask before a release, over HTTPS with their client certificate: the answer
        # shows the balance after the write-off, and the question is audited under their name.
        with QueryClient(
            f"https://127.0.0.1:{ports['QUERY_SERVICE_PORT']}/certex-query",
            ca_file=str(tls / "ca.pem"),
            cert_file=str(tls / "customs.pem"),
            key_file=str(tls / "customs.key"),
        ) as query:
            answer = query.check_availability("GBSIEXYK3ZZZPADR-0002", line_item_number=1)
        assert (answer.remaining_quantity, answer.unit) == (Decimal(398), "KGM"), answer
        with ledger.connect() as conn:
            asked = conn.execute(text("SELECT identity, operation FROM query_audit")).all()
        assert ("customs-gb", "CheckAvailability") in [tuple(row) for row in asked]

        run_id = airflow.run_once("daily_reconciliation")
        assert airflow.wait_for_run("daily_reconciliation", run_id) == "success"
        report = airflow.result("daily_reconciliation", run_id, "write_reconciliation")
        csv_lines = Path(report["csv"]).read_text().splitlines()
        padr = next(line for line in csv_lines if line.startswith("GBSIEXYK3ZZZPADR-0002,1,"))
        assert ",500,102,398" in padr.replace(".000", "")  # TT_EX004a's 102 kg written off

        # The ledger's chains hold after all that, checked as the runtime role.
        audit = stack.run("elbridge", "audit", "verify")
        assert audit.returncode == 0, audit.stdout + audit.stderr

        # Under the CeleryExecutor: each task that ran is a Celery task (its external executor
        # id) that the worker took from Redis and whose result is in the result backend.
        def celery_states() -> list[tuple[str, str, str | None]]:
            with airflow_db.connect() as conn:
                rows = conn.execute(
                    text(
                        "SELECT ti.dag_id, ti.task_id, m.status FROM task_instance ti"
                        " LEFT JOIN celery_taskmeta m ON m.task_id = ti.external_executor_id"
                        " WHERE ti.state = 'success'"
                    )
                )
                return [tuple(row) for row in rows]

        # The worker records the Celery result just after the task reported its own state.
        _wait(
            "the Celery results of the tasks that ran",
            lambda: all(status == "SUCCESS" for _, _, status in celery_states()),
            60,
            celery_states,
        )
        assert {dag_id for dag_id, _, _ in celery_states()} == set(DAG_IDS)
        worker_log = stack.log("airflow-celery-worker")
        for dag_id in DAG_IDS:
            assert f"dag_id='{dag_id}'" in worker_log
    finally:
        ledger.dispose()
        airflow_db.dispose()

    family = set().union(*(_family(pgid) for pgid in groups.values()))
    assert len(family) > len(groups)  # worker processes, PostgreSQL's backends...
    stopped = stack.run("stop", timeout=180)
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    assert {pgid: _group_members(pgid) for pgid in groups.values() if _group_members(pgid)} == {}
    assert _still_running(family) == []
    assert _marked_processes(stack.state) == []
    assert [name for name, port in ports.items() if not _port_free(port)] == []
    assert not list((stack.state / "run").glob("*.pid"))

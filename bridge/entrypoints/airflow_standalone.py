"""Start, drive and stop `airflow standalone` on this machine, for the demo and the tests.

Everything lives under one home folder: the metadata DB (SQLite), logs, the simple auth
manager's passwords file (pre-seeded, so the login is known before the first start) and the
standalone's own output (`standalone.log`). The API binds 127.0.0.1 on a free port. The process
runs in its own process group and is stopped by group, together with every descendant it
started, so nothing outlives `stop()`.

The child gets no AIRFLOW* variable from the caller's environment: its configuration is exactly
what `start_airflow` sets plus the `env` given (Connections as AIRFLOW_CONN_*, ELBRIDGE_*...)."""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bridge.core.errors import BridgeError

FINISHED_RUN_STATES = frozenset({"success", "failed"})
PASSWORDS_FILE = "simple_auth_manager_passwords.json"
LOG_FILE = "standalone.log"
API_ATTEMPTS = 5


class StandaloneError(BridgeError, RuntimeError):
    """Airflow standalone did not start, answered an error, or a wait ran out of time."""


@dataclass
class AirflowStandalone:
    """A running `airflow standalone` and a small client for its REST API (v2, JWT auth)."""

    home: Path
    port: int
    username: str
    password: str
    process: subprocess.Popen
    _token: str | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pgid(self) -> int:
        """The process group holding the standalone and its components."""
        return self.process.pid

    @property
    def log_file(self) -> Path:
        return self.home / LOG_FILE

    def __enter__(self) -> AirflowStandalone:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- REST API ----------------------------------------------------------------------------

    def token(self) -> str:
        """A JWT for the fixed user, from POST /auth/token (cached until refused)."""
        if self._token is None:
            try:
                answer = self._call(
                    "POST",
                    "/auth/token",
                    {"username": self.username, "password": self.password},
                    authorised=False,
                )
            except _HttpError as error:
                raise StandaloneError(f"login as {self.username} refused: {error}") from None
            self._token = answer["access_token"]
        return self._token

    def health(self) -> dict[str, Any]:
        return self._call("GET", "/api/v2/monitor/health", authorised=False)

    def api(self, method: str, path: str, body: Any = None) -> Any:
        """Call the REST API as the fixed user; a refused token is renewed once.

        Airflow on SQLite answers 500 "Database error" when its metadata database is locked by
        the scheduler on a busy machine; the failed request was rolled back, so it is tried again
        a few times with a growing pause before the error is raised."""
        last = ""
        for attempt in range(API_ATTEMPTS):
            try:
                return self._call(method, path, body)
            except _HttpError as error:
                last = str(error)
                if error.status == 401:
                    self._token = None
                elif error.status >= 500:
                    time.sleep(0.5 * 2**attempt)
                else:
                    raise StandaloneError(last) from None
        raise StandaloneError(f"{last} (tried {API_ATTEMPTS} times)")

    def dag(self, dag_id: str) -> dict[str, Any] | None:
        """The DAG as the API shows it, or None while the DAG processor has not parsed it yet."""
        try:
            return self._call("GET", f"/api/v2/dags/{_quote(dag_id)}")
        except _HttpError as error:
            if error.status == 404:
                return None
            if error.status == 401:
                self._token = None
                return None
            raise StandaloneError(str(error)) from None

    def wait_for_dag(self, dag_id: str, timeout: float = 120.0) -> dict[str, Any]:
        """Wait until `dag_id` has been parsed; raises StandaloneError with the import errors."""
        deadline = time.monotonic() + timeout
        while (found := self.dag(dag_id)) is None:
            self._check_alive()
            if time.monotonic() > deadline:
                raise StandaloneError(
                    f"DAG {dag_id} not known after {timeout:.0f} s; import errors: "
                    f"{self.import_errors()}"
                )
            time.sleep(1)
        return found

    def unpause(self, dag_id: str) -> None:
        self.api("PATCH", f"/api/v2/dags/{_quote(dag_id)}", {"is_paused": False})

    def trigger_dag(
        self, dag_id: str, conf: Mapping[str, Any] | None = None, *, timeout: float = 120.0
    ) -> str:
        """Trigger a manual run (waiting up to `timeout` for the DAG to be parsed); its run id."""
        self.wait_for_dag(dag_id, timeout)
        run = self.api(
            "POST",
            f"/api/v2/dags/{_quote(dag_id)}/dagRuns",
            {"logical_date": None, "conf": dict(conf or {})},
        )
        return run["dag_run_id"]

    def dag_run(self, dag_id: str, run_id: str) -> dict[str, Any]:
        return self.api("GET", f"/api/v2/dags/{_quote(dag_id)}/dagRuns/{_quote(run_id)}")

    def wait_for_run(self, dag_id: str, run_id: str, timeout: float = 300.0) -> str:
        """Wait for the run to finish; its final state (`success` or `failed`)."""
        deadline = time.monotonic() + timeout
        while (state := self.dag_run(dag_id, run_id)["state"]) not in FINISHED_RUN_STATES:
            self._check_alive()
            if time.monotonic() > deadline:
                raise StandaloneError(
                    f"run {run_id} of {dag_id} still {state} after {timeout:.0f} s; "
                    f"tasks: {self.task_states(dag_id, run_id)}"
                )
            time.sleep(1)
        return state

    def dag_runs(self, dag_id: str) -> list[dict[str, Any]]:
        """The DAG's runs, newest first."""
        answer = self.api("GET", f"/api/v2/dags/{_quote(dag_id)}/dagRuns?order_by=-run_after")
        return answer["dag_runs"]

    def task_states(self, dag_id: str, run_id: str) -> dict[str, str | None]:
        answer = self.api(
            "GET", f"/api/v2/dags/{_quote(dag_id)}/dagRuns/{_quote(run_id)}/taskInstances"
        )
        return {ti["task_id"]: ti["state"] for ti in answer["task_instances"]}

    def task_result(self, dag_id: str, run_id: str, task_id: str) -> Any:
        """What the task returned (its `return_value` XCom)."""
        answer = self.api(
            "GET",
            f"/api/v2/dags/{_quote(dag_id)}/dagRuns/{_quote(run_id)}/taskInstances/"
            f"{_quote(task_id)}/xcomEntries/return_value?deserialize=true",
        )
        return answer["value"]

    def xcom(self, dag_id: str, run_id: str, task_id: str, key: str = "return_value") -> Any:
        """The XCom `key` a task pushed, or None when it pushed none (e.g. a failed task's
        return value)."""
        path = (
            f"/api/v2/dags/{_quote(dag_id)}/dagRuns/{_quote(run_id)}/taskInstances/"
            f"{_quote(task_id)}/xcomEntries/{_quote(key)}?deserialize=true"
        )
        try:
            return self._call("GET", path)["value"]
        except _HttpError as error:
            if error.status == 404:
                return None
            raise StandaloneError(str(error)) from None

    def task_log(self, dag_id: str, run_id: str, task_id: str) -> list[dict[str, Any]]:
        """The lines of the task's log for its latest try, as the API gives them (each with
        `event`, `level`, `timestamp`, and `logger` for lines a logger wrote)."""
        task = _quote(task_id)
        base = f"/api/v2/dags/{_quote(dag_id)}/dagRuns/{_quote(run_id)}/taskInstances/{task}"
        tries = self.api("GET", base)["try_number"]
        answer = self.api("GET", f"{base}/logs/{tries}?full_content=true")
        return [line for line in answer["content"] if isinstance(line, dict)]

    def asset_events(self, **filters: str) -> list[dict[str, Any]]:
        """Asset events, oldest first, filtered as the API allows (source_dag_id,
        source_run_id, asset_id...)."""
        query = urllib.parse.urlencode({**filters, "order_by": "timestamp", "limit": 100})
        return self.api("GET", f"/api/v2/assets/events?{query}")["asset_events"]

    def plugins(self) -> list[dict[str, Any]]:
        """The plugins the API server loaded, with what each adds."""
        return self.api("GET", "/api/v2/plugins")["plugins"]

    def pause(self, dag_id: str) -> None:
        self.api("PATCH", f"/api/v2/dags/{_quote(dag_id)}", {"is_paused": True})

    def import_errors(self) -> list[dict[str, Any]]:
        """Files the DAG processor could not import, with their tracebacks."""
        return self.api("GET", "/api/v2/importErrors")["import_errors"]

    # -- process -----------------------------------------------------------------------------

    def stop(self, timeout: float = 10.0) -> None:
        """TERM the process group and every descendant, wait up to `timeout`, then KILL.

        Airflow lets a running task finish on TERM, so a busy task is killed after `timeout`;
        the bridge's services commit before they acknowledge, so nothing is lost."""
        watched = _descendants(self.process.pid) | _group(self.pgid)
        _signal_all(self.pgid, watched, signal.SIGTERM)
        if not self._wait_gone(watched, timeout):
            _signal_all(self.pgid, watched | _group(self.pgid), signal.SIGKILL)
            self._wait_gone(watched, 5.0)
        self.process.wait(timeout=5)
        self._token = None

    def _wait_gone(self, watched: set[Proc], timeout: float) -> bool:
        """Wait until the standalone, its group and the `watched` processes are all gone;
        `watched` grows with descendants started meanwhile."""
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is None:
                watched |= _descendants(self.process.pid)
            elif not _alive(watched) and not live_processes_in_group(self.pgid):
                return True
            if time.monotonic() > deadline:
                return False
            time.sleep(0.2)

    def _check_alive(self) -> None:
        if self.process.poll() is not None:
            raise StandaloneError(
                f"airflow standalone exited with {self.process.returncode}; "
                f"last output:\n{_tail(self.log_file)}"
            )

    def _call(self, method: str, path: str, body: Any = None, *, authorised: bool = True) -> Any:
        headers = {"Accept": "application/json"}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        if authorised:
            headers["Authorization"] = f"Bearer {self.token()}"
        request = urllib.request.Request(self.url + path, data, headers, method=method)
        try:
            with urllib.request.urlopen(request, timeout=30) as answer:
                raw = answer.read()
        except urllib.error.HTTPError as error:
            detail = error.read().decode(errors="replace")[:2000]
            raise _HttpError(error.code, f"{method} {path}: HTTP {error.code} {detail}") from None
        return json.loads(raw) if raw else None


def start_airflow(
    home: Path,
    *,
    dags_folder: Path,
    port: int | None = None,
    env: Mapping[str, str] | None = None,
    username: str = "admin",
    password: str | None = None,
    timeout: float = 180.0,
) -> AirflowStandalone:
    """Start `airflow standalone` with its home in `home` and the DAGs of `dags_folder`, and
    wait until its API answers and its scheduler is healthy.

    The login is `username` with `password`; without one, the password kept in the home's
    passwords file from an earlier start is reused, else a new random one is made (read it
    from the returned object). `env` is added last, so it can override any setting here."""
    home = Path(home).resolve()
    home.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    password = password or _known_password(home, username) or secrets.token_urlsafe(12)
    passwords_file = home / PASSWORDS_FILE
    _seed_password(passwords_file, username, password)

    venv_bin = str(Path(sys.executable).parent)
    airflow_bin = Path(venv_bin) / "airflow"
    if not airflow_bin.is_file():
        raise StandaloneError(
            f"no airflow next to {sys.executable}; install the extra: "
            "pip install 'elicensing-bridge[airflow]'"
        )
    child_env = {k: v for k, v in os.environ.items() if not k.lstrip("_").startswith("AIRFLOW")}
    child_env.update(
        {
            "PATH": os.pathsep.join([venv_bin, child_env.get("PATH", os.defpath)]),
            "NO_COLOR": "1",
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(Path(dags_folder).resolve()),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
            "AIRFLOW__CORE__PARALLELISM": "4",
            "AIRFLOW__CORE__MAX_ACTIVE_TASKS_PER_DAG": "4",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__PORT": str(port),
            "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{port}",
            "AIRFLOW__API__WORKERS": "1",
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{port}/execution/",
            # Secrets made per start and shared by the components through the environment.
            "AIRFLOW__API__SECRET_KEY": secrets.token_urlsafe(32),
            "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(32),
            "AIRFLOW__CORE__AUTH_MANAGER": (
                "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager"
            ),
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{username}:admin",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords_file),
        }
    )
    child_env.update(env or {})

    with (home / LOG_FILE).open("ab") as log:
        process = subprocess.Popen(
            [str(airflow_bin), "standalone"],
            cwd=home,
            env=child_env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, stopped as one
        )
    airflow = AirflowStandalone(home, port, username, password, process)
    try:
        _wait_until_ready(airflow, timeout)
    except BaseException:
        airflow.stop()
        raise
    return airflow


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def live_processes_in_group(pgid: int) -> list[int]:
    """Pids of the group's processes that still run (zombies waiting to be reaped are not)."""
    return sorted(pid for pid, _ in _group(pgid) if _running(pid))


def _wait_until_ready(airflow: AirflowStandalone, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    last: object = "no answer"
    while time.monotonic() < deadline:
        airflow._check_alive()
        try:
            health = airflow.health()
        except (OSError, _HttpError, ValueError) as error:
            last = error
        else:
            last = health
            if health.get("scheduler", {}).get("status") == "healthy":
                airflow.token()  # the login works too
                return
        time.sleep(0.5)
    raise StandaloneError(
        f"airflow standalone not ready after {timeout:.0f} s ({last}); "
        f"last output:\n{_tail(airflow.log_file)}"
    )


def _known_password(home: Path, username: str) -> str | None:
    try:
        return json.loads((home / PASSWORDS_FILE).read_text()).get(username)
    except (OSError, ValueError, AttributeError):
        return None


def _seed_password(passwords_file: Path, username: str, password: str) -> None:
    try:
        passwords = json.loads(passwords_file.read_text())
    except (OSError, ValueError):
        passwords = {}
    passwords[username] = password
    # Readable by its owner only, from the first byte written.
    fd = os.open(passwords_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(json.dumps(passwords) + "\n")


class _HttpError(StandaloneError):
    """An HTTP error answer from the API; `status` is its code."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _quote(part: str) -> str:
    return urllib.parse.quote(part, safe="")


def _tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no output)"


# Processes are watched as (pid, start time) so a recycled pid is never signalled.
Proc = tuple[int, int]


def _stat(pid: int) -> tuple[str, int, int, int] | None:
    """(state, ppid, pgrp, start time) from /proc/<pid>/stat, or None when it is gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = raw[raw.rindex(")") + 2 :].split()  # the command name may hold spaces
    return fields[0], int(fields[1]), int(fields[2]), int(fields[19])


def _all_pids() -> list[int]:
    return [int(name) for name in os.listdir("/proc") if name.isdigit()]


def _group(pgid: int) -> set[Proc]:
    found = set()
    for pid in _all_pids():
        stat = _stat(pid)
        if stat and stat[2] == pgid:
            found.add((pid, stat[3]))
    return found


def _descendants(root: int) -> set[Proc]:
    children: dict[int, list[Proc]] = {}
    for pid in _all_pids():
        stat = _stat(pid)
        if stat:
            children.setdefault(stat[1], []).append((pid, stat[3]))
    found: set[Proc] = set()
    todo = [root]
    while todo:
        for proc in children.get(todo.pop(), []):
            if proc not in found:
                found.add(proc)
                todo.append(proc[0])
    return found


def _running(pid: int, started: int | None = None) -> bool:
    stat = _stat(pid)
    return stat is not None and stat[0] != "Z" and (started is None or stat[3] == started)


def _alive(procs: set[Proc]) -> bool:
    return any(_running(pid, started) for pid, started in procs)


def _signal_all(pgid: int, procs: set[Proc], sig: signal.Signals) -> None:
    with suppress(ProcessLookupError):
        os.killpg(pgid, sig)
    for pid, started in procs:
        if _running(pid, started):
            with suppress(ProcessLookupError):
                os.kill(pid, sig)

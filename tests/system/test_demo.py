"""The main job, end to end, as the README runs it: `bash scripts/demo.sh` and `elbridge demo`
with their own mosquitto, customs simulator, Airflow standalone and console, on the real WCO
DEC-DMS samples. The story it tells is checked against the demo's own ledger and Airflow's
metadata database, read here independently; and SIGTERM, SIGHUP and Ctrl-C stop everything it
started."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from bridge.adapters.store.db import make_engine
from bridge.adapters.store.rejects import list_rejects

PROJECT = Path(__file__).resolve().parents[2]
ELBRIDGE = [sys.executable, "-m", "bridge.entrypoints.cli"]
CONSOLE_LINE = re.compile(r"^Console: (http://127\.0\.0\.1:\d+/)  login: (\S+) / (\S+)")


def _processes_mentioning(text: str) -> list[str]:
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            environ = (proc / "environ").read_bytes()
        except OSError:
            continue
        if text in cmdline or text.encode() in environ:
            found.append(f"{proc.name}: {cmdline[:120]}")
    return found


def _kill_groups_mentioning(text: str) -> None:
    """SIGKILL to every process that mentions `text`, and to its process group (the demo's
    servers each run in a group of their own) unless that is this test's own."""
    for entry in _processes_mentioning(text):
        pid = int(entry.split(":", 1)[0])
        with contextlib.suppress(ProcessLookupError):
            group = os.getpgid(pid)
            if group == os.getpgrp():
                os.kill(pid, signal.SIGKILL)
            else:
                os.killpg(group, signal.SIGKILL)


def _no_survivors(home: Path, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while (left := _processes_mentioning(str(home))) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert left == [], f"still running after the demo stopped: {left}"


def _env(wco_samples: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "ELBRIDGE"))}
    env["ELBRIDGE_DECLARATION_SAMPLES"] = str(wco_samples)
    env["PATH"] = f"{Path(sys.executable).parent}:{env.get('PATH', '')}"
    env["COLUMNS"] = "100"
    return env


def _line(output: str, licence: str, line: int) -> list[str]:
    for text in output.splitlines():
        cells = text.split()
        if len(cells) > 2 and cells[0] == licence and cells[1] == str(line):
            return cells
    pytest.fail(f"no reconciliation line {licence}/{line} in:\n{output}")


def _check_rejects_told(output: str, home: Path) -> None:
    """Every record the ledger rejected is told with every one of its reasons."""
    engine = make_engine(f"sqlite:///{home / 'ledger.db'}", create=False)
    try:
        with engine.connect() as conn:
            rejects = list_rejects(conn)
    finally:
        engine.dispose()
    assert len(rejects) == 3  # one bad record in each of the three national sample files
    assert f"National records rejected: {len(rejects)}" in output
    for stored in rejects:
        assert f"  {stored.source} ({stored.format}):" in output
        for problem in stored.problems:
            assert problem.reason in output, problem


def _check_story(output: str, home: Path) -> None:
    assert "customs simulator acknowledged 12 certificates" in output
    assert "outbox: 12 certificates delivered, 0 pending, 0 failed" in output
    _check_rejects_told(output, home)
    # TT_EX004a's X002 write-off: 102 KGM#G against GBSIEXYK3ZZZPADR-0002 (500 KGM authorised).
    padr = _line(output, "GBSIEXYK3ZZZPADR-0002", 1)
    assert padr[2:7] == ["KGM", "500", "102", "398", "1"]
    # TT_EX010a written off then cancelled: the line is as before, with both movements kept.
    assert _line(output, "GBSIEE2E350001-0001", 1)[2:7] == ["KGM", "250", "0", "250", "2"]
    assert "24GBDIRIGZ7QLCPAA8  released: written off (1 document)" in output
    assert "24GBDIRIGZ7QLCPAA8  invalidated: 1 write-off reversed" in output
    assert re.search(r"26GB\w+  released: ignored: it quotes no dual-use licence", output)
    # The over-use shipment, lodged without asking: its X002 document refused with the reason,
    # its two other documents written off; the balance stays at 398.
    assert "26GBDEMOOVERUSE001  released: 1 of 3 documents refused, 2 written off" in output
    assert re.search(r"refused item 2 X002 GBSIEXYK3ZZZPADR-0002: over-use: .*398 KGM", output), (
        output
    )
    assert "customs CheckAvailability" in output and ": available (ok; remaining 500 KGM)" in output
    home_shown = str(home)
    assert f"elbridge reconcile --home {home_shown}" in output
    assert f"elbridge quarantine list --home {home_shown}" in output


def _airflow_db(home: Path, query: str, *params) -> list[tuple]:
    with sqlite3.connect(home / "airflow" / "airflow.db") as db:
        return db.execute(query, params).fetchall()


def _check_airflow_runs(output: str, home: Path) -> None:
    """The runs the demo names are the runs that did the work, as Airflow's own database says."""
    found = re.search(r"licences_to_customs run (\S+) \((\w+)\) did the work: 3 files read", output)
    assert found, output
    ((summary,),) = _airflow_db(
        home,
        "SELECT value FROM xcom WHERE dag_id = 'licences_to_customs' AND run_id = ?"
        " AND task_id = 'ingest_national_files' AND key = 'return_value'",
        found.group(1),
    )
    assert json.loads(summary)["files"] == 3
    # Three records were rejected: the run is red, and the demo says why.
    assert "red because report_problems failed" in output
    runs = re.findall(r"declarations_to_writeoffs run (\S+) \((\w+)\) did the work", output)
    assert runs, output
    processed = 0
    for run_id, _ in runs:
        ((summary,),) = _airflow_db(
            home,
            "SELECT value FROM xcom WHERE dag_id = 'declarations_to_writeoffs' AND run_id = ?"
            " AND task_id = 'drain_declaration_events' AND key = 'return_value'",
            run_id,
        )
        processed += json.loads(summary)["messages"]
    assert processed == 5
    airflow = re.search(r"Airflow UI: (http://127\.0\.0\.1:\d+)  login: admin / \S+", output)
    assert airflow, output
    inside = re.search(r"the console in Airflow's menu too: (\S+)", output)
    assert inside and inside.group(1) == f"{airflow.group(1)}/elbridge-console/"


def test_the_demo_without_airflow_tells_the_story_and_stops(tmp_path, wco_samples):
    home = tmp_path / "demo"
    done = subprocess.run(
        [*ELBRIDGE, "demo", "--home", str(home), "--exit-when-done", "--no-airflow"],
        capture_output=True,
        text=True,
        timeout=600,
        env=_env(wco_samples),
        check=False,
    )
    output = done.stdout
    assert done.returncode == 0, f"{output}\n{done.stderr[-3000:]}"
    _check_story(output, home)
    assert any(CONSOLE_LINE.search(line) for line in output.splitlines()), output
    assert output.splitlines()[-1] == "[demo] done (--exit-when-done): stopping everything"
    _no_survivors(home)


class Demo:
    """A demo running in the background: its output read line by line as it comes."""

    def __init__(
        self, command: list[str], env: dict[str, str], *, home: Path, sigint: str = "default"
    ) -> None:
        # As from a terminal, Ctrl-C reaches the demo whatever the suite was started with (run
        # as a shell's background job, it inherits SIGINT ignored): `env --default-signal`;
        # `sigint="ignore"` starts it the way such a background job would be.
        self.process = subprocess.Popen(
            ["env", f"--{sigint}-signal=INT", *command],
            cwd=PROJECT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            bufsize=1,
        )
        self.home = home
        self.lines: list[str] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        for line in self.process.stdout:
            self.lines.append(line.rstrip("\n"))

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def wait_for(self, pattern: re.Pattern, timeout: float) -> re.Match:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in list(self.lines):
                if found := pattern.search(line):
                    return found
            if self.process.poll() is not None:
                break
            time.sleep(0.5)
        self.stop_hard()
        pytest.fail(f"no line matching {pattern.pattern!r}; output:\n{self.output[-6000:]}")

    def stop_hard(self) -> None:
        """Kill the demo if it is still running, and then whatever it started and could not
        stop: a failing test leaves nothing behind."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(30)
            _kill_groups_mentioning(str(self.home))


def _console_answers(url: str) -> None:
    with urllib.request.urlopen(f"{url}login", timeout=30) as page:
        assert page.status == 200 and "password" in page.read().decode().lower()
    with urllib.request.urlopen(f"{url}ready?check=ledger", timeout=30) as ready:
        assert json.loads(ready.read())["ready"] is True


def test_demo_sh_ends_with_the_console_address_and_sigterm_stops_everything(tmp_path, wco_samples):
    home = tmp_path / "demo"
    demo = Demo(["bash", "scripts/demo.sh", "--home", str(home)], _env(wco_samples), home=home)
    try:
        found = demo.wait_for(CONSOLE_LINE, timeout=900)
        time.sleep(2)  # nothing more comes: the console's address is the last line
        assert CONSOLE_LINE.search(demo.lines[-1]), demo.output[-3000:]
        url = found.group(1)
        _console_answers(url)
        _check_story(demo.output, home)
        _check_airflow_runs(demo.output, home)
        inside = re.search(r"the console in Airflow's menu too: (\S+)", demo.output).group(1)
        with urllib.request.urlopen(f"{inside}login", timeout=30) as page:
            assert page.status == 200
        demo.process.send_signal(signal.SIGTERM)
        assert demo.process.wait(120) == 128 + signal.SIGTERM
    finally:
        demo.stop_hard()
    assert "SIGTERM: everything the demo started is stopped" in demo.output
    _no_survivors(home)


@pytest.mark.parametrize(
    ("stop", "sigint", "told"),
    [
        (signal.SIGHUP, "ignore", "running; SIGTERM or SIGHUP stops everything (not Ctrl-C"),
        (signal.SIGINT, "default", "running; Ctrl-C (or SIGTERM, SIGHUP) stops everything"),
    ],
    ids=["SIGHUP, started as a background job", "Ctrl-C"],
)
def test_sighup_and_ctrl_c_stop_everything_like_sigterm(tmp_path, wco_samples, stop, sigint, told):
    home = tmp_path / "demo"
    command = [*ELBRIDGE, "demo", "--home", str(home), "--no-airflow"]
    demo = Demo(command, _env(wco_samples), home=home, sigint=sigint)
    try:
        url = demo.wait_for(CONSOLE_LINE, timeout=300).group(1)
        _console_answers(url)
        demo.process.send_signal(stop)
        status = demo.process.wait(120)
    finally:
        demo.stop_hard()
    assert status == 128 + stop, demo.output[-3000:]
    assert any(line.startswith(f"[demo] {told}") for line in demo.lines), demo.output[-3000:]
    _no_survivors(home)


def test_sigterm_while_starting_leaves_nothing_behind(tmp_path, wco_samples):
    home = tmp_path / "demo"
    demo = Demo(
        [*ELBRIDGE, "demo", "--home", str(home), "--no-airflow"], _env(wco_samples), home=home
    )
    try:
        demo.wait_for(re.compile(r"customs single window simulator at"), timeout=120)
        demo.process.send_signal(signal.SIGTERM)
        status = demo.process.wait(120)
    finally:
        demo.stop_hard()
    assert status == 128 + signal.SIGTERM, demo.output[-3000:]
    _no_survivors(home)

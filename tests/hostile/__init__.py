"""Hostile and broken input for the bridge: a generated corpus (corpus.py) of declaration
events, national licence records and SOAP answers, each case with the fate it must meet and the
reason it must be given. Used by tests/test_hostile_*.py."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
from pathlib import Path


class Listener:
    """A TCP listener on 127.0.0.1 that counts the connections made to it: the URL an entity
    points at, to show that nothing ever fetches it."""

    def __init__(self) -> None:
        self.socket = socket.socket()
        self.socket.bind(("127.0.0.1", 0))
        self.socket.listen(16)
        self.socket.settimeout(0.2)
        self.connections = 0
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.socket.getsockname()[1]}/entity"

    def _serve(self) -> None:
        while not self.stopped.is_set():
            try:
                connection, _ = self.socket.accept()
            except OSError:
                continue
            self.connections += 1
            connection.close()

    def stop(self) -> None:
        self.stopped.set()
        self.thread.join(2)
        self.socket.close()


def run_fuzz_target(target: str, work: Path, runs: int = 2000) -> str:
    """Run one atheris target of fuzz/ for `runs` inputs from its seeds, with a fixed seed so
    that CI sees the same inputs every time; fail on any finding. Returns libFuzzer's output."""
    project = Path(__file__).resolve().parent.parent.parent
    corpus = work / "corpus"
    findings = work / "findings"
    findings.mkdir(parents=True)
    python = sys.executable
    seeded = subprocess.run(
        [python, "-m", f"fuzz.{target}", "--write-seeds", str(corpus)],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert seeded.returncode == 0, seeded.stderr
    tokens = work / "tokens.dict"
    written = subprocess.run(
        [python, "-m", f"fuzz.{target}", "--write-dict", str(tokens)],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert written.returncode == 0, written.stderr
    done = subprocess.run(
        [
            python,
            "-m",
            f"fuzz.{target}",
            f"-runs={runs}",
            "-seed=1",
            "-timeout=10",
            "-print_final_stats=1",
            f"-dict={tokens}",
            f"-artifact_prefix={findings}/",
            str(corpus),
        ],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=300,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-3000:]
    assert not list(findings.iterdir()), output[-3000:]
    assert "stat::number_of_executed_units" in output
    return output

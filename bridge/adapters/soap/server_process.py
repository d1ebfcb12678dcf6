"""One of the project's SOAP servers as a subprocess in its own process group: started, waited
for until it answers, and stopped with the whole group (tests, benchmarks, chaos, the demo)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from bridge.adapters.processes import spawn


class ServerProcess:
    """A server running as a subprocess in its own process group, serving SOAP at `url`."""

    def __init__(self, process: subprocess.Popen, url: str, log_path: Path) -> None:
        self.process = process
        self.url = url
        self.log_path = log_path

    @property
    def wsdl_url(self) -> str:
        return f"{self.url}?wsdl"

    @property
    def base_url(self) -> str:
        parts = urlsplit(self.url)
        return f"{parts.scheme}://{parts.netloc}"

    def json(self, path: str, data: dict[str, Any] | None = None) -> Any:
        """GET `path` (POST `data` as JSON when given) and the JSON answer."""
        body = None if data is None else json.dumps(data).encode()
        request = urllib.request.Request(
            f"{self.base_url}{path}",
            data=body,
            headers={"Content-Type": "application/json"},
            method="GET" if body is None else "POST",
        )
        with urllib.request.urlopen(request, timeout=10) as answer:
            return json.load(answer)

    def stop(self) -> None:
        """Stop the whole process group and wait for it."""
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)

    def __enter__(self):
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()


def start_server_process(
    module: str,
    arguments: list[str],
    workdir: Path,
    *,
    what: str,
    health_path: str,
    log_name: str,
    environment: dict[str, str] | None = None,
    startup_timeout: float = 30.0,
) -> ServerProcess:
    """Run `python -m module arguments --ready-file F` in `workdir` (its own process group, its
    output appended to `log_name` there) and return once the URL it writes to F answers
    `health_path` with status ok. `environment` is added to this process's own."""
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    ready = workdir / f"{log_name}-{uuid.uuid4().hex[:8]}.ready"
    log_path = workdir / f"{log_name}.log"
    command = [sys.executable, "-m", module, *arguments, "--ready-file", str(ready)]
    process = spawn(command, environment or {}, log_path, cwd=workdir)
    server = None
    deadline = time.monotonic() + startup_timeout
    try:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(
                    f"{what} exited with {process.returncode}:\n"
                    + log_path.read_text(errors="replace")[-3000:]
                )
            if server is None and ready.exists():
                server = ServerProcess(process, json.loads(ready.read_text())["url"], log_path)
            if server is not None:
                with contextlib.suppress(OSError, urllib.error.URLError):
                    if server.json(health_path).get("status") == "ok":
                        ready.unlink(missing_ok=True)
                        return server
            time.sleep(0.05)
        raise RuntimeError(f"{what} did not answer within {startup_timeout} s")
    except BaseException:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)
        raise

"""One of the project's SOAP servers as a subprocess in its own process group: started, waited
for until it answers, and stopped with the whole group (tests, benchmarks, chaos, the demo).
Over HTTPS, `TlsTrust` says which CA its certificate is checked against and which client
certificate to present when it requires one; an admin token goes with every JSON call."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from bridge.adapters.processes import spawn


@dataclass(frozen=True)
class TlsTrust:
    """How to reach a server over HTTPS: the CA bundle its certificate is checked against
    (None: the system's), and the client certificate and key to present (when it asks)."""

    ca: Path | None = None
    cert: Path | None = None
    key: Path | None = None

    def context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=None if self.ca is None else str(self.ca))
        if self.cert is not None:
            context.load_cert_chain(self.cert, self.key)
        return context


class ServerProcess:
    """A server running as a subprocess in its own process group, serving SOAP at `url`
    (https when it was started with a certificate: `tls` then says how to reach it)."""

    def __init__(
        self,
        process: subprocess.Popen,
        url: str,
        log_path: Path,
        *,
        tls: TlsTrust | None = None,
        admin_token: str | None = None,
    ) -> None:
        self.process = process
        self.url = url
        self.log_path = log_path
        self.tls = tls
        self.admin_token = admin_token

    @property
    def wsdl_url(self) -> str:
        return f"{self.url}?wsdl"

    @property
    def base_url(self) -> str:
        parts = urlsplit(self.url)
        return f"{parts.scheme}://{parts.netloc}"

    def ssl_context(self) -> ssl.SSLContext | None:
        """The client side of TLS for calls to this server (None over plain HTTP)."""
        if not self.url.startswith("https:"):
            return None
        return (self.tls or TlsTrust()).context()

    def json(self, path: str, data: dict[str, Any] | None = None) -> Any:
        """GET `path` (POST `data` as JSON when given) and the JSON answer; the admin token
        goes with it."""
        body = None if data is None else json.dumps(data).encode()
        headers = {"Content-Type": "application/json"}
        if self.admin_token:
            headers["Authorization"] = f"Bearer {self.admin_token}"
        request = urllib.request.Request(
            f"{self.base_url}{path}",
            data=body,
            headers=headers,
            method="GET" if body is None else "POST",
        )
        with urllib.request.urlopen(request, timeout=10, context=self.ssl_context()) as answer:
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
    tls: TlsTrust | None = None,
    admin_token: str | None = None,
) -> ServerProcess:
    """Run `python -m module arguments --ready-file F` in `workdir` (its own process group, its
    output appended to `log_name` there) and return once the URL it writes to F answers
    `health_path` with status ok (over HTTPS as `tls` says). `environment` is added to this
    process's own."""
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
                url = json.loads(ready.read_text())["url"]
                server = ServerProcess(process, url, log_path, tls=tls, admin_token=admin_token)
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

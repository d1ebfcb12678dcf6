"""The console as a subprocess in its own process group (tests, the demo): started, waited for
until it answers, stopped with its whole group."""

from __future__ import annotations

from pathlib import Path

from bridge.adapters.soap.server_process import ServerProcess, TlsTrust, start_server_process


def start_console(
    workdir: Path,
    *,
    environment: dict[str, str] | None = None,
    host: str = "127.0.0.1",
    port: int = 0,
    tls_cert: Path | None = None,
    tls_key: Path | None = None,
    trust: TlsTrust | None = None,
    startup_timeout: float = 30.0,
) -> ServerProcess:
    """Start `python -m bridge.entrypoints.console` (log in `workdir`/console.log) with
    `environment` added to this process's (ELBRIDGE_HOME, ELBRIDGE_DATABASE_URL,
    ELBRIDGE_CONSOLE_USERS_FILE, ELBRIDGE_CONSOLE_SECRET...), on a free port unless `port`
    says otherwise, and return once it answers: `.url` is where it is, `.stop()` stops it
    (also on leaving a `with` block)."""
    arguments = ["--host", host, "--port", str(port)]
    if tls_cert is not None and tls_key is not None:
        arguments += ["--tls-cert", str(tls_cert), "--tls-key", str(tls_key)]
    return start_server_process(
        "bridge.entrypoints.console",
        arguments,
        workdir,
        what="the authority console",
        health_path="/alive",
        log_name="console",
        environment=environment,
        startup_timeout=startup_timeout,
        tls=trust,
    )

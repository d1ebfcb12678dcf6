"""A local mosquitto broker as a child process: persistent sessions, big queues, its own
process group so that stopping it never touches anything else; open on 127.0.0.1, or locked
down as deployed (TLS, logins, ACLs: bridge.adapters.mqtt.broker_setup)."""

from __future__ import annotations

import atexit
import getpass
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType

from bridge.adapters.mqtt.broker_setup import (
    EVENTS_TOPIC,
    RESULTS_TOPIC,
    BrokerTls,
    BrokerUsers,
    write_secure_broker,
)

HOST = "127.0.0.1"
MOSQUITTO_PATHS = ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto")


def free_port(host: str = HOST) -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


def mosquitto_executable() -> str:
    for candidate in MOSQUITTO_PATHS:
        if os.access(candidate, os.X_OK):
            return candidate
    found = shutil.which("mosquitto")
    if found is None:
        raise FileNotFoundError("mosquitto is not installed (looked in /usr/sbin and on PATH)")
    return found


def broker_config(workdir: Path, port: int, *, autosave_interval: int = 5) -> str:
    """mosquitto.conf for a local, persistent broker on 127.0.0.1:`port`."""
    return "\n".join(
        [
            # As root mosquitto would switch to user "mosquitto", who cannot write in workdir.
            f"user {getpass.getuser()}",
            "per_listener_settings false",
            f"listener {port} {HOST}",
            "allow_anonymous true",
            "persistence true",
            f"persistence_location {workdir}/",
            "persistence_file mosquitto.db",
            f"autosave_interval {autosave_interval}",
            # Sessions of offline consumers keep everything (the default 1000 would drop events).
            "max_queued_messages 1000000",
            "max_queued_bytes 0",
            # A consumer acks after commit, a batch at a time: let a whole batch be in flight.
            "max_inflight_messages 1000",
            "set_tcp_nodelay true",
            f"log_dest file {workdir}/mosquitto.log",
            "log_type error",
            "log_type warning",
            "log_type notice",
            "log_type information",
            "connection_messages true",
            "",
        ]
    )


class Broker:
    """A running mosquitto. `stop()` ends it (SIGTERM to its group, SIGKILL if it lingers);
    `restart()` brings it back on the same port with the same persistence."""

    def __init__(self, workdir: Path, port: int, executable: str) -> None:
        self.workdir = workdir
        self.host = HOST
        self.port = port
        self.executable = executable
        self.config_path = workdir / "mosquitto.conf"
        self.log_path = workdir / "mosquitto.log"
        self.process: subprocess.Popen | None = None
        self.tls: BrokerTls | None = None

    @property
    def url(self) -> str:
        return f"{'mqtts' if self.tls else 'mqtt'}://{self.host}:{self.port}"

    def start(self, timeout: float = 10.0) -> Broker:
        if self.process is not None and self.process.poll() is None:
            return self
        output = open(self.workdir / "mosquitto.out", "ab")  # noqa: SIM115 - lives with the process
        try:
            self.process = subprocess.Popen(
                [self.executable, "-c", str(self.config_path)],
                stdout=output,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                cwd=self.workdir,
            )
        finally:
            output.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"mosquitto exited with {self.process.returncode}: {self._log_tail()}"
                )
            try:
                with socket.create_connection((self.host, self.port), timeout=0.2):
                    return self
            except OSError:
                time.sleep(0.02)
        self.stop()
        raise TimeoutError(f"mosquitto did not listen on {self.port} in {timeout}s")

    def stop(self, timeout: float = 10.0) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        try:
            os.killpg(process.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout)

    def restart(self) -> Broker:
        self.stop()
        return self.start()

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def _log_tail(self, characters: int = 2000) -> str:
        texts = []
        for path in (self.log_path, self.workdir / "mosquitto.out"):
            if path.exists():
                texts.append(path.read_text(errors="replace")[-characters:])
        return "\n".join(texts) or "(no log)"

    def __enter__(self) -> Broker:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.stop()


def start_broker(
    workdir: Path,
    port: int | None = None,
    *,
    tls: BrokerTls | None = None,
    users: BrokerUsers | None = None,
    events_topic: str = EVENTS_TOPIC,
    results_topic: str = RESULTS_TOPIC,
) -> Broker:
    """Start mosquitto with its config, persistence and log in `workdir`, listening on
    127.0.0.1:`port` (a free port when None); returns once the port accepts connections.

    Open to anyone by default. With `tls` and `users` it is the deployed broker instead
    (deploy/mosquitto/, bridge.adapters.mqtt.broker_setup): TLS only, logins required, and
    the ACLs on `events_topic` and `results_topic`."""
    workdir = Path(workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    if (tls is None) != (users is None):
        raise ValueError("a locked-down broker needs both tls and users")
    if tls is not None and users is not None:
        write_secure_broker(
            workdir,
            port=port,
            tls=tls,
            users=users,
            events_topic=events_topic,
            results_topic=results_topic,
        )
    else:
        (workdir / "mosquitto.conf").write_text(broker_config(workdir, port), encoding="utf-8")
    broker = Broker(workdir, port, mosquitto_executable())
    broker.tls = tls
    atexit.register(broker.stop)  # never leave a broker behind a process that forgot it
    return broker.start()

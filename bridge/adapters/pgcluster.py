"""A throwaway PostgreSQL cluster for tests and benchmarks: initdb into a fresh folder, a
server on a free 127.0.0.1 port, stopped (and its folder removed) by whoever started it.

`initdb` refuses to run as root, so as root the cluster belongs to the `postgres` user."""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from bridge.core.errors import BridgeError


class ClusterError(BridgeError):
    """The throwaway cluster could not be created or started."""


def _bin(name: str) -> str:
    found = shutil.which(name) or sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    if not found:
        raise ClusterError(
            f"PostgreSQL's {name} is not installed (apt-get install postgresql, or run"
            " scripts/setup.sh with ELBRIDGE_WITH_POSTGRES=1)"
        )
    return found if isinstance(found, str) else found[-1]


def postgres_available() -> bool:
    try:
        _bin("initdb")
    except ClusterError:
        return False
    return True


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class PostgresCluster:
    """A running throwaway cluster; `url` reaches its database `ledger` as user `postgres`."""

    def __init__(self, folder: Path, port: int, process: subprocess.Popen, owner: str | None):
        self.folder = folder
        self.port = port
        self.process = process
        self.owner = owner

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/ledger"

    def create_database(self, name: str, *, owner: str | None = None) -> str:
        """A fresh empty database in this cluster (owned by role `owner` if given: its schema
        `public` is then the owner's too); returns its URL as `postgres`."""
        self._psql(f'CREATE DATABASE "{name}"' + (f' OWNER "{owner}"' if owner else ""))
        return f"postgresql://postgres@127.0.0.1:{self.port}/{name}"

    def create_role(self, name: str) -> None:
        """A login role without special rights (the cluster trusts local connections, so it
        needs no password)."""
        self._psql(f'CREATE ROLE "{name}" LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE')

    def url_as(self, role: str, database: str) -> str:
        """The URL of `database` for role `role`."""
        return f"postgresql://{role}@127.0.0.1:{self.port}/{database}"

    def _psql(self, sql: str) -> None:
        subprocess.run(
            [_bin("psql"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres",
             "-d", "postgres", "-v", "ON_ERROR_STOP=1", "-qc", sql],
            check=True, capture_output=True, timeout=60,
        )  # fmt: skip

    def stop(self) -> None:
        if self.process.poll() is None:
            try:
                os.killpg(self.process.pid, signal.SIGINT)  # fast shutdown, consistent
                self.process.wait(timeout=20)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)
        shutil.rmtree(self.folder, ignore_errors=True)

    def __enter__(self) -> PostgresCluster:
        return self

    def __exit__(self, *_exc) -> None:
        self.stop()


def start_cluster(*, port: int | None = None, timeout: float = 30.0) -> PostgresCluster:
    """initdb a new cluster under the system temp folder and start it on 127.0.0.1 only."""
    folder = Path(tempfile.mkdtemp(prefix="elbridge-pg-"))
    data = folder / "data"
    owner = None
    demote = None
    if os.geteuid() == 0:
        owner = "postgres"
        try:
            account = pwd.getpwnam(owner)
        except KeyError:
            raise ClusterError("running as root needs the postgres system user") from None
        os.chown(folder, account.pw_uid, account.pw_gid)

        def demote() -> None:  # runs in the child before exec
            os.setgid(account.pw_gid)
            os.setuid(account.pw_uid)

    def run(args: list[str]) -> None:
        done = subprocess.run(
            args, preexec_fn=demote, capture_output=True, text=True, timeout=120, check=False
        )
        if done.returncode:
            raise ClusterError(f"{Path(args[0]).name} failed: {done.stderr.strip()[-800:]}")

    try:
        run([_bin("initdb"), "-D", str(data), "-U", "postgres", "--auth=trust",
             "--encoding=UTF8", "--no-locale", "--no-sync"])  # fmt: skip
        port = port or _free_port()
        process = subprocess.Popen(
            [_bin("postgres"), "-D", str(data), "-p", str(port), "-c", "listen_addresses=127.0.0.1",
             "-c", f"unix_socket_directories={folder}", "-c", "fsync=on",
             "-c", "max_connections=50", "-c", "shared_buffers=128MB"],
            preexec_fn=demote, start_new_session=True,
            stdout=subprocess.DEVNULL, stderr=open(folder / "server.log", "wb"),  # noqa: SIM115
        )  # fmt: skip
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    cluster = PostgresCluster(folder, port, process, owner)
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            log = (folder / "server.log").read_text(errors="replace")[-800:]
            cluster.stop()
            raise ClusterError(f"postgres exited at start: {log}")
        try:
            cluster._psql("CREATE DATABASE ledger")
            return cluster
        except subprocess.CalledProcessError as error:
            if time.monotonic() > deadline:
                cluster.stop()
                raise ClusterError(f"postgres did not answer: {error.stderr!r}") from None
            time.sleep(0.2)

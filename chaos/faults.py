"""What the suite does to the bridge: the processes it kills and restarts, and the ledger
outage it causes. Every child runs in a process group of its own and is stopped by group."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import create_engine, text

from bridge.adapters.processes import signal_group, spawn, stop_group
from bridge.adapters.store.db import engine_url

CONSUMER_APPLICATION = "elbridge-chaos-consumer"  # how the consumer shows in pg_stat_activity


@dataclass
class Exit:
    """How one child process ended."""

    process: str
    pid: int
    returncode: int | None
    cause: str  # killed (by the suite), stopped (SIGTERM at the end), crashed (on its own)
    at: float  # seconds into the run
    log_tail: str = ""


class ConsumerSupervisor:
    """`python -m bridge.entrypoints.consumer` as a supervisor would run it: started again whenever
    it ends. The suite kills it; any other end is a crash, recorded with its log."""

    def __init__(self, env: dict[str, str], log: Path, clock: Callable[[], float]) -> None:
        self.env = env
        self.log = log
        self.clock = clock
        self.child: subprocess.Popen | None = None
        self.exits: list[Exit] = []
        self.starts = 0
        self.started_at = 0.0

    def start(self) -> None:
        self.child = spawn(
            [sys.executable, "-m", "bridge.entrypoints.consumer"], self.env, self.log
        )
        self.starts += 1
        self.started_at = self.clock()

    @property
    def pid(self) -> int | None:
        return self.child.pid if self.child is not None else None

    def kill(self) -> int:
        """SIGKILL now (no ack, no goodbye); returns the pid killed."""
        assert self.child is not None
        child = self.child
        signal_group(child, signal.SIGKILL)
        child.wait(30)
        self.exits.append(Exit("consumer", child.pid, child.returncode, "killed", self.clock()))
        self.child = None
        return child.pid

    def check(self) -> Exit | None:
        """A consumer that ended on its own is recorded as a crash and started again."""
        child = self.child
        if child is None or child.poll() is None:
            return None
        crash = Exit(
            "consumer", child.pid, child.returncode, "crashed", self.clock(), _tail(self.log)
        )
        self.exits.append(crash)
        self.start()
        return crash

    def stop(self) -> None:
        if self.child is None:
            return
        child, self.child = self.child, None
        code = stop_group(child)
        cause = "stopped" if code in (0, -signal.SIGTERM) else "crashed"
        self.exits.append(Exit("consumer", child.pid, code, cause, self.clock(), _tail(self.log)))


class SyncScheduler(threading.Thread):
    """Certificate delivery as a scheduler runs it: `python -m bridge.entrypoints.cli sync` (certify
    new licence versions, deliver the outbox) again and again, one run at a time, until stopped. A
    run that fails (the ledger away, say) is simply followed by the next, as a scheduler's retry
    would; the suite SIGKILLs some runs in the middle of their sending."""

    def __init__(self, env: dict[str, str], log: Path, clock: Callable[[], float]) -> None:
        super().__init__(name="chaos-sync", daemon=True)
        self.env = env
        self.log = log
        self.clock = clock
        self.child: subprocess.Popen | None = None
        self.exits: list[Exit] = []
        self.runs = 0
        self.lock = threading.Lock()
        self.halt = threading.Event()

    def run(self) -> None:
        command = [sys.executable, "-m", "bridge.entrypoints.cli", "sync", "--retry-seconds", "5"]
        while not self.halt.is_set():
            with self.lock:
                self.child = spawn(command, self.env, self.log)
                self.runs += 1
            child = self.child
            child.wait()
            with self.lock:
                if self.child is child:  # not killed meanwhile (the killer records its own)
                    cause = "stopped" if child.returncode in (0, -signal.SIGTERM) else "crashed"
                    self.exits.append(
                        Exit("sync", child.pid, child.returncode, cause, self.clock(), "")
                    )
                self.child = None
            self.halt.wait(0.3)

    def kill_running(self) -> int | None:
        """SIGKILL the run in progress, if any; its pid."""
        with self.lock:
            child = self.child
            if child is None or child.poll() is not None:
                return None
            signal_group(child, signal.SIGKILL)
            child.wait(30)
            self.exits.append(Exit("sync", child.pid, child.returncode, "killed", self.clock()))
            self.child = None
            return child.pid

    def stop(self) -> None:
        self.halt.set()
        with self.lock:
            child = self.child
        if child is not None:
            stop_group(child)
        self.join(60)


# ------------------------------------------------------------------------------ the outage


class LedgerOutage:
    """Makes the ledger unavailable until `end()`."""

    description = ""

    def begin(self) -> None:
        raise NotImplementedError

    def end(self) -> None:
        raise NotImplementedError


class SqliteLock(LedgerOutage):
    """Another process takes SQLite's write lock and keeps it, as a backup or a long maintenance
    transaction would: every writer waits its busy timeout, then gets "database is locked"."""

    description = "another connection holds the SQLite database's exclusive write lock"

    def __init__(self, path: Path) -> None:
        self.path = path
        self.conn: sqlite3.Connection | None = None

    def begin(self) -> None:
        self.conn = sqlite3.connect(str(self.path), timeout=120, isolation_level=None)
        self.conn.execute("BEGIN EXCLUSIVE")  # waits for the writer in progress to commit

    def end(self) -> None:
        if self.conn is not None:
            self.conn.execute("ROLLBACK")
            self.conn.close()
            self.conn = None


class PostgresRefusal(LedgerOutage):
    """The ledger database refuses connections (ALLOW_CONNECTIONS false) and every session on
    it is terminated, as a failover or an administrator's intervention would do."""

    description = (
        "ALTER DATABASE ... ALLOW_CONNECTIONS false, then pg_terminate_backend of every session"
    )

    def __init__(self, ledger_url: str) -> None:
        url = engine_url(ledger_url)
        self.database = url.database
        self.admin = create_engine(
            url.set(database="postgres", query={}), isolation_level="AUTOCOMMIT"
        )
        self.terminated = 0

    def begin(self) -> None:
        with self.admin.connect() as conn:
            conn.execute(text(f'ALTER DATABASE "{self.database}" ALLOW_CONNECTIONS false'))
            self.terminated = conn.execute(
                text(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                    " WHERE datname = :name AND pid <> pg_backend_pid()"
                ),
                {"name": self.database},
            ).scalar_one()

    def end(self) -> None:
        with self.admin.connect() as conn:
            conn.execute(text(f'ALTER DATABASE "{self.database}" ALLOW_CONNECTIONS true'))

    def dispose(self) -> None:
        self.admin.dispose()


# ---------------------------------------------------------------------- where the consumer is


class TransactionProbe:
    """Whether the consumer has a ledger transaction open right now (a batch being stored), so
    that a kill can land in the middle of one."""

    def open(self) -> bool:
        raise NotImplementedError

    def close(self) -> None:
        pass


class SqliteWriterProbe(TransactionProbe):
    """SQLite in WAL mode has one writer, who holds a POSIX lock on byte 120 of the database's
    shared-memory file for the length of its transaction: /proc/locks says whether the
    consumer's process holds it (without taking or delaying any lock)."""

    WAL_WRITE_LOCK = 120

    def __init__(self, path: Path, pid: Callable[[], int | None]) -> None:
        self.shm = Path(f"{path}-shm")
        self.pid = pid
        self.inode: int | None = None

    def open(self) -> bool:
        pid = self.pid()
        if pid is None:
            return False
        if self.inode is None:
            try:
                self.inode = self.shm.stat().st_ino
            except FileNotFoundError:
                return False
        wanted = f":{self.inode} {self.WAL_WRITE_LOCK} {self.WAL_WRITE_LOCK}"
        with open("/proc/locks") as locks:
            for line in locks:
                fields = line.split()
                if fields[3:5] == ["WRITE", str(pid)] and line.rstrip().endswith(wanted):
                    return True
        return False


class PostgresSessionProbe(TransactionProbe):
    """The consumer's session (by its application name) is inside a transaction."""

    def __init__(self, ledger_url: str) -> None:
        url = engine_url(ledger_url)
        self.database = url.database
        self.engine = create_engine(
            url.set(database="postgres", query={}), isolation_level="AUTOCOMMIT"
        )
        self.conn = self.engine.connect()

    def open(self) -> bool:
        found = self.conn.execute(
            text(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = :name"
                " AND application_name = :app AND xact_start IS NOT NULL AND state <> 'idle'"
            ),
            {"name": self.database, "app": CONSUMER_APPLICATION},
        ).scalar_one()
        return bool(found)

    def close(self) -> None:
        self.conn.close()
        self.engine.dispose()


def _tail(path: Path, characters: int = 3000) -> str:
    try:
        return path.read_text(errors="replace")[-characters:]
    except OSError:
        return ""


def count_in_log(path: Path, needle: str) -> int:
    try:
        return path.read_text(errors="replace").count(needle)
    except OSError:
        return 0


def wait_until(condition: Callable[[], bool], timeout: float, step: float = 0.01) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(step)
    return False

"""What every workload shares: sizes, the result row, the servers a run starts (and always
stops), ledgers filled with generated licences, timing and process helpers."""

from __future__ import annotations

import contextlib
import os
import platform
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from itertools import islice
from pathlib import Path
from typing import Any

from sqlalchemy import Engine

from bridge.adapters.mqtt.broker import Broker, broker_config, free_port, mosquitto_executable
from bridge.adapters.processes import spawn, stop_group
from bridge.adapters.store.db import make_engine
from bridge.core.model import Licence
from bridge.services.config import Settings
from bridge.testkit.known_licences import store_known_licences as store_known

SIZES = ("tiny", "small", "full")
DATABASES = ("sqlite", "postgresql")
LOADED_AT = datetime(2026, 1, 15, 6, 0, tzinfo=UTC)


@dataclass
class Result:
    """One row of the table: the bridge's figure and its limit's, measured in the same run."""

    workload: str
    database: str
    bridge: float
    bridge_unit: str
    limit: float
    limit_unit: str
    ratio: float | None
    target: str
    met: bool | None
    seconds: float = 0.0
    note: str = ""
    details: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def ratio(bridge: float, limit: float) -> float | None:
    return None if not limit else bridge / limit


class Run:
    """One benchmark run: a work folder, the settings of its size, and everything started,
    stopped in reverse order when its workload ends, or at the end of the run (also on error,
    Ctrl-C or SIGTERM)."""

    def __init__(self, size: str, workdir: Path, *, verbose: bool = True) -> None:
        self.size = size
        self.workdir = workdir
        self.verbose = verbose
        self.root = contextlib.ExitStack()  # for the whole run: the PostgreSQL cluster
        self.stack = self.root  # for the workload in progress (see `workload`)
        self._cluster = None
        self._databases = 0

    def __enter__(self) -> Run:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stack.close()
        self.root.close()

    @contextlib.contextmanager
    def workload(self) -> Iterator[None]:
        """Everything a workload starts is stopped when it ends (the cluster stays)."""
        outer, self.stack = self.stack, contextlib.ExitStack()
        try:
            yield
        finally:
            try:
                self.stack.close()
            finally:
                self.stack = outer

    def log(self, message: str) -> None:
        if self.verbose:
            print(f"  [{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)

    def folder(self, name: str) -> Path:
        path = self.workdir / f"{name}-{uuid.uuid4().hex[:6]}"
        path.mkdir(parents=True)
        return path

    def broker(self) -> Broker:
        """A mosquitto of its own (bridge.adapters.mqtt.broker's configuration), whose persistence
        snapshot is taken once an hour instead of every 5 s: a backlog of hundreds of MB
        written every 5 s would measure the disk, not the consumers. Stopped at the end."""
        workdir = self.folder("mosquitto")
        port = free_port()
        (workdir / "mosquitto.conf").write_text(
            broker_config(workdir, port, autosave_interval=3600), encoding="utf-8"
        )
        broker = Broker(workdir, port, mosquitto_executable())
        self.stack.callback(broker.stop)
        return broker.start()

    def ledger_url(self, database: str, name: str) -> str:
        """A fresh, empty ledger database."""
        self._databases += 1
        if database == "sqlite":
            return f"sqlite:///{self.folder(name) / 'ledger.db'}"
        if self._cluster is None:
            from bridge.adapters.pgcluster import start_cluster

            self.log("starting a throwaway PostgreSQL cluster")
            self._cluster = start_cluster()
            self.root.callback(self._cluster.stop)
        return self._cluster.create_database(f"{name}_{self._databases}")

    def engine(self, url: str) -> Engine:
        engine = make_engine(url)
        self.stack.callback(engine.dispose)
        return engine

    def settings(self, broker: Broker | None, url: str, **changes: Any) -> Settings:
        tag = uuid.uuid4().hex[:8]
        values: dict[str, Any] = {
            "home": self.folder("home"),
            "database_url": url,
            "mqtt_client_id": f"elbridge-bench-{tag}",
            "mqtt_topic": f"bench/{tag}/declarations",
            "mqtt_result_topic": f"bench/{tag}/results",
        }
        if broker is not None:
            values |= {"mqtt_host": broker.host, "mqtt_port": broker.port}
        return Settings(**(values | changes))

    def process(
        self, command: Sequence[str], *, env: dict[str, str], log: Path
    ) -> subprocess.Popen:
        """A child in its own process group, stopped (SIGTERM, then SIGKILL) at the end."""
        child = spawn(command, env, log)
        self.stack.callback(stop_group, child, 20.0)
        return child


def rss_mb(pid: int) -> float:
    """Resident set size of a process, from /proc, in MB (MiB)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


def percentile(sorted_values: Sequence[float], fraction: float) -> float:
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, max(0, round(fraction * (len(sorted_values) - 1))))
    return sorted_values[index]


def store_known_licences(engine: Engine, licences: Iterable[Licence], chunk: int = 2000) -> int:
    """Licences into the ledger as ingest leaves them, each with a delivered certificate in the
    outbox (write-offs need customs to know the licence), `chunk` licences a transaction."""
    count = 0
    iterator = iter(licences)
    while batch := list(islice(iterator, chunk)):
        with engine.begin() as conn:
            count += store_known(conn, batch, now=LOADED_AT, source="bench")
    return count


def timed(action: Callable[[], Any]) -> tuple[float, Any]:
    started = time.perf_counter()
    value = action()
    return time.perf_counter() - started, value


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    memory = 0
    with contextlib.suppress(OSError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory = int(line.split()[1]) // 1024
    return {
        "load_average": os.getloadavg(),  # other work on the machine skews absolute figures
        "nproc": os.cpu_count(),
        "cpu": model,
        "memory_mb": memory,
        "python": platform.python_version(),
        "platform": platform.platform(),
    }

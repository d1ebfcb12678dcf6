"""The simulator as a subprocess in its own process group, for tests, benchmarks, chaos runs
and the demo: started on a free port, asked through /admin/*, stopped with its group."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bridge.adapters.soap.server_process import ServerProcess, start_server_process
from bridge.entrypoints.customs_sim.faults import FaultPlan


class SimulatorProcess(ServerProcess):
    """A simulator running as a subprocess, storing into `store_path`."""

    def __init__(self, server: ServerProcess, store_path: Path) -> None:
        super().__init__(server.process, server.url, server.log_path)
        self.store_path = store_path

    def _admin(self, path: str, data: dict[str, Any] | None = None) -> Any:
        return self.json(f"/admin/{path}", data)

    def set_faults(self, **plan: Any) -> dict[str, Any]:
        """Replace the fault plan (see FaultPlan); `set_faults()` clears it."""
        return self._admin("faults", plan)

    def faults(self) -> dict[str, Any]:
        return self._admin("faults")

    def received(self) -> list[dict[str, Any]]:
        """Every certificate stored, oldest first."""
        return self._admin("received")

    def statuses(self) -> list[dict[str, Any]]:
        """Every certificate status update stored, in the order received."""
        return self._admin("statuses")

    def stats(self) -> dict[str, int]:
        """Requests seen, faults injected, accepted, duplicate, refused..."""
        return self._admin("stats")


def start_simulator(
    workdir: Path,
    port: int | None = None,
    *,
    host: str = "127.0.0.1",
    store_path: Path | None = None,
    credentials: tuple[str, str] | None = None,
    max_bytes: int | None = None,
    startup_timeout: float = 30.0,
    **faults: Any,
) -> SimulatorProcess:
    """Start the simulator as a subprocess (its own process group, log in `workdir`) and return
    once it answers. `port` None picks a free port. `faults` is a FaultPlan as keywords
    (rate=, kinds=, next=, slow_seconds=, seed=); without them the simulator reads
    ELBRIDGE_SIM_FAULTS."""
    workdir = Path(workdir)
    plan = FaultPlan.from_dict(faults)
    store = Path(store_path) if store_path else workdir / "received.db"
    arguments = ["--host", host, "--port", str(port or 0), "--store", str(store)]
    if faults:  # else the plan in ELBRIDGE_SIM_FAULTS, if any, applies
        arguments += ["--faults", json.dumps(plan.as_dict())]
    if max_bytes is not None:
        arguments += ["--max-bytes", str(max_bytes)]
    environment = {}
    if credentials is not None:
        environment["ELBRIDGE_SIM_USERNAME"], environment["ELBRIDGE_SIM_PASSWORD"] = credentials
    server = start_server_process(
        "bridge.entrypoints.customs_sim",
        arguments,
        workdir,
        what="the customs simulator",
        health_path="/admin/health",
        log_name="simulator",
        environment=environment,
        startup_timeout=startup_timeout,
    )
    return SimulatorProcess(server, store)

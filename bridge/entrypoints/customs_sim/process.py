"""The simulator as a subprocess in its own process group, for tests, benchmarks, chaos runs
and the demo: started on a free port (HTTPS when given a certificate), asked through /admin/*
with an admin token made for it, stopped with its group."""

from __future__ import annotations

import json
import secrets
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bridge.adapters.soap.server_process import ServerProcess, TlsTrust, start_server_process
from bridge.entrypoints.customs_sim.faults import FaultPlan


class SimulatorProcess(ServerProcess):
    """A simulator running as a subprocess, storing into `store_path`."""

    def __init__(self, server: ServerProcess, store_path: Path) -> None:
        super().__init__(
            server.process,
            server.url,
            server.log_path,
            tls=server.tls,
            admin_token=server.admin_token,
        )
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

    def callers(self) -> list[dict[str, Any]]:
        """Who sent SOAP requests: client certificate subject, subjectAltName, requests."""
        return self._admin("callers")


def start_simulator(
    workdir: Path,
    port: int | None = None,
    *,
    host: str = "127.0.0.1",
    store_path: Path | None = None,
    credentials: tuple[str, str] | None = None,
    max_bytes: int | None = None,
    startup_timeout: float = 30.0,
    tls_cert: Path | None = None,
    tls_key: Path | None = None,
    client_ca: Path | None = None,
    trust: TlsTrust | None = None,
    admin_token: str | None = None,
    environment: dict[str, str] | None = None,
    trusted_authorities: Sequence[Path | str] = (),
    contract: str | None = None,
    **faults: Any,
) -> SimulatorProcess:
    """Start the simulator as a subprocess (its own process group, log in `workdir`) and return
    once it answers. `port` None picks a free port. `faults` is a FaultPlan as keywords
    (rate=, kinds=, next=, slow_seconds=, seed=); without them the simulator reads
    ELBRIDGE_SIM_FAULTS.

    HTTPS with `tls_cert` and `tls_key`, client certificates required with `client_ca`;
    `trust` is how this process reaches it then (CA, client certificate). The admin token is
    made here unless given, and handed over in the environment (not the process list).
    `environment` adds variables (ELBRIDGE_HTTP_READ_TIMEOUT...). With `trusted_authorities`
    (PEM files) certificates must be signed by one of them (--trusted-authority). `contract`
    "1.0" plays a receiver without SubmitCertificates (--contract; default 1.5)."""
    workdir = Path(workdir)
    plan = FaultPlan.from_dict(faults)
    store = Path(store_path) if store_path else workdir / "received.db"
    arguments = ["--host", host, "--port", str(port or 0), "--store", str(store)]
    if faults:  # else the plan in ELBRIDGE_SIM_FAULTS, if any, applies
        arguments += ["--faults", json.dumps(plan.as_dict())]
    if max_bytes is not None:
        arguments += ["--max-bytes", str(max_bytes)]
    for flag, value in (
        ("--tls-cert", tls_cert),
        ("--tls-key", tls_key),
        ("--client-ca", client_ca),
    ):
        if value is not None:
            arguments += [flag, str(value)]
    if contract is not None:
        arguments += ["--contract", contract]
    for authority in trusted_authorities:
        arguments += ["--trusted-authority", str(authority)]
    admin_token = admin_token or secrets.token_urlsafe(24)
    environment = {**(environment or {}), "ELBRIDGE_SIM_ADMIN_TOKEN": admin_token}
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
        tls=trust,
        admin_token=admin_token,
    )
    return SimulatorProcess(server, store)

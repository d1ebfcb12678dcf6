"""The simulator's HTTP app: the certificate service (handlers) served over SOAP/HTTP with the
faults of its plan injected, the contract documents, and /admin/* as JSON.

Run: `elbridge customs-sim serve`, or `python -m bridge.entrypoints.customs_sim --host
127.0.0.1 --port 8088 --store received.db`."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import socket
import sys
import time
from pathlib import Path
from typing import Any

from bridge.adapters.soap import CERTIFICATE_SCHEMA_FILE, MESSAGES_SCHEMA_FILE, WSDL_FILE
from bridge.adapters.soap.http_server import (
    TEXT_CONTENT,
    XML_CONTENT,
    SoapFault,
    SoapRequestHandler,
    SoapServer,
    serve_until_stopped,
)
from bridge.core.xmlsafe import DEFAULT_MAX_BYTES
from bridge.entrypoints.customs_sim.faults import (
    FAULTS_ENV,
    KNOWN_FAULT_KINDS,
    FaultPlan,
    LiveFaults,
    fault_plan_from_env,
)
from bridge.entrypoints.customs_sim.handlers import CustomsService
from bridge.entrypoints.customs_sim.store import ReceivedStore
from bridge.entrypoints.customs_sim.validation import messages_schema

DEFAULT_PATH = "/certex"
_BAD_GATEWAY_PAGE = (
    b"<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
    b"<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n"
    b"</body>\r\n</html>\r\n"
)
_BUSY = SoapFault(
    "Server",
    "SERVICE_UNAVAILABLE",
    "the certificate register is busy; send the same message again later",
    transient=True,
)


class CustomsSimulator(SoapServer):
    """The HTTP server: SOAP at `path`, the contract documents, and /admin/*."""

    def __init__(
        self,
        host: str,
        port: int,
        store_path: Path,
        *,
        path: str = DEFAULT_PATH,
        faults: FaultPlan | None = None,
        max_bytes: int = DEFAULT_MAX_BYTES,
        credentials: tuple[str, str] | None = None,
        verbose: bool = False,
    ) -> None:
        self.store = ReceivedStore(Path(store_path))
        self.service = CustomsService(self.store)
        self.faults = LiveFaults(faults or FaultPlan())
        super().__init__(
            host,
            port,
            self.service.endpoint(max_bytes=max_bytes, credentials=credentials),
            path=path,
            wsdl_file=WSDL_FILE,
            schema_files=(MESSAGES_SCHEMA_FILE, CERTIFICATE_SCHEMA_FILE),
            handler=_FaultyHandler,
            verbose=verbose,
        )
        self.json_get.update(
            {
                "/admin/health": lambda: {"status": "ok", "url": self.url, "pid": os.getpid()},
                "/admin/received": self.store.received,
                "/admin/statuses": self.store.statuses,
                "/admin/faults": self.faults.describe,
                "/admin/stats": self.service.counts_now,
            }
        )
        self.json_post["/admin/faults"] = self._set_faults

    def _set_faults(self, body: bytes) -> tuple[int, Any]:
        try:
            plan = FaultPlan.from_dict(json.loads(body or b"{}"))
        except (ValueError, TypeError, AttributeError) as error:
            return 400, {"error": str(error)}
        self.faults.set(plan)
        return 200, self.faults.describe()

    def server_close(self) -> None:
        super().server_close()
        self.store.close()


class _FaultyHandler(SoapRequestHandler):
    """Answers SOAP requests as the plan says: the fault drawn for the request, else the
    service's answer."""

    server_version = "customs-sim/1.0"
    server: CustomsSimulator

    def _drop(self) -> None:
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)

    def answer_soap(self, body: bytes) -> None:
        server = self.server
        server.service.count("requests")
        kind = server.faults.draw()
        if kind:
            server.service.count(f"injected_{kind}")
        if kind == "drop":
            self._drop()
            return
        if kind == "http503":
            message = b"the customs single window is unavailable\n"
            self.send(503, message, TEXT_CONTENT, {"Retry-After": "1"})
            return
        if kind == "http502":
            self.send(502, _BAD_GATEWAY_PAGE, "text/html")
            return
        if kind == "transient_fault":
            self.send(500, _BUSY.envelope(), XML_CONTENT)
            return
        answer = server.endpoint.answer(body, self.headers.get("SOAPAction"))
        if kind == "drop_after_store":
            self._drop()  # stored (or refused), but the connection goes before the answer
            return
        if kind == "timeout":
            # Stored, but the answer comes after the client stopped waiting.
            time.sleep(server.faults.plan.slow_seconds)
        self.send(answer.status, answer.body, XML_CONTENT)


def serve(
    host: str,
    port: int,
    store_path: Path | str,
    *,
    path: str = DEFAULT_PATH,
    faults: FaultPlan | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
    credentials: tuple[str, str] | None = None,
    ready_file: Path | None = None,
    verbose: bool = False,
) -> None:
    """Serve until interrupted (Ctrl-C or SIGTERM). `port` 0 picks a free port; the URL is
    printed, and written to `ready_file` (JSON) once requests are accepted. Without `faults`
    the plan comes from ELBRIDGE_SIM_FAULTS; without `credentials`, from
    ELBRIDGE_SIM_USERNAME / ELBRIDGE_SIM_PASSWORD (none set: no WS-Security required)."""
    plan = faults if faults is not None else fault_plan_from_env()
    if credentials is None and os.environ.get("ELBRIDGE_SIM_USERNAME"):
        credentials = (
            os.environ["ELBRIDGE_SIM_USERNAME"],
            os.environ.get("ELBRIDGE_SIM_PASSWORD", ""),
        )
    server = CustomsSimulator(
        host,
        port,
        Path(store_path),
        path=path,
        faults=plan,
        max_bytes=max_bytes,
        credentials=credentials,
        verbose=verbose,
    )
    messages_schema()  # built before the first request, not during it: that takes ~0.2 s
    serve_until_stopped(server, banner="customs single window simulator", ready_file=ready_file)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bridge.entrypoints.customs_sim",
        description="The customs single window simulator: certificate SOAP service over HTTP.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8088, help="0 picks a free port")
    parser.add_argument("--store", default="customs-sim.db", help="SQLite file it stores into")
    parser.add_argument("--path", default=DEFAULT_PATH, help="where the service listens")
    parser.add_argument("--max-bytes", type=int, default=DEFAULT_MAX_BYTES)
    parser.add_argument("--faults", help=f"fault plan as JSON (default: ${FAULTS_ENV})")
    parser.add_argument("--fault-rate", type=float)
    parser.add_argument("--fault-kinds", help=f"comma-separated: {','.join(KNOWN_FAULT_KINDS)}")
    parser.add_argument("--fault-next", type=int, help="fault the next N requests")
    parser.add_argument("--slow-seconds", type=float, help="how long a 'timeout' answer waits")
    parser.add_argument("--seed", type=int)
    parser.add_argument("--ready-file", type=Path, help="write the URL here once serving")
    parser.add_argument("--verbose", action="store_true", help="log every request")
    args = parser.parse_args(argv)

    try:
        data = json.loads(args.faults) if args.faults else fault_plan_from_env().as_dict()
        flags = {
            "rate": args.fault_rate,
            "kinds": args.fault_kinds,
            "next": args.fault_next,
            "slow_seconds": args.slow_seconds,
            "seed": args.seed,
        }
        data.update({name: value for name, value in flags.items() if value is not None})
        plan = FaultPlan.from_dict(data)
    except ValueError as error:
        parser.error(f"fault plan: {error}")
    serve(
        args.host,
        args.port,
        Path(args.store),
        path=args.path,
        faults=plan,
        max_bytes=args.max_bytes,
        ready_file=args.ready_file,
        verbose=args.verbose,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The simulator's HTTP app: the certificate service (handlers) served over SOAP/HTTP with the
faults of its plan injected, the contract documents, and /admin/* as JSON (behind the admin
token, but /admin/health).

Run: `elbridge customs-sim serve`, or `python -m bridge.entrypoints.customs_sim --host
127.0.0.1 --port 8088 --store received.db [--tls-cert C --tls-key K [--client-ca CA]]`; the
admin token from --admin-token, ELBRIDGE_SIM_ADMIN_TOKEN or the file ELBRIDGE_SIM_ADMIN_TOKEN_FILE
names (none: the admin routes answer nobody)."""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import anyio
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp

from bridge.adapters.http.request import Dropped, request_context
from bridge.adapters.http.server import serve as serve_http
from bridge.adapters.signing import TrustedAuthorities
from bridge.adapters.soap import BATCH_WSDL_FILE, WSDL_FILE
from bridge.adapters.soap.http_server import (
    TEXT_CONTENT,
    XML_CONTENT,
    SoapFault,
    SoapService,
)
from bridge.core.errors import ConfigError
from bridge.core.xmlsafe import DEFAULT_MAX_BYTES
from bridge.entrypoints.customs_sim.faults import (
    FAULTS_ENV,
    KNOWN_FAULT_KINDS,
    FaultPlan,
    LiveFaults,
    fault_plan_from_env,
)
from bridge.entrypoints.customs_sim.handlers import CONTRACTS, CustomsService
from bridge.entrypoints.customs_sim.store import ReceivedStore
from bridge.entrypoints.customs_sim.validation import (
    TRUSTED_AUTHORITIES_ENV,
    messages_schema,
    trusted_authorities,
)
from bridge.entrypoints.http_serving import (
    ServingOptions,
    add_admin_token_argument,
    add_tls_arguments,
    serving_options,
    serving_options_from,
)
from bridge.services.config import environment_value

DEFAULT_PATH = "/certex"
ADMIN_TOKEN_SETTING = "sim_admin_token"  # ELBRIDGE_SIM_ADMIN_TOKEN or ..._FILE
CONTRACT_ENV = "ELBRIDGE_SIM_CONTRACT"  # the contract version served: 1.5 (default) or 1.0
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


class CustomsSimulator(SoapService):
    """The ASGI app: SOAP at `path` with the plan's faults, the contract documents, /admin/*
    (behind `admin_token`; /admin/health open), and who called (/admin/callers). `contract`
    "1.5" (default) serves SubmitCertificates too (WSDL at ?wsdl=1.5), "1.0" does not."""

    def __init__(
        self,
        store_path: Path,
        *,
        path: str = DEFAULT_PATH,
        faults: FaultPlan | None = None,
        max_bytes: int = DEFAULT_MAX_BYTES,
        credentials: tuple[str, str] | None = None,
        admin_token: str | None = None,
        max_body_bytes: int | None = None,
        max_concurrency: int | None = None,
        trusted: TrustedAuthorities | None = None,
        contract: str = CONTRACTS[0],
    ) -> None:
        self.store = ReceivedStore(Path(store_path))
        self.service = CustomsService(self.store, trusted, contract)
        self.faults = LiveFaults(faults or FaultPlan())
        self._callers: Counter[tuple[str | None, tuple[str, ...]]] = Counter()
        self._callers_lock = threading.Lock()
        limits = {"max_body_bytes": max_body_bytes, "max_concurrency": max_concurrency}
        super().__init__(
            self.service.endpoint(max_bytes=max_bytes, credentials=credentials),
            path=path,
            wsdl_file=WSDL_FILE,
            admin_token=admin_token,
            admin_realm="customs-sim admin",
            # ?wsdl stays the 1.0 document 1.0 clients fetch; ?wsdl=1.5 adds SubmitCertificates.
            wsdl_versions={} if contract == "1.0" else {"1.5": BATCH_WSDL_FILE},
            **{name: value for name, value in limits.items() if value is not None},
        )
        self.add_json("/admin/health", get=self._health, admin=False)
        self.add_json("/admin/received", get=self.store.received)
        self.add_json("/admin/statuses", get=self.store.statuses)
        self.add_json("/admin/faults", get=self.faults.describe, post=self._set_faults)
        self.add_json("/admin/stats", get=self.service.counts_now)
        self.add_json("/admin/callers", get=self.callers)

    def _health(self) -> dict[str, Any]:
        return {"status": "ok", "url": self.url, "pid": os.getpid()}

    def _set_faults(self, body: bytes) -> tuple[int, Any]:
        try:
            plan = FaultPlan.from_dict(json.loads(body or b"{}"))
        except (ValueError, TypeError, AttributeError) as error:
            return 400, {"error": str(error)}
        self.faults.set(plan)
        return 200, self.faults.describe()

    def callers(self) -> list[dict[str, Any]]:
        """Who sent SOAP requests: the client certificate's subject and subjectAltName (None
        and [] over plain HTTP or without one), and how many requests each."""
        with self._callers_lock:
            seen = list(self._callers.items())
        return [
            {"subject": subject, "san": list(san), "requests": count}
            for (subject, san), count in seen
        ]

    async def answer_soap(self, request: Request, body: bytes) -> ASGIApp:
        """The answer the plan says: the fault drawn for the request, else the service's."""
        caller = request_context(request.scope)
        with self._callers_lock:
            self._callers[(caller.peer_subject, caller.peer_san)] += 1
        self.service.count("requests")
        kind = self.faults.draw()
        if kind:
            self.service.count(f"injected_{kind}")
        if kind == "drop":
            return Dropped()
        if kind == "http503":
            message = b"the customs single window is unavailable\n"
            return Response(message, 503, {"Retry-After": "1"}, media_type=TEXT_CONTENT)
        if kind == "http502":
            return Response(_BAD_GATEWAY_PAGE, 502, media_type="text/html")
        if kind == "transient_fault":
            return Response(_BUSY.envelope(), 500, media_type=XML_CONTENT)
        answer = await super().answer_soap(request, body)
        if kind == "drop_after_store":
            return Dropped()  # stored (or refused), but the connection goes before the answer
        if kind == "timeout":
            # Stored, but the answer comes after the client stopped waiting (no thread held).
            await anyio.sleep(self.faults.plan.slow_seconds)
        return answer

    def close(self) -> None:
        self.store.close()


def admin_token_from_env() -> str | None:
    """The admin token in ELBRIDGE_SIM_ADMIN_TOKEN or the file ELBRIDGE_SIM_ADMIN_TOKEN_FILE
    names (None: neither)."""
    return environment_value(ADMIN_TOKEN_SETTING) or None


def serve(
    host: str,
    port: int,
    store_path: Path | str,
    *,
    path: str = DEFAULT_PATH,
    faults: FaultPlan | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
    credentials: tuple[str, str] | None = None,
    admin_token: str | None = None,
    options: ServingOptions | None = None,
    ready_file: Path | None = None,
    verbose: bool = False,
    trusted_authority_files: Sequence[Path | str] = (),
    contract: str | None = None,
) -> None:
    """Serve until SIGTERM or Ctrl-C (requests in flight are answered first). `port` 0 picks a
    free port; the URL is printed, and written to `ready_file` (JSON) once requests are
    accepted. `options`: TLS and limits (default: from the ELBRIDGE_HTTP_* settings). Without
    `faults` the plan comes from ELBRIDGE_SIM_FAULTS; without `credentials`, from
    ELBRIDGE_SIM_USERNAME / ELBRIDGE_SIM_PASSWORD (none set: no WS-Security required); without
    `admin_token`, from ELBRIDGE_SIM_ADMIN_TOKEN(_FILE) (none: admin routes closed).
    Certificates must be signed by an authority in `trusted_authority_files` or in the files
    ELBRIDGE_SIM_TRUSTED_AUTHORITIES lists (none: signatures are not required). `contract`
    (default ELBRIDGE_SIM_CONTRACT, else 1.5): "1.0" serves no SubmitCertificates."""
    options = options or serving_options(host, port, verbose=verbose)
    plan = faults if faults is not None else fault_plan_from_env()
    if credentials is None and os.environ.get("ELBRIDGE_SIM_USERNAME"):
        credentials = (
            os.environ["ELBRIDGE_SIM_USERNAME"],
            os.environ.get("ELBRIDGE_SIM_PASSWORD", ""),
        )
    app = CustomsSimulator(
        Path(store_path),
        path=path,
        faults=plan,
        max_bytes=max_bytes,
        credentials=credentials,
        admin_token=admin_token or admin_token_from_env(),
        max_body_bytes=options.max_body_bytes,
        max_concurrency=options.max_concurrency,
        trusted=trusted_authorities(trusted_authority_files),
        contract=contract or os.environ.get(CONTRACT_ENV, "").strip() or CONTRACTS[0],
    )
    messages_schema()  # built before the first request, not during it: that takes ~0.2 s
    serve_http(
        app,
        options.http,
        banner="customs single window simulator",
        ready_file=ready_file,
        on_close=app.close,
    )


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
    add_tls_arguments(parser)
    add_admin_token_argument(parser)
    parser.add_argument(
        "--trusted-authority",
        action="append",
        default=[],
        metavar="PEM",
        help="an issuing authority's signing certificate: certificates must carry a valid"
        " signature by one of these (repeat it: two at once while an authority rolls its key"
        f" over; also ${TRUSTED_AUTHORITIES_ENV}, files separated by '{os.pathsep}'). None"
        " given: certificates are accepted signed or unsigned, signatures unchecked",
    )
    parser.add_argument(
        "--contract",
        choices=CONTRACTS,
        help=f"the contract version served (default ${CONTRACT_ENV}, else {CONTRACTS[0]}):"
        " 1.0 answers SubmitCertificates UNKNOWN_OPERATION, as a receiver not yet on 1.5",
    )
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
    try:
        options = serving_options_from(args, verbose=args.verbose)
        serve(
            args.host,
            args.port,
            Path(args.store),
            path=args.path,
            faults=plan,
            max_bytes=args.max_bytes,
            admin_token=args.admin_token,
            options=options,
            ready_file=args.ready_file,
            verbose=args.verbose,
            trusted_authority_files=args.trusted_authority,
            contract=args.contract,
        )
    except ConfigError as error:
        print(f"customs simulator: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())

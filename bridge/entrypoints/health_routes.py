"""/health, /ready and /metrics for the bridge's HTTP apps (docs/health-and-metrics.md).

- `/health`: liveness. The process answers; nothing else is checked (a probe that restarts a
  process must not restart it because customs are down).
- `/ready`: readiness, the truth about what the bridge needs: 200 when every dependency checked
  is reachable, else 503; JSON naming each dependency, whether it is up, why not and how long
  the check took. `?check=ledger,broker` narrows what is checked.
- `/metrics`: Prometheus exposition (text, or OpenMetrics when the scraper asks for it), made
  at each scrape from `gather_status` by a custom collector: nothing is counted in this
  process, so every replica and every restart tells the same figures, the ledger's.

`routes` is what the console includes (its settings, ledger and clock come from the app's
state); `with_health_routes` puts /ready and /metrics in front of another app (the query
service). When settings.metrics_token is set, /ready and /metrics answer only a request
carrying `Authorization: Bearer <token>`; /health answers anyone."""

from __future__ import annotations

import hmac
import json
import math
import os
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime
from typing import Any

from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector, CollectorRegistry
from sqlalchemy import Engine
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from bridge.services.config import Settings
from bridge.services.health import DEPENDENCIES, LEDGER, QUANTILES, Status, gather_status

NAMESPACE = "elbridge"


# --------------------------------------------------------------------------- metrics


class StatusCollector(Collector):
    """The bridge's figures as Prometheus metric families, read from `read_status()` at each
    collection. Names follow Prometheus' conventions: elbridge_ prefix, base units (seconds),
    `_total` on counters; counters are the ledger's own counts, so they never go down."""

    def __init__(self, read_status: Callable[[], Status]) -> None:
        self.read_status = read_status

    def describe(self) -> list[Metric]:
        return []  # nothing to describe ahead: the figures exist only at a scrape

    def collect(self) -> Iterator[Metric]:
        status = self.read_status()
        yield from dependency_metrics(status)
        if status.figures is not None:
            yield from ledger_metrics(status)


def dependency_metrics(status: Status) -> Iterator[Metric]:
    up = GaugeMetricFamily(
        f"{NAMESPACE}_dependency_up",
        "Whether the bridge reaches this dependency as it would for its work (1) or not (0):"
        " the ledger by a query, the broker by an MQTT login, customs by a GET of their WSDL.",
        labels=["dependency"],
    )
    seconds = GaugeMetricFamily(
        f"{NAMESPACE}_dependency_check_duration_seconds",
        "How long the last check of this dependency took.",
        labels=["dependency"],
        unit="seconds",
    )
    for dependency in status.dependencies:
        up.add_metric([dependency.name], 1.0 if dependency.up else 0.0)
        seconds.add_metric([dependency.name], dependency.seconds)
    yield up
    yield seconds
    yield GaugeMetricFamily(
        f"{NAMESPACE}_ready",
        "1 when every dependency checked is up, else 0 (as /ready answers 200 or 503).",
        value=1.0 if status.ready else 0.0,
    )
    yield GaugeMetricFamily(
        f"{NAMESPACE}_problems",
        "Things a person must look at (failed or overdue certificates, open alerts, messages"
        " still in quarantine), as `elbridge status` lists them.",
        value=float(len(status.problems)),
    )


def _counted(family: Metric, counts: dict[str, int | float]) -> Metric:
    """`family` (one label) with a sample per item of `counts`, in label order."""
    for label, number in sorted(counts.items()):
        family.add_metric([label], number)
    return family


def ledger_metrics(status: Status) -> Iterator[Metric]:
    figures = status.figures
    assert figures is not None
    yield _counted(
        CounterMetricFamily(
            f"{NAMESPACE}_declaration_events",
            "Declaration event messages processed, by outcome: applied, refused (at least one"
            " write-off refused), ignored (no dual-use licence in it), quarantined (unreadable),"
            " duplicate, stale, held (an amendment waiting for its release).",
            labels=["outcome"],
        ),
        figures.events,
    )
    yield CounterMetricFamily(
        f"{NAMESPACE}_refused_documents",
        "Write-offs refused by the rules, one per supporting document of a declaration"
        " (whatever the number of reasons).",
        value=figures.refused_documents,
    )
    yield _counted(
        CounterMetricFamily(
            f"{NAMESPACE}_refusals",
            "Reasons write-offs were refused, by code (over-use, licence-expired, ...): a document"
            " refused for two reasons counts under each, as the statistics page counts them.",
            labels=["code"],
        ),
        figures.refusals,
    )
    yield CounterMetricFamily(
        f"{NAMESPACE}_rejected_records",
        "National licence records rejected at ingest (kept with their reasons).",
        value=figures.rejected_records,
    )
    yield _counted(
        CounterMetricFamily(
            f"{NAMESPACE}_movements",
            "Movements on licence lines, by kind (write_off, adjustment, reversal, manual"
            " ones...).",
            labels=["kind"],
        ),
        figures.movements,
    )
    yield CounterMetricFamily(
        f"{NAMESPACE}_quarantined_messages",
        "Messages that could not be read, kept byte for byte in the quarantine.",
        value=figures.quarantine_total,
    )
    yield GaugeMetricFamily(
        f"{NAMESPACE}_quarantine_unsettled_messages",
        "Quarantined messages not replayed successfully yet (never replayed, or still unreadable).",
        value=figures.quarantine_unsettled,
    )
    yield GaugeMetricFamily(
        f"{NAMESPACE}_held_amendments",
        "Consumer backlog in the ledger: declarations whose amendments were received before"
        " their release and are held, not applied, until it comes.",
        value=figures.held_amendments,
    )
    yield GaugeMetricFamily(
        f"{NAMESPACE}_unpublished_results",
        "Result messages written with their batch that the broker has not taken yet.",
        value=figures.unpublished_results,
    )
    if figures.broker_stored_messages is not None:
        yield GaugeMetricFamily(
            f"{NAMESPACE}_broker_stored_messages",
            "Consumer backlog at the broker, as mosquitto tells it ($SYS/broker/store/messages/"
            "count): messages held for every session, queued or in flight, plus retained"
            " ones; refreshed every sys_interval. Absent when the broker does not expose it.",
            value=figures.broker_stored_messages,
        )
    yield _counted(
        GaugeMetricFamily(
            f"{NAMESPACE}_outbox_messages",
            "Certificates and status updates for customs in the outbox, by status.",
            labels=["status"],
        ),
        figures.outbox,
    )
    yield GaugeMetricFamily(
        f"{NAMESPACE}_outbox_oldest_pending_age_seconds",
        "Age of the oldest outbox message still waiting for delivery (0: none waits).",
        value=figures.oldest_pending_age or 0.0,
        unit="seconds",
    )
    yield GaugeMetricFamily(
        f"{NAMESPACE}_outbox_oldest_failed_age_seconds",
        "Time since the oldest failed outbox message failed (0: none failed).",
        value=figures.oldest_failed_age or 0.0,
        unit="seconds",
    )
    yield _counted(
        GaugeMetricFamily(
            f"{NAMESPACE}_outbox_failed_messages",
            "Failed outbox messages by why: refused (by customs), budget (the retry budget spent on"
            " transient failures), invalid (as built), orphan (a status update whose certificate"
            " failed).",
            labels=["failure"],
        ),
        figures.outbox_failures,
    )
    undelivered = GaugeMetricFamily(
        f"{NAMESPACE}_outbox_undelivered_messages",
        "What customs do not have and should, as the licences DAG's alarm counts it: failed"
        " (not superseded by a later version customs hold), and pending for longer than"
        f" {figures.overdue_after_seconds:g} seconds.",
        labels=["status"],
    )
    undelivered.add_metric(["failed"], figures.undelivered_failed)
    undelivered.add_metric(["pending"], figures.overdue_pending)
    yield undelivered
    yield GaugeMetricFamily(
        f"{NAMESPACE}_open_alerts",
        "Alerts for the licensing authority not acknowledged yet (all alerts when the ledger"
        " does not record acknowledgements).",
        value=figures.open_alert_count,
    )
    yield _counted(
        GaugeMetricFamily(
            f"{NAMESPACE}_open_alerts_by_kind",
            "Open alerts by kind (over-use, ceiling-below-usage, exhausted, ...).",
            labels=["kind"],
        ),
        figures.open_alerts,
    )
    latency = figures.latency
    summary = Metric(
        f"{NAMESPACE}_outbox_delivery_latency_seconds",
        "From queueing to delivery of outbox messages: quantiles over the deliveries of the"
        f" last {latency.window_hours:g} hours (NaN: none), count and sum over all deliveries.",
        "summary",
        unit="seconds",
    )
    name = summary.name
    for fraction, value in zip(QUANTILES, (latency.p50, latency.p95), strict=True):
        summary.add_sample(name, {"quantile": str(fraction)}, math.nan if value is None else value)
    summary.add_sample(f"{name}_count", {}, latency.count)
    summary.add_sample(f"{name}_sum", {}, latency.total_seconds)
    yield summary
    if latency.last is not None:
        yield GaugeMetricFamily(
            f"{NAMESPACE}_outbox_last_delivery_latency_seconds",
            "From queueing to delivery of the latest outbox message delivered.",
            value=latency.last,
            unit="seconds",
        )


def exposition(status_reader: Callable[[], Status], accept: str | None) -> tuple[bytes, str]:
    """The metrics of one scrape in the format the scraper accepts, and its content type."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StatusCollector(status_reader))
    encoder, content_type = choose_encoder(accept or "")
    return encoder(registry), content_type


# --------------------------------------------------------------------------- routes


def _state(request: Request) -> tuple[Settings, Engine, datetime]:
    state = request.app.state
    clock = getattr(state, "clock", None) or (lambda: datetime.now(UTC))
    return state.settings, state.engine, clock()


def _refusal(request: Request, settings: Settings) -> Response | None:
    """401 unless the request carries the metrics token (when one is set)."""
    token = settings.metrics_token
    if not token:
        return None
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode()):
        return None
    return JSONResponse(
        {"error": "a bearer token is required (Authorization: Bearer <ELBRIDGE_METRICS_TOKEN>)"},
        status_code=401,
        headers={"WWW-Authenticate": 'Bearer realm="elbridge metrics"'},
    )


def _checked(request: Request, default: Iterable[str]) -> tuple[str, ...] | Response:
    asked = request.query_params.get("check")
    if asked is None:
        return tuple(default)
    names = tuple(dict.fromkeys(part.strip() for part in asked.split(",") if part.strip()))
    unknown = [name for name in names if name not in DEPENDENCIES]
    if unknown or not names:
        return JSONResponse(
            {"error": f"check={asked!r}: name some of {', '.join(DEPENDENCIES)}"},
            status_code=400,
        )
    return tuple(dict.fromkeys((LEDGER, *names)))


def health(request: Request) -> Response:
    """Liveness: the process answers."""
    return JSONResponse({"status": "ok", "pid": os.getpid()}, headers={"Cache-Control": "no-store"})


def readiness(status: Status) -> Response:
    """/ready's answer for `status`: 200 or 503, with every dependency and why one is down."""
    body: dict[str, Any] = {
        "ready": status.ready,
        "checked_at": status.checked_at.isoformat(),
        "down": [dependency.name for dependency in status.down],
        "dependencies": {
            dependency.name: {
                "up": dependency.up,
                "target": dependency.target,
                "reason": dependency.reason or None,
                "seconds": round(dependency.seconds, 4),
            }
            for dependency in status.dependencies
        },
    }
    return Response(
        json.dumps(body, indent=1).encode(),
        200 if status.ready else 503,
        media_type="application/json",
        headers={"Cache-Control": "no-store"},
    )


def make_routes(
    context: Callable[[Request], tuple[Settings, Engine, datetime]] = _state,
    *,
    dependencies: Iterable[str] = DEPENDENCIES,
    include_health: bool = True,
) -> list[Route]:
    """/health (unless `include_health` is False), /ready and /metrics checking `dependencies`
    by default, on the settings, ledger and time `context(request)` gives."""
    default = tuple(dependencies)

    async def ready(request: Request) -> Response:
        settings, engine, now = context(request)
        refused = _refusal(request, settings)
        if refused is not None:
            return refused
        checked = _checked(request, default)
        if isinstance(checked, Response):
            return checked
        status = await run_in_threadpool(
            gather_status, settings, engine, now=now, dependencies=checked, with_figures=False
        )
        return readiness(status)

    async def metrics(request: Request) -> Response:
        settings, engine, now = context(request)
        refused = _refusal(request, settings)
        if refused is not None:
            return refused
        checked = _checked(request, default)
        if isinstance(checked, Response):
            return checked

        def read() -> Status:
            return gather_status(settings, engine, now=now, dependencies=checked)

        body, content_type = await run_in_threadpool(
            exposition, read, request.headers.get("accept")
        )
        return Response(body, headers={"Content-Type": content_type, "Cache-Control": "no-store"})

    found = [
        Route("/ready", ready, methods=["GET"], name="health_ready"),
        Route("/metrics", metrics, methods=["GET"], name="health_metrics"),
    ]
    if include_health:
        found.insert(0, Route("/health", health, methods=["GET"], name="health_live"))
    return found


# What the console includes: its settings, ledger and clock are in the app's state.
routes = make_routes()


class WithHealthRoutes:
    """An ASGI app (`app`, e.g. the query service) with /ready and /metrics in front of it, on
    `settings` and `engine`; every other path goes to `app`. It passes `listening_at` on, so
    bridge.adapters.http.server.serve serves it as it would `app`."""

    def __init__(
        self,
        app: Any,
        settings: Settings,
        engine: Engine,
        *,
        dependencies: Iterable[str] = (LEDGER,),
    ) -> None:
        self.app = app

        def context(request: Request) -> tuple[Settings, Engine, datetime]:
            return settings, engine, datetime.now(UTC)

        self._probes = Starlette(
            routes=make_routes(context, dependencies=dependencies, include_health=False)
        )
        self._paths = {"/ready", "/metrics"}

    def listening_at(self, base_url: str) -> str:
        return self.app.listening_at(base_url)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.app, name)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope.get("path") in self._paths:
            await self._probes(scope, receive, send)
            return
        await self.app(scope, receive, send)


def with_health_routes(app: Any, settings: Settings, engine: Engine, **options: Any) -> Any:
    """`app` with /ready and /metrics (see WithHealthRoutes)."""
    return WithHealthRoutes(app, settings, engine, **options)

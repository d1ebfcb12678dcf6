"""The bridge's health as operators see it (`elbridge status`, /ready, /metrics): are the ledger,
the broker and the customs endpoint reachable as the bridge reaches them, and what the ledger
says about the work: declaration events applied, refused, ignored and quarantined, what waits
(amendments held, results unpublished, the broker's store), the outbox (pending, failed, the
oldest ages, delivery latency) and the alerts still open.

Each dependency is checked for real, all three at once, each within `health_timeout` seconds:
the ledger with a query (the figures are read in the same connection), the broker with an MQTT
connection under the bridge's address, TLS files and login (bridge.adapters.mqtt.probe), customs
with a GET of the service's WSDL under the SOAP TLS files (bridge.adapters.soap.probe). Nothing
is written anywhere."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from bridge.adapters.mqtt.probe import probe_broker
from bridge.adapters.soap.probe import probe_customs
from bridge.adapters.store import status as store
from bridge.core.errors import ConfigError
from bridge.core.ledger_state import Outcome
from bridge.services.config import Settings, mqtt_options

LEDGER, BROKER, CUSTOMS = "ledger", "broker", "customs"
DEPENDENCIES = (LEDGER, BROKER, CUSTOMS)
EVENT_OUTCOMES = tuple(str(outcome) for outcome in Outcome)
QUANTILES = (0.5, 0.95)


@dataclass(frozen=True)
class Dependency:
    """One thing the bridge needs: `name` (ledger, broker, customs), `target` (where it was
    looked for, no password), `up`, `reason` (why not, naming the target) and how many
    `seconds` the check took."""

    name: str
    target: str
    up: bool
    reason: str
    seconds: float


@dataclass(frozen=True)
class Latency:
    """Delivery latency of outbox messages (delivered_at minus created_at, seconds): `count`
    and `total_seconds` over all deliveries; `p50`, `p95` over the deliveries of the last
    `window_hours` (`window_count` of them; None when there were none); `last` the latest
    delivery's, made at `last_delivered_at`."""

    count: int
    total_seconds: float
    window_hours: float
    window_count: int
    p50: float | None
    p95: float | None
    last: float | None
    last_delivered_at: datetime | None


@dataclass(frozen=True)
class Figures:
    """What the ledger says. `events`: processed declaration messages per outcome (every
    outcome listed); `refused_documents`: refused write-offs (one per document, whatever the
    number of reasons); `refusals`: refusal reasons recorded per code (a document refused for
    two reasons counts under each);
    `quarantine_unsettled`: quarantined messages not yet replayed successfully; `held_amendments`:
    declarations whose amendments wait for their release; `unpublished_results`: result
    messages the broker has not taken yet; `broker_stored_messages`: mosquitto's store count
    (None: not exposed); `outbox`: messages per status, `outbox_failures` the failed ones by
    why (refused, budget, invalid, orphan); ages in seconds (None: none such); what customs do
    not have and should, as the licences DAG's alarm counts it (bridge.services.outbox
    .undelivered): `undelivered_failed` (failed, not superseded by a later version customs hold)
    and `overdue_pending` (pending longer than `overdue_after_seconds`); `open_alerts` per kind
    (`alerts_have_state` False: the ledger does not tell open from acknowledged, all count)."""

    events: dict[str, int]
    refused_documents: int
    refusals: dict[str, int]
    rejected_records: int
    movements: dict[str, int]
    quarantine_total: int
    quarantine_unsettled: int
    held_amendments: int
    unpublished_results: int
    outbox: dict[str, int]
    outbox_failures: dict[str, int]
    oldest_pending_age: float | None
    oldest_failed_age: float | None
    undelivered_failed: int
    overdue_pending: int
    overdue_after_seconds: float
    open_alerts: dict[str, int]
    alerts_have_state: bool
    latency: Latency
    broker_stored_messages: int | None = None

    @property
    def open_alert_count(self) -> int:
        return sum(self.open_alerts.values())


@dataclass(frozen=True)
class Status:
    """The bridge's state at `checked_at`: its `dependencies`, the ledger's `figures` (None
    when the ledger could not be read) and the `problems` a person must look at (readable
    sentences; failed or overdue certificates, open alerts, unsettled quarantine)."""

    checked_at: datetime
    dependencies: tuple[Dependency, ...]
    figures: Figures | None
    problems: tuple[str, ...] = field(default=())

    @property
    def ready(self) -> bool:
        """Every dependency checked is up."""
        return all(dependency.up for dependency in self.dependencies)

    @property
    def down(self) -> tuple[Dependency, ...]:
        return tuple(dependency for dependency in self.dependencies if not dependency.up)

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON data (times ISO 8601, seconds as numbers)."""
        data = asdict(self)
        data["ready"] = self.ready
        data["checked_at"] = self.checked_at.isoformat()
        data["problems"] = list(self.problems)
        if self.figures is not None:
            data["figures"]["open_alert_count"] = self.figures.open_alert_count
            moment = self.figures.latency.last_delivered_at
            data["figures"]["latency"]["last_delivered_at"] = moment and moment.isoformat()
        return data


def gather_status(
    settings: Settings,
    engine: Engine,
    *,
    now: datetime,
    dependencies: Iterable[str] = DEPENDENCIES,
    with_figures: bool = True,
) -> Status:
    """Check `dependencies` (the ledger, and any of the broker and customs; all by default) at
    once, each within settings.health_timeout seconds, and read the figures from the ledger
    (unless `with_figures` is False: a readiness probe needs none). Never raises for a
    dependency that is down: that is in the answer, with the reason."""
    wanted = tuple(dict.fromkeys(dependencies))
    unknown = set(wanted) - set(DEPENDENCIES)
    if unknown or LEDGER not in wanted:
        raise ValueError(f"dependencies: {wanted}; the ledger and any of {DEPENDENCIES}")
    timeout = settings.health_timeout
    checks: dict[str, Callable[[], tuple[Dependency, Any]]] = {
        LEDGER: lambda: _check_ledger(settings, engine, now, with_figures),
        BROKER: lambda: _check_broker(settings, timeout),
        CUSTOMS: lambda: _check_customs(settings, timeout),
    }
    results: dict[str, tuple[Dependency, Any]] = {}
    # Threads that outlive a hung check end on their own (each has its timeout or the
    # database's); the answer does not wait for them.
    pool = ThreadPoolExecutor(max_workers=len(wanted), thread_name_prefix="elbridge-health")
    try:
        futures = {name: pool.submit(checks[name]) for name in wanted}
        deadline = time.monotonic() + timeout + 1.0
        for name, future in futures.items():
            try:
                results[name] = future.result(timeout=max(0.0, deadline - time.monotonic()))
            except FutureTimeout:
                results[name] = (
                    Dependency(
                        name,
                        _target(name, settings, engine),
                        False,
                        f"{name}: no answer within {timeout:g} s",
                        timeout,
                    ),
                    None,
                )
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
    figures: Figures | None = results[LEDGER][1]
    broker = results.get(BROKER)
    if figures is not None and broker is not None and broker[1] is not None:
        figures = _with_store_count(figures, broker[1])
    found = tuple(results[name][0] for name in wanted)
    return Status(now, found, figures, _problems(figures))


# ------------------------------------------------------------------------------- checks


def _target(name: str, settings: Settings, engine: Engine | None = None) -> str:
    if name == LEDGER and engine is not None:
        return engine.url.render_as_string(hide_password=True)
    if name == BROKER:
        scheme = "mqtts" if settings.mqtt_ca_file else "mqtt"
        return f"{scheme}://{settings.mqtt_host}:{settings.mqtt_port}"
    return settings.soap_url


def _check_ledger(
    settings: Settings, engine: Engine, now: datetime, with_figures: bool
) -> tuple[Dependency, Any]:
    target = _target(LEDGER, settings, engine)
    started = time.monotonic()
    missing = store.missing_sqlite_file(engine)
    if missing is not None:
        reason = f"ledger {missing}: no such file (run `elbridge db upgrade` to create it)"
        return Dependency(LEDGER, target, False, reason, time.monotonic() - started), None
    try:
        with engine.connect() as conn:
            store.ping(conn)
            seconds = time.monotonic() - started
            figures = _figures(conn, settings, now) if with_figures else None
        if figures is not None:
            figures = _with_undelivered(figures, engine, now)
    except SQLAlchemyError as error:
        reason = f"ledger {target}: {_database_reason(error)}"
        return Dependency(LEDGER, target, False, reason, time.monotonic() - started), None
    return Dependency(LEDGER, target, True, "", seconds), figures


def _database_reason(error: SQLAlchemyError) -> str:
    text = str(getattr(error, "orig", None) or error).strip().splitlines()
    reason = text[0] if text else type(error).__name__
    if "no such table" in reason or "does not exist" in reason:
        reason += " (is this a ledger? run `elbridge db upgrade`)"
    return reason


def _check_broker(settings: Settings, timeout: float) -> tuple[Dependency, Any]:
    target = _target(BROKER, settings)
    try:
        options = mqtt_options(settings)
    except ConfigError as error:
        return Dependency(BROKER, target, False, str(error), 0.0), None
    probe = probe_broker(options, timeout)
    return Dependency(BROKER, target, probe.up, probe.reason, probe.seconds), probe.stored_messages


def _check_customs(settings: Settings, timeout: float) -> tuple[Dependency, Any]:
    # Imported here: the query service serves /ready without the outbox's imports.
    from bridge.services.outbox import customs_endpoint

    probe = probe_customs(customs_endpoint(settings), timeout)
    return Dependency(CUSTOMS, settings.soap_url, probe.up, probe.reason, probe.seconds), None


# ------------------------------------------------------------------------------- figures


def _overdue_after(settings: Settings) -> timedelta:
    # The same threshold that keeps the licences DAG red (ELBRIDGE_UNDELIVERED_ALARM_MINUTES).
    return timedelta(minutes=settings.undelivered_alarm_minutes)


def _figures(conn, settings: Settings, now: datetime) -> Figures:
    outcomes = store.message_outcomes(conn)
    events = {outcome: outcomes.get(outcome, 0) for outcome in EVENT_OUTCOMES}
    events.update(outcomes)  # an outcome of a later release is shown too
    box = store.outbox_state(conn)
    overdue_after = _overdue_after(settings)
    window = timedelta(hours=settings.health_latency_window_hours)
    delivered = store.deliveries(conn, now - window)
    alerts, stateful = store.open_alerts(conn)
    recent = sorted(delivered.recent_seconds)
    return Figures(
        events=events,
        refused_documents=store.refused_documents(conn),
        refusals=store.refusals_by_code(conn),
        rejected_records=store.count_rows(conn, "reject"),
        movements=store.movements_by_kind(conn),
        quarantine_total=store.count_rows(conn, "quarantine"),
        quarantine_unsettled=store.unsettled_quarantine(conn),
        held_amendments=store.held_declarations(conn),
        unpublished_results=store.unpublished_results(conn),
        outbox=box.by_status,
        outbox_failures=box.failed_by_failure,
        oldest_pending_age=_age(now, box.oldest_pending_since),
        oldest_failed_age=_age(now, box.oldest_failed_since),
        undelivered_failed=0,  # see _with_undelivered
        overdue_pending=0,
        overdue_after_seconds=overdue_after.total_seconds(),
        open_alerts=alerts,
        alerts_have_state=stateful,
        latency=Latency(
            count=delivered.count,
            total_seconds=delivered.total_seconds,
            window_hours=settings.health_latency_window_hours,
            window_count=len(recent),
            p50=percentile(recent, 0.5),
            p95=percentile(recent, 0.95),
            last=delivered.last_seconds,
            last_delivered_at=delivered.last_delivered_at,
        ),
    )


def _with_undelivered(figures: Figures, engine: Engine, now: datetime) -> Figures:
    """The figures with what customs do not have and should, counted as the licences DAG's
    alarm counts it."""
    from bridge.services.outbox import undelivered

    older_than = timedelta(seconds=figures.overdue_after_seconds)
    waiting = undelivered(engine, now=now, older_than=older_than)
    return replace(
        figures,
        undelivered_failed=sum(1 for row in waiting if row["status"] == store.FAILED),
        overdue_pending=sum(1 for row in waiting if row["status"] == store.PENDING),
    )


def _with_store_count(figures: Figures, stored: int) -> Figures:
    return replace(figures, broker_stored_messages=stored)


def _age(now: datetime, since: datetime | None) -> float | None:
    return None if since is None else max(0.0, (now - since).total_seconds())


def percentile(ordered: list[float], fraction: float) -> float | None:
    """The nearest-rank percentile of values sorted ascending (None for none): the smallest
    value with at least `fraction` of them at or below it."""
    if not ordered:
        return None
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]


def _problems(figures: Figures | None) -> tuple[str, ...]:
    if figures is None:
        return ()
    found = []
    failed = figures.undelivered_failed
    if failed:
        found.append(
            f"{failed} outbox message(s) failed: see `elbridge outbox list --status failed`,"
            " then `elbridge outbox retry`"
        )
    if figures.overdue_pending:
        found.append(
            f"{figures.overdue_pending} outbox message(s) pending for more than"
            f" {_duration(figures.overdue_after_seconds)}"
        )
    if figures.open_alert_count:
        kinds = ", ".join(f"{n} {kind}" for kind, n in sorted(figures.open_alerts.items()))
        found.append(f"{figures.open_alert_count} open alert(s): {kinds}")
    if figures.quarantine_unsettled:
        found.append(
            f"{figures.quarantine_unsettled} quarantined message(s) not replayed: see"
            " `elbridge quarantine list`"
        )
    return tuple(found)


def _duration(seconds: float) -> str:
    if seconds >= 3600 and seconds % 3600 == 0:
        return f"{seconds / 3600:g} h"
    if seconds >= 60:
        return f"{seconds / 60:g} min"
    return f"{seconds:g} s"

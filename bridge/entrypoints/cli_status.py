"""`elbridge status [--json] [--check ledger,broker,customs]`: is the bridge ready, and what
needs a person (docs/health-and-metrics.md).

The same figures as /metrics, from bridge.services.health.gather_status: the ledger, the broker
and the customs endpoint checked for real with the bridge's settings (TLS and logins included),
then the ledger's counts. A table that fits the terminal, or JSON with --json.

Exit status (bridge/entrypoints/exit_codes.py): 0 every dependency up and nothing needs a
person; 1 a dependency is down (named, with the reason); 4 everything is up but something needs
a person: certificates failed or pending too long, open alerts, messages still in quarantine."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from bridge.core.errors import Problem, Rejected
from bridge.entrypoints.cli_output import Column, read_settings, reporter
from bridge.entrypoints.exit_codes import Exit

if TYPE_CHECKING:  # the health checks are imported by `status` only: every command starts fast
    from bridge.services.health import Figures, Status


def exit_status(status: Status) -> Exit:
    """1 when a dependency is down, 4 when a problem needs a person, else 0."""
    if not status.ready:
        return Exit.FAILURE
    if status.problems:
        return Exit.PARTIAL
    return Exit.OK


def _checked(text: str | None) -> tuple[str, ...]:
    from bridge.services.health import DEPENDENCIES, LEDGER

    if not text:
        return DEPENDENCIES
    names = [part.strip() for part in text.split(",") if part.strip()]
    unknown = [name for name in names if name not in DEPENDENCIES]
    if unknown or not names:
        problem = Problem(
            f"name some of {', '.join(DEPENDENCIES)}, separated by commas",
            path="option --check",
            value=text,
            code="usage",
        )
        raise Rejected([problem], summary="which dependencies to check")
    return tuple(dict.fromkeys((LEDGER, *names)))


def cmd_status(args: argparse.Namespace) -> int:
    from bridge.adapters.store.db import make_engine
    from bridge.services.health import gather_status

    out = reporter(args)
    checked = _checked(args.check)
    settings = read_settings(args)
    # Read only: a status check never creates or migrates a ledger.
    engine = make_engine(settings.ledger_url, create=False)
    try:
        status = gather_status(settings, engine, now=datetime.now(UTC), dependencies=checked)
    finally:
        engine.dispose()
    out.emit(status.as_dict())
    show(status, out)
    return exit_status(status)


# --------------------------------------------------------------------------- the tables
def _age(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 2 * 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


def _latency(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    return f"{seconds:.2f} s" if seconds < 120 else _age(seconds)


def show(status: Status, out: Any) -> None:
    """The status as a person reads it (nothing with --json): the verdict, the dependencies,
    the figures, then what needs a person."""
    down = ", ".join(dependency.name for dependency in status.down)
    verdict = "READY" if status.ready else f"NOT READY: down: {down}"
    out.say(f"{verdict} (checked {status.checked_at:%Y-%m-%d %H:%M:%S} UTC)")
    out.table(
        [
            Column("dependency", "name"),
            Column("state", "state"),
            Column("check", "took", numeric=True),
            Column("where / why", "where"),
        ],
        [
            {
                "name": dependency.name,
                "state": "up" if dependency.up else "DOWN",
                "took": f"{dependency.seconds * 1000:.0f} ms",
                "where": dependency.target if dependency.up else dependency.reason,
            }
            for dependency in status.dependencies
        ],
    )
    if status.figures is None:
        return
    broker = next((d for d in status.dependencies if d.name == "broker"), None)
    out.table(
        [Column("figure", "what"), Column("", "figure", numeric=True), Column("", "note")],
        _figure_rows(status.figures, broker_note(broker, status.figures)),
        title="From the ledger",
    )
    if status.problems:
        out.say("Needs a person:")
        for problem in status.problems:
            out.say(f"  - {problem}")
    else:
        out.say("Nothing needs a person.")


def broker_note(broker: Any, figures: Figures) -> str:
    if broker is None:
        return "broker not checked"
    if not broker.up:
        return "broker down"
    if figures.broker_stored_messages is None:
        return "not exposed to this login ($SYS)"
    return "all sessions' queued messages, retained ones included"


def _figure_rows(figures: Figures, broker: str) -> list[dict[str, Any]]:
    events = figures.events
    box = figures.outbox
    latency = figures.latency
    stored = figures.broker_stored_messages
    kinds = ", ".join(f"{n} {kind}" for kind, n in sorted(figures.open_alerts.items()))
    rows = [
        ("declaration events applied", events.get("applied", 0), ""),
        ("declaration events refused", events.get("refused", 0), "at least one document refused"),
        ("declaration events ignored", events.get("ignored", 0), "no dual-use licence in them"),
        ("declaration events quarantined", events.get("quarantined", 0), "unreadable"),
        (
            "duplicates / stale",
            f"{events.get('duplicate', 0)} / {events.get('stale', 0)}",
            "",
        ),
        (
            "refused documents",
            figures.refused_documents,
            ", ".join(f"{n} {code}" for code, n in sorted(figures.refusals.items())),
        ),
        ("rejected national records", figures.rejected_records, ""),
        (
            "quarantine not replayed",
            figures.quarantine_unsettled,
            f"of {figures.quarantine_total} quarantined",
        ),
        ("amendments held", figures.held_amendments, "waiting for their release"),
        ("results not yet published", figures.unpublished_results, ""),
        ("broker store", "-" if stored is None else stored, broker),
        ("outbox pending", box.get("pending", 0), f"oldest {_age(figures.oldest_pending_age)}"),
        (
            "outbox failed",
            box.get("failed", 0),
            f"oldest {_age(figures.oldest_failed_age)}"
            + "".join(f", {n} {why}" for why, n in sorted(figures.outbox_failures.items())),
        ),
        (
            "undelivered (the alarm)",
            f"{figures.undelivered_failed} / {figures.overdue_pending}",
            f"failed / pending more than {_age(figures.overdue_after_seconds)}",
        ),
        ("outbox delivered", box.get("delivered", 0), ""),
        (
            "delivery latency p50 / p95",
            f"{_latency(latency.p50)} / {_latency(latency.p95)}",
            f"{latency.window_count} deliveries in the last {latency.window_hours:g} h",
        ),
        ("last delivery latency", _latency(latency.last), ""),
        (
            "open alerts" if figures.alerts_have_state else "alerts (none acknowledged)",
            figures.open_alert_count,
            kinds,
        ),
    ]
    return [{"what": what, "figure": str(figure), "note": note} for what, figure, note in rows]


def add_status_commands(subparsers: argparse._SubParsersAction) -> None:
    """`elbridge status` (its --json and the settings are the global options)."""
    status = subparsers.add_parser(
        "status",
        help="is the bridge ready (ledger, broker, customs) and what needs a person",
        description="Check the ledger, the MQTT broker and the customs endpoint as the bridge"
        " reaches them, and show the ledger's figures (--json: the same as one JSON document)."
        " Exit status: 0 ready and nothing needs a person, 1 a dependency is down, 4 ready but"
        " something needs a person (failed or overdue certificates, open alerts, quarantine).",
    )
    status.add_argument(
        "--check",
        metavar="LIST",
        help="check only these (comma-separated: ledger, broker, customs; the ledger always)",
    )
    status.set_defaults(func=cmd_status)

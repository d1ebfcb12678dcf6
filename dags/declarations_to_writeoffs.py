"""
### Declarations to write-offs

Writes off (or adjusts, or reverses) licence quantities in the ledger from the customs
declaration events the bridge's persistent MQTT session receives. Only one run at a time, so
messages keep their order.

**Long-lived runs.** A scheduled run consumes for `ELBRIDGE_DECLARATION_RUN_MINUTES` (60 by
default), then ends and the next one starts at once (`@continuous`): some 24 runs a day instead
of a run every few seconds, and no event waits for a run to start. A run **triggered by hand**
drains what the session holds and ends once the topic has been quiet for a few seconds (for an
operator who wants to see the queue emptied now).

**What a run's squares say.**

- `drain_declaration_events` consumes; its XCom summary counts messages, applied, ignored,
  refused, quarantined, duplicates..., and `problems` (refused write-offs, quarantined
  messages). Each refused write-off and quarantined message is one WARNING line in its log,
  within a minute of happening: what, which MRN / document / message, why.
- `record_writeoffs` is **skipped when nothing arrived** during the run: an idle run has a
  skipped square and no asset event. When events were processed it succeeds and emits an event
  of the Asset `elbridge_write_offs` carrying the run's counts (Assets view, or
  `/api/v2/assets/events`).
- `report_problems` **fails when the run refused a write-off or quarantined a message**, so the
  run shows red. The good events were applied all the same: refusals and unreadable messages
  are stored with their reasons (tables `refusal`, `quarantine`), answered to customs and
  acknowledged, so one bad message never blocks the rest. A failed task is Airflow's only
  not-green verdict that leaves the processing tasks green; the red square says "a person
  should read this run's warnings", not "the bridge broke".
- `drain_declaration_events` itself fails only when the broker or the ledger cannot be reached;
  it is retried, and the broker keeps every unacknowledged message for the session.

Endpoints come from the Connections `elbridge_mqtt` and `elbridge_ledger` (each optional;
ELBRIDGE_* environment variables otherwise). The DAG only wires: the rules live in `bridge/`.
See docs/operations.md.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any

from airflow.sdk import Asset, TriggerRule, dag, get_current_context, task

log = logging.getLogger("elbridge.declarations_to_writeoffs")  # the name the task log shows

WRITE_OFFS = Asset(name="elbridge_write_offs", uri="x-elbridge://ledger/write-offs")
# The shortest and longest scheduled run ELBRIDGE_DECLARATION_RUN_MINUTES may ask for.
MIN_RUN_MINUTES = 0.1
MAX_RUN_MINUTES = 240
IDLE_SECONDS = 5.0  # a run triggered by hand ends once the topic is quiet for this long
MANUAL_MAX_SECONDS = 60.0  # ... or after this, on a busy topic
RUN_COUNTS = ("messages", "applied", "ignored", "refused", "quarantined", "duplicates", "stale")


@dag(
    dag_id="declarations_to_writeoffs",
    schedule="@continuous",
    start_date=datetime(2025, 1, 1, tzinfo=UTC),
    catchup=False,
    max_active_runs=1,
    default_args={
        "owner": "elbridge",
        "retries": 3,
        "retry_delay": timedelta(seconds=15),
        "execution_timeout": timedelta(minutes=MAX_RUN_MINUTES + 15),
    },
    tags=["elbridge", "declarations", "write-offs", "mqtt"],
    doc_md=__doc__,
)
def declarations_to_writeoffs() -> None:
    @task
    def drain_declaration_events() -> dict[str, Any]:
        """Consume for the run's length (by hand: until quiet); every refused write-off and
        quarantined message is a WARNING line."""
        from bridge.entrypoints.airflow_findings import (
            QUARANTINED_MESSAGE,
            REFUSED_WRITE_OFF,
            FindingsLog,
            problem_counts,
        )
        from bridge.entrypoints.airflow_wiring import (
            drain_declarations,
            ledger,
            settings_from_airflow,
            summarise,
        )

        settings = settings_from_airflow()
        run = get_current_context()["dag_run"]
        findings = FindingsLog(log)
        if run.run_type == "manual":  # an operator asked to empty the queue now
            seconds, idle = MANUAL_MAX_SECONDS, IDLE_SECONDS
        else:
            asked = settings.declaration_run_minutes
            minutes = min(max(MIN_RUN_MINUTES, asked), MAX_RUN_MINUTES)
            if minutes != asked:
                log.warning(
                    "ELBRIDGE_DECLARATION_RUN_MINUTES=%s is outside %s..%s: this run lasts %s min",
                    asked,
                    MIN_RUN_MINUTES,
                    MAX_RUN_MINUTES,
                    minutes,
                )
            seconds, idle = minutes * 60.0, None
        with ledger(settings) as engine:
            report = drain_declarations(
                settings, engine, findings, seconds=seconds, idle_seconds=idle
            )
        counts = findings.finish()
        summary = summarise(report)
        summary["problems"] = problem_counts(counts, (REFUSED_WRITE_OFF, QUARANTINED_MESSAGE))
        log.info(
            "this run: %s; problems: %s",
            ", ".join(f"{name} {summary[name]}" for name in RUN_COUNTS),
            summary["problems"],
        )
        return summary

    @task(outlets=[WRITE_OFFS])
    def record_writeoffs(drained: dict[str, Any]) -> dict[str, Any]:
        """Skipped when nothing arrived; else an event of the write-offs Asset with the counts."""
        from airflow.sdk.exceptions import AirflowSkipException

        if not drained["messages"]:
            raise AirflowSkipException("no declaration event arrived during this run")
        extra = {name: drained[name] for name in RUN_COUNTS}
        extra.update(drained["problems"])
        get_current_context()["outlet_events"][WRITE_OFFS].extra = extra
        return extra

    @task(trigger_rule=TriggerRule.ALL_DONE)
    def report_problems() -> dict[str, int]:
        """Fail, so the run shows red, when the run refused a write-off or quarantined a
        message; their reasons are the WARNING lines of drain_declaration_events."""
        from bridge.entrypoints.airflow_wiring import fail_on_problems

        drained = get_current_context()["ti"].xcom_pull(task_ids="drain_declaration_events")
        return fail_on_problems((drained or {}).get("problems", {}), "drain_declaration_events")

    drained = drain_declaration_events()
    record_writeoffs(drained)
    drained >> report_problems()


declarations_to_writeoffs()

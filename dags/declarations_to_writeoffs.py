"""
### Declarations to write-offs

Continuous: each run drains the bridge's persistent MQTT session on the customs declaration
events topic in micro-batches, writing off (or adjusting, or reversing) licence quantities in
the ledger, and returns when the topic has been quiet for a few seconds or after a minute;
the next run starts at once. Only one run at a time, so messages keep their order.

Messages that cannot be applied are **reported**, not failures: refused write-offs and
unreadable messages are stored in the ledger with their reasons (tables `refusal`,
`quarantine`) and acknowledged, so one bad message never blocks the rest. The task fails only
when the broker or the ledger cannot be reached; it is retried, and the broker keeps every
unacknowledged message for the session.

Endpoints come from the Connections `elbridge_mqtt` and `elbridge_ledger` (each optional;
ELBRIDGE_* environment variables otherwise). The DAG only wires: the rules live in `bridge/`.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from airflow.sdk import dag, task

IDLE_SECONDS = 5.0  # a quiet topic for this long ends the run
MAX_SECONDS = 60.0  # a busy topic still ends the run now and then, so the UI shows progress


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
        "execution_timeout": timedelta(seconds=MAX_SECONDS * 5),
    },
    tags=["elbridge", "declarations", "write-offs", "mqtt"],
    doc_md=__doc__,
)
def declarations_to_writeoffs() -> None:
    @task
    def drain_declaration_events() -> Any:
        """Consume what the session holds and what arrives until the topic is quiet."""
        from bridge.entrypoints.airflow_wiring import ledger, settings_from_airflow, summarise
        from bridge.services.consumer import consume

        settings = settings_from_airflow()
        with ledger(settings) as engine:
            report = consume(settings, engine, idle_seconds=IDLE_SECONDS, max_seconds=MAX_SECONDS)
        return summarise(report)

    drain_declaration_events()


declarations_to_writeoffs()

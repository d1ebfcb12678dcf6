"""
### Daily reconciliation (and expiry)

Every day at midnight UTC: first, licences whose validity ended are marked expired (each change
audited, and a status update queued for customs, sent by the next `licences_to_customs` run);
then, for every current licence line, what was authorised, what was
written off and what remains, written as `reconciliation.csv` and `reconciliation.json` under
`<home>/reports/<date>/` (the run's UTC date). The task returns a summary with the over-used
lines (written off beyond what was authorised); over-use is a finding for the licensing
authority, reported here, not a failure of the pipeline.

The ledger comes from the Connection `elbridge_ledger` (optional; ELBRIDGE_* environment
variables otherwise). The DAG only wires: the rules live in `bridge/`.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any

from airflow.sdk import dag, get_current_context, task

log = logging.getLogger(__name__)


@dag(
    dag_id="daily_reconciliation",
    schedule="@daily",
    start_date=datetime(2025, 1, 1, tzinfo=UTC),
    catchup=False,
    max_active_runs=1,
    default_args={
        "owner": "elbridge",
        "retries": 2,
        "retry_delay": timedelta(minutes=5),
        "execution_timeout": timedelta(minutes=30),
    },
    tags=["elbridge", "reconciliation", "reports"],
    doc_md=__doc__,
)
def daily_reconciliation() -> None:
    @task
    def expire_due_licences() -> dict[str, Any]:
        """Mark expired every licence whose validity ended before the run's date."""
        from bridge.entrypoints.airflow_wiring import ledger, settings_from_airflow
        from bridge.services.licence_status import expire_due

        run = get_current_context()["dag_run"]
        today = (run.logical_date or run.run_after).astimezone(UTC).date()
        with ledger(settings_from_airflow()) as engine:
            expired = expire_due(engine, today, datetime.now(UTC))
        if expired:
            log.info("expired licences: %s", ", ".join(expired))
        return {"date": today.isoformat(), "expired": expired}

    @task
    def write_reconciliation() -> dict[str, Any]:
        """Write the CSV and JSON reports and return their summary."""
        from bridge.entrypoints.airflow_wiring import (
            settings_from_airflow,
            write_reconciliation_reports,
        )

        run = get_current_context()["dag_run"]
        day = (run.logical_date or run.run_after).astimezone(UTC).date().isoformat()
        report = write_reconciliation_reports(settings_from_airflow(), day)
        if report["over_used_lines"]:
            log.warning("over-used licence lines: %s", ", ".join(report["over_used_lines"]))
        return report

    expire_due_licences() >> write_reconciliation()


daily_reconciliation()

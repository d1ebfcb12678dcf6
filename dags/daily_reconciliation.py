"""
### Daily reconciliation, reports (and expiry)

Once the UTC day is over (the run's data interval is that whole day, so it starts just after
midnight, after the day's write-offs): first, licences whose validity ended are marked expired
(each change audited, and a status update queued for customs, sent by the next
`licences_to_customs` run); then the day's reports go to `<reports>/<day>/`
(`ELBRIDGE_REPORTS_DIR`, by default `<home>/reports`), with the file mode
`ELBRIDGE_REPORTS_MODE` (0640 by default: the group reads them, e.g. the licensing officers):

- `write_reconciliation`: for every current licence line, what was authorised, what was
  written off and what remains, as `reconciliation.csv` and `reconciliation.json` (plain
  machine-readable files for other tools). Its summary lists the over-used lines (written off
  beyond what was authorised), one WARNING line each: a finding for the licensing authority,
  reported here, not a failure of the pipeline.
- `publish_reports`: the console's pages as static HTML, with xlsx workbooks and CSV files a
  spreadsheet opens as they are, for people to open; it emits an event of the Asset
  `elbridge_daily_reports` (the day, the folder, the files), so other DAGs can be scheduled on
  the reports.

A run triggered by hand reports the day given as its `day` parameter; without one, the last
whole day before its logical date (the trigger form fills one in), or today so far when it has
no logical date (triggered by the REST API or CLI without one).

The ledger comes from the Connection `elbridge_ledger` (optional; ELBRIDGE_* environment
variables otherwise). The DAG only wires: the rules live in `bridge/`. See docs/operations.md.
"""

from __future__ import annotations

import logging
from datetime import UTC, date, datetime, timedelta
from typing import Any

from airflow.sdk import Asset, CronDataIntervalTimetable, Param, dag, get_current_context, task

log = logging.getLogger("elbridge.daily_reconciliation")  # the name the task log shows

REPORTS = Asset(name="elbridge_daily_reports", uri="x-elbridge://reports/daily")


def report_day() -> date:
    """The day a run reports: the `day` parameter, else its data interval's (a scheduled run
    covers one whole UTC day; a manual run with a logical date gets the last whole day before
    it), else the day it was triggered (a manual run without a logical date: today so far)."""
    context = get_current_context()
    asked = context["params"].get("day")
    if asked:
        return date.fromisoformat(asked)
    start = context.get("data_interval_start")
    if start is not None:
        return start.astimezone(UTC).date()
    return context["dag_run"].run_after.astimezone(UTC).date()


@dag(
    dag_id="daily_reconciliation",
    # A data interval per UTC day: the run for a day starts when the day is over.
    schedule=CronDataIntervalTimetable("0 0 * * *", timezone="UTC"),
    start_date=datetime(2025, 1, 1, tzinfo=UTC),
    catchup=False,
    max_active_runs=1,
    params={
        "day": Param(
            None,
            type=["null", "string"],
            format="date",
            description="The UTC day to report (YYYY-MM-DD); empty: the run's own day",
        )
    },
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
        """Mark expired every licence whose validity ended before today (UTC)."""
        from bridge.entrypoints.airflow_wiring import ledger, settings_from_airflow
        from bridge.services.licence_status import expire_due

        now = datetime.now(UTC)
        with ledger(settings_from_airflow()) as engine:
            expired = expire_due(engine, now.date(), now)
        if expired:
            log.info("expired licences: %s", ", ".join(expired))
        return {
            "date": report_day().isoformat(),
            "today": now.date().isoformat(),
            "expired": expired,
        }

    @task
    def write_reconciliation() -> dict[str, Any]:
        """Write the CSV and JSON reconciliation and return its summary."""
        from bridge.entrypoints.airflow_wiring import (
            settings_from_airflow,
            write_reconciliation_reports,
        )

        report = write_reconciliation_reports(settings_from_airflow(), report_day().isoformat())
        for line in report["over_used_lines"]:
            log.warning("over-used licence line %s: more written off than authorised", line)
        return report

    @task(outlets=[REPORTS])
    def publish_reports() -> dict[str, Any]:
        """Write the day's HTML, xlsx and CSV reports; an event of the reports Asset."""
        from bridge.entrypoints.airflow_wiring import publish_daily_reports, settings_from_airflow

        published = publish_daily_reports(settings_from_airflow(), report_day())
        get_current_context()["outlet_events"][REPORTS].extra = {
            "day": published["date"],
            "folder": published["folder"],
            "files": len(published["files"]),
        }
        return published

    expire_due_licences() >> write_reconciliation() >> publish_reports()


daily_reconciliation()

"""
### Licences to customs

Every two minutes: read the national licence files dropped in the inbox (`<home>/inbox`), keep
each licence version in the ledger, turn every new version into a CERTEX certificate and deliver
the outbox to the customs single window over SOAP.

- `ingest_national_files` maps and validates every new file, then moves it to `inbox/done/`.
  Refused records are stored with all their reasons; the rest goes through. A file that cannot
  be read at all goes to `inbox/failed/` with a reason file. Each rejected record, unreadable
  file and broken mapping is one WARNING line in its log (what, which record or file, why);
  its XCom summary counts them under `problems`. Fails only when the ledger cannot be reached.
- `certify_new_versions` builds a certificate for every licence version not yet certified and
  queues it in the outbox. Fails, without retrying, when a certificate breaks the contract
  (it is kept in the outbox as failed, with its reasons): that is a bug for a person.
- `deliver_certificates` sends what the outbox holds; transient errors wait there for their next
  attempt. When it delivered something it emits an event of the Asset
  `elbridge_certificate_deliveries` with the counts. Fails, without retrying, when
  certificates failed for good (customs refused them): read its WARNING lines, fix the cause,
  and a corrected licence version is certified again (or `elbridge outbox retry`).
- `check_undelivered_certificates` **fails while any certificate is failed, or pending longer
  than `ELBRIDGE_UNDELIVERED_ALARM_MINUTES`** (60 by default), one WARNING line each: every run
  stays red until customs have them all, which is the alarm to watch.
- `report_problems` **fails when this run rejected a record or set a file aside**, so the run
  shows red although everything else went through.
- `fail_if_a_step_failed` fails the run when a processing step failed.

Certification and delivery run even when the step before them failed: each works on what the
ledger holds, so one bad file or certificate never holds back the others. Airflow has no
"success with warnings": a failed verdict task (`report_problems`, `check_undelivered_...`)
beside green processing tasks is how a run says "done, and a person must look".

Endpoints come from the Connections `elbridge_ledger`, `elbridge_customs_soap` (each optional;
ELBRIDGE_* environment variables otherwise). The DAG only wires: the rules live in `bridge/`.
See docs/operations.md.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any

from airflow.sdk import Asset, AssetAlias, TriggerRule, dag, get_current_context, task

log = logging.getLogger("elbridge.licences_to_customs")  # the name the task log shows

INGEST_COUNTS = ("new", "new_version", "unchanged", "stale", "rejected")
DELIVERIES = Asset(name="elbridge_certificate_deliveries", uri="x-elbridge://customs/certificates")
# Through an alias, a run that delivered nothing emits no asset event.
DELIVERED = AssetAlias(name="elbridge_certificates_delivered")


@dag(
    dag_id="licences_to_customs",
    schedule="*/2 * * * *",
    start_date=datetime(2025, 1, 1, tzinfo=UTC),
    catchup=False,
    max_active_runs=1,
    dagrun_timeout=timedelta(minutes=30),
    default_args={
        "owner": "elbridge",
        "retries": 3,
        "retry_delay": timedelta(seconds=30),
        "retry_exponential_backoff": 2.0,
        "max_retry_delay": timedelta(minutes=5),
        "execution_timeout": timedelta(minutes=10),
    },
    tags=["elbridge", "licences", "certex", "soap"],
    doc_md=__doc__,
)
def licences_to_customs() -> None:
    @task
    def ingest_national_files() -> dict[str, Any]:
        """Ingest the inbox; each rejected record and unreadable file is a WARNING line."""
        from bridge.entrypoints.airflow_findings import (
            BROKEN_MAPPING,
            REJECTED_RECORD,
            UNREADABLE_FILE,
            WAITING_FILE,
            ingest_findings,
            log_findings,
            problem_counts,
        )
        from bridge.entrypoints.airflow_wiring import (
            ledger,
            settings_from_airflow,
            summarise,
            totals,
        )
        from bridge.services.ingest import ingest_inbox

        settings = settings_from_airflow()
        with ledger(settings) as engine:
            reports = ingest_inbox(engine, settings.inbox)
        counts = totals(reports, INGEST_COUNTS)
        found = log_findings(log, ingest_findings(reports, settings.inbox))
        kinds = (REJECTED_RECORD, UNREADABLE_FILE, WAITING_FILE, BROKEN_MAPPING)
        return {
            "inbox": str(settings.inbox),
            "files": len(reports),
            **counts,
            "unreadable_files": [r.file for r in reports if r.failure and r.kind == "file"],
            "problems": problem_counts(found, kinds),
            "reports": summarise(reports),
        }

    # Each step works on what the ledger holds, not on its upstream's result: a failure
    # upstream must not hold back certificates that are ready.
    @task(trigger_rule=TriggerRule.ALL_DONE)
    def certify_new_versions() -> Any:
        """Queue a certificate for every licence version without one; fail, without retrying,
        when a certificate breaks the contract (it is kept as failed, with its reasons)."""
        from airflow.sdk.exceptions import AirflowFailException

        from bridge.entrypoints.airflow_findings import Finding, log_findings
        from bridge.entrypoints.airflow_wiring import ledger, settings_from_airflow, summarise
        from bridge.services.outbox import certify_pending
        from bridge.services.signing import certificate_signer

        settings = settings_from_airflow()
        with ledger(settings) as engine:
            report = certify_pending(
                engine, now=datetime.now(UTC), signer=certificate_signer(settings)
            )
        if report.invalid:
            log_findings(
                log,
                (
                    Finding("certificate breaking the contract", f"{number} version {v}", why)
                    for number, v, why in report.problems
                ),
            )
            raise AirflowFailException(
                f"{report.invalid} certificate(s) break the contract; kept as failed, not sent"
                " (the WARNING lines above say which and why)"
            )
        return summarise(report)

    @task(trigger_rule=TriggerRule.ALL_DONE, outlets=[DELIVERED])
    def deliver_certificates() -> Any:
        """Deliver the outbox; an asset event when something was delivered; fail, without
        retrying, when certificates failed for good."""
        from airflow.sdk.exceptions import AirflowFailException

        from bridge.entrypoints.airflow_findings import Finding, log_findings
        from bridge.entrypoints.airflow_wiring import (
            customs_senders,
            ledger,
            settings_from_airflow,
            summarise,
        )
        from bridge.services.outbox import DeliveryStopped, deliver_pending

        settings = settings_from_airflow()
        with ledger(settings) as engine:
            try:
                report = deliver_pending(engine, customs_senders(settings))
            except DeliveryStopped as stopped:
                # A configuration error (TLS, certificate files): retrying the same settings
                # cannot help; nothing was spent, the certificates wait for the fix.
                raise AirflowFailException(str(stopped)) from stopped
        summary = summarise(report)
        counts = {k: v for k, v in summary.items() if isinstance(v, int)}
        if report.delivered or report.duplicate:
            get_current_context()["outlet_events"][DELIVERED].add(DELIVERIES, extra=counts)
        if report.retried:
            log.warning(
                "%d certificate(s) not accepted by customs this time; they wait in the outbox"
                " for their next attempt (check_undelivered_certificates says when that is too"
                " long)",
                report.retried,
            )
        if report.failed:
            # Sending them again unchanged cannot help: they need a person.
            log_findings(
                log,
                (
                    Finding("certificate failed for good", f"licence {number} version {v}", why)
                    for number, v, why in report.failures
                ),
            )
            raise AirflowFailException(
                f"{report.failed} certificate(s) failed for good (the WARNING lines above say"
                " which and why); after fixing the cause: `elbridge outbox retry`"
            )
        return summary

    @task(trigger_rule=TriggerRule.ALL_DONE)
    def check_undelivered_certificates() -> dict[str, Any]:
        """Fail while any certificate is failed, or pending longer than the alarm threshold;
        one WARNING line each."""
        from bridge.entrypoints.airflow_wiring import check_undelivered, settings_from_airflow

        return check_undelivered(settings_from_airflow(), log)

    @task(trigger_rule=TriggerRule.ALL_DONE)
    def report_problems() -> dict[str, int]:
        """Fail, so the run shows red, when this run rejected records or set files aside; the
        reasons are the WARNING lines of ingest_national_files."""
        from bridge.entrypoints.airflow_wiring import fail_on_problems

        ingested = get_current_context()["ti"].xcom_pull(task_ids="ingest_national_files")
        return fail_on_problems((ingested or {}).get("problems", {}), "ingest_national_files")

    @task(trigger_rule=TriggerRule.ONE_FAILED, retries=0)
    def fail_if_a_step_failed() -> None:
        """Mark the run failed when a step failed: the steps after it still ran, and a run is
        judged by its last tasks, so without this a failure would hide behind their success."""
        from airflow.sdk.exceptions import AirflowFailException

        raise AirflowFailException("a step of this run failed; read that step's log")

    steps = [ingest_national_files(), certify_new_versions(), deliver_certificates()]
    steps[0] >> steps[1] >> steps[2] >> check_undelivered_certificates()
    steps[0] >> report_problems()
    steps >> fail_if_a_step_failed()


licences_to_customs()

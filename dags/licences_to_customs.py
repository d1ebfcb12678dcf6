"""
### Licences to customs

Every two minutes: read the national licence files dropped in the inbox (`<home>/inbox`), keep
each licence version in the ledger, turn every new version into a CERTEX certificate and deliver
the outbox to the customs single window over SOAP.

- `ingest_national_files` maps and validates every new file, then moves it to `inbox/done/`.
  Refused records are stored with all their reasons and **reported** (`rejected`); the rest
  goes through. A file that cannot be read at all goes to `inbox/failed/` with a reason file
  and is reported (`unreadable_files`). Fails only when a mapping is broken or the ledger
  cannot be reached.
- `certify_new_versions` builds a certificate for every licence version not yet certified and
  queues it in the outbox. Fails, without retrying, when a certificate breaks the contract
  (it is kept in the outbox as failed, with its reasons): that is a bug for a person.
- `deliver_certificates` sends what the outbox holds; transient errors wait there for their next
  attempt. Fails, without retrying, when certificates failed for good (customs refused them,
  or they ran out of attempts): read `failures`, fix the cause, and a corrected licence version
  is certified again.

Certification and delivery run even when the step before them failed: each works on what the
ledger holds, so one bad file or certificate never holds back the others. The run is still
marked failed then (`fail_if_a_step_failed`), so the failure shows.

Endpoints come from the Connections `elbridge_ledger`, `elbridge_customs_soap` (each optional;
ELBRIDGE_* environment variables otherwise). The DAG only wires: the rules live in `bridge/`.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any

from airflow.sdk import TriggerRule, dag, task

log = logging.getLogger(__name__)

INGEST_COUNTS = ("new", "new_version", "unchanged", "stale", "rejected")


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
        """Ingest the inbox; rejected records are counted here and kept in the ledger."""
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
        unreadable = [r.file for r in reports if r.failure]
        if counts["rejected"] or unreadable:
            log.warning(
                "%d national records rejected (kept in the ledger with their reasons); "
                "unreadable files moved to %s: %s",
                counts["rejected"],
                settings.inbox / "failed",
                unreadable or "none",
            )
        return {
            "inbox": str(settings.inbox),
            "files": len(reports),
            **counts,
            "unreadable_files": unreadable,
            "reports": summarise(reports),
        }

    # Each step works on what the ledger holds, not on its upstream's result: a failure
    # upstream must not hold back certificates that are ready.
    @task(trigger_rule=TriggerRule.ALL_DONE)
    def certify_new_versions() -> Any:
        """Queue a certificate for every licence version without one; fail, without retrying,
        when a certificate breaks the contract (it is kept as failed, with its reasons)."""
        from airflow.sdk.exceptions import AirflowFailException

        from bridge.entrypoints.airflow_wiring import ledger, settings_from_airflow, summarise
        from bridge.services.outbox import certify_pending
        from bridge.services.signing import certificate_signer

        settings = settings_from_airflow()
        with ledger(settings) as engine:
            report = certify_pending(
                engine, now=datetime.now(UTC), signer=certificate_signer(settings)
            )
        summary = summarise(report)
        if report.invalid:
            raise AirflowFailException(
                f"{report.invalid} certificate(s) break the contract; kept as failed, not sent: "
                f"{summary['problems']}"
            )
        return summary

    @task(trigger_rule=TriggerRule.ALL_DONE)
    def deliver_certificates() -> Any:
        """Deliver the outbox; fail, without retrying, when certificates failed for good."""
        from airflow.sdk.exceptions import AirflowFailException

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
        if report.failed:
            # Sending them again unchanged cannot help: they need a person.
            raise AirflowFailException(
                f"{report.failed} certificate(s) failed for good (refused by customs, or out "
                f"of attempts): {summary['failures']}"
            )
        return summary

    @task(trigger_rule=TriggerRule.ONE_FAILED, retries=0)
    def fail_if_a_step_failed() -> None:
        """Mark the run failed when a step failed: the steps after it still ran, and a run is
        judged by its last tasks, so without this a failure would hide behind their success."""
        from airflow.sdk.exceptions import AirflowFailException

        raise AirflowFailException("a step of this run failed; read that step's log")

    steps = [ingest_national_files(), certify_new_versions(), deliver_certificates()]
    steps[0] >> steps[1] >> steps[2]
    steps >> fail_if_a_step_failed()


licences_to_customs()

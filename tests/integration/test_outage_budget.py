"""Outages are survived, not recorded as failures: a message customs cannot take is retried for
a time (the retry budget), with waits capped, and only fails when that time is spent; a message
customs refuse stays failed until someone sends it again (or a new version supersedes it).

Real ledger (SQLite and PostgreSQL), the real customs simulator as a subprocess over HTTP, the
real zeep client; only the delivery clock is the test's, so that hours of outage pass in
seconds: `sleep` moves it on, and the scheduler's runs are every few minutes of it."""

from __future__ import annotations

import json
import random
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from bridge.core.errors import Rejected
from bridge.core.model import LicenceStatus
from bridge.entrypoints.cli import main
from bridge.services.config import Settings
from bridge.services.licence_status import change_status
from bridge.services.outbox import (
    CustomsClient,
    certify_pending,
    deliver_pending,
    outbox_listing,
    outbox_summary,
    retry_certificates,
    retry_failed,
    undelivered,
)
from bridge.services.signing import certificate_signer
from tests.fixtures_soap import individual_licence, outbox_of, sample_licences, save_licences

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
RUN_EVERY = timedelta(minutes=5)  # how often the scheduler starts a delivery run


class Clock:
    """The delivery runs' clock: `sleep` moves it on instead of waiting."""

    def __init__(self, start: datetime = NOW) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


def _save(engine, *licences, at: datetime = NOW) -> None:
    save_licences(engine, licences, now=at)


def _client(url: str, **settings) -> CustomsClient:
    return CustomsClient(Settings(soap_url=url, soap_timeout=5.0, **settings))


def _scheduled_runs(engine, client, clock: Clock, until: datetime, jitter) -> list:
    """Delivery runs every RUN_EVERY until `until`, as the DAG makes them; their reports."""
    reports = []
    run_at = clock.now
    while run_at < until:
        clock.now = max(clock.now, run_at)  # a run that waited within itself ends later
        reports.append(
            deliver_pending(engine, client, now_fn=clock, sleep=clock.sleep, jitter=jitter)
        )
        run_at += RUN_EVERY
    return reports


# --------------------------------------------------------------------------- the outage


def test_a_two_hour_customs_outage_loses_no_certificate_all_delivered_once_customs_are_back(
    engine, customs_simulator_factory, development_authority
):
    simulator = customs_simulator_factory(rate=1.0, kinds=["http503"])  # customs answer 503
    licences = sample_licences()
    _save(engine, *licences)
    assert certify_pending(engine, now=NOW, signer=development_authority).certified == 5
    client = _client(simulator.url)  # the defaults: 48 h budget, waits capped at 600 s
    clock = Clock()

    reports = _scheduled_runs(
        engine, client, clock, NOW + timedelta(hours=2), random.Random(13).random
    )

    assert len(reports) == 24  # a run every 5 minutes for 2 hours
    assert sum(report.failed for report in reports) == 0
    assert all(report.delivered == 0 and report.still_pending == 5 for report in reports)
    assert outbox_summary(engine) == {"pending": 5, "delivered": 0, "failed": 0}
    rows = outbox_of(engine)
    for row in rows:
        assert row["status"] == "pending" and row["failure"] is None
        assert row["first_failed_at"] == NOW
        assert "HTTP 503" in row["last_error"]
        # The waits doubled up to the cap and stayed there: never more than 600 s apart.
        assert row["next_attempt_at"] - row["last_attempt_at"] <= timedelta(seconds=600)
        assert row["attempts"] >= 15
    requests_in_outage = simulator.stats()["requests"]
    assert requests_in_outage == sum(row["attempts"] for row in rows)
    # The outage is visible all the same: every certificate waits longer than an hour.
    late = undelivered(engine, now=clock.now, older_than=timedelta(hours=1))
    assert {(r["licence"], r["status"]) for r in late} == {
        (lic.number, "pending") for lic in licences
    }

    simulator.set_faults()  # customs are back
    clock.now += timedelta(minutes=10)  # the cap: every certificate is due again by now
    report = deliver_pending(engine, client, now_fn=clock, sleep=clock.sleep)

    assert (report.delivered, report.failed, report.still_pending) == (5, 0, 0)
    assert outbox_summary(engine) == {"pending": 0, "delivered": 5, "failed": 0}
    received = simulator.received()
    assert sorted(r["reference"] for r in received) == sorted(lic.number for lic in licences)
    assert len({r["message_id"] for r in received}) == 5  # each stored once
    assert undelivered(engine, now=clock.now, older_than=timedelta(hours=1)) == []
    print(
        f"2 h of 503: {len(reports)} runs, {requests_in_outage} refused calls, 0 failed;"
        f" customs back: {report.delivered} delivered"
    )


def test_a_spent_budget_fails_and_outbox_retry_sends_it_again(
    engine, ledger_url, customs_simulator_factory, development_authority, capsys
):
    simulator = customs_simulator_factory(rate=1.0, kinds=["http503"])
    start = datetime.now(UTC).replace(microsecond=0)  # the CLI records the real time
    _save(engine, individual_licence(), at=start)
    certify_pending(engine, now=start, signer=development_authority)
    client = _client(simulator.url, soap_retry_budget_hours=0.5)
    clock = Clock(start)

    reports = _scheduled_runs(engine, client, clock, start + timedelta(hours=1), lambda: 0.0)

    failed = [report for report in reports if report.failed]
    assert len(failed) == 1 and sum(r.failed for r in reports) == 1
    ((number, version, reason),) = failed[0].failures
    assert (number, version) == ("DE-EA-2026-004711", 1)
    assert reason.startswith("gave up after 30 min of transient failures (")
    assert "the retry budget is 30 min" in reason and "last: HTTP 503" in reason
    (row,) = outbox_of(engine)
    assert (row["status"], row["failure"]) == ("failed", "budget")
    assert row["last_attempt_at"] == start + timedelta(minutes=30)  # the budget's end exactly
    calls = simulator.stats()["requests"]
    # A later run does not try it again.
    _scheduled_runs(engine, client, clock, clock.now + timedelta(minutes=30), lambda: 0.0)
    assert simulator.stats()["requests"] == calls

    capsys.readouterr()
    assert (
        main(["--database-url", ledger_url, "outbox", "list", "--status", "failed", "--json"]) == 4
    )
    listed = json.loads(capsys.readouterr().out)
    assert [(m["id"], m["failure"]) for m in listed["messages"]] == [(row["id"], "budget")]
    assert listed["counts"] == {"pending": 0, "delivered": 0, "failed": 1}

    simulator.set_faults()  # customs are back
    code = main(["--database-url", ledger_url, "outbox", "retry", "--all-failed",
                 "--actor", "operator.meyer", "--json"])  # fmt: skip
    assert code == 0
    document = json.loads(capsys.readouterr().out)
    assert [m["id"] for m in document["requeued"]] == [row["id"]]
    assert (document["actor"], document["skipped"]) == ("operator.meyer", [])

    (again,) = outbox_of(engine)
    assert (again["status"], again["attempts"], again["retried_by"]) == (
        "pending",
        0,
        "operator.meyer",
    )
    assert again["retried_at"] is not None and again["first_failed_at"] is None
    clock.now = max(clock.now, datetime.now(UTC)) + timedelta(seconds=1)
    report = deliver_pending(engine, client, now_fn=clock, sleep=clock.sleep)
    assert (report.delivered, report.failed) == (1, 0)
    assert [r["reference"] for r in simulator.received()] == ["DE-EA-2026-004711"]


# ------------------------------------------------------------------------ a refusal


def _distrustful_then_trusting(factory, tmp_path, authority):
    """Customs that refuse our signatures (they trust another authority only), and a function
    that restarts them, same port and store, trusting ours: customs mending their side."""
    stranger = certificate_signer(Settings(home=tmp_path / "another-authority"))
    first = factory(trusted_authorities=[stranger.certificate_file])
    port = int(first.url.rsplit(":", 1)[1].split("/", 1)[0])

    def mended():
        first.stop()
        return factory(
            port=port,
            store_path=first.store_path,
            trusted_authorities=[authority.certificate_file],
        )

    return first, mended


def test_a_refusal_is_not_retried_by_the_budget_but_by_an_explicit_retry(
    engine, customs_simulator_factory, development_authority, tmp_path
):
    customs, mended = _distrustful_then_trusting(
        customs_simulator_factory, tmp_path, development_authority
    )
    _save(engine, individual_licence())
    certify_pending(engine, now=NOW, signer=development_authority)
    client = _client(customs.url)
    clock = Clock()

    first = deliver_pending(engine, client, now_fn=clock, sleep=clock.sleep)
    assert (first.failed, first.retried) == (1, 0)
    ((_, _, reason),) = first.failures
    assert "SIGNATURE_REFUSED" in reason and "certificate refused" in reason
    (row,) = outbox_of(engine)
    assert (row["status"], row["failure"], row["attempts"]) == ("failed", "refused", 1)

    # Three hours of runs: a refusal is not a transient failure, nothing sends it again.
    _scheduled_runs(engine, client, clock, NOW + timedelta(hours=3), lambda: 0.0)
    assert customs.stats()["requests"] == 1
    (late,) = undelivered(engine, now=clock.now, older_than=timedelta(hours=1))
    assert (late["id"], late["status"], late["failure"]) == (row["id"], "failed", "refused")

    # Sent again while customs still refuse: tried once more, failed again, with who retried.
    assert retry_certificates(engine, ids=[row["id"]], actor="officer.a", now=clock.now) == 1
    again = deliver_pending(engine, client, now_fn=clock, sleep=clock.sleep)
    assert again.failed == 1 and customs.stats()["requests"] == 2
    (row,) = outbox_of(engine)
    assert (row["status"], row["failure"], row["retried_by"]) == ("failed", "refused", "officer.a")

    trusting = mended()
    assert retry_certificates(engine, ids=[row["id"]], actor="officer.b", now=clock.now) == 1
    delivered = deliver_pending(engine, _client(trusting.url), now_fn=clock, sleep=clock.sleep)
    assert (delivered.delivered, delivered.failed) == (1, 0)
    (row,) = outbox_of(engine)
    assert (row["status"], row["retried_by"], row["failure"]) == ("delivered", "officer.b", None)
    assert [r["reference"] for r in trusting.received()] == ["DE-EA-2026-004711"]


def test_a_new_version_supersedes_a_refused_one_and_retrying_the_licence_sends_its_status_too(
    engine, customs_simulator_factory, development_authority, tmp_path
):
    customs, mended = _distrustful_then_trusting(
        customs_simulator_factory, tmp_path, development_authority
    )
    licence = individual_licence()
    other = individual_licence(number="DE-EA-2026-004712")
    _save(engine, licence, other)
    certify_pending(engine, now=NOW, signer=development_authority)
    with engine.begin() as conn:
        change_status(conn, other.number, LicenceStatus.SUSPENDED, reason="r", actor="a", now=NOW)
    clock = Clock()
    report = deliver_pending(engine, _client(customs.url), now_fn=clock, sleep=clock.sleep)
    # Both certificates refused; the suspension cannot go without its certificate.
    assert (report.failed, report.delivered) == (3, 0)
    failures = {(r["licence"], r["kind"]): r["failure"] for r in outbox_listing(engine)}
    assert failures == {
        (licence.number, "certificate"): "refused",
        (other.number, "certificate"): "refused",
        (other.number, "status"): "orphan",
    }

    trusting = mended()
    # The licence's next version gets its own certificate, which customs take now.
    _save(engine, replace(licence, version=2, holder_name="Muster Optik GmbH & Co. KG"))
    certify_pending(engine, now=clock.now, signer=development_authority)
    client = _client(trusting.url)
    assert deliver_pending(engine, client, now_fn=clock, sleep=clock.sleep).delivered == 1
    # Version 1 no longer counts as undelivered, and is not sent over version 2.
    late = undelivered(engine, now=clock.now, older_than=timedelta(hours=1))
    assert {(r["licence"], r["kind"]) for r in late} == {
        (other.number, "certificate"),
        (other.number, "status"),
    }
    everything = retry_failed(engine, all_failed=True, actor="officer", now=clock.now)
    skipped = {(r["licence"], r["version"]): r["why"] for r in everything.skipped}
    assert list(skipped) == [(licence.number, 1)]
    assert skipped[(licence.number, 1)].startswith("superseded: customs hold version 2")
    assert {(r["licence"], r["kind"]) for r in everything.requeued} == {
        (other.number, "certificate"),
        (other.number, "status"),
    }
    report = deliver_pending(engine, client, now_fn=clock, sleep=clock.sleep)
    assert (report.delivered, report.failed) == (2, 0)
    (status,) = trusting.statuses()
    assert (status["reference"], status["status"]) == (other.number, "suspended")


def test_retrying_a_status_alone_while_its_certificate_stays_failed_is_refused_with_the_way_out(
    engine, customs_simulator_factory, development_authority, tmp_path
):
    customs, _ = _distrustful_then_trusting(
        customs_simulator_factory, tmp_path, development_authority
    )
    licence = individual_licence()
    _save(engine, licence)
    certify_pending(engine, now=NOW, signer=development_authority)
    with engine.begin() as conn:
        change_status(conn, licence.number, LicenceStatus.SUSPENDED, reason="r", actor="a", now=NOW)
    deliver_pending(engine, _client(customs.url), now_fn=Clock(), sleep=Clock().sleep)
    status = next(r for r in outbox_listing(engine) if r["kind"] == "status")
    report = retry_failed(engine, ids=[status["id"]], actor="officer", now=NOW)
    assert report.requeued == []
    (skipped,) = report.skipped
    assert f"`elbridge outbox retry --licence {licence.number}`" in skipped["why"]


def test_retry_refuses_what_it_cannot_find_and_changes_nothing(engine, development_authority):
    _save(engine, individual_licence())
    certify_pending(engine, now=NOW, signer=development_authority)
    (row,) = outbox_of(engine)
    with pytest.raises(Rejected) as unknown:
        retry_failed(engine, ids=[row["id"], row["id"] + 1000], actor="a", now=NOW)
    assert {p.code for p in unknown.value.problems} == {"usage"}
    assert f"got '{row['id'] + 1000}'" in str(unknown.value)
    with pytest.raises(Rejected, match="no message of this licence"):
        retry_failed(engine, licence="XX-NOT-THERE", actor="a", now=NOW)
    with pytest.raises(Rejected, match="by id, or a licence, or all failed"):
        retry_failed(engine, ids=[row["id"]], all_failed=True, actor="a", now=NOW)
    with pytest.raises(Rejected, match="must be named"):
        retry_failed(engine, all_failed=True, actor=" ", now=NOW)
    assert outbox_of(engine) == [row]

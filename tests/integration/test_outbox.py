"""The outbox: certificates are queued before sending, delivered once, retried with backoff
when customs are unreachable, failed at once when customs refuse them. Real SQLite ledger, real
simulator over HTTP, real zeep client; only the clock and sleep are the test's, so that backoff
waits cost no wall time."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import update

from bridge.adapters.store.outbox import outbox_rows
from bridge.adapters.store.schema import outbox
from bridge.core.certificate import certificate_problems
from bridge.core.model import LicenceStatus, LicenceType
from bridge.services.config import Settings
from bridge.services.outbox import (
    CustomsClient,
    certify_pending,
    deliver_pending,
    message_id_for,
    outbox_summary,
)
from tests.fixtures_soap import (
    chemicals_licence,
    global_licence,
    individual_licence,
    national_general_licence,
    outbox_of,
    sample_licences,
    save_licences,
    union_general_licence,
)

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


class Clock:
    """The run's clock: `sleep` moves it on instead of waiting."""

    def __init__(self, start: datetime = NOW) -> None:
        self.now = start
        self.slept: list[float] = []

    def __call__(self) -> datetime:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += timedelta(seconds=seconds)


def _save(engine, *licences) -> None:
    save_licences(engine, licences, now=NOW)


def _client(url: str, timeout: float = 5.0) -> CustomsClient:
    return CustomsClient(Settings(soap_url=url, soap_timeout=timeout))


def _rows(engine) -> dict[tuple[str, int], dict]:
    return {(r["licence_number"], r["licence_version"]): r for r in outbox_of(engine)}


def test_message_ids_are_the_same_for_the_same_version_and_differ_otherwise():
    first = message_id_for("DE-EA-2026-004711", 1)
    assert message_id_for("DE-EA-2026-004711", 1) == first
    assert len({first, message_id_for("DE-EA-2026-004711", 2)}) == 2
    assert message_id_for("DE-EA-2026-004711", 1, kind="status") != first
    assert len(first) == 36  # a UUID: fits the contract's MessageId


# ----------------------------------------------------------------------------- certify


def test_every_licence_version_is_certified_once_and_queued_before_sending(engine):
    _save(engine, *sample_licences())
    _save(engine, individual_licence(version=2, status=LicenceStatus.SUSPENDED))
    report = certify_pending(engine, now=NOW)
    assert (report.certified, report.invalid, report.problems) == (6, 0, [])
    again = certify_pending(engine, now=NOW + timedelta(minutes=5))
    assert (again.certified, again.invalid) == (0, 0)
    rows = _rows(engine)
    assert set(rows) == {
        ("DE-EA-2026-004711", 1),
        ("DE-EA-2026-004711", 2),
        ("FR-SBDU-G-2026-0042", 1),
        ("NL-EU001-2026-0815", 1),
        ("DK002-2026-117", 1),
        ("PL/DU/2026/000321", 3),
    }
    for (number, version), row in rows.items():
        assert row["status"] == "pending" and row["attempts"] == 0
        assert row["message_id"] == message_id_for(number, version)
        assert row["next_attempt_at"] == NOW
        assert certificate_problems(row["document"].encode()) == []
    assert outbox_summary(engine) == {"pending": 6, "delivered": 0, "failed": 0}


def test_an_invalid_certificate_is_kept_as_failed_with_its_reasons_and_never_sent(
    engine, customs_simulator
):
    # The ledger holds what ingestion let through; the certificate contract is checked again.
    _save(engine, global_licence(holder_eori="FR 1234"), union_general_licence())
    _save(engine, national_general_licence(type=LicenceType.UNION_GENERAL))  # no EU00n
    report = certify_pending(engine, now=NOW)
    assert (report.certified, report.invalid) == (1, 2)
    reasons = {number: why for number, _, why in report.problems}
    assert "/Certificate/Holder/EORI" in reasons["FR-SBDU-G-2026-0042"]
    assert "'FR 1234'" in reasons["FR-SBDU-G-2026-0042"]
    assert "EU001 to EU008" in reasons["DK002-2026-117"]
    rows = _rows(engine)
    assert rows[("FR-SBDU-G-2026-0042", 1)]["status"] == "failed"
    assert rows[("FR-SBDU-G-2026-0042", 1)]["last_error"] == reasons["FR-SBDU-G-2026-0042"]

    delivery = deliver_pending(engine, _client(customs_simulator.url), now_fn=Clock())
    assert (delivery.delivered, delivery.failed) == (1, 0)
    assert [r["reference"] for r in customs_simulator.received()] == ["NL-EU001-2026-0815"]
    assert customs_simulator.stats()["requests"] == 1


def test_rows_are_written_before_sending_and_wait_when_customs_are_unreachable(
    engine, unreachable_soap_url
):
    _save(engine, individual_licence(), global_licence())
    certify_pending(engine, now=NOW)
    clock = Clock()
    report = deliver_pending(
        engine, _client(unreachable_soap_url), now_fn=clock, retry_within_run_seconds=0
    )
    assert (report.delivered, report.retried, report.failed, report.still_pending) == (
        0,
        2,
        0,
        2,
    )
    for row in _rows(engine).values():
        assert row["status"] == "pending" and row["attempts"] == 1
        assert "refused" in row["last_error"]
        assert (
            NOW + timedelta(seconds=0.25) <= row["next_attempt_at"] <= NOW + timedelta(seconds=0.5)
        )
    assert clock.slept == []  # no waiting beyond the run's budget


# ----------------------------------------------------------------------------- deliver


def test_certificates_are_delivered_once_and_a_second_run_sends_nothing(engine, customs_simulator):
    _save(engine, *sample_licences())
    certify_pending(engine, now=NOW)
    client = _client(customs_simulator.url)
    report = deliver_pending(engine, client, now_fn=Clock())
    assert (report.delivered, report.duplicate, report.failed, report.still_pending) == (
        5,
        0,
        0,
        0,
    )
    received = customs_simulator.received()
    rows = _rows(engine)
    assert {(r["reference"], r["version"]) for r in received} == set(rows)
    for r in received:
        row = rows[(r["reference"], r["version"])]
        assert (row["status"], row["acknowledgement"]) == ("delivered", "ACCEPTED")
        assert row["receipt_id"] == r["receipt_id"] and row["message_id"] == r["message_id"]
        assert r["document"] == row["document"]  # byte for byte as built
    again = deliver_pending(engine, client, now_fn=Clock())
    assert (again.delivered, again.duplicate) == (0, 0)
    assert customs_simulator.stats()["requests"] == 5
    assert outbox_summary(engine) == {"pending": 0, "delivered": 5, "failed": 0}


def test_a_resend_after_a_lost_acknowledgement_is_a_harmless_duplicate(engine, customs_simulator):
    _save(engine, individual_licence())
    certify_pending(engine, now=NOW)
    # Customs stored it but the bridge crashed before recording the acknowledgement.
    with engine.begin() as conn:
        (row,) = outbox_rows(conn)
    _client(customs_simulator.url).submit_certificate(
        row["message_id"], row["document"].encode(), NOW
    )
    report = deliver_pending(engine, _client(customs_simulator.url), now_fn=Clock())
    assert (report.delivered, report.duplicate) == (0, 1)
    assert len(customs_simulator.received()) == 1
    assert _rows(engine)[("DE-EA-2026-004711", 1)]["acknowledgement"] == "DUPLICATE"


def test_every_kind_of_transient_failure_is_retried_with_backoff_and_ends_delivered(
    engine, customs_simulator_factory
):
    simulator = customs_simulator_factory(
        next=4, kinds=["http503", "transient_fault", "timeout", "drop"], slow_seconds=1.0
    )
    licences = sample_licences()
    _save(engine, *licences)
    certify_pending(engine, now=NOW)
    clock = Clock()
    report = deliver_pending(
        engine,
        _client(simulator.url, timeout=0.4),
        now_fn=clock,
        sleep=clock.sleep,
        jitter=lambda: 0.0,
    )
    assert report.failed == 0 and report.still_pending == 0
    assert report.retried == 4
    # The "timeout" one was stored while its answer was held back: its resend is a duplicate.
    assert (report.delivered, report.duplicate) == (4, 1)
    assert clock.slept == [0.25]  # one backoff wait (base 0.5, no jitter) for all four
    received = simulator.received()
    assert sorted(r["reference"] for r in received) == sorted(lic.number for lic in licences)
    attempts = sorted(row["attempts"] for row in _rows(engine).values())
    assert attempts == [1, 2, 2, 2, 2]
    stats = simulator.stats()
    assert stats["requests"] == 9 and stats["accepted"] == 5 and stats["duplicate"] == 1


def test_a_connection_refused_is_retried_until_customs_come_back(
    engine, customs_simulator, unreachable_soap_url
):
    _save(engine, individual_licence())
    certify_pending(engine, now=NOW)
    clock = Clock()
    first = deliver_pending(
        engine,
        _client(unreachable_soap_url),
        now_fn=clock,
        sleep=clock.sleep,
        jitter=lambda: 0.0,
        retry_within_run_seconds=0.6,
    )
    # Attempt 2 comes 0.25 s after the first; attempt 3 would be 0.5 s later, past the budget.
    assert (first.retried, first.still_pending, clock.slept) == (2, 1, [0.25])
    clock.now += timedelta(minutes=10)
    second = deliver_pending(engine, _client(customs_simulator.url), now_fn=clock)
    assert (second.delivered, second.still_pending) == (1, 0)
    assert _rows(engine)[("DE-EA-2026-004711", 1)]["attempts"] == 3


def test_a_certificate_customs_refuse_fails_at_once_without_retry(engine, customs_simulator):
    _save(engine, individual_licence(), global_licence())
    certify_pending(engine, now=NOW)
    # Tamper with the queued certificate: customs must refuse it, naming the reason.
    document = _rows(engine)[("DE-EA-2026-004711", 1)]["document"]
    with engine.begin() as conn:
        conn.execute(
            update(outbox)
            .where(outbox.c.licence_number == "DE-EA-2026-004711")
            .values(document=document.replace("<CNCode>85258900", "<CNCode>85A58900"))
        )
    clock = Clock()
    report = deliver_pending(
        engine, _client(customs_simulator.url), now_fn=clock, sleep=clock.sleep
    )
    assert (report.delivered, report.failed, report.retried, report.still_pending) == (1, 1, 0, 0)
    ((number, version, reason),) = report.failures
    assert (number, version) == ("DE-EA-2026-004711", 1)
    assert "INVALID_MESSAGE" in reason and "CNCode" in reason and "85A58900" in reason
    row = _rows(engine)[("DE-EA-2026-004711", 1)]
    assert (row["status"], row["attempts"], row["last_error"]) == ("failed", 1, reason)
    assert (row["failure"], row["first_failed_at"]) == ("refused", NOW)
    assert customs_simulator.stats()["requests"] == 2 and clock.slept == []


def test_once_the_retry_budget_is_spent_a_transient_failure_fails_saying_how_long(
    engine, customs_simulator_factory
):
    simulator = customs_simulator_factory(rate=1.0, kinds=["http503"])
    _save(engine, individual_licence())
    certify_pending(engine, now=NOW)
    clock = Clock()
    report = deliver_pending(
        engine,
        _client(simulator.url),
        now_fn=clock,
        sleep=clock.sleep,
        retry_budget=timedelta(seconds=3),
        retry_within_run_seconds=60,
        jitter=lambda: 0.0,
    )
    assert (report.retried, report.failed, report.still_pending) == (4, 1, 0)
    # Waits of 0.25, 0.5 and 1 s, then the last attempt exactly when the budget ends (not 2 s
    # later): an outage that ends within the budget is met by an attempt.
    assert clock.slept == [0.25, 0.5, 1.0, 1.25]
    ((_, _, reason),) = report.failures
    assert reason.startswith(
        "gave up after 3 s of transient failures (5 attempts since 2026-11-28 12:00 UTC; the"
        " retry budget is 3 s, ELBRIDGE_SOAP_RETRY_BUDGET_HOURS); last: HTTP 503 from"
    )
    assert simulator.stats()["requests"] == 5
    row = _rows(engine)[("DE-EA-2026-004711", 1)]
    assert (row["status"], row["failure"], row["attempts"]) == ("failed", "budget", 5)
    assert row["first_failed_at"] == NOW
    assert row["last_attempt_at"] == NOW + timedelta(seconds=3)


def test_a_later_version_waits_for_the_earlier_one(engine, customs_simulator_factory):
    simulator = customs_simulator_factory(next=1, kinds=["http503"])
    amended = replace(chemicals_licence(), version=4, status=LicenceStatus.VALID)
    _save(engine, chemicals_licence(), amended)
    certify_pending(engine, now=NOW)
    clock = Clock()
    first = deliver_pending(
        engine, _client(simulator.url), now_fn=clock, retry_within_run_seconds=0
    )
    assert (first.retried, first.still_pending) == (1, 2)
    rows = _rows(engine)
    assert rows[("PL/DU/2026/000321", 3)]["attempts"] == 1
    assert rows[("PL/DU/2026/000321", 4)]["attempts"] == 0  # not sent ahead of version 3
    clock.now += timedelta(seconds=1)
    second = deliver_pending(engine, _client(simulator.url), now_fn=clock)
    assert second.delivered == 2
    assert [r["version"] for r in simulator.received()] == [3, 4]


def test_each_outcome_is_committed_as_it_happens_so_a_crash_loses_nothing(
    engine, customs_simulator_factory
):
    simulator = customs_simulator_factory(next=1, kinds=["transient_fault"])
    _save(engine, individual_licence(), global_licence(), union_general_licence())
    certify_pending(engine, now=NOW)

    def crash(_seconds: float) -> None:
        raise RuntimeError("the worker was killed while waiting to retry")

    with pytest.raises(RuntimeError):
        deliver_pending(engine, _client(simulator.url), now_fn=Clock(), sleep=crash)
    assert outbox_summary(engine) == {"pending": 1, "delivered": 2, "failed": 0}
    assert len(simulator.received()) == 2
    waiting = [row for row in _rows(engine).values() if row["status"] == "pending"]
    assert waiting[0]["attempts"] == 1 and "SERVICE_UNAVAILABLE" in waiting[0]["last_error"]

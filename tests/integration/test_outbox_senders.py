"""Delivery with several senders and group commits: every certificate reaches customs once, each
licence's messages in order, and an outcome whose commit was lost is sent again under the same
message id, which customs answer DUPLICATE. Real ledger, real simulator over HTTP, real zeep
clients (one per sending thread)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import update

from bridge.adapters.store.schema import outbox
from bridge.core.model import LicenceStatus
from bridge.services.config import Settings
from bridge.services.outbox import CustomsClient, certify_pending, deliver_pending, outbox_summary
from bridge.testkit import licences as synth
from tests.fixtures_soap import chemicals_licence, outbox_of, save_licences

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


def _clients(url: str, count: int) -> list[CustomsClient]:
    settings = Settings(soap_url=url, soap_timeout=5.0)
    return [CustomsClient(settings) for _ in range(count)]


def _save(engine, licences) -> None:
    save_licences(engine, licences, now=NOW)


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> datetime:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


def test_four_senders_deliver_every_certificate_once_each_licence_in_version_order(
    engine, customs_simulator
):
    licences = list(synth.licences(40, seed=7))
    chemicals = chemicals_licence()
    later = replace(chemicals, version=chemicals.version + 1, status=LicenceStatus.VALID)
    _save(engine, [*licences, chemicals, later])
    certify_pending(engine, now=NOW)

    report = deliver_pending(
        engine, _clients(customs_simulator.url, 4), now_fn=Clock(), commit_every=7
    )

    assert (report.delivered, report.duplicate, report.failed, report.still_pending) == (
        42,
        0,
        0,
        0,
    )
    received = customs_simulator.received()
    assert len(received) == 42
    assert len({r["message_id"] for r in received}) == 42  # each stored once
    versions = [r["version"] for r in received if r["reference"] == chemicals.number]
    assert versions == [chemicals.version, later.version]  # never ahead of its predecessor
    rows = outbox_of(engine)
    assert {r["status"] for r in rows} == {"delivered"}
    assert all(r["attempts"] == 1 and r["receipt_id"] for r in rows)


def test_transient_faults_with_several_senders_end_delivered_after_retries(
    engine, customs_simulator_factory
):
    simulator = customs_simulator_factory(rate=0.3, kinds=["http503"], seed=5)
    _save(engine, list(synth.licences(30, seed=8)))
    certify_pending(engine, now=NOW)
    clock = Clock()

    report = deliver_pending(
        engine,
        _clients(simulator.url, 3),
        now_fn=clock,
        sleep=clock.sleep,
        retry_within_run_seconds=3600,
    )

    assert (report.delivered, report.failed, report.still_pending) == (30, 0, 0)
    assert report.retried > 0
    assert len(simulator.received()) == 30
    rows = outbox_of(engine)
    assert sum(r["attempts"] for r in rows) == 30 + report.retried
    assert all(r["status"] == "delivered" for r in rows)


@pytest.mark.parametrize("senders", [1, 3])
def test_a_lost_commit_sends_again_and_customs_answer_duplicate(engine, customs_simulator, senders):
    _save(engine, list(synth.licences(5, seed=9)))
    certify_pending(engine, now=NOW)
    first = deliver_pending(engine, _clients(customs_simulator.url, senders), now_fn=Clock())
    assert first.delivered == 5
    # As if the process died after customs acknowledged two of them but before the commit.
    lost = sorted(r["id"] for r in outbox_of(engine))[:2]
    with engine.begin() as conn:
        conn.execute(
            update(outbox)
            .where(outbox.c.id.in_(lost))
            .values(status="pending", attempts=0, acknowledgement=None, receipt_id=None)
        )

    again = deliver_pending(engine, _clients(customs_simulator.url, senders), now_fn=Clock())

    assert (again.delivered, again.duplicate, again.failed) == (0, 2, 0)
    assert len(customs_simulator.received()) == 5  # stored once each all the same
    assert outbox_summary(engine) == {"pending": 0, "delivered": 5, "failed": 0}
    acknowledgements = {r["id"]: r["acknowledgement"] for r in outbox_of(engine)}
    assert [acknowledgements[i] for i in lost] == ["DUPLICATE", "DUPLICATE"]


def test_outcomes_are_committed_before_waiting_for_a_retry(engine, customs_simulator_factory):
    simulator = customs_simulator_factory(next=1, kinds=["http503"])
    _save(engine, list(synth.licences(6, seed=10)))
    certify_pending(engine, now=NOW)

    def crash(_seconds: float) -> None:
        raise RuntimeError("killed while waiting to retry")

    with pytest.raises(RuntimeError):
        deliver_pending(
            engine, _clients(simulator.url, 2), now_fn=Clock(), sleep=crash, commit_every=100
        )
    assert outbox_summary(engine) == {"pending": 1, "delivered": 5, "failed": 0}
    (waiting,) = [r for r in outbox_of(engine) if r["status"] == "pending"]
    assert waiting["attempts"] == 1 and "503" in waiting["last_error"]


def test_no_client_is_refused(engine):
    with pytest.raises(ValueError, match="at least one client"):
        deliver_pending(engine, [])

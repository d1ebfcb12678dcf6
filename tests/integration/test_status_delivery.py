"""Licence status changes reach customs: status updates travel through the same outbox as
certificates, after the certificate of their version, over real SOAP to the real simulator;
idempotent on resend, retried on transient faults. Real SQLite ledger, real HTTP server, real
zeep client; only the delivery clock is the test's, so backoff waits cost no wall time."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime, timedelta

import pytest

from bridge.adapters.store.licence_events import licence_events
from bridge.adapters.store.licences import SaveOutcome, load_licences, save_licence
from bridge.adapters.store.outbox import outbox_rows
from bridge.core.certificate import StatusUpdate, build_status_update
from bridge.core.envelope import read_event
from bridge.core.errors import DeliveryError
from bridge.core.lifecycle import AuthorityAction
from bridge.core.model import LicenceStatus, LicenceType
from bridge.services.config import Settings
from bridge.services.customs_events import envelope_for_declaration_file
from bridge.services.declarations import apply_declarations
from bridge.services.licence_status import (
    apply_authority_action,
    change_status,
    expire_due,
    on_new_version,
)
from bridge.services.outbox import STATUS, CustomsClient, certify_pending, deliver_pending
from tests.fixtures_mqtt import RELEASED_AT, tt_ex010a_licence
from tests.fixtures_soap import individual_licence, national_general_licence

S = LicenceStatus
NOW = datetime(2026, 6, 1, 8, 0, tzinfo=UTC)
NUMBER = "DE-EA-2026-004711"


class Clock:
    """The run's clock: `sleep` moves it on instead of waiting."""

    def __init__(self, start: datetime = NOW) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


def _client(url: str, timeout: float = 5.0) -> CustomsClient:
    return CustomsClient(Settings(soap_url=url, soap_timeout=timeout))


def _store(engine, *licences) -> None:
    """Store licences as ingestion does, a new version's status included."""
    with engine.begin() as conn:
        for licence in licences:
            outcome, stored = save_licence(
                conn, licence, source="test", now=NOW, explicit_version=False
            )
            if outcome is SaveOutcome.NEW_VERSION:
                on_new_version(conn, stored, now=NOW)


def _deliver(engine, url, **options):
    clock = Clock()
    options.setdefault("sleep", clock.sleep)
    return deliver_pending(
        engine, _client(url, options.pop("timeout", 5.0)), now_fn=clock, **options
    )


def _outbox(engine):
    with engine.connect() as conn:
        return outbox_rows(conn)


def test_a_suspension_made_before_the_certificate_is_sent_reaches_customs_after_it(
    engine, customs_simulator
):
    _store(engine, individual_licence())
    with engine.begin() as conn:  # queued before the certificate is even built
        change_status(
            conn, NUMBER, S.SUSPENDED, reason="end-use inquiry", actor="K. Weber", now=NOW
        )
    certify_pending(engine, now=NOW)

    report = _deliver(engine, customs_simulator.url)

    assert (report.delivered, report.failed, report.still_pending) == (2, 0, 0)
    (certificate,) = customs_simulator.received()
    (status,) = customs_simulator.statuses()
    assert (certificate["reference"], certificate["version"]) == (NUMBER, 1)
    assert (status["reference"], status["version"], status["sequence"]) == (NUMBER, 1, 1)
    assert (status["status"], status["reason"]) == ("suspended", "end-use inquiry")
    assert status["received_at"] >= certificate["received_at"]
    assert customs_simulator.stats().get("refused", 0) == 0  # never sent ahead of its certificate
    rows = _outbox(engine)
    assert [(r["kind"], r["status"], r["acknowledgement"]) for r in rows] == [
        (STATUS, "delivered", "ACCEPTED"),
        ("certificate", "delivered", "ACCEPTED"),
    ]


def test_a_status_update_waits_while_its_certificate_is_not_certified(engine, customs_simulator):
    _store(engine, individual_licence())
    with engine.begin() as conn:
        change_status(conn, NUMBER, S.REVOKED, reason="sanctions", actor="K. Weber", now=NOW)
    report = _deliver(engine, customs_simulator.url)
    assert (report.delivered, report.still_pending) == (0, 1)
    assert customs_simulator.stats().get("requests", 0) == 0
    certify_pending(engine, now=NOW)
    assert _deliver(engine, customs_simulator.url).delivered == 2
    assert [s["status"] for s in customs_simulator.statuses()] == ["revoked"]


def test_versions_and_their_status_updates_go_out_in_order(engine, customs_simulator):
    _store(engine, individual_licence())
    apply_authority_action(
        engine, NUMBER, AuthorityAction.SUSPEND, reason="inquiry", actor="A", now=NOW
    )
    _store(engine, individual_licence(valid_to=date(2028, 12, 31)))  # version 2
    apply_authority_action(
        engine, NUMBER, AuthorityAction.REINSTATE, reason="cleared", actor="A", now=NOW
    )
    certify_pending(engine, now=NOW)

    report = _deliver(engine, customs_simulator.url)

    assert (report.delivered, report.failed) == (5, 0)
    sent = sorted(
        [("certificate", r["version"], r["received_at"]) for r in customs_simulator.received()]
        + [(s["status"], s["version"], s["received_at"]) for s in customs_simulator.statuses()],
        key=lambda entry: entry[2],
    )
    assert [(what, version) for what, version, _ in sent] == [
        ("certificate", 1),
        ("suspended", 1),
        ("certificate", 2),
        ("suspended", 2),  # version 2 says valid; the suspension holds until reinstated
        ("valid", 2),
    ]


def test_a_status_update_is_retried_on_transient_faults_and_stored_once(engine, customs_simulator):
    _store(engine, individual_licence())
    certify_pending(engine, now=NOW)
    assert _deliver(engine, customs_simulator.url).delivered == 1
    with engine.begin() as conn:
        change_status(conn, NUMBER, S.SUSPENDED, reason="inquiry", actor="K. Weber", now=NOW)
    customs_simulator.set_faults(next=2, kinds=["http503", "transient_fault"])

    report = _deliver(engine, customs_simulator.url)

    assert (report.delivered, report.retried, report.failed) == (1, 2, 0)
    (status,) = customs_simulator.statuses()
    assert status["status"] == "suspended"
    row = next(r for r in _outbox(engine) if r["kind"] == STATUS)
    assert (row["status"], row["attempts"]) == ("delivered", 3)
    assert "SERVICE_UNAVAILABLE" in row["last_error"]


def test_a_status_update_whose_answer_was_lost_is_resent_and_answered_duplicate(
    engine, customs_simulator
):
    _store(engine, individual_licence())
    certify_pending(engine, now=NOW)
    _deliver(engine, customs_simulator.url)
    with engine.begin() as conn:
        change_status(conn, NUMBER, S.ANNULLED, reason="issued in error", actor="A", now=NOW)
    # stored by customs, but the answer comes after the client stopped waiting
    customs_simulator.set_faults(next=1, kinds=["timeout"], slow_seconds=1.5)

    report = _deliver(engine, customs_simulator.url, timeout=0.5)

    assert (report.retried, report.duplicate, report.failed) == (1, 1, 0)
    assert [s["status"] for s in customs_simulator.statuses()] == ["annulled"]
    row = next(r for r in _outbox(engine) if r["kind"] == STATUS)
    assert (row["status"], row["acknowledgement"]) == ("delivered", "DUPLICATE")


def test_customs_answer_a_resend_duplicate_and_refuse_a_reused_id_or_unknown_version(
    customs_simulator,
):
    client = _client(customs_simulator.url)
    update = StatusUpdate(NUMBER, 1, 1, S.SUSPENDED, "inquiry", NOW)
    with pytest.raises(DeliveryError) as unknown:
        client.update_certificate_status("st-1", build_status_update(update), NOW)
    assert unknown.value.transient is True
    assert unknown.value.code == "fault-unknown_certificate"
    assert f"no certificate {NUMBER} version 1" in unknown.value.reason

    from bridge.core.certificate import build_certificate

    client.submit_certificate("cert-1", build_certificate(individual_licence()), NOW)
    first = client.update_certificate_status("st-1", build_status_update(update), NOW)
    again = client.update_certificate_status("st-1", build_status_update(update), NOW)
    assert (first.status, again.status) == ("ACCEPTED", "DUPLICATE")
    assert again.receipt_id == first.receipt_id
    other = replace(update, status=S.REVOKED)
    with pytest.raises(DeliveryError) as reused:
        client.update_certificate_status("st-1", build_status_update(other), NOW)
    assert (reused.value.transient, reused.value.code) == (False, "fault-message_id_reused")
    assert len(customs_simulator.statuses()) == 1


def test_a_status_update_for_a_certificate_that_failed_fails_with_the_reason(
    engine, customs_simulator
):
    broken = national_general_licence(type=LicenceType.UNION_GENERAL)  # no EU00n: no code
    _store(engine, broken)
    certify_pending(engine, now=NOW)
    with engine.begin() as conn:
        change_status(conn, broken.number, S.SUSPENDED, reason="r", actor="a", now=NOW)
    report = _deliver(engine, customs_simulator.url)
    assert (report.failed, report.delivered) == (1, 0)
    row = next(r for r in _outbox(engine) if r["kind"] == STATUS)
    assert row["status"] == "failed"
    assert "the certificate of licence DK002-2026-117 version 1 failed" in row["last_error"]
    assert customs_simulator.stats().get("requests", 0) == 0


def test_expired_licences_are_told_to_customs(engine, customs_simulator):
    _store(
        engine,
        individual_licence(valid_to=date(2026, 5, 31)),
        individual_licence(number="DE-EA-2026-004712", valid_to=date(2026, 6, 1)),
    )
    certify_pending(engine, now=NOW)
    assert expire_due(engine, date(2026, 6, 1), NOW) == [NUMBER]
    report = _deliver(engine, customs_simulator.url)
    assert (report.delivered, report.failed) == (3, 0)
    (status,) = customs_simulator.statuses()
    assert (status["reference"], status["status"]) == (NUMBER, "expired")
    assert status["reason"] == "validity ended on 2026-05-31"


def test_a_licence_used_up_by_a_release_is_exhausted_and_customs_receive_that_status(
    engine, customs_simulator, wco_samples
):
    sample = tt_ex010a_licence(quantity="10")  # TT_EX010a writes off 10 KGM#G
    # a control list entry the certificate contract accepts (the fixture's ML1.a is military)
    licence = replace(sample, lines=(replace(sample.lines[0], control_list_entry="1C011.b"),))
    _store(engine, licence)
    certify_pending(engine, now=NOW)
    assert _deliver(engine, customs_simulator.url).delivered == 1
    data = envelope_for_declaration_file(
        wco_samples / "TT_EX010a.xml", event="released", event_time=RELEASED_AT
    )
    settings = Settings()
    with engine.begin() as conn:
        apply_declarations(
            conn,
            [read_event(data, max_bytes=settings.max_message_bytes)],
            now=NOW,
            settings=settings,
        )
    assert _deliver(engine, customs_simulator.url).delivered == 1
    (status,) = customs_simulator.statuses()
    assert (status["reference"], status["version"], status["status"]) == (
        "GBSIEE2E350001-0001",
        1,
        "exhausted",
    )
    with engine.connect() as conn:
        stored = load_licences(conn, [licence.number])[licence.number]
        (event,) = licence_events(conn, licence.number)
    assert stored.status is S.EXHAUSTED
    assert (event["to_status"], event["actor"]) == ("exhausted", "bridge")

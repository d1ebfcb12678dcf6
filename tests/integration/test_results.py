"""Quantity management customs can trust, end to end: real mosquitto, the real consumer, the real
ledger (SQLite and PostgreSQL, `ledger_url`). Declarations are the real TT_EX010a sample, edited
in memory (document code, quantity, unit, amount, destination, exporter); every event is answered
on the result topic.

Each rule of the write-off is shown by what customs see (the result message), what the
ledger holds (balances, refusals, movements) and what the authority sees (alerts, statuses)."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import replace
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest
from lxml import etree
from sqlalchemy import func, select

from bridge.adapters.mqtt.client import unique_client_id
from bridge.adapters.store.alerts import list_alerts
from bridge.adapters.store.licences import load_licences
from bridge.adapters.store.outbox import outbox_rows
from bridge.adapters.store.reconciliation import reconciliation_rows
from bridge.adapters.store.schema import movement, processed_message, refusal
from bridge.core.envelope import (
    DeclarationResult,
    DocumentStatus,
    build_envelope,
    parse_result,
)
from bridge.core.model import Licence, LicenceLine, LicenceStatus, LicenceType
from bridge.core.xmlsafe import parse_xml
from bridge.services import mqtt_endpoints
from bridge.services.consumer import ConsumeReport, consume, store_batch
from bridge.services.customs_events import publish_events
from bridge.services.licence_status import change_status
from bridge.testkit.amendments import as_amendment
from tests.fixtures_mqtt import RELEASED_AT, store_licences, uk_licence

NS = {"d": "urn:wco:datamodel:WCO:DEC-DMS:2"}
EXPORTER = "GB417869120000"  # TT_EX010a's exporter
CN = "93063030"  # TT_EX010a's goods item CN code
LICENCE = "GBSIEE2E350001-0001"  # what TT_EX010a writes off against (document 9104)


class ResultTopic:
    """Customs' side: a subscriber to the bridge's result topic, started before the events."""

    def __init__(self, settings) -> None:
        self.subscriber = mqtt_endpoints.subscriber(
            settings, client_id=unique_client_id("customs"), topic=settings.mqtt_result_topic
        ).start()
        self.received: list[tuple[bytes, DeclarationResult]] = []

    def wait(self, count: int, timeout: float = 15.0) -> list[DeclarationResult]:
        """Every result so far, once at least `count` came; then none more may come."""
        deadline = time.monotonic() + timeout
        while len(self.received) < count:
            left = deadline - time.monotonic()
            assert left > 0, f"{len(self.received)} results of {count} came"
            self._take(left)
        self._take(0.3)
        return [result for _, result in self.received]

    def _take(self, wait: float) -> None:
        batch = self.subscriber.take(1000, 0.05, wait)
        self.subscriber.ack(batch)
        self.received += [(m.payload, parse_result(m.payload)) for m in batch]

    def answer(self, message_id: str) -> DeclarationResult:
        (found,) = [r for _, r in self.received if r.in_reply_to == message_id]
        return found

    def close(self) -> None:
        self.subscriber.close()


@pytest.fixture
def customs(mqtt_settings, engine):
    assert consume(mqtt_settings, engine, idle_seconds=0.1).messages == 0  # the session exists
    topic = ResultTopic(mqtt_settings)
    yield topic
    topic.close()


def declaration(
    wco_samples,
    *,
    quantity: str | None = "10.00",
    unit: str = "KGM#G",
    amount: str | None = None,
    currency: str = "GBP",
    code: str = "9104",
    reference: str = LICENCE,
    destination: str = "PK",
    exporter: str = EXPORTER,
    cn: str | None = None,
) -> str:
    """TT_EX010a with its licence document (and, given `cn`, its goods' CN code) changed as
    asked."""
    root = parse_xml((wco_samples / "TT_EX010a.xml").read_bytes())
    (document,) = root.xpath("//d:AdditionalDocument[d:ID='GBSIEE2E350001-0001']", namespaces=NS)
    document.find("d:CategoryCode", NS).text = code[0]
    document.find("d:TypeCode", NS).text = code[1:]
    document.find("d:ID", NS).text = reference
    write_off = document.find("d:WriteOff", NS)
    for child in list(write_off):
        write_off.remove(child)
    if quantity is not None:
        element = etree.SubElement(write_off, f"{{{NS['d']}}}QuantityQuantity", unitCode=unit)
        element.text = quantity
    if amount is not None:
        element = etree.SubElement(write_off, f"{{{NS['d']}}}AmountAmount", currencyID=currency)
        element.text = amount
    if cn is not None:
        (cn_element,) = root.xpath(
            "//d:Commodity/d:Classification[d:IdentificationTypeCode='TSP']/d:ID", namespaces=NS
        )
        cn_element.text = cn
    root.find(".//d:GoodsShipment/d:Destination/d:CountryCode", NS).text = destination
    root.find(".//d:Exporter/d:ID", NS).text = exporter
    return etree.tostring(root, encoding="unicode")


_mrns = iter(range(1, 10**6))


def event(
    payload: str | None,
    *,
    mrn: str | None = None,
    kind: str = "released",
    version: int = 1,
    message_id: str | None = None,
) -> tuple[str, bytes]:
    mrn = mrn or f"26GB{next(_mrns):014d}"
    message_id = message_id or f"{mrn}-{kind}-v{version}"
    if kind == "amended" and payload is not None:  # resent whole, as customs send it
        payload = as_amendment(payload).decode("utf-8")
    data = build_envelope(
        message_id=message_id,
        mrn=mrn,
        event=kind,
        event_time=RELEASED_AT,
        declaration_version=version,
        payload=payload,
    )
    return message_id, data


def run(settings, engine, *events: tuple[str, bytes]) -> ConsumeReport:
    publish_events(settings, [data for _, data in events])
    return consume(settings, engine, idle_seconds=0.6, max_seconds=30)


def line(
    number=1, quantity: str | None = "250", unit="KGM", value=None, cn=CN, destinations=("PK",)
):
    return LicenceLine(
        number,
        "1C011.b",
        "ammunition parts",
        cn,
        None if quantity is None else Decimal(quantity),
        unit if quantity is not None else None,
        None if value is None else Decimal(value),
        "GBP" if value is not None else None,
        destinations,
    )


def individual(*lines: LicenceLine, number=LICENCE, **changes) -> Licence:
    return uk_licence(number, EXPORTER, *(lines or (line(),)), **changes)


def general(authorisation: str | None, number: str, kind=LicenceType.UNION_GENERAL) -> Licence:
    # A registration has no ceiling; its line's unit is what usage is recorded in.
    return uk_licence(
        number,
        EXPORTER,
        replace(line(quantity=None, destinations=()), unit="KGM"),
        type=kind,
        general_authorisation=authorisation,
        valid_to=None,
    )


def balance(engine, number=LICENCE, line_number=1):
    with engine.connect() as conn:
        (row,) = [r for r in reconciliation_rows(conn, number) if r.line_number == line_number]
    return row


def refusal_codes(engine) -> list[str]:
    with engine.connect() as conn:
        return list(conn.execute(select(refusal.c.code).order_by(refusal.c.id)).scalars())


def only_document(result: DeclarationResult):
    (document,) = result.documents
    return document


def test_over_use_is_refused_whole_alerted_and_answered_with_the_balance(
    mqtt_settings, engine, wco_samples, customs
):
    store_licences(engine, [individual()])
    first = event(declaration(wco_samples, quantity="240"))
    second = event(declaration(wco_samples, quantity="20"))
    run(mqtt_settings, engine, first, second)

    assert balance(engine).remaining_quantity == 10  # 20 asked, 10 left: nothing written off
    assert refusal_codes(engine) == ["over-use"]
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(movement)).scalar_one() == 1
        (alert,) = list_alerts(conn, kind="over-use")
    assert (alert["licence_number"], alert["line_number"]) == (LICENCE, 1)
    assert alert["details"]["requested_quantity"] == "20"
    assert alert["details"]["remaining_quantity"] == "10"
    assert alert["mrn"] == json.loads(second[1])["mrn"]

    customs.wait(2)
    accepted = only_document(customs.answer(first[0]))
    assert (accepted.status, accepted.written_off.quantity) == (DocumentStatus.ACCEPTED, 240)
    answer = customs.answer(second[0])
    assert (answer.outcome, answer.message_id) == ("refused", f"{second[0]}:result")
    refused = only_document(answer)
    assert refused.status is DocumentStatus.REFUSED
    assert [r.code for r in refused.refusals] == ["over-use"]
    assert "20 KGM more exceeds the 10 KGM remaining" in refused.refusals[0].reason
    assert (refused.remaining.quantity, refused.remaining.unit) == (10, "KGM")
    assert refused.written_off is None
    with engine.connect() as conn:
        states = set(conn.execute(select(processed_message.c.result_state)).scalars())
    assert states == {"published"}


def test_amendment_10_to_7_leaves_7_and_a_stale_version_never_overwrites_a_newer_one(
    mqtt_settings, engine, wco_samples, customs
):
    store_licences(engine, [individual()])
    mrn = "26GBAMEND000000001"
    release = event(declaration(wco_samples, quantity="10"), mrn=mrn)
    amendment = event(declaration(wco_samples, quantity="7"), mrn=mrn, kind="amended", version=2)
    run(mqtt_settings, engine, release, amendment)
    assert balance(engine).written_off_quantity == 7

    newer = event(declaration(wco_samples, quantity="5"), mrn=mrn, kind="amended", version=4)
    late = event(declaration(wco_samples, quantity="99"), mrn=mrn, kind="amended", version=3)
    run(mqtt_settings, engine, newer)
    run(mqtt_settings, engine, late)
    assert balance(engine).written_off_quantity == 5

    customs.wait(4)
    amended = only_document(customs.answer(amendment[0]))
    assert (amended.status, amended.written_off.quantity, amended.remaining.quantity) == (
        DocumentStatus.ACCEPTED,
        7,
        243,
    )
    assert customs.answer(late[0]).outcome == "stale"
    assert customs.answer(late[0]).documents == ()
    with engine.connect() as conn:
        moves = conn.execute(select(movement.c.kind, movement.c.quantity)).all()
    assert [(kind, int(q)) for kind, q in moves] == [
        ("write_off", 10),
        ("adjustment", -3),
        ("adjustment", -2),
    ]


def test_an_amendment_before_its_release_is_held_then_applied(
    mqtt_settings, engine, wco_samples, customs
):
    store_licences(engine, [individual()])
    mrn = "26GBHELD0000000001"
    amendment = event(declaration(wco_samples, quantity="7"), mrn=mrn, kind="amended", version=2)
    run(mqtt_settings, engine, amendment)
    assert balance(engine).written_off_quantity == 0
    customs.wait(1)
    assert customs.answer(amendment[0]).message_id == f"{amendment[0]}:held"

    release = event(declaration(wco_samples, quantity="10"), mrn=mrn)
    run(mqtt_settings, engine, release)
    assert balance(engine).written_off_quantity == 7
    results = customs.wait(3)
    final = [r for r in results if r.message_id == f"{amendment[0]}:result"]
    assert [r.outcome for r in final] == ["applied"]
    assert only_document(final[0]).written_off.quantity == 7
    assert only_document(final[0]).remaining.quantity == 243
    assert only_document(customs.answer(release[0])).remaining.quantity == 240  # after it alone


def test_an_invalidation_before_its_declaration_ends_with_nothing_written_off(
    mqtt_settings, engine, wco_samples, customs
):
    store_licences(engine, [individual()])
    mrn = "26GBINVAL000000001"
    invalidation = event(None, mrn=mrn, kind="invalidated")
    release = event(declaration(wco_samples, quantity="10"), mrn=mrn)
    run(mqtt_settings, engine, invalidation)
    run(mqtt_settings, engine, release)
    assert balance(engine).written_off_quantity == 0
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(movement)).scalar_one() == 0
    customs.wait(2)
    assert customs.answer(invalidation[0]).outcome == "applied"
    assert customs.answer(release[0]).outcome == "ignored"

    # And the other way round: a release, then its invalidation, gives everything back.
    mrn = "26GBINVAL000000002"
    release = event(declaration(wco_samples, quantity="10"), mrn=mrn)
    invalidation = event(None, mrn=mrn, kind="invalidated")
    run(mqtt_settings, engine, release, invalidation)
    assert balance(engine).written_off_quantity == 0
    customs.wait(4)
    given_back = only_document(customs.answer(invalidation[0]))
    assert (given_back.status, given_back.written_off.quantity) == (DocumentStatus.REVERSED, 0)
    assert given_back.remaining.quantity == 250


def test_union_general_authorisations_record_usage_within_their_conditions(
    mqtt_settings, engine, wco_samples, customs
):
    eu001 = general("EU001", "GB-EU001-REG-1")
    store_licences(engine, [eu001, individual()])
    to_us = [
        event(declaration(wco_samples, code="X061", reference=eu001.number, quantity="5000",
                          destination="US"))
        for _ in range(2)
    ]  # fmt: skip
    to_pakistan = event(declaration(wco_samples, code="X061", reference=eu001.number))
    x061_on_an_individual_licence = event(declaration(wco_samples, code="X061"))
    eu002_code = event(
        declaration(wco_samples, code="X062", reference=eu001.number, destination="US")
    )
    run(mqtt_settings, engine, *to_us, to_pakistan, x061_on_an_individual_licence, eu002_code)

    row = balance(engine, eu001.number)
    assert (row.written_off_quantity, row.remaining_quantity) == (10000, None)
    with engine.connect() as conn:
        kinds = conn.execute(
            select(movement.c.kind).where(movement.c.licence_number == eu001.number)
        ).all()
        assert load_licences(conn, [eu001.number])[eu001.number].status is LicenceStatus.VALID
    assert [k for (k,) in kinds] == ["record", "record"]
    assert refusal_codes(engine) == [
        "destination-not-allowed",
        "document-type-mismatch",
        "document-type-mismatch",
    ]
    customs.wait(5)
    recorded = only_document(customs.answer(to_us[1][0]))
    assert (recorded.status, recorded.remaining) == (DocumentStatus.RECORDED, None)
    pakistan = only_document(customs.answer(to_pakistan[0])).refusals[0]
    assert (
        pakistan.code == "destination-not-allowed" and "EU001 covers exports to" in pakistan.reason
    )
    mismatch = only_document(customs.answer(x061_on_an_individual_licence[0])).refusals[0]
    assert "X061 is for a union_general licence" in mismatch.reason
    assert (
        "X062 stands for EU002" in only_document(customs.answer(eu002_code[0])).refusals[0].reason
    )
    assert balance(engine).written_off_quantity == 0


def test_national_general_authorisation_wrong_exporter_and_unknown_to_customs(
    mqtt_settings, engine, wco_samples, customs
):
    national = general("GB-OGEL-9", "GB-OGEL-REG-1", LicenceType.NATIONAL_GENERAL)
    store_licences(engine, [national, individual()])
    store_licences(engine, [individual(number="GB-NEVER-SENT")], known_to_customs=False)
    recorded = event(declaration(wco_samples, code="X071", reference=national.number))
    not_registered = event(
        declaration(wco_samples, code="X071", reference=national.number, exporter="GB000000000001")
    )
    not_holder = event(declaration(wco_samples, exporter="GB000000000001"))
    unknown_to_customs = event(declaration(wco_samples, reference="GB-NEVER-SENT"))
    run(mqtt_settings, engine, recorded, not_registered, not_holder, unknown_to_customs)

    assert refusal_codes(engine) == ["wrong-exporter", "wrong-exporter"]
    assert balance(engine, national.number).written_off_quantity == 10
    assert balance(engine).written_off_quantity == 0
    # Released against a licence customs never held: a contingency write-off (docs/contingency.md)
    assert balance(engine, "GB-NEVER-SENT").written_off_quantity == 10
    assert balance(engine, "GB-NEVER-SENT").contingency_movements == 1
    customs.wait(4)
    assert only_document(customs.answer(recorded[0])).status is DocumentStatus.RECORDED
    registered = only_document(customs.answer(not_registered[0])).refusals[0].reason
    assert "GB000000000001 is not registered for GB-OGEL-9" in registered
    never = only_document(customs.answer(unknown_to_customs[0]))
    assert never.status is DocumentStatus.ACCEPTED and never.warnings[0].code == "contingency"


def test_value_ceiling_and_both_ceilings(mqtt_settings, engine, wco_samples, customs):
    store_licences(
        engine,
        [
            individual(line(quantity=None, value="1000")),
            individual(line(quantity="20", value="1000"), number="GB-BOTH-1"),
        ],
    )
    by_value = event(declaration(wco_samples, quantity=None, amount="600"))
    over_value = event(declaration(wco_samples, quantity=None, amount="400.01"))
    quantity_on_value_line = event(declaration(wco_samples))
    both_ok = event(declaration(wco_samples, reference="GB-BOTH-1", amount="600"))
    value_exceeded = event(
        declaration(wco_samples, reference="GB-BOTH-1", quantity="5", amount="401")
    )
    quantity_exceeded = event(
        declaration(wco_samples, reference="GB-BOTH-1", quantity="11", amount="1")
    )
    run(
        mqtt_settings,
        engine,
        by_value,
        over_value,
        quantity_on_value_line,
        both_ok,
        value_exceeded,
        quantity_exceeded,
    )
    assert refusal_codes(engine) == ["over-use", "unit-mismatch", "over-use", "over-use"]
    assert balance(engine).remaining_value == 400
    both = balance(engine, "GB-BOTH-1")
    assert (both.remaining_quantity, both.remaining_value) == (10, 400)
    customs.wait(6)
    left = only_document(customs.answer(value_exceeded[0])).remaining
    assert (left.quantity, left.unit, left.value, left.currency) == (10, "KGM", 400, "GBP")
    assert "401 GBP more exceeds the 400 GBP" in (
        only_document(customs.answer(value_exceeded[0])).refusals[0].reason
    )
    assert "11 KGM more exceeds the 10 KGM" in (
        only_document(customs.answer(quantity_exceeded[0])).refusals[0].reason
    )


def test_kgm_against_a_grm_line_converts_exactly_and_against_a_nar_line_is_refused(
    mqtt_settings, engine, wco_samples, customs
):
    store_licences(
        engine,
        [
            individual(line(quantity="5000", unit="GRM"), number="GB-GRAMS-1"),
            individual(line(quantity="40", unit="NAR"), number="GB-ITEMS-1"),
        ],
    )
    grams = event(declaration(wco_samples, reference="GB-GRAMS-1", quantity="1.234567"))
    items = event(declaration(wco_samples, reference="GB-ITEMS-1", quantity="2", unit="KGM"))
    run(mqtt_settings, engine, grams, items)
    assert balance(engine, "GB-GRAMS-1").written_off_quantity == Decimal("1234.567")
    assert balance(engine, "GB-ITEMS-1").written_off_quantity == 0
    assert refusal_codes(engine) == ["unit-mismatch"]
    customs.wait(2)
    converted = only_document(customs.answer(grams[0]))
    assert (converted.written_off.quantity, converted.written_off.unit) == (
        Decimal("1234.567"),
        "GRM",
    )
    assert converted.remaining.quantity == Decimal("3765.433")
    refused = only_document(customs.answer(items[0])).refusals[0]
    assert "KGM (mass) does not convert to NAR (items)" in refused.reason


def test_a_suspended_licence_refuses_and_reinstated_accepts(
    mqtt_settings, engine, wco_samples, customs
):
    store_licences(engine, [individual()])
    with engine.begin() as conn:
        change_status(
            conn,
            LICENCE,
            LicenceStatus.SUSPENDED,
            reason="inquiry",
            actor="officer",
            now=RELEASED_AT,
        )
    while_suspended = event(declaration(wco_samples))
    run(mqtt_settings, engine, while_suspended)
    assert refusal_codes(engine) == ["licence-not-valid"]
    with engine.begin() as conn:
        change_status(
            conn, LICENCE, LicenceStatus.VALID, reason="cleared", actor="officer", now=RELEASED_AT
        )
    after = event(declaration(wco_samples))
    run(mqtt_settings, engine, after)
    assert balance(engine).written_off_quantity == 10
    customs.wait(2)
    suspended = only_document(customs.answer(while_suspended[0])).refusals[0]
    assert suspended.code == "licence-not-valid" and "is suspended" in suspended.reason
    assert only_document(customs.answer(after[0])).status is DocumentStatus.ACCEPTED


def test_a_licence_used_up_is_exhausted_and_valid_again_when_quantity_comes_back(
    mqtt_settings, engine, wco_samples, customs
):
    store_licences(engine, [individual(line(quantity="10"))])
    mrn = "26GBEXHAUST0000001"
    using_it_up = event(declaration(wco_samples, quantity="10"), mrn=mrn)
    one_more = event(declaration(wco_samples, quantity="1"))
    report = run(mqtt_settings, engine, using_it_up, one_more)
    assert report.status_changes == 1

    with engine.connect() as conn:
        assert load_licences(conn, [LICENCE])[LICENCE].status is LicenceStatus.EXHAUSTED
        status_rows = [r for r in outbox_rows(conn, LICENCE) if r["kind"] == "status"]
        (alert,) = list_alerts(conn, kind="exhausted")
    assert len(status_rows) == 1 and "exhausted" in status_rows[0]["document"]
    assert status_rows[0]["status"] == "pending"  # customs get it from the outbox (SOAP)
    assert mrn in alert["message"]
    assert refusal_codes(engine) == ["licence-not-valid", "over-use"]
    customs.wait(2)
    assert "is exhausted" in only_document(customs.answer(one_more[0])).refusals[0].reason

    run(mqtt_settings, engine, event(None, mrn=mrn, kind="invalidated"))
    with engine.connect() as conn:
        assert load_licences(conn, [LICENCE])[LICENCE].status is LicenceStatus.VALID
        statuses = [r["document"] for r in outbox_rows(conn, LICENCE) if r["kind"] == "status"]
    assert len(statuses) == 2 and "valid" in statuses[1]


def test_results_survive_a_crash_between_commit_and_publication(
    mqtt_settings, engine, wco_samples, customs
):
    store_licences(engine, [individual()])
    release = event(declaration(wco_samples))
    publish_events(mqtt_settings, [release[1]])
    subscriber = mqtt_endpoints.subscriber(mqtt_settings).start()
    batch = subscriber.take(10, 0.2, 5.0)
    store_batch(mqtt_settings, engine, batch, threading.Event(), ConsumeReport())
    subscriber.close()  # the crash: committed, neither acked nor published
    with engine.connect() as conn:
        (state,) = conn.execute(select(processed_message.c.result_state)).scalars()
    assert state == "pending"
    assert customs.wait(0) == []

    consume(mqtt_settings, engine, idle_seconds=0.6, max_seconds=30)  # restart
    results = customs.wait(2)
    # The pending result at start, and the redelivered event answered again: the same message.
    assert [r.message_id for r in results] == [f"{release[0]}:result"] * 2
    assert customs.received[0][0] == customs.received[1][0]
    assert balance(engine).written_off_quantity == 10
    with engine.connect() as conn:
        (state,) = conn.execute(select(processed_message.c.result_state)).scalars()
    assert state == "published"

    publish_events(mqtt_settings, [release[1]])  # customs send it once more, later
    consume(mqtt_settings, engine, idle_seconds=0.6, max_seconds=30)
    customs.wait(3)
    assert customs.received[2][0] == customs.received[0][0]  # never a different result
    assert balance(engine).written_off_quantity == 10


def test_an_unreadable_message_is_answered_quarantined(mqtt_settings, engine, customs):
    broken = json.dumps({"envelope": "elbridge.declaration-event/1", "message_id": "bad-1"})
    run(mqtt_settings, engine, ("bad-1", broken.encode()), ("-", b"not json at all"))
    (answer,) = customs.wait(1)
    assert (answer.in_reply_to, answer.outcome, answer.mrn) == ("bad-1", "quarantined", None)
    assert "mrn must be a string" in answer.detail


def test_a_quarantined_result_names_the_mrn_and_event_and_figures_are_plain_decimals(
    mqtt_settings, engine, wco_samples, customs
):
    store_licences(engine, [individual()])
    mrn = "26GBPLAINDECIMAL01"
    release = event(declaration(wco_samples, quantity="10.00"), mrn=mrn)
    # An amendment (FunctionCode 13, TypeCode COR) sent as `released`: refused, never applied.
    mislabelled = event(
        as_amendment(declaration(wco_samples, quantity="99")).decode("utf-8"),
        mrn=mrn,
        kind="released",
        version=2,
    )
    run(mqtt_settings, engine, release, mislabelled)
    # Over the ceiling: refused, the earlier 10 stands, as the ledger reads it back (1E+1).
    too_much = event(declaration(wco_samples, quantity="999"), mrn=mrn, kind="amended", version=3)
    run(mqtt_settings, engine, too_much)
    customs.wait(3)
    released, quarantined, refused = (
        customs.answer(m) for m, _ in (release, mislabelled, too_much)
    )
    assert (quarantined.outcome, quarantined.mrn, quarantined.event) == (
        "quarantined",
        mrn,
        "released",
    )
    assert "says released but the payload is an amendment" in quarantined.detail
    assert refused.outcome == "refused"
    raw = {result.in_reply_to: payload for payload, result in customs.received}
    written_off_10 = b'"written_off":{"quantity":"10","unit":"KGM"'
    assert written_off_10 in raw[release[0]] and written_off_10 in raw[too_much[0]]
    assert not [r for r in raw.values() if b"E+" in r or b"E-" in r]
    assert released.documents[0].written_off.quantity == 10
    assert balance(engine).written_off_quantity == 10


def test_ledger_figures_stay_exact_over_many_events(mqtt_settings, engine, wco_samples, customs):
    store_licences(engine, [individual(line(quantity="1"))])
    events = [event(declaration(wco_samples, quantity="0.1")) for _ in range(12)]
    run(mqtt_settings, engine, *events)
    row = balance(engine)
    assert (row.written_off_quantity, row.remaining_quantity) == (1, 0)
    results = customs.wait(12)
    assert [r.outcome for r in results].count("refused") == 2
    with engine.connect() as conn:
        assert load_licences(conn, [LICENCE])[LICENCE].status is LicenceStatus.EXHAUSTED


def test_licences_in_the_past_are_refused_outside_validity(
    mqtt_settings, engine, wco_samples, customs
):
    store_licences(engine, [individual(valid_to=date(2026, 3, 1))])
    late = event(declaration(wco_samples))
    run(mqtt_settings, engine, late)
    assert refusal_codes(engine) == ["outside-validity"]
    (answer,) = customs.wait(1)
    assert "outside licence" in only_document(answer).refusals[0].reason
    assert replace(answer, documents=()).outcome == "refused"
    assert answer.processed_at.tzinfo is not None and answer.processed_at <= datetime.now(UTC)

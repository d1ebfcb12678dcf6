"""The MQTT event envelope: building, reading, and every way a message can be refused."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest

from bridge.core.envelope import (
    Balance,
    DeclarationResult,
    DocumentResult,
    DocumentStatus,
    EnvelopeHints,
    EventKind,
    build_envelope,
    build_result,
    envelope_hints,
    mrn_from_lrn,
    mrn_problem,
    parse_envelope,
    read_event,
)
from bridge.core.errors import Rejected
from bridge.services.customs_events import envelope_for_declaration_file
from bridge.testkit.amendments import as_amendment
from bridge.testkit.envelopes import ENVELOPE_MEMBERS, envelope_document

MAX = 1024 * 1024
CET = timezone(timedelta(hours=1))


def _envelope(**changes) -> dict:
    invalidation = {
        "message_id": "msg-1",
        "mrn": "24GBDIRIGZ7QLCPAA8",
        "event": "invalidated",
        "event_time": "2026-03-02T10:30:00+01:00",
    }
    return envelope_document(**(invalidation | changes))


def test_build_and_parse_round_trip(wco_samples):
    payload = (wco_samples / "TT_EX010a.xml").read_text(encoding="utf-8")
    moment = datetime(2026, 3, 2, 10, 30, tzinfo=CET)
    data = build_envelope(
        message_id="msg-42",
        mrn="24GBDIRIGZ7QLCPAA8",
        event="amended",
        event_time=moment,
        declaration_version=3,
        payload=payload,
        country="GB",
    )
    envelope = parse_envelope(data, max_bytes=MAX)
    assert envelope.message_id == "msg-42"
    assert envelope.event is EventKind.AMENDED
    assert envelope.event_time == moment and envelope.event_time.utcoffset() == timedelta(hours=1)
    assert (envelope.declaration_version, envelope.country) == (3, "GB")
    assert envelope.payload == payload
    assert json.loads(data)["envelope"] == "elbridge.declaration-event/1"


def test_every_envelope_problem_is_reported_at_once():
    data = json.dumps(
        _envelope(
            envelope="something/2",
            message_id="",
            mrn="24GB-short",
            event="cleared",
            event_time="2026-03-02T10:30:00",
            declaration_version=0,
            country="EL",
            payload_format="xml",
            payload=42,
        )
    ).encode()
    with pytest.raises(Rejected) as caught:
        parse_envelope(data, max_bytes=MAX, source="topic#7")
    paths = sorted(p.path for p in caught.value.problems)
    assert paths == sorted(ENVELOPE_MEMBERS)
    reasons = {p.path: p.reason for p in caught.value.problems}
    assert "zone" in reasons["event_time"]
    assert "GR" in reasons["country"]
    assert all(p.source == "topic#7" for p in caught.value.problems)


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"not json at all", "not a JSON document"),
        (b"[1, 2]", "not an object"),
        (b'{"mrn": "a", "mrn": "b"}', "appears twice"),
        (b"\xff\xfe{}", "not UTF-8"),
        (b"[" * 100000 + b"]" * 100000, "not a JSON document"),
    ],
)
def test_unreadable_messages_say_why(data, reason):
    with pytest.raises(Rejected) as caught:
        parse_envelope(data, max_bytes=MAX)
    assert reason in str(caught.value)


def test_size_is_checked_before_parsing():
    data = b"{" + b" " * 2000  # not even JSON: the size alone refuses it
    with pytest.raises(Rejected) as caught:
        parse_envelope(data, max_bytes=1000)
    (problem,) = caught.value.problems
    assert "over the limit of 1000" in problem.reason


def test_booleans_are_not_versions_and_released_needs_a_payload():
    data = json.dumps(_envelope(event="released", declaration_version=True)).encode()
    with pytest.raises(Rejected) as caught:
        parse_envelope(data, max_bytes=MAX)
    assert {p.path for p in caught.value.problems} == {"declaration_version", "payload"}


def test_invalidation_may_come_without_payload():
    event = read_event(json.dumps(_envelope()).encode(), max_bytes=MAX)
    assert event.declaration is None
    assert (event.kind, event.version, event.mrn) == (EventKind.INVALIDATED, 1, event.mrn)
    assert event.envelope.event_time.astimezone(UTC).hour == 9


def test_envelope_mrn_must_agree_with_declaration_id(wco_samples):
    cancellation = (wco_samples / "TT_EX010a_Cancellation.xml").read_text()
    data = json.dumps(_envelope(mrn="24GBAAAAAAAAAAAAA1", payload=cancellation)).encode()
    with pytest.raises(Rejected) as caught:
        read_event(data, max_bytes=MAX)
    (problem,) = caught.value.problems
    assert problem.code == "mrn-mismatch"
    assert "24GBDIRIGZ7QLCPAA8" in problem.reason

    agreeing = json.dumps(_envelope(payload=cancellation)).encode()
    event = read_event(agreeing, max_bytes=MAX)
    assert event.declaration.is_cancellation
    assert event.country == "GB"  # from the declaration's metadata


def test_a_release_cannot_carry_a_cancellation_nor_another_country(wco_samples):
    cancellation = (wco_samples / "TT_EX010a_Cancellation.xml").read_text()
    data = json.dumps(_envelope(event="released", payload=cancellation, country="FR")).encode()
    with pytest.raises(Rejected) as caught:
        read_event(data, max_bytes=MAX)
    assert {p.code for p in caught.value.problems} == {"event-mismatch", "country-mismatch"}


def test_declaration_problems_carry_the_message_id_as_source(wco_samples):
    # TT_EX004a's X002 (goods item 2, AdditionalDocument[5]): an EU dual-use document.
    broken = (wco_samples / "TT_EX004a.xml").read_text().replace(">102.00<", ">102,00<")
    data = json.dumps(_envelope(event="released", payload=broken, message_id="m-77")).encode()
    with pytest.raises(Rejected) as caught:
        read_event(data, max_bytes=MAX)
    (problem,) = caught.value.problems
    assert problem.source == "m-77"
    assert problem.path.endswith("AdditionalDocument[5]/WriteOff/QuantityQuantity")


def test_a_problem_on_a_national_code_is_left_to_the_rules(wco_samples):
    # TT_EX010a quotes no EU dual-use code; its 9104 is a licence only where a deployment's
    # national table says so: the reader keeps the problem on the document, refuses nothing.
    broken = (wco_samples / "TT_EX010a.xml").read_text().replace(">10.00<", ">10,00<")
    data = json.dumps(_envelope(event="released", payload=broken, message_id="m-78")).encode()
    event = read_event(data, max_bytes=MAX)
    (document,) = [d for d in event.declaration.goods_items[0].documents if d.problems]
    assert (document.document_code, document.quantity) == ("9104", None)
    assert [p.code for p in document.problems] == ["bad-quantity"]


def test_naive_event_time_cannot_be_built():
    with pytest.raises(ValueError, match="time zone"):
        build_envelope(
            message_id="m",
            mrn="24GBDIRIGZ7QLCPAA8",
            event="released",
            event_time=datetime(2026, 1, 1),
        )


def test_derived_mrn_is_deterministic_and_well_formed():
    first = mrn_from_lrn("TTEX004a_1010WE", year=2026, country="GB")
    assert first == mrn_from_lrn("TTEX004a_1010WE", year=2026, country="GB")
    assert first != mrn_from_lrn("TTEX004a_1010WF", year=2026, country="GB")
    assert first.startswith("26GB") and len(first) == 18
    assert mrn_problem(first) is None
    assert mrn_problem("24GBDIRIGZ7QLCPAA8") is None
    assert mrn_problem("24gbdirigz7qlcpaa8") is not None


def test_envelope_for_a_sample_file(wco_samples):
    at = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)
    data = envelope_for_declaration_file(
        wco_samples / "TT_EX004a.xml", event="released", event_time=at
    )
    event = read_event(data, max_bytes=MAX)
    expected_mrn = mrn_from_lrn("TTEX004a_1010WE", year=2026, country="GB")
    assert event.mrn == expected_mrn
    assert event.message_id == f"{expected_mrn}-released-v1"
    assert event.declaration.lrn == "TTEX004a_1010WE"

    cancellation = envelope_for_declaration_file(
        wco_samples / "TT_EX010a_Cancellation.xml", event="invalidated", event_time=at
    )
    assert read_event(cancellation, max_bytes=MAX).mrn == "24GBDIRIGZ7QLCPAA8"

    given = envelope_for_declaration_file(
        wco_samples / "TT_EX010a.xml",
        event="amended",
        mrn="24GBDIRIGZ7QLCPAA8",
        version=2,
        event_time=at,
        message_id="custom",
    )
    assert json.loads(given)["message_id"] == "custom"
    assert json.loads(given)["declaration_version"] == 2


@pytest.mark.parametrize("message_id", ["m-\x00-1", "m\t1", "m\n1", "m-\x1b", "m-\x7f", "m-\x85"])
def test_a_message_id_with_a_control_character_is_refused(message_id):
    """PostgreSQL text holds no NUL, and an id is a key people read and type: no control
    character at all."""
    data = json.dumps(_envelope(message_id=message_id)).encode()
    with pytest.raises(Rejected) as caught:
        parse_envelope(data, max_bytes=MAX)
    (problem,) = caught.value.problems
    assert (problem.path, problem.code) == ("message_id", "bad-envelope")
    assert "control character" in problem.reason


@pytest.mark.parametrize("version", [0, -1, 2**31, 2**63, 10**30])
def test_a_version_the_ledger_cannot_hold_is_refused(version):
    data = json.dumps(_envelope(declaration_version=version)).encode()
    with pytest.raises(Rejected) as caught:
        parse_envelope(data, max_bytes=MAX)
    (problem,) = caught.value.problems
    assert problem.path == "declaration_version"
    assert "from 1 to 2147483647" in problem.reason


def test_the_largest_version_the_ledger_holds_is_accepted():
    data = json.dumps(_envelope(declaration_version=2**31 - 1)).encode()
    assert parse_envelope(data, max_bytes=MAX).declaration_version == 2**31 - 1


def test_a_payload_with_a_lone_surrogate_is_refused_not_crashed_on(wco_samples):
    """A JSON escape such as \\ud800 is no character: the payload cannot become UTF-8 XML. It
    once escaped read_event as UnicodeEncodeError and stopped the consumer."""
    payload = (wco_samples / "TT_EX004a.xml").read_text().replace("Sniper", "Sni\ud800per", 1)
    document = _envelope(event="released", payload=payload)
    data = json.dumps(document, ensure_ascii=True).encode("ascii")
    with pytest.raises(Rejected) as caught:
        read_event(data, max_bytes=MAX)
    (problem,) = caught.value.problems
    assert problem.path == "payload"
    assert "lone surrogate (U+D800)" in problem.reason


# The event kind, from the declaration -----------------------------------------------------

TT_EX010A_MRN = "24GBDIRIGZ7QLCPAA8"


def _payloads(wco_samples) -> dict[str, str]:
    original = (wco_samples / "TT_EX010a.xml").read_text(encoding="utf-8")
    return {
        "released": original,
        "amended": as_amendment(original).decode("utf-8"),
        "invalidated": (wco_samples / "TT_EX010a_Cancellation.xml").read_text(encoding="utf-8"),
    }


def test_without_event_the_kind_is_the_declarations(wco_samples):
    for kind, payload in _payloads(wco_samples).items():
        data = json.dumps(
            _envelope(event=None, payload=payload, mrn=TT_EX010A_MRN, message_id=kind)
        ).encode()
        assert "event" not in json.loads(data)
        assert read_event(data, max_bytes=MAX).kind is EventKind(kind)


@pytest.mark.parametrize("sent", list(EventKind))
@pytest.mark.parametrize("payload_kind", list(EventKind))
def test_an_event_the_payload_contradicts_is_refused_naming_both(wco_samples, sent, payload_kind):
    payload = _payloads(wco_samples)[payload_kind]
    document = _envelope(event=str(sent), payload=payload, mrn=TT_EX010A_MRN)
    data = json.dumps(document).encode()
    if sent is payload_kind:
        assert read_event(data, max_bytes=MAX).kind is sent
        return
    with pytest.raises(Rejected) as caught:
        read_event(data, max_bytes=MAX)
    (problem,) = caught.value.problems
    assert problem.code == "event-mismatch"
    assert f"says {sent}" in problem.reason and f"which is {payload_kind}" in problem.reason


def test_without_event_a_message_needs_its_payload():
    data = json.dumps(_envelope(event=None)).encode()
    with pytest.raises(Rejected) as caught:
        read_event(data, max_bytes=MAX)
    assert "without event, the message carries the declaration" in str(caught.value)


def test_an_unreadable_message_still_tells_its_mrn_and_event(wco_samples):
    amendment = _payloads(wco_samples)["amended"]
    mislabelled = json.dumps(
        _envelope(event="released", payload=amendment, mrn=TT_EX010A_MRN, message_id="m-9")
    ).encode()
    assert envelope_hints(mislabelled, max_bytes=MAX) == EnvelopeHints(
        "m-9", TT_EX010A_MRN, "released"
    )
    unlabelled = json.dumps(
        _envelope(event=None, payload=amendment, mrn=TT_EX010A_MRN, message_id="m-10")
    ).encode()
    assert envelope_hints(unlabelled, max_bytes=MAX).event == "amended"
    assert envelope_hints(b"not json", max_bytes=MAX) == EnvelopeHints()
    bad_mrn = json.dumps(_envelope(event=None, payload=amendment, mrn="nonsense")).encode()
    assert envelope_hints(bad_mrn, max_bytes=MAX).mrn is None


def test_result_figures_are_plain_decimals():
    result = DeclarationResult(
        message_id="m:result",
        in_reply_to="m",
        outcome="applied",
        processed_at=datetime(2026, 3, 2, tzinfo=UTC),
        documents=(
            DocumentResult(
                1,
                "X002",
                "LIC-1",
                DocumentStatus.ACCEPTED,
                written_off=Balance(Decimal("1E+1"), "KGM", Decimal("0E-6"), "EUR"),
                remaining=Balance(Decimal("1.2300E+3"), "KGM", Decimal("-0"), "EUR"),
            ),
        ),
    )
    (document,) = json.loads(build_result(result))["documents"]
    assert document["written_off"] | document["remaining"] == {
        "quantity": "1230",
        "unit": "KGM",
        "value": "0",
        "currency": "EUR",
    }
    assert document["written_off"]["quantity"] == "10"

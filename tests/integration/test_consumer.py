"""The write-off service end to end: real mosquitto, a real ledger (SQLite and PostgreSQL), real
samples."""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from dataclasses import replace
from pathlib import Path

import pytest
from sqlalchemy import create_engine, func, select

from bridge.adapters.store.reconciliation import reconciliation_rows
from bridge.adapters.store.schema import metadata, movement, processed_message, quarantine, refusal
from bridge.core.envelope import build_envelope, mrn_from_lrn
from bridge.services.consumer import ConsumeReport, consume, store_batch
from bridge.services.customs_events import envelope_for_declaration_file, publish_events
from bridge.services.mqtt_endpoints import subscriber
from bridge.testkit.amendments import as_amendment
from tests.fixtures_mqtt import (
    RELEASED_AT,
    TT_EX010A_MRN,
    store_licences,
    tt_ex004a_licences,
    tt_ex010a_licence,
)

X002_LICENCE = "GBSIEXYK3ZZZPADR-0002"
TT_EX010A_LICENCE = "GBSIEE2E350001-0001"


def _open_session(settings, engine) -> None:
    """Connect once so that the broker keeps what is published for this client id."""
    report = consume(settings, engine, idle_seconds=0.1)
    assert report.messages == 0


def _drain(settings, engine, **kwargs):
    kwargs.setdefault("idle_seconds", 0.6)
    kwargs.setdefault("max_seconds", 30)
    return consume(settings, engine, **kwargs)


def _remaining(engine, number: str, line: int = 1):
    with engine.connect() as conn:
        (balance,) = [b for b in reconciliation_rows(conn, number) if b.line_number == line]
    return balance.remaining_quantity


def _envelope(wco_samples: Path, name: str, **kwargs) -> bytes:
    kwargs.setdefault("event_time", RELEASED_AT)
    return envelope_for_declaration_file(wco_samples / name, **kwargs)


def _refusal_codes(engine) -> list[str]:
    with engine.connect() as conn:
        return list(conn.execute(select(refusal.c.code).order_by(refusal.c.id)).scalars())


def test_tt_ex004a_x002_leaves_398_and_redelivery_changes_nothing(
    mqtt_settings, engine, wco_samples
):
    store_licences(engine, tt_ex004a_licences())
    _open_session(mqtt_settings, engine)
    released = _envelope(wco_samples, "TT_EX004a.xml", event="released")
    same_event_new_id = _envelope(
        wco_samples, "TT_EX004a.xml", event="released", message_id="a-second-message-id"
    )

    publish_events(mqtt_settings, [released, released, same_event_new_id])
    report = _drain(mqtt_settings, engine)

    assert (report.messages, report.applied, report.duplicates) == (3, 1, 2)
    assert _remaining(engine, X002_LICENCE) == 398
    assert _remaining(engine, "GBSIEXYK3ZZZ-0001", 1) == 95
    assert _remaining(engine, "GBSIEXYK3ZZZ-0001", 2) == 95

    publish_events(mqtt_settings, [released])  # and once more, in a later batch
    assert _drain(mqtt_settings, engine).duplicates == 1
    assert _remaining(engine, X002_LICENCE) == 398
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(movement)).scalar_one() == 3
        recorded = dict(
            conn.execute(select(processed_message.c.message_id, processed_message.c.outcome)).all()
        )
    assert recorded == {
        json.loads(released)["message_id"]: "applied",
        "a-second-message-id": "duplicate",
    }


def test_release_then_cancellation_gives_the_quantity_back(mqtt_settings, engine, wco_samples):
    store_licences(engine, [tt_ex010a_licence()])
    _open_session(mqtt_settings, engine)

    publish_events(
        mqtt_settings,
        [_envelope(wco_samples, "TT_EX010a.xml", event="released", mrn=TT_EX010A_MRN)],
    )
    _drain(mqtt_settings, engine)
    assert _remaining(engine, TT_EX010A_LICENCE) == 240

    cancellation = _envelope(wco_samples, "TT_EX010a_Cancellation.xml", event="invalidated")
    publish_events(mqtt_settings, [cancellation])
    report = _drain(mqtt_settings, engine)
    assert report.applied == 1
    assert _remaining(engine, TT_EX010A_LICENCE) == 250


def test_cancellation_before_release_writes_nothing_off(mqtt_settings, engine, wco_samples):
    store_licences(engine, [tt_ex010a_licence()])
    _open_session(mqtt_settings, engine)
    cancellation = _envelope(wco_samples, "TT_EX010a_Cancellation.xml", event="invalidated")
    late_release = _envelope(wco_samples, "TT_EX010a.xml", event="released", mrn=TT_EX010A_MRN)

    publish_events(mqtt_settings, [cancellation, late_release])
    report = _drain(mqtt_settings, engine)

    assert (report.applied, report.ignored) == (1, 1)
    assert _remaining(engine, TT_EX010A_LICENCE) == 250
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(movement)).scalar_one() == 0


def test_amendment_from_10_to_7_leaves_7(mqtt_settings, engine, wco_samples, tmp_path):
    store_licences(engine, [tt_ex010a_licence()])
    _open_session(mqtt_settings, engine)
    amended_file = tmp_path / "TT_EX010a_amended.xml"
    amended_file.write_bytes(
        as_amendment(
            (wco_samples / "TT_EX010a.xml")
            .read_text()
            .replace(">10.00</QuantityQuantity>", ">7</QuantityQuantity>")
        )
    )
    release = _envelope(wco_samples, "TT_EX010a.xml", event="released", mrn=TT_EX010A_MRN)
    amendment = envelope_for_declaration_file(
        amended_file, event="amended", mrn=TT_EX010A_MRN, version=2, event_time=RELEASED_AT
    )

    publish_events(mqtt_settings, [release, amendment])
    _drain(mqtt_settings, engine)

    assert _remaining(engine, TT_EX010A_LICENCE) == 243
    with engine.connect() as conn:
        moves = conn.execute(select(movement.c.kind, movement.c.quantity)).all()
    assert [(kind, int(quantity)) for kind, quantity in moves] == [
        ("write_off", 10),
        ("adjustment", -3),
    ]


def test_declaration_without_licence_is_ignored_not_quarantined(mqtt_settings, engine, wco_samples):
    _open_session(mqtt_settings, engine)
    publish_events(mqtt_settings, [_envelope(wco_samples, "TT_EX001a.xml", event="released")])
    report = _drain(mqtt_settings, engine)
    assert (report.ignored, report.quarantined) == (1, 0)
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(quarantine)).scalar_one() == 0


def test_over_use_and_wrong_exporter_are_refused_whole(mqtt_settings, engine, wco_samples):
    store_licences(
        engine,
        [
            tt_ex010a_licence(quantity="5"),
            replace(tt_ex004a_licences()[0], holder_eori="GB123456789000"),
        ],
    )
    _open_session(mqtt_settings, engine)
    publish_events(
        mqtt_settings,
        [
            _envelope(wco_samples, "TT_EX010a.xml", event="released", mrn=TT_EX010A_MRN),
            _envelope(wco_samples, "TT_EX004a.xml", event="released"),
        ],
    )
    report = _drain(mqtt_settings, engine)
    assert report.refused == 2
    assert _remaining(engine, TT_EX010A_LICENCE) == 5  # 10 asked, 5 left: nothing written off
    assert _remaining(engine, X002_LICENCE) == 500
    codes = _refusal_codes(engine)
    assert codes.count("over-use") == 1
    assert codes.count("wrong-exporter") == 1
    assert codes.count("licence-unknown") == 2  # TT_EX004a's 9104 licence is not in this ledger


BILLION_LAUGHS = (
    '<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
    '<!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">'
    '<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">'
    '<!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">]>'
    '<Declaration xmlns="urn:wco:datamodel:WCO:DEC-DMS:2"><FunctionalReferenceID>&lol4;'
    "</FunctionalReferenceID></Declaration>"
)
EXTERNAL_ENTITY = (
    '<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]>'
    '<Declaration xmlns="urn:wco:datamodel:WCO:DEC-DMS:2"><FunctionCode>9</FunctionCode>'
    "<Exporter><ID>&e;</ID></Exporter></Declaration>"
)


def test_unreadable_messages_are_quarantined_and_their_neighbours_go_through(
    mqtt_settings, engine, wco_samples
):
    store_licences(engine, [tt_ex010a_licence()])
    _open_session(mqtt_settings, engine)

    def carrying(payload: str, mrn: str) -> bytes:
        return build_envelope(
            message_id=f"bad-{mrn}",
            mrn=mrn,
            event="released",
            event_time=RELEASED_AT,
            payload=payload,
        )

    bad_xml = (wco_samples / "TT_EX010a.xml").read_text().replace("</Declaration>", "")
    unreadable = [
        b"this is not JSON",
        carrying(bad_xml, "26GBQQQQQQQQQQQQQ1"),
        carrying(EXTERNAL_ENTITY, "26GBQQQQQQQQQQQQQ2"),
        carrying(BILLION_LAUGHS, "26GBQQQQQQQQQQQQQ3"),
    ]
    good = _envelope(wco_samples, "TT_EX010a.xml", event="released", mrn=TT_EX010A_MRN)
    ignored = _envelope(wco_samples, "TT_EX001a.xml", event="released")

    publish_events(mqtt_settings, [unreadable[0], good, *unreadable[1:], ignored])
    report = _drain(mqtt_settings, engine, idle_seconds=1.0)

    assert report.batches == 1  # all in one batch, one transaction
    assert (report.messages, report.quarantined, report.applied, report.ignored) == (6, 4, 1, 1)
    assert _remaining(engine, TT_EX010A_LICENCE) == 240
    with engine.connect() as conn:
        rows = conn.execute(select(quarantine).order_by(quarantine.c.id)).all()
        outcomes = list(
            conn.execute(
                select(processed_message.c.outcome).where(
                    processed_message.c.outcome == "quarantined"
                )
            ).scalars()
        )
    assert [bytes(row.payload) for row in rows] == unreadable  # kept byte for byte
    assert len(outcomes) == 4
    reasons = [row.reason for row in rows]
    assert "not a JSON document" in reasons[0]
    assert "not well-formed" in reasons[1]
    assert "DTD or entities" in reasons[2] and "DTD or entities" in reasons[3]
    assert [row.message_id for row in rows] == [
        None,
        *(f"bad-26GBQQQQQQQQQQQQQ{n}" for n in (1, 2, 3)),
    ]
    # The external entity was never resolved: nothing of /etc/passwd is anywhere in the ledger.
    passwd = Path("/etc/passwd").read_text().splitlines()[0]
    with engine.connect() as conn:
        dump = "\n".join(
            repr(row) for table in metadata.sorted_tables for row in conn.execute(select(table))
        )
    assert passwd not in dump and json.loads(good)["message_id"] in dump

    publish_events(mqtt_settings, [unreadable[0]])  # the same bytes again: stored once
    assert _drain(mqtt_settings, engine).duplicates == 1
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(quarantine)).scalar_one() == 4


@pytest.mark.sqlite_only  # an outage made with SQLite's write lock
def test_nothing_is_acked_while_the_ledger_is_unavailable(mqtt_settings, engine, wco_samples):
    store_licences(engine, [tt_ex010a_licence()])
    _open_session(mqtt_settings, engine)
    # An engine that gives up on a locked database after 0.1 s instead of waiting 30 s.
    impatient = create_engine(str(engine.url), connect_args={"timeout": 0.1})
    events = [
        _envelope(
            wco_samples,
            "TT_EX010a.xml",
            event="released",
            mrn=mrn_from_lrn(f"outage-{n}", year=2026, country="GB"),
        )
        for n in range(3)
    ]
    locker = sqlite3.connect(engine.url.database, isolation_level=None)
    locker.execute("BEGIN IMMEDIATE")  # another writer holds the database
    try:
        publish_events(mqtt_settings, events)
        stop = threading.Event()
        stopped: list = []
        worker = threading.Thread(
            target=lambda: stopped.append(consume(mqtt_settings, impatient, stop=stop))
        )
        worker.start()
        time.sleep(1.5)
        stop.set()  # give up while the database is still locked
        worker.join(10)
    finally:
        locker.execute("ROLLBACK")
        locker.close()
    (report,) = stopped
    assert report.messages == 0 and report.retries >= 1  # taken, tried, never acked

    recovered: list = []
    worker = threading.Thread(
        target=lambda: recovered.append(_drain(mqtt_settings, impatient, idle_seconds=1.0))
    )
    locker = sqlite3.connect(engine.url.database, isolation_level=None)
    locker.execute("BEGIN IMMEDIATE")
    try:
        worker.start()
        time.sleep(1.0)  # the consumer retries meanwhile
    finally:
        locker.execute("ROLLBACK")
        locker.close()
    worker.join(30)
    (report,) = recovered
    assert (report.messages, report.applied) == (3, 3)
    assert report.retries >= 1
    assert _remaining(engine, TT_EX010A_LICENCE) == 220
    assert _drain(mqtt_settings, engine).messages == 0  # all acked after the commit
    impatient.dispose()


def test_a_batch_committed_but_not_acked_comes_again_and_changes_nothing(
    mqtt_settings, engine, wco_samples
):
    store_licences(engine, [tt_ex010a_licence()])
    _open_session(mqtt_settings, engine)
    publish_events(
        mqtt_settings,
        [_envelope(wco_samples, "TT_EX010a.xml", event="released", mrn=TT_EX010A_MRN)],
    )
    declarations = subscriber(mqtt_settings).start()
    batch = declarations.take(10, 0.2, 5.0)
    first = ConsumeReport()
    store_batch(mqtt_settings, engine, batch, threading.Event(), first)
    declarations.close()  # the crash: committed, never acked
    assert (len(batch), first.applied) == (1, 1)

    report = _drain(mqtt_settings, engine)
    assert (report.messages, report.duplicates, report.applied) == (1, 1, 0)
    assert _remaining(engine, TT_EX010A_LICENCE) == 240


def test_a_message_the_rules_choke_on_is_quarantined_and_the_others_applied(
    mqtt_settings, engine, wco_samples, monkeypatch
):
    import bridge.services.consumer

    store_licences(engine, [tt_ex010a_licence()])
    _open_session(mqtt_settings, engine)
    poison = mrn_from_lrn("poison", year=2026, country="GB")
    real_apply = bridge.services.consumer.apply_declarations

    def choking_apply(conn, events, **kwargs):
        # Fault injection: stands for a bug the rules hit on one message only.
        if any(event.mrn == poison for event in events):
            raise RuntimeError("the rules choked")
        return real_apply(conn, events, **kwargs)

    monkeypatch.setattr(bridge.services.consumer, "apply_declarations", choking_apply)
    mrns = [mrn_from_lrn("before", year=2026, country="GB"), poison]
    mrns.append(mrn_from_lrn("after", year=2026, country="GB"))
    publish_events(
        mqtt_settings,
        [_envelope(wco_samples, "TT_EX010a.xml", event="released", mrn=mrn) for mrn in mrns],
    )
    report = _drain(mqtt_settings, engine, idle_seconds=1.0)

    assert (report.messages, report.applied, report.quarantined) == (3, 2, 1)
    assert _remaining(engine, TT_EX010A_LICENCE) == 230
    with engine.connect() as conn:
        (row,) = conn.execute(select(quarantine)).all()
    assert row.message_id == f"{poison}-released-v1"
    assert "the rules choked" in row.reason
    assert _drain(mqtt_settings, engine).messages == 0


def test_max_messages_takes_no_more_and_leaves_the_rest_in_the_session(
    mqtt_settings, engine, wco_samples
):
    _open_session(mqtt_settings, engine)
    events = [
        _envelope(
            wco_samples,
            "TT_EX001a.xml",
            event="released",
            mrn=mrn_from_lrn(f"limit-{n}", year=2026, country="GB"),
        )
        for n in range(5)
    ]
    publish_events(mqtt_settings, events)
    first = consume(mqtt_settings, engine, max_messages=2, max_seconds=10)
    rest = _drain(mqtt_settings, engine)
    assert (first.messages, first.ignored) == (2, 2)
    assert (rest.messages, rest.ignored, rest.duplicates) == (3, 3, 0)


def test_real_amendment_samples_are_read_and_imports_are_ignored_not_quarantined(
    mqtt_settings, engine, wco_samples
):
    """HMRC's published import and its post-clearance amendments (FunctionCode 13, TypeCode
    COR: only the changed sections, no exporter), sent without `event`, as a customs system
    that cannot set it would: every one is read, its kind taken from the payload, and ignored
    (no dual-use document), none quarantined."""
    _open_session(mqtt_settings, engine)
    amendments = wco_samples / "amendments"
    mrn = "23GB6W3GLSX9Z5JAR4"  # the Declaration/ID the amendment names
    messages = [
        envelope_for_declaration_file(
            amendments / name, event=None, mrn=mrn, version=version, event_time=RELEASED_AT
        )
        for name, version in (
            ("TT_Add_Item_Scenario_Step1_Declaration.xml", 1),
            ("TT_Add_Item_Scenario_Step2_Amendment.xml", 2),
        )
    ]
    messages.append(
        envelope_for_declaration_file(
            amendments / "TT_IM002c_Complex_Multi_Amendment.xml",
            event=None,
            version=2,
            event_time=RELEASED_AT,
        )
    )
    publish_events(mqtt_settings, messages)
    report = _drain(mqtt_settings, engine)
    assert (report.messages, report.quarantined, report.ignored) == (3, 0, 2)
    assert report.held == 1  # TT_IM002c amends a declaration the bridge never saw released
    with engine.connect() as conn:
        events = dict(
            conn.execute(select(processed_message.c.message_id, processed_message.c.event)).all()
        )
    assert sorted(events.values()) == ["amended", "amended", "released"]

"""Write-offs in a real ledger (SQLite and PostgreSQL), through the service that applies
declaration events (bridge.services.declarations): batches, balances, quarantine, held
amendments, results kept until published."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import timedelta
from decimal import Decimal

import pytest
from sqlalchemy import event as sa_event
from sqlalchemy import func, select

from bridge.adapters.store.ledger import (
    Unreadable,
    known_to_customs,
    mark_results_published,
    pending_results,
    quarantine_key,
)
from bridge.adapters.store.outbox import DELIVERED, PENDING, NewMessage, add_messages
from bridge.adapters.store.reconciliation import reconciliation_rows
from bridge.adapters.store.schema import (
    declaration,
    movement,
    processed_message,
    quarantine,
    refusal,
    usage,
)
from bridge.core.envelope import (
    EventKind,
    build_envelope,
    envelope_hints,
    mrn_from_lrn,
    parse_result,
    read_event,
)
from bridge.core.errors import Problem, Rejected
from bridge.services.config import Settings
from bridge.services.customs_events import envelope_for_declaration_file
from bridge.services.declarations import apply_declarations, quarantine_messages
from bridge.testkit.amendments import as_amendment
from bridge.testkit.customs_traffic_xml import (
    ADDITIONAL_DOCUMENT_SECTION,
    DECLARATION_SECTION,
    GOODS_ITEM_SECTION,
    GOODS_SHIPMENT_SECTION,
    AmendmentNote,
    Doc,
    Item,
    WcoDeclaration,
    render,
)
from bridge.testkit.customs_traffic_xml import Pointer as Ptr
from tests.fixtures_mqtt import (
    RELEASED_AT,
    TT_EX010A_MRN,
    kg_line,
    store_licences,
    tt_ex004a_licences,
    tt_ex010a_licence,
    uk_licence,
)

SETTINGS = Settings()
MAX = SETTINGS.max_message_bytes


def _event(wco_samples, name, **kwargs):
    kwargs.setdefault("event_time", RELEASED_AT)
    data = envelope_for_declaration_file(wco_samples / name, **kwargs)
    return read_event(data, max_bytes=MAX)


def _apply(engine, *events):
    with engine.begin() as conn:
        return apply_declarations(conn, list(events), now=RELEASED_AT, settings=SETTINGS)


def _balance(engine, number, line=1):
    with engine.connect() as conn:
        (row,) = [b for b in reconciliation_rows(conn, number) if b.line_number == line]
    return row


def test_tt_ex004a_leaves_398_of_500_and_every_message_is_recorded(engine, wco_samples):
    store_licences(engine, tt_ex004a_licences())
    released = _event(wco_samples, "TT_EX004a.xml", event="released")

    result = _apply(engine, released)
    again = _apply(engine, released)

    assert result.count("applied") == 1 and result.movements == 3
    assert again.count("duplicate") == 1 and again.movements == 0
    x002 = _balance(engine, "GBSIEXYK3ZZZPADR-0002")
    assert (x002.authorised_quantity, x002.written_off_quantity, x002.remaining_quantity) == (
        500,
        102,
        398,
    )
    assert x002.movements == 1 and x002.licence_type == "individual"
    assert _balance(engine, "GBSIEXYK3ZZZ-0001", 2).remaining_quantity == 95
    with engine.connect() as conn:
        recorded = conn.execute(select(processed_message)).all()
        state = conn.execute(select(declaration)).one()
    assert [(r.message_id, r.outcome, r.event) for r in recorded] == [
        (released.message_id, "applied", "released")
    ]
    assert (state.mrn, state.version, state.invalidated) == (released.mrn, 1, 0)


def test_release_then_cancellation_puts_the_line_back(engine, wco_samples):
    store_licences(engine, [tt_ex010a_licence()])
    _apply(engine, _event(wco_samples, "TT_EX010a.xml", event="released", mrn=TT_EX010A_MRN))
    assert _balance(engine, "GBSIEE2E350001-0001").remaining_quantity == 240
    cancel = _event(wco_samples, "TT_EX010a_Cancellation.xml", event="invalidated")
    _apply(engine, cancel)
    line = _balance(engine, "GBSIEE2E350001-0001")
    assert (line.remaining_quantity, line.movements) == (250, 2)
    with engine.connect() as conn:
        kinds = conn.execute(select(movement.c.kind, movement.c.quantity)).all()
    assert kinds == [("write_off", Decimal(10)), ("reversal", Decimal(-10))]


def test_cancellation_first_and_release_later_in_separate_batches(engine, wco_samples):
    store_licences(engine, [tt_ex010a_licence()])
    _apply(engine, _event(wco_samples, "TT_EX010a_Cancellation.xml", event="invalidated"))
    late = _apply(engine, _event(wco_samples, "TT_EX010a.xml", event="released", mrn=TT_EX010A_MRN))
    assert late.count("ignored") == 1
    assert _balance(engine, "GBSIEE2E350001-0001").written_off_quantity == 0


def test_held_amendment_survives_between_batches(engine, wco_samples, tmp_path):
    store_licences(engine, [tt_ex010a_licence()])
    payload = (wco_samples / "TT_EX010a.xml").read_text()
    amended_file = tmp_path / "TT_EX010a_amended.xml"
    amended_file.write_bytes(
        as_amendment(payload.replace(">10.00</QuantityQuantity>", ">7</QuantityQuantity>"))
    )
    amendment = _event(wco_samples, amended_file, event="amended", mrn=TT_EX010A_MRN, version=2)
    held = _apply(engine, amendment)
    assert held.count("held") == 1
    released = _event(wco_samples, "TT_EX010a.xml", event="released", mrn=TT_EX010A_MRN)
    _apply(engine, released)
    assert _balance(engine, "GBSIEE2E350001-0001").written_off_quantity == 7
    with engine.connect() as conn:
        outcomes = dict(
            conn.execute(select(processed_message.c.message_id, processed_message.c.outcome)).all()
        )
        state = conn.execute(select(declaration)).one()
    assert outcomes == {amendment.message_id: "applied", released.message_id: "applied"}
    assert (state.version, state.held_message) == (2, None)


def test_quarantine_keeps_the_bytes_and_reasons_once(engine):
    payload = b'{"envelope": "nonsense"'
    problems = [Problem("the message is not a JSON document", "", "t#1", code="bad-envelope")]
    unreadable = Unreadable("customs/x", payload, None, tuple(problems))
    with engine.begin() as conn:
        first = quarantine_messages(conn, [unreadable], RELEASED_AT)
        again = quarantine_messages(conn, [unreadable], RELEASED_AT)
    assert (first, again) == ((1, []), (0, []))  # no sender's id: nobody to answer
    with engine.connect() as conn:
        row = conn.execute(select(quarantine)).one()
        outcome = conn.execute(
            select(processed_message.c.outcome).where(
                processed_message.c.message_id == quarantine_key(payload)
            )
        ).scalar_one()
    assert row.payload == payload and row.topic == "customs/x"
    assert json.loads(row.problems)[0]["code"] == "bad-envelope"
    assert "not a JSON document" in row.reason
    assert outcome == "quarantined"


def test_a_batch_costs_the_same_few_statements_whatever_its_size(engine, wco_samples):
    store_licences(
        engine,
        [
            uk_licence("GBSIEXYK3ZZZPADR-0002", "GB896458895015", kg_line(1, "93059100", "1e6")),
            uk_licence(
                "GBSIEXYK3ZZZ-0001",
                "GB896458895015",
                kg_line(1, "93019000", "1e6"),
                kg_line(2, "93059100", "1e6"),
            ),
        ],
    )

    def statements_for(count, offset):
        events = [
            _event(
                wco_samples,
                "TT_EX004a.xml",
                event="released",
                mrn=mrn_from_lrn(f"batch-{offset + i}", year=2026, country="GB"),
                event_time=RELEASED_AT + timedelta(minutes=i),
            )
            for i in range(count)
        ]
        seen = []

        def count_statement(conn, cursor, statement, parameters, context, executemany):
            seen.append(statement)

        sa_event.listen(engine, "before_cursor_execute", count_statement)
        try:
            _apply(engine, *events)
        finally:
            sa_event.remove(engine, "before_cursor_execute", count_statement)
        return len(seen)

    small, large = statements_for(2, 0), statements_for(60, 100)
    # The locks included (bridge.adapters.store.db), and the chain heads of the batch's licences
    # read once (bridge.adapters.store.chain): one statement each.
    assert small == large <= 12
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(usage)).scalar_one() == 62 * 3
    assert _balance(engine, "GBSIEXYK3ZZZPADR-0002").written_off_quantity == 62 * 102


def test_each_event_s_result_is_kept_pending_until_published_and_a_redelivery_resends_it(
    engine, wco_samples
):
    store_licences(engine, [tt_ex010a_licence()])
    released = _event(wco_samples, "TT_EX010a.xml", event="released", mrn=TT_EX010A_MRN)
    first = _apply(engine, released)
    ((key, payload),) = first.results
    answer = parse_result(payload)
    assert (key, answer.in_reply_to, answer.outcome) == (
        released.message_id,
        released.message_id,
        "applied",
    )
    assert answer.documents[0].remaining.quantity == 240
    with engine.begin() as conn:
        assert pending_results(conn) == [(key, payload)]
        assert mark_results_published(conn, [key], RELEASED_AT) == 1
        assert pending_results(conn) == []

    again = _apply(engine, released)  # the same message once more, in a later batch
    assert again.results == ((key, payload),)  # the stored result, byte for byte
    with engine.begin() as conn:
        assert pending_results(conn) == [(key, payload)]


def test_a_licence_is_known_to_customs_once_a_certificate_of_it_was_delivered(engine):
    store_licences(engine, [tt_ex010a_licence()], known_to_customs=False)
    with engine.begin() as conn:
        assert known_to_customs(conn, ["GBSIEE2E350001-0001", "NOT-IN-LEDGER"]) == set()
        add_messages(
            conn,
            [NewMessage("m1", "certificate", "GBSIEE2E350001-0001", 1, "<c/>", PENDING)],
            now=RELEASED_AT,
        )
        add_messages(
            conn,
            [NewMessage("m2", "status", "GBSIEE2E350001-0001", 1, "<s/>", DELIVERED)],
            now=RELEASED_AT,
        )
        assert known_to_customs(conn, ["GBSIEE2E350001-0001"]) == set()  # neither counts
        add_messages(
            conn,
            [NewMessage("m3", "certificate", "GBSIEE2E350001-0001", 2, "<c/>", DELIVERED)],
            now=RELEASED_AT,
        )
        assert known_to_customs(conn, ["GBSIEE2E350001-0001"]) == {"GBSIEE2E350001-0001"}


def test_a_message_id_with_a_lone_surrogate_still_gets_its_result(engine):
    # JSON may escape a lone surrogate ("\ud800"); it has no UTF-8 form, but an answer all the same.
    hint = "bad-\ud800-id"
    problems = (Problem("the message is not this envelope", code="bad-envelope"),)
    with engine.begin() as conn:
        stored, results = quarantine_messages(
            conn, [Unreadable("customs/x", b'{"message_id": "bad-\\ud800-id"}', hint, problems)],
            RELEASED_AT,
        )  # fmt: skip
    ((_, payload),) = results
    assert stored == 1 and payload.isascii()
    answer = parse_result(payload)
    assert (answer.in_reply_to, answer.outcome) == (hint, "quarantined")


# Amendments as customs send them: only what changes, with its Amendment/Pointer sections ----

HOLDER = "GB417869120000"  # TT_EX010a's exporter, the holder of tt_ex010a_licence
LICENCE = "GBSIEE2E350001-0001"
CN = "93063030"
# The WCO path to goods item 1's second AdditionalDocument (where the release has the X002):
# Declaration 42A, GoodsShipment 67A, GovernmentAgencyGoodsItem 68A, AdditionalDocument 02A.
TO_THE_LICENCE = (
    Ptr(DECLARATION_SECTION, 1),
    Ptr(GOODS_SHIPMENT_SECTION, 1),
    Ptr(GOODS_ITEM_SECTION, 1),
    Ptr(ADDITIONAL_DOCUMENT_SECTION, 2),
)


def _x002(quantity: str) -> Doc:
    return Doc("X002", LICENCE, status="EE", quantity=Decimal(quantity), unit="KGM")


def _released(mrn: str, quantity: str = "10", **changes) -> WcoDeclaration:
    """An export (FunctionCode 9) of two goods items: the first with an invoice and the X002
    licence writing off `quantity` kg, the second needing no licence (Y901)."""
    declaration = WcoDeclaration(
        function_code="9",
        type_code="EXA",
        lrn=f"LRN-{mrn[-6:]}",
        mrn=mrn,
        country="GB",
        items=(
            Item(1, CN, "cartridges", (Doc("N935", "INV-1"), _x002(quantity))),
            Item(2, "85102000", "hair clippers", (Doc("Y901", "not dual-use"),)),
        ),
        exporter=HOLDER,
        declarant=HOLDER,
        destination="PK",
        export_country="GB",
    )
    return replace(declaration, **changes)


def _amendment(mrn: str, *items: Item, reason: str = "28", pointers=TO_THE_LICENCE):
    """A post-clearance amendment (FunctionCode 13, TypeCode COR) carrying only `items`, as
    customs send one: no exporter, no destination, no other goods item."""
    note = AmendmentNote(reason, pointers, "Amend the write-off of the dual-use licence")
    return WcoDeclaration(
        function_code="13",
        type_code="COR",
        lrn=f"LRN-{mrn[-6:]}-AME",
        mrn=mrn,
        country="GB",
        items=items,
        amendments=(note,),
        full=False,
    )


def _wco_event(declaration: WcoDeclaration, *, version: int, at=RELEASED_AT, event=None):
    """The envelope around `declaration`; without `event` (the bridge takes it from the
    FunctionCode and TypeCode)."""
    data = build_envelope(
        message_id=f"{declaration.mrn}-v{version}-{event or 'derived'}",
        mrn=declaration.mrn,
        event=event,
        event_time=at,
        declaration_version=version,
        payload=render(declaration),
    )
    return read_event(data, max_bytes=MAX)


def test_a_partial_amendment_lowers_10_to_7_and_delivered_twice_changes_nothing(engine):
    store_licences(engine, [tt_ex010a_licence()])
    mrn = "26GBPARTIALAMEND01"
    lower = _wco_event(
        _amendment(mrn, Item(1, CN, "cartridges", (_x002("7"),), full=False)), version=2
    )
    assert lower.kind is EventKind.AMENDED
    assert lower.declaration.exporter_eori is None and lower.declaration.destination is None
    released = _apply(engine, _wco_event(_released(mrn), version=1))
    assert released.count("applied") == 1
    assert _balance(engine, LICENCE).written_off_quantity == 10

    first = _apply(engine, lower)
    assert (first.count("applied"), first.refusals) == (1, 0)
    assert _balance(engine, LICENCE).written_off_quantity == 7
    again = _apply(engine, lower)  # the same message again
    other_id = _apply(engine, replace(lower, envelope=replace(lower.envelope, message_id="x")))
    assert again.count("duplicate") == other_id.count("duplicate") == 1
    assert again.movements == other_id.movements == 0
    assert _balance(engine, LICENCE).written_off_quantity == 7

    with engine.connect() as conn:
        stored = json.loads(conn.execute(select(declaration.c.acted_on)).scalar_one())
        kinds = conn.execute(select(movement.c.kind, movement.c.quantity)).all()
    assert kinds == [("write_off", Decimal(10)), ("adjustment", Decimal(-3))]
    # The declaration acted on: the release's header, the amended document, the Pointer path.
    assert (stored["version"], stored["exporter"], stored["destination"]) == (
        2,
        [HOLDER, 1],
        ["PK", 1],
    )
    (item_1, item_2) = stored["goods_items"]
    assert item_1["documents"] == [
        {"code": "X002", "reference": LICENCE, "version": 2, "quantity": "7", "unit": "KGM"}
        | {"status": "EE", "position": 2}
    ]
    assert [d["code"] for d in item_2["documents"]] == ["Y901"]
    (record,) = stored["amendments"]
    assert record["sections"] == [
        {
            "change_reason": "28",
            "pointers": [
                {"section": "42A", "sequence": 1},
                {"section": "67A", "sequence": 1},
                {"section": "68A", "sequence": 1},
                {"section": "02A", "sequence": 2},
            ],
        }
    ]


def test_a_partial_amendment_that_removes_the_document_gives_everything_back(engine):
    store_licences(engine, [tt_ex010a_licence()])
    mrn = "26GBPARTIALAMEND02"
    _apply(engine, _wco_event(_released(mrn), version=1))
    # The goods item carried without the document its Pointer names: the document is removed.
    removal = _amendment(mrn, Item(1, CN, "cartridges", (), full=False), reason="32")
    result = _apply(engine, _wco_event(removal, version=2))
    assert result.count("applied") == 1
    assert _balance(engine, LICENCE).written_off_quantity == 0
    # Goods item 2 (not carried) and the header keep their values.
    with engine.connect() as conn:
        stored = json.loads(conn.execute(select(declaration.c.acted_on)).scalar_one())
    assert [d.get("removed", False) for d in stored["goods_items"][0]["documents"]] == [True]
    assert [d["code"] for d in stored["goods_items"][1]["documents"]] == ["Y901"]


def test_an_amendment_raising_a_write_off_is_checked_on_the_original_release_date(engine):
    # The licence ends on the day of the release; the amendment comes five days later.
    ends = RELEASED_AT.date()
    store_licences(engine, [replace(tt_ex010a_licence(), valid_to=ends)])
    mrn = "26GBPARTIALAMEND03"
    _apply(engine, _wco_event(_released(mrn, "10"), version=1))
    raise_to_12 = _amendment(mrn, Item(1, CN, "cartridges", (_x002("12"),), full=False))
    later = RELEASED_AT + timedelta(days=5)
    result = _apply(engine, _wco_event(raise_to_12, version=2, at=later))
    assert (result.count("applied"), result.refusals) == (1, 0)
    assert _balance(engine, LICENCE).written_off_quantity == 12
    # A new declaration released that late is outside the licence's validity.
    late = _apply(engine, _wco_event(_released("26GBPARTIALAMEND04", "1"), version=1, at=later))
    assert late.count("refused") == 1
    with engine.connect() as conn:
        codes = conn.execute(select(refusal.c.code)).scalars().all()
    assert codes == ["outside-validity"]


def test_an_amendment_sent_as_released_is_refused_naming_both_kinds(engine):
    store_licences(engine, [tt_ex010a_licence()])
    mrn = "26GBPARTIALAMEND05"
    _apply(engine, _wco_event(_released(mrn), version=1))
    lower = _amendment(mrn, Item(1, CN, "cartridges", (_x002("7"),), full=False))
    data = build_envelope(
        message_id=f"{mrn}-released-v2",
        mrn=mrn,
        event="released",
        event_time=RELEASED_AT,
        declaration_version=2,
        payload=render(lower),
    )
    with pytest.raises(Rejected) as caught:
        read_event(data, max_bytes=MAX)
    (problem,) = caught.value.problems
    assert problem.code == "event-mismatch"
    assert "says released" in problem.reason and "an amendment (FunctionCode 13" in problem.reason
    # Quarantined with its MRN and event; the ledger keeps the release's 10.
    hints = envelope_hints(data, max_bytes=MAX)
    unreadable = Unreadable("customs/x", data, hints.message_id, (problem,), hints.mrn, hints.event)
    with engine.begin() as conn:
        stored, results = quarantine_messages(conn, [unreadable], RELEASED_AT)
    assert stored == 1
    (answer,) = [parse_result(raw) for _, raw in results]
    assert (answer.outcome, answer.mrn, answer.event) == ("quarantined", mrn, "released")
    assert "says released" in answer.detail
    with engine.connect() as conn:
        row = conn.execute(
            select(processed_message).where(processed_message.c.outcome == "quarantined")
        ).one()
    assert (row.mrn, row.event) == (mrn, "released")
    assert _balance(engine, LICENCE).written_off_quantity == 10


def test_an_import_with_import_licences_and_no_exporter_is_ignored(engine):
    store_licences(engine, [tt_ex010a_licence()])
    licences = (
        Doc("L001", "GBAHC12345", status="AE"),
        Doc("Y100", "EU-TRQ-1"),
        Doc("9100", "GBIML0001", status="EE", quantity=Decimal(5), unit="KGM"),
        Doc("9011", "GBCITES-1", status="AE"),
    )
    imported = WcoDeclaration(
        function_code="9",
        type_code="IMZ",
        lrn="LRN-IMPORT-1",
        mrn="26GBIMPORTIGNORE01",
        country="GB",
        items=(Item(1, "06031100", "cut roses", licences, procedure=("40", "00")),),
        importer="GB553202734852",
        declarant="GB553202734852",
        destination="GB",
        export_country="KE",
    )
    event = _wco_event(imported, version=1)  # read: no exporter is no reason to refuse
    assert event.kind is EventKind.RELEASED and event.declaration.exporter_eori is None
    result = _apply(engine, event)
    assert result.count("ignored") == 1 and result.refusals == result.movements == 0
    (outcome,) = result.outcomes
    assert "does not concern the bridge" in outcome.detail

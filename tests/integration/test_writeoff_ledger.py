"""Write-offs in a real ledger (SQLite and PostgreSQL), through the service that applies
declaration events (bridge.services.declarations): batches, balances, quarantine, held
amendments, results kept until published."""

from __future__ import annotations

import json
from datetime import timedelta
from decimal import Decimal

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
from bridge.adapters.store.schema import declaration, movement, processed_message, quarantine, usage
from bridge.core.envelope import mrn_from_lrn, parse_result, read_event
from bridge.core.errors import Problem
from bridge.services.config import Settings
from bridge.services.customs_events import envelope_for_declaration_file
from bridge.services.declarations import apply_declarations, quarantine_messages
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
    amended_file.write_text(
        payload.replace(">10.00</QuantityQuantity>", ">7</QuantityQuantity>"), encoding="utf-8"
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
    assert small == large <= 11  # the locks included (bridge.adapters.store.db): one statement
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

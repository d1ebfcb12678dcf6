"""Hostile and broken declaration events through the REAL consumer on a REAL mosquitto.

The corpus (tests/hostile/corpus.py) builds several hundred broken messages from the real WCO
samples: malformed XML, external entities (a file holding a secret, a URL on a listener that
counts connections), entity bombs, DTDs, oversized messages, invalid UTF-8, wrong namespaces,
comma decimals, negative, zero, NaN and absurdly precise quantities, impossible dates, unknown
codes, missing fields, duplicated goods items, envelopes broken every way. They are published
interleaved with valid releases and consumed in a few large batches. Then:

- every hostile case met its fate: quarantined with its reason and problem code, or (a readable
  declaration breaking a rule in every write-off) refused or ignored as recorded;
- nothing hostile wrote anything off: the balances equal those of a second ledger that got only
  the valid events, and those computed from the samples by hand;
- the consumer neither crashed nor stalled, and a second consume finds nothing unacked;
- no byte of the secret file appears anywhere in the ledger, and the listener saw no connection.

The cases of bugs once found (lone surrogates, control characters, numbers and references past
what the ledger's columns hold) also run one by one between two valid releases."""

from __future__ import annotations

import json
import time
from collections import Counter
from dataclasses import replace
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import select

from bridge.adapters.store.db import make_engine
from bridge.adapters.store.ledger import quarantine_key
from bridge.adapters.store.reconciliation import reconciliation_rows
from bridge.adapters.store.schema import metadata, movement, processed_message, quarantine, refusal
from bridge.core.envelope import read_event
from bridge.core.errors import Rejected
from bridge.services.consumer import consume
from bridge.services.customs_events import publish_events
from tests.conftest import WCO_SAMPLES
from tests.fixtures_mqtt import store_licences
from tests.hostile import Listener, run_fuzz_target
from tests.hostile.corpus import (
    CEILING,
    SECRET,
    WRITES_OFF,
    DeclarationCase,
    Fate,
    declaration_cases,
    hostile_licences,
    valid_events,
)

VALID_EVERY = 8  # one valid release after every 8 hostile messages
CONSUME_BOUND = 120.0  # seconds: the whole corpus must be consumed well within this


@pytest.fixture(scope="module")
def canary(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("canary") / "secret.txt"
    path.write_text(SECRET + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def listener():
    found = Listener()
    yield found
    found.stop()


def _open_session(settings, engine) -> None:
    """Connect once so that the broker keeps what is published for this client id."""
    assert consume(settings, engine, idle_seconds=0.1).messages == 0


def _balances(engine) -> dict[tuple[str, int], Decimal]:
    with engine.connect() as conn:
        return {
            (row.licence_number, row.line_number): row.remaining_quantity
            for row in reconciliation_rows(conn)
        }


def _interleave(hostile: list[bytes], valid: list[bytes]) -> list[bytes]:
    messages: list[bytes] = []
    valid_iter = iter(valid)
    for index, data in enumerate(hostile, start=1):
        messages.append(data)
        if index % VALID_EVERY == 0:
            messages.append(next(valid_iter))
    messages.extend(valid_iter)
    return messages


def _ledger_text(engine) -> str:
    """Every text and binary value in every table, as one string."""
    parts = []
    with engine.connect() as conn:
        for table in metadata.sorted_tables:
            for row in conn.execute(select(table)):
                for value in row:
                    if isinstance(value, bytes):
                        parts.append(value.decode("utf-8", errors="replace"))
                    elif value is not None:
                        parts.append(str(value))
    return "\n".join(parts)


def _consume_all(settings, engine, expected: int):
    started = time.monotonic()
    report = consume(settings, engine, idle_seconds=2.0, max_seconds=CONSUME_BOUND)
    took = time.monotonic() - started
    assert report.messages == expected, f"consumed {report.messages} of {expected} in {took:.1f}s"
    return report


def test_hostile_declarations_through_the_real_consumer(
    mqtt_settings, engine, wco_samples, tmp_path, canary, listener
):
    cases = declaration_cases(wco_samples, canary=canary, listener_url=listener.url)
    assert len(cases) >= 600
    valid = valid_events(wco_samples, len(cases) // VALID_EVERY + 5)
    settings = replace(mqtt_settings, batch_size=250)
    store_licences(engine, hostile_licences())
    _open_session(settings, engine)

    messages = _interleave([case.data for case in cases], [data for _, data in valid])
    publish_events(settings, messages)
    report = _consume_all(settings, engine, len(messages))
    assert report.batches <= 10  # a few large batches, not one message at a time
    # Nothing left unacknowledged: a second session finds nothing waiting.
    assert consume(settings, engine, idle_seconds=1.0, max_seconds=10).messages == 0

    # --- every case met its fate, with its reason
    quarantined, outcomes, refused_by_message, moved = _fates(engine)

    wrong = []
    for case in cases:
        why = _fate_problem(case, quarantined, outcomes, refused_by_message, moved)
        if why:
            wrong.append(f"{case.name}: {why}")
    assert not wrong, f"{len(wrong)} case(s) missed their fate:\n" + "\n".join(wrong[:40])
    expected_quarantine = sum(case.fate is Fate.QUARANTINED for case in cases)
    assert len(quarantined) == expected_quarantine
    assert report.quarantined == expected_quarantine
    assert report.applied == len(valid)

    # --- nothing hostile wrote anything off
    assert set(moved) == {message_id for message_id in _valid_ids(valid)}
    expected: dict[tuple[str, int], Decimal] = {}
    for licence in hostile_licences():
        for line in licence.lines:
            expected[(licence.number, line.line_number)] = CEILING
    for name, _ in valid:
        for key, quantity in WRITES_OFF[name].items():
            expected[key] -= quantity
    assert _balances(engine) == expected

    # ... and a ledger that got only the valid events has the same balances.
    only_valid = make_engine(f"sqlite:///{tmp_path / 'valid-only.db'}")
    try:
        store_licences(only_valid, hostile_licences())
        other = replace(
            settings,
            mqtt_client_id=settings.mqtt_client_id + "-valid-only",
            mqtt_topic=settings.mqtt_topic + "/valid-only",
        )
        _open_session(other, only_valid)
        publish_events(other, [data for _, data in valid])
        _consume_all(other, only_valid, len(valid))
        assert _balances(only_valid) == _balances(engine)
    finally:
        only_valid.dispose()

    # --- no entity was ever followed
    text = _ledger_text(engine)
    assert SECRET not in text
    assert "root:x:0:0" not in text
    assert listener.connections == 0


def _valid_ids(valid: list[tuple[str, bytes]]) -> set[str]:
    return {json.loads(data)["message_id"] for _, data in valid}


def _fate_problem(case: DeclarationCase, quarantined, outcomes, refused, moved) -> str | None:
    """Why `case` did not meet its fate, or None."""
    if case.fate is Fate.QUARANTINED:
        row = quarantined.get(case.data)
        if row is None:
            return "not in the quarantine"
        if outcomes.get(quarantine_key(case.data)) != "quarantined":
            return "no processed_message row for its bytes"
        if case.reason not in row.reason:
            return f"reason {row.reason[:300]!r} lacks {case.reason!r}"
        codes = {problem["code"] for problem in json.loads(row.problems)}
        if case.code is not None and case.code not in codes:
            return f"problem codes {sorted(codes)} lack {case.code!r}"
        return None
    message_id = case.message_id
    if moved.get(message_id):
        return f"{moved[message_id]} movement(s) written"
    outcome = outcomes.get(message_id)
    if outcome != str(case.fate):
        return f"outcome {outcome!r}, expected {case.fate}"
    if case.fate is Fate.REFUSED:
        rows = refused.get(message_id, [])
        codes = {row.code for row in rows}
        if case.code is not None and codes != {case.code}:
            return f"refusal codes {sorted(codes)}, expected {case.code!r}"
        if not any(case.reason in row.reason for row in rows):
            return f"no refusal reason has {case.reason!r}: {[row.reason for row in rows]}"
    return None


def test_an_oversized_message_is_refused_before_it_is_parsed(monkeypatch, wco_samples, tmp_path):
    """The size check comes first: with the JSON and XML parsers made to fail the test if they
    are called, every oversized case is still refused, each for its size alone."""
    cases = [
        case
        for case in declaration_cases(wco_samples, canary=tmp_path / "c", listener_url="x")
        if case.family == "oversized"
    ]
    assert len(cases) >= 4

    def forbidden(*args, **kwargs):
        raise AssertionError("a parser was called on an oversized message")

    monkeypatch.setattr("bridge.core.envelope.json.loads", forbidden)
    monkeypatch.setattr("bridge.core.xmlsafe.etree.fromstring", forbidden)
    for case in cases:
        with pytest.raises(Rejected) as refused:
            read_event(case.data, max_bytes=2 * 1024 * 1024)
        (problem,) = refused.value.problems
        assert "over the limit of 2097152" in problem.reason, case.name


# ----------------------------------------------------------------- bugs found, one by one

# Families of the corpus whose cases once stopped the consumer or ended as internal errors.
REGRESSION_FAMILIES = {"lone-surrogate", "control-character", "huge-version", "bad-reference"}


def _regression_cases():
    return [
        pytest.param(case, id=case.name)
        for case in declaration_cases(
            WCO_SAMPLES, canary=Path("/nonexistent/canary"), listener_url="http://127.0.0.1:9/x"
        )
        if case.family in REGRESSION_FAMILIES or case.name.startswith("unknown-licence/reference")
    ]


@pytest.mark.parametrize("case", _regression_cases())
def test_a_message_the_ledger_cannot_hold_meets_its_fate_between_valid_ones(
    mqtt_settings, engine, case
):
    """One such message between two valid releases: it meets its fate (quarantined with its
    reason, or refused, or ignored), the neighbours are applied in the same batch, and the
    consumer neither raises nor leaves anything unacked, on SQLite and on PostgreSQL."""
    valid = valid_events(WCO_SAMPLES, 2, start=9000)
    store_licences(engine, hostile_licences())
    _open_session(mqtt_settings, engine)
    publish_events(mqtt_settings, [valid[0][1], case.data, valid[1][1]])
    report = consume(mqtt_settings, engine, idle_seconds=1.0, max_seconds=20)
    assert report.messages == 3
    assert report.batches == 1  # not sent one message at a time after a failed batch
    assert consume(mqtt_settings, engine, idle_seconds=0.5, max_seconds=10).messages == 0
    quarantined, outcomes, refused, moved = _fates(engine)
    assert _fate_problem(case, quarantined, outcomes, refused, moved) is None
    for row in quarantined.values():
        assert "could not apply" not in row.reason  # a reason, not an internal error
    assert set(moved) == _valid_ids(valid)


def test_a_refusal_keeps_a_long_reference_whole(mqtt_settings, engine):
    """A reference of 256 characters (the most the reader takes) is refused as an unknown
    licence, and the refusal holds it exactly as the declaration wrote it."""
    (case,) = [
        case
        for case in declaration_cases(WCO_SAMPLES, canary=Path("/x"), listener_url="x")
        if case.name == "unknown-licence/reference-of-256"
    ]
    store_licences(engine, hostile_licences())
    _open_session(mqtt_settings, engine)
    publish_events(mqtt_settings, [case.data])
    assert consume(mqtt_settings, engine, idle_seconds=1.0, max_seconds=20).refused == 1
    with engine.connect() as conn:
        stored = set(conn.execute(select(refusal.c.document_ref, refusal.c.licence_number)).all())
    reference = "GB-" + "0" * 253
    assert stored == {(reference, reference)}


def test_the_declaration_fuzz_target_runs_clean(tmp_path):
    """CI's brief fuzzing run (scripts/fuzz.sh runs it long): bytes into read_event and
    read_declaration, only documented errors, the rules never overdraw."""
    output = run_fuzz_target("declaration_reader", tmp_path)
    assert "Done 2000 runs" in output


def _fates(engine):
    """What the ledger did with every message: quarantine rows by payload, outcomes by message
    id, refusals by message id, movements counted by message id."""
    with engine.connect() as conn:
        quarantined = {
            row.payload: row
            for row in conn.execute(
                select(quarantine.c.payload, quarantine.c.reason, quarantine.c.problems)
            )
        }
        outcomes = dict(
            conn.execute(select(processed_message.c.message_id, processed_message.c.outcome)).all()
        )
        refusals = conn.execute(
            select(refusal.c.message_id, refusal.c.code, refusal.c.reason)
        ).all()
        moved = Counter(conn.execute(select(movement.c.message_id)).scalars())
    refused: dict[str, list] = {}
    for row in refusals:
        refused.setdefault(row.message_id, []).append(row)
    return quarantined, outcomes, refused, moved

"""The hash chain's rules (bridge.core.ledger_chain): a canonical serialisation that gives the
same hash for the same row however its values are spelled, and a check that names the first
row edited, deleted or inserted out of turn."""

from __future__ import annotations

import hashlib
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest

from bridge.core.ledger_chain import (
    GENESIS,
    LICENCE_EVENT,
    MOVEMENT,
    ChainRow,
    check_chain,
    extend,
    heads_digest,
    link_hash,
)

AT = datetime(2026, 3, 2, 9, 30, 0, 123456, tzinfo=UTC)


def write_off(quantity="4.5", number="DE-1", at=AT, reason="released v1"):
    return (
        number, 1, "write_off", Decimal(quantity), Decimal("100.00"), Decimal(quantity), "KGM",
        "26DE000000000471A1", 1, "X002", number, "msg-1", "customs-declaration", reason, at, 0,
    )  # fmt: skip


def chain_of(*rows, start_id=1):
    heads: dict = {}
    links = extend(MOVEMENT, heads, rows)
    return [
        ChainRow(start_id + i, row[0], link.seq, link.prev, link.hash, tuple(row))
        for i, (row, link) in enumerate(zip(rows, links, strict=True))
    ]


def test_the_hash_is_sha256_of_the_documented_serialisation():
    expected_text = (
        '[1,"movement",1,"' + GENESIS + '","DE-1",1,"write_off",4500000,100000000,4500000,'
        '"KGM","26DE000000000471A1",1,"X002","DE-1","msg-1","customs-declaration",'
        '"released v1","2026-03-02T09:30:00.123456Z",0]'
    )
    assert link_hash(MOVEMENT, 1, GENESIS, write_off()) == (
        hashlib.sha256(expected_text.encode()).hexdigest()
    )


def test_the_same_row_spelled_differently_hashes_the_same():
    """What the ledger reads back (naive UTC from SQLite, normalised Decimals, another zone on
    the way in) must give the hash written."""
    base = link_hash(MOVEMENT, 3, "ab" * 32, write_off("4.5"))
    cet = timezone(timedelta(hours=1))
    assert link_hash(MOVEMENT, 3, "ab" * 32, write_off("4.500000")) == base
    assert link_hash(MOVEMENT, 3, "ab" * 32, write_off(at=AT.replace(tzinfo=None))) == base
    assert link_hash(MOVEMENT, 3, "ab" * 32, write_off(at=AT.astimezone(cet))) == base


def test_more_than_six_decimals_has_no_canonical_form():
    with pytest.raises(ValueError, match="more than 6 decimals"):
        link_hash(MOVEMENT, 1, GENESIS, write_off("4.5000001"))


@pytest.mark.parametrize(
    ("field", "value"),
    [(0, "DE-2"), (3, Decimal(5)), (12, "someone else"), (13, "released v2"), (15, 1)],
)
def test_every_business_field_is_in_the_hash(field, value):
    row = list(write_off())
    changed = list(row)
    changed[field] = value
    assert link_hash(MOVEMENT, 1, GENESIS, row) != link_hash(MOVEMENT, 1, GENESIS, changed)


def test_a_licence_event_has_its_own_fields():
    event = ("DE-1", 2, "valid", "suspended", "end-use check", "Jane Doe", AT)
    assert len(link_hash(LICENCE_EVENT, 1, GENESIS, event)) == 64
    with pytest.raises(ValueError, match="has 7 fields"):
        link_hash(LICENCE_EVENT, 1, GENESIS, write_off())


def test_extend_continues_each_licence_from_its_head():
    heads = {"DE-1": (7, "cd" * 32)}
    links = extend(MOVEMENT, heads, [write_off(), write_off(number="IT-3"), write_off()])
    assert [(link.seq, link.prev) for link in links] == [
        (8, "cd" * 32),
        (1, GENESIS),
        (9, links[0].hash),
    ]
    assert heads["DE-1"] == (9, links[2].hash)


def test_an_intact_chain_has_no_break():
    assert check_chain(MOVEMENT, chain_of(write_off(), write_off("1"), write_off("2"))) is None


def test_an_edited_row_is_named():
    rows = chain_of(write_off(), write_off("1"), write_off("2"))
    edited = replace(rows[1], fields=write_off("1000"))
    broken = check_chain(MOVEMENT, [rows[0], edited, rows[2]])
    assert str(broken) == (
        "movement row 2 (licence DE-1, sequence 2): hash does not match its content (edited)"
    )


def test_a_deleted_row_is_named_by_the_gap():
    rows = chain_of(*(write_off(str(n)) for n in range(1, 6)))
    broken = check_chain(MOVEMENT, [rows[0], rows[3], rows[4]])
    assert str(broken) == (
        "movement row 4 (licence DE-1, sequence 4): sequences 2 to 3 missing (deleted)"
    )
    assert "sequence 1 missing" in str(check_chain(MOVEMENT, rows[1:]))


def test_a_row_inserted_out_of_turn_is_named():
    rows = chain_of(write_off(), write_off("1"))
    # A well-formed link claiming to follow row 1, appended after row 2.
    forged_hash = link_hash(MOVEMENT, 3, rows[0].hash, write_off("50"))
    forged = ChainRow(9, "DE-1", 3, rows[0].hash, forged_hash, write_off("50"))
    broken = check_chain(MOVEMENT, [*rows, forged])
    assert broken is not None and broken.row_id == 9
    assert broken.problem.startswith("previous hash does not match row 2 (inserted out of turn")
    again = link_hash(MOVEMENT, 2, rows[0].hash, write_off())
    twice = ChainRow(9, "DE-1", 2, rows[0].hash, again, write_off())
    assert "sequence 2 comes twice" in str(check_chain(MOVEMENT, [*rows, twice]))


def test_the_heads_digest_changes_with_any_head():
    heads = {MOVEMENT: {"DE-1": (3, "ab" * 32)}, LICENCE_EVENT: {}}
    moved = {MOVEMENT: {"DE-1": (4, "ab" * 32)}, LICENCE_EVENT: {}}
    assert heads_digest(heads) == heads_digest({LICENCE_EVENT: {}, **heads})
    assert heads_digest(heads) != heads_digest(moved)

"""The movement chain's direct serialiser (bridge.core.ledger_chain._movement_text) against the
definition (`serialised`): the same text, so the same hash, for every row, and the same refusal
for a row the definition refuses. Chains written before the direct serialiser existed must
still verify, and those written with it must verify with the definition."""

from __future__ import annotations

import enum
import hashlib
import random
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal

from bridge.core.ledger_chain import (
    GENESIS,
    MOVEMENT,
    MOVEMENT_FIELDS,
    ChainRow,
    _movement_text,
    check_chain,
    extend,
    link_hash,
    serialised,
)


class Kind(enum.StrEnum):
    WRITE_OFF = "write_off"


class Small(enum.IntEnum):
    ONE = 1


AMOUNTS = [
    None, Decimal("0"), Decimal("-0"), Decimal("0E-10"), Decimal("4.5"), Decimal("4.500000"),
    Decimal("1E+3"), Decimal("1.5E-4"), Decimal("-2.000001"), Decimal("2.0000001"),
    Decimal("123456789012345678901234567890"), Decimal("1234567890123456789012.123456"),
    Decimal("9" * 40 + "E-30"), Decimal("NaN"), Decimal("Infinity"), Decimal("-Infinity"),
    Decimal("1e-7"), 5, 2.5, True, "4.5",
]  # fmt: skip
TEXTS = [
    None, "", "KGM", "DE-1", "26DE000000000471A1", 'quote " and \\ backslash', "tab\tnew\nline",
    "\x00\x1f\x7f", "Ünïcödé ĳ 漢字 🚀", "\u2028\u2029", "\ud800", Kind.WRITE_OFF, 7, b"bytes",
]  # fmt: skip
INTS = [None, 0, 1, -1, 10**30, -(10**19), True, False, Small.ONE, "1", 1.0, Decimal(1)]
CET = timezone(timedelta(hours=1))
MOMENTS = [
    None, datetime(2026, 3, 2, 9, 30, 0, 123456, tzinfo=UTC), datetime(2026, 3, 2, 9, 30),
    datetime(2026, 3, 2, 10, 30, 0, 1, tzinfo=CET), datetime(1, 1, 1, tzinfo=UTC),
    datetime(9999, 12, 31, 23, 59, 59, 999999), date(2026, 3, 2), "2026-03-02",
]  # fmt: skip
KINDS = {
    "licence_number": TEXTS, "line_number": INTS, "kind": TEXTS, "quantity": AMOUNTS,
    "value": AMOUNTS, "declared_quantity": AMOUNTS, "declared_unit": TEXTS, "mrn": TEXTS,
    "goods_item": INTS, "document_code": TEXTS, "document_ref": TEXTS, "message_id": TEXTS,
    "actor": TEXTS, "reason": TEXTS, "at": MOMENTS, "contingency": INTS,
}  # fmt: skip


def _usual(rnd: random.Random) -> tuple:
    """A movement as the ledger writes it."""
    quantity = Decimal(rnd.randrange(1, 10**9)).scaleb(-rnd.randrange(0, 7))
    return (
        f"DE-{rnd.randrange(10**6)}", rnd.randrange(1, 99), rnd.choice(["write_off", "reversal"]),
        quantity, rnd.choice([None, quantity * 3]), quantity, rnd.choice(["KGM", "NAR", None]),
        f"26DE{rnd.randrange(10**14):014d}", rnd.randrange(1, 999), "X002", "DE-1",
        f"msg-{rnd.random()}", "customs-declaration", rnd.choice([None, "amended", "Ü 漢"]),
        datetime(2026, 1, 1, tzinfo=UTC) + timedelta(microseconds=rnd.randrange(10**13)),
        rnd.randrange(2),
    )  # fmt: skip


def _odd(rnd: random.Random) -> tuple:
    """A movement with one or more odd values in any field."""
    row = list(_usual(rnd))
    for _ in range(rnd.randrange(1, 4)):
        at = rnd.randrange(len(MOVEMENT_FIELDS))
        row[at] = rnd.choice(KINDS[MOVEMENT_FIELDS[at]])
    return tuple(row)


def _outcome(produce):
    try:
        return ("text", produce())
    except Exception as problem:
        return ("refused", type(problem), str(problem))


def _hash_outcome(produce):
    try:
        return ("hash", produce())
    except Exception as problem:
        return ("refused", type(problem), str(problem))


def _definition_hash(seq, prev, row) -> str:
    return hashlib.sha256(serialised(MOVEMENT, seq, prev, row).encode("utf-8")).hexdigest()


def test_the_direct_text_is_the_definitions_for_every_row_it_takes():
    rnd = random.Random(14)
    rows = [_usual(rnd) for _ in range(5000)] + [_odd(rnd) for _ in range(20000)]
    taken = refused_by_definition = 0
    for row in rows:
        seq, prev = rnd.randrange(1, 10**6), rnd.choice([GENESIS, "ab" * 32])
        direct = _outcome(lambda row=row, seq=seq, prev=prev: _movement_text(seq, prev, row))
        definition = _outcome(
            lambda row=row, seq=seq, prev=prev: serialised(MOVEMENT, seq, prev, row)
        )
        assert direct[0] == "text", f"the direct serialiser raised on {row!r}: {direct}"
        if direct[1] is not None:
            taken += 1
            assert direct == definition, row
        elif definition[0] == "refused":
            refused_by_definition += 1
        hashed = _hash_outcome(
            lambda row=row, seq=seq, prev=prev: link_hash(MOVEMENT, seq, prev, row)
        )
        assert hashed == _hash_outcome(
            lambda row=row, seq=seq, prev=prev: _definition_hash(seq, prev, row)
        ), row
    assert taken > 10000  # the direct path is the one exercised, not only the fallback
    assert refused_by_definition > 1000  # and odd rows reach the refusals


def test_every_odd_value_in_every_field():
    base = _usual(random.Random(1))
    for at, name in enumerate(MOVEMENT_FIELDS):
        for odd in KINDS[name]:
            row = (*base[:at], odd, *base[at + 1 :])
            direct = _outcome(lambda row=row: _movement_text(7, GENESIS, row))
            if direct[1] is not None:
                assert direct == _outcome(lambda row=row: serialised(MOVEMENT, 7, GENESIS, row))
            assert _hash_outcome(lambda row=row: link_hash(MOVEMENT, 7, GENESIS, row)) == (
                _hash_outcome(lambda row=row: _definition_hash(7, GENESIS, row))
            ), (name, odd)
    wrong_length = base[:-1]
    assert _movement_text(1, GENESIS, wrong_length) is None
    assert _hash_outcome(lambda: link_hash(MOVEMENT, 1, GENESIS, wrong_length)) == (
        "refused",
        ValueError,
        "a movement link has 16 fields, not 15",
    )


def test_chains_written_by_either_serialiser_verify_with_the_other():
    rnd = random.Random(3)
    rows = [_usual(rnd) for _ in range(300)]
    for number, start in (("DE-1", 0), ("DE-2", 100)):
        rows[start : start + 100] = [(number, *row[1:]) for row in rows[start : start + 100]]
    heads: dict = {}
    written_now = extend(MOVEMENT, heads, rows)  # as the store writes them today
    seqs: dict = {}
    written_before = []  # as they were written with the definition alone
    for row in rows:
        seq, prev = seqs.get(row[0], (0, GENESIS))
        written_before.append((seq + 1, prev, _definition_hash(seq + 1, prev, row)))
        seqs[row[0]] = (seq + 1, written_before[-1][2])
    assert [(x.seq, x.prev, x.hash) for x in written_now] == written_before
    by_licence: dict = {}
    for i, (row, (seq, prev, digest)) in enumerate(zip(rows, written_before, strict=True)):
        by_licence.setdefault(row[0], []).append(ChainRow(i, row[0], seq, prev, digest, row))
    for chain in by_licence.values():
        assert check_chain(MOVEMENT, chain) is None
        edited = chain[:]
        last = chain[-1]
        edited[-1] = replace(last, fields=(*last.fields[:3], Decimal("0.000001"), *last.fields[4:]))
        assert check_chain(MOVEMENT, edited) is not None

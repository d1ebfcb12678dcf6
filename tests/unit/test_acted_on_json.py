"""The declaration acted on as stored (bridge.core.acted_on.to_json): the direct writer gives
byte for byte the text of the definition (`json_by_documents`: the JSON shape's dicts, dumped)
for every state the testkit's streams lead to, and for states with odd values in every member;
where the definition refuses a state, so does `to_json`, in the same words."""

from __future__ import annotations

import enum
import random
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest

from bridge.core import acted_on
from bridge.core.acted_on import ActedOn, AmendmentRecord, DocumentState, ItemState, Stamped
from bridge.core.declaration import Amendment, Pointer
from bridge.core.envelope import read_event
from bridge.core.errors import BridgeError
from bridge.testkit.licences import licences
from bridge.testkit.streams import event_stream


def _keep_all(code: str) -> bool:
    return True


def _keep_licences(code: str) -> bool:
    return code.startswith(("X", "E", "C", "Y"))


def _states(minimal: bool, keep) -> list[ActedOn]:
    """Each event's state as the write-off batch merges it, over one generated stream."""
    stream = event_stream(
        list(licences(200, seed=31, scale=1000)), 900, seed=32, minimal=minimal,
        amendments=0.2, invalidations=0.05, duplicates=0.03, reorder=0.05,
    )  # fmt: skip
    held: dict[str, ActedOn] = {}
    states = []
    for synthetic in stream:
        try:
            event = read_event(synthetic.envelope, max_bytes=10**7)
        except BridgeError:  # the stream's bad messages: refused before any merge
            continue
        if event.declaration is None:
            continue
        before = held.get(event.mrn)
        if str(event.kind) == "released" or before is None:
            state = acted_on.release(
                event.declaration, version=event.version, country=event.country,
                released_at=event.envelope.event_time, keep=keep, before=before,
            )  # fmt: skip
        else:
            state, _ = acted_on.merge(
                before, event.declaration, version=event.version, country=event.country,
                message_id=event.message_id, keep=keep,
            )  # fmt: skip
        held[event.mrn] = state
        states.append(state)
    return states


def _outcome(write, state):
    try:
        return ("text", write(state))
    except Exception as problem:
        return ("refused", type(problem), str(problem))


@pytest.mark.parametrize("minimal", [False, True], ids=["20 KB", "1 KB"])
@pytest.mark.parametrize("keep", [_keep_all, _keep_licences], ids=["every code", "licences"])
def test_the_stored_text_is_the_definitions_over_the_generated_streams(minimal, keep):
    states = _states(minimal, keep)
    assert len(states) > 700
    assert sum(s.version > 1 for s in states) > 50  # amendments merged, not only releases
    removals = sum(
        any(i.removed or any(d.removed for d in i.documents) for i in s.items) for s in states
    )
    assert removals > 0 or minimal  # the full declarations' amendments remove things too
    for state in states:
        assert acted_on.to_json(state) == acted_on.json_by_documents(state)


class Code(enum.StrEnum):
    X002 = "X002"


class Small(enum.IntEnum):
    ONE = 1


TEXTS = [None, "", "X002", 'a "quoted" \\ value', "tab\tnew\nline\x00\x1f", "Ünï 漢字 🚀", "\u2028",
         Code.X002, 5, True, False, Decimal("1")]  # fmt: skip
INTS = [None, 0, 1, -1, 10**30, True, False, Small.ONE, "1", 1.5, Decimal(2)]
NUMBERS = [None, Decimal("0"), Decimal("-0"), Decimal("1E+3"), Decimal("1.5E-9"), Decimal("4.500"),
           Decimal("123456789012345678901234567890.123"), Decimal("NaN"), Decimal("-Infinity"),
           5, 2.5, "4.5", False]  # fmt: skip
BOOLS = [False, True, None, 0, 1, "yes"]
WEST = timezone(timedelta(hours=-3, minutes=-30))
MOMENTS = [None, datetime(2026, 3, 2, 9, 30, tzinfo=UTC), datetime(2026, 3, 2, 9, 30, 0, 5),
           datetime(2026, 3, 2, tzinfo=WEST), "2026-03-02"]  # fmt: skip
DOCUMENT = {"code": TEXTS, "reference": TEXTS, "version": INTS, "quantity": NUMBERS,
            "unit": TEXTS, "amount": NUMBERS, "currency": TEXTS, "line_item_number": INTS,
            "status": TEXTS, "position": INTS, "removed": BOOLS}  # fmt: skip
ITEM = {"sequence": INTS, "version": INTS, "cn_code": TEXTS, "destination": TEXTS,
        "removed": BOOLS, "documents": [(), []]}  # fmt: skip


def _base() -> ActedOn:
    document = DocumentState("X002", "GB-1", 2, Decimal("10.5"), "KGM", Decimal("99.00"), "EUR",
                             3, "AE", 1)  # fmt: skip
    return ActedOn(
        version=3,
        released_at=datetime(2026, 3, 2, 9, 30, tzinfo=UTC),
        exporter=Stamped("GB417869120000", 1),
        destination=Stamped(None, 2),
        country=Stamped("GB", 1),
        items=(ItemState(1, 2, "93063030", "PK", (document, replace(document, removed=True))),),
        amendments=(
            AmendmentRecord(2, "m-2", (Amendment("28", (Pointer("68A", 1, None),)),)),
            AmendmentRecord(
                3, "m-3", (Amendment(None, ()), Amendment("28", (Pointer(None, None),)))
            ),
            AmendmentRecord(4, "m-4", ()),
        ),
    )


def _odd_states():
    base = _base()
    item, document = base.items[0], base.items[0].documents[0]
    for name, values in DOCUMENT.items():
        for value in values:
            odd = replace(document, **{name: value})
            yield replace(base, items=(replace(item, documents=(odd,)),))
    for name, values in ITEM.items():
        for value in values:
            yield replace(base, items=(replace(item, **{name: value}),))
    for name in ("exporter", "destination", "dispatch", "country"):
        for value in TEXTS:
            for version in INTS:
                yield replace(base, **{name: Stamped(value, version)})
    for value in INTS:
        yield replace(base, version=value)
    for value in MOMENTS:
        yield replace(base, released_at=value)
    yield replace(base, items=(), amendments=())
    for value in TEXTS:
        yield replace(base, amendments=(AmendmentRecord(value, value, (Amendment(value, ()),)),))
        yield replace(base, amendments=(AmendmentRecord(1, "m", (Amendment("28", (Pointer(value, value, value),)),)),))  # fmt: skip  # noqa: E501


def test_odd_values_in_every_member_are_written_as_the_definition_writes_them():
    rnd = random.Random(7)
    states = list(_odd_states())
    # and a few thousand with several odd members at once
    for _ in range(3000):
        state = _base()
        item, document = state.items[0], state.items[0].documents[0]
        document = replace(document, **{n: rnd.choice(DOCUMENT[n]) for n in rnd.sample(list(DOCUMENT), 3)})  # fmt: skip  # noqa: E501
        item = replace(item, documents=(document, document), cn_code=rnd.choice(TEXTS))
        states.append(replace(state, items=(item,), exporter=Stamped(rnd.choice(TEXTS), 1)))
    written = refused = 0
    for state in states:
        expected = _outcome(acted_on.json_by_documents, state)
        assert _outcome(acted_on.to_json, state) == expected, state
        written += expected[0] == "text"
        refused += expected[0] == "refused"
    assert written > 1000 and refused > 100  # both the texts and the refusals were compared

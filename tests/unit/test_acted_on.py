"""The declaration the bridge acts on: amendments merged by the WCO rules (what a message
carries replaces, what it does not carry stays, removal is named by a Pointer), by version,
whatever order they come in. Pure: no broker, no database."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime
from decimal import Decimal

from bridge.core import acted_on
from bridge.core.declaration import Amendment, Declaration, DocumentUse, GoodsItem, Pointer

AT = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)
LICENCE = "GBSIEE2E350001-0001"


def keep(code: str) -> bool:
    return code.startswith("X") or code == "9104"


def doc(code="X002", ref=LICENCE, quantity="10", position=None) -> DocumentUse:
    return DocumentUse(code, ref, quantity=Decimal(quantity), unit="KGM", position=position)


def item(sequence, *documents, cn="93063030", destination=None) -> GoodsItem:
    return GoodsItem(sequence, cn, None, destination, documents, own_destination=destination)


def declaration(*items, function="9", exporter="GB417869120000", destination="PK", pointers=()):
    return Declaration(
        function,
        "EXA" if function == "9" else "COR",
        "LRN",
        "26GBAAAAAAAAAAAAA1",
        exporter,
        "GB",
        tuple(items),
        destination=destination,
        amendments=tuple(Amendment("28", path) for path in pointers),
    )


def amendment(*items, pointers=()):
    return declaration(*items, function="13", exporter=None, destination=None, pointers=pointers)


def path(sequence: int, document: int | None = None) -> tuple[Pointer, ...]:
    steps = [Pointer("42A", 1), Pointer("67A", 1), Pointer("68A", sequence)]
    if document is not None:
        steps.append(Pointer("02A", document))
    return tuple(steps)


def released():
    return acted_on.release(
        declaration(
            item(1, doc("N935", "INV-1", position=1), doc(quantity="10", position=2)),
            item(2, doc("X060", "GB-OTHER-1", quantity="4", position=1)),
        ),
        version=1,
        released_at=AT,
        country="GB",
        keep=keep,
    )


def written_off(state) -> dict[tuple[int, str], Decimal]:
    merged = acted_on.as_declaration(state, amendment())
    return {(i.sequence, d.document_code): d.quantity for i, d in merged.write_offs()}


def merge(state, message, version):
    return acted_on.merge(
        state, message, version=version, message_id=f"v{version}", country=None, keep=keep
    )


def test_a_partial_amendment_changes_what_it_carries_and_keeps_the_rest():
    lower = amendment(item(1, doc(quantity="7")), pointers=[path(1, 2)])
    state, newer = merge(released(), lower, 2)
    assert newer
    assert written_off(state) == {(1, "X002"): 7, (2, "X060"): 4}
    merged = acted_on.as_declaration(state, lower)
    assert (merged.exporter_eori, merged.destination) == ("GB417869120000", "PK")
    assert [i.destination for i in merged.goods_items] == ["PK", "PK"]
    assert state.released_at == AT  # validity stays checked on the release's date


def test_removal_is_named_by_a_pointer():
    # The document's place (02A 2) with the item carried without it: that document goes.
    state, _ = merge(released(), amendment(item(1), pointers=[path(1, 2)]), 2)
    assert written_off(state) == {(2, "X060"): 4}
    # A goods item named whole (68A 2) and not carried: the item goes.
    state, _ = merge(released(), amendment(pointers=[path(2)]), 2)
    assert written_off(state) == {(1, "X002"): 10}
    # A goods item carried for another section (a tag inside it): its documents stay.
    packaging = (*path(1), Pointer("93A", 1, "144"))
    state, _ = merge(released(), amendment(item(1), pointers=[packaging]), 2)
    assert written_off(state) == {(1, "X002"): 10, (2, "X060"): 4}


def test_a_complete_declaration_resent_replaces_the_items_it_carries():
    # No Pointer at all: each goods item it carries is whole; the others keep their values.
    resent = amendment(item(1, doc("N935", "INV-1"), doc(quantity="12")))
    state, _ = merge(released(), resent, 2)
    assert written_off(state) == {(1, "X002"): 12, (2, "X060"): 4}
    dropped = amendment(item(2))
    state, _ = merge(released(), dropped, 2)
    assert written_off(state) == {(1, "X002"): 10}


def test_amendments_in_any_order_and_twice_end_in_the_same_state():
    messages = [
        (2, amendment(item(1, doc(quantity="7")), pointers=[path(1, 2)])),
        (3, amendment(item(2, doc("X060", "GB-OTHER-1", quantity="1")), pointers=[path(2, 1)])),
        (4, amendment(item(1), pointers=[path(1, 2)])),  # the X002 removed
        (5, amendment(item(3, doc(quantity="2")), pointers=[path(3)])),  # an item added
    ]
    ends = set()
    for order in itertools.permutations(messages + messages[:1]):
        state = released()
        for version, message in order:
            state, _ = merge(state, message, version)
        ends.add(tuple(sorted(written_off(state).items())))
    assert ends == {(((2, "X060"), Decimal(1)), ((3, "X002"), Decimal(2)))}


def test_an_older_amendment_after_a_newer_one_changes_nothing_it_set():
    state, _ = merge(released(), amendment(item(1, doc(quantity="7")), pointers=[path(1)]), 3)
    late, newer = merge(state, amendment(item(1, doc(quantity="99")), pointers=[path(1)]), 2)
    assert not newer and written_off(late) == written_off(state)


def test_the_state_round_trips_through_json():
    state, _ = merge(released(), amendment(item(1, doc(quantity="7")), pointers=[path(1, 2)]), 2)
    assert acted_on.from_json(acted_on.to_json(state)) == state

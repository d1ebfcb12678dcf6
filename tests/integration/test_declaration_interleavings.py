"""Any arrival order ends where customs stand: a release, partial amendments (FunctionCode 13,
TypeCode COR, carrying only the goods items they change, with their Pointers) and perhaps an
invalidation of one MRN, delivered in any interleaving, with redeliveries, in batches of any
size, through bridge.services.declarations.apply_declarations on a real ledger (SQLite; fewer
examples on PostgreSQL), end at the balance of the corpus's independent oracle
(bridge.testkit.customs_traffic_oracle) fed the same messages in customs' own order (version
after version): what each document writes off, and each licence line's total."""

from __future__ import annotations

import itertools
from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import text

from bridge.core.envelope import read_event
from bridge.services.config import Settings
from bridge.services.declarations import apply_declarations
from bridge.testkit.customs_traffic import (
    changed_item,
    dual_use_documents,
    without_one_licence_document,
)
from bridge.testkit.customs_traffic_oracle import TrafficOracle
from bridge.testkit.customs_traffic_plan import (
    GB_TRADE,
    TrafficMessage,
    TrafficPlanner,
    traffic_licences,
)
from bridge.testkit.declaration_plans import make_mrn
from bridge.testkit.known_licences import store_known_licences
from tests.fixtures_mqtt import RELEASED_AT

NOW = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
ZERO = Decimal(0)
SCALE = 1000  # ceilings far above what the examples write off: no refusal depends on order
_serial = itertools.count(1)


def _licences():
    return tuple(
        replace(
            licence,
            lines=tuple(
                replace(line, quantity=line.quantity and line.quantity * SCALE)
                for line in licence.lines
            ),
        )
        for licence in traffic_licences()
    )


STEPS = st.lists(
    st.tuples(st.sampled_from(("lower", "raise", "remove", "add")), st.integers(0, 2)),
    min_size=1,
    max_size=4,
)


def _scenario(seed: int, steps, invalidate: bool) -> tuple[list[TrafficMessage], TrafficOracle]:
    """One MRN's messages in customs' order (release, amendments version after version, the
    invalidation), each through a fresh oracle in that order."""
    planner = TrafficPlanner(seed)
    planner.licences = _licences()
    planner.oracle = TrafficOracle(planner.licences)
    uses = (GB_TRADE.uses[0], GB_TRADE.uses[1], GB_TRADE.uses[3])
    release = planner.export(GB_TRADE, uses=uses)
    release = replace(release, mrn=make_mrn(planner.mrn_rng, next(_serial), year=26, country="GB"))
    planner.publish("release", release.mrn, release, version=1)
    added = GB_TRADE.adds[0][1]
    version = 1
    for step, index in steps:
        item = planner.views[release.mrn][release.items[index].sequence]
        dual_use = dual_use_documents(item)
        if step == "remove" and dual_use:
            changed = without_one_licence_document(planner, item)
        elif step == "add" or not dual_use:
            use = added if item.cn == added.cn else uses[index]
            if any(d.reference == use.licence and d.code == use.code for d in dual_use):
                changed = changed_item(planner, item, Decimal("1.25"))
            else:
                document = planner.write_off(use, item.sequence)
                changed = replace(item, documents=(*item.documents, document))
        else:
            changed = changed_item(planner, item, Decimal("0.5" if step == "lower" else "1.5"))
        version += 1
        amendment = planner.amendment(release, (changed,))
        planner.publish("amendment", release.mrn, amendment, version=version)
    if invalidate:
        planner.publish("invalidation", release.mrn, planner.cancellation(release), version=99)
    return planner.messages, planner.oracle


@st.composite
def deliveries(draw):
    """A scenario and how it arrives: a permutation of its messages with redeliveries inserted
    anywhere, cut into batches."""
    seed = draw(st.integers(0, 10**6))
    steps = draw(STEPS)
    invalidate = draw(st.booleans())
    messages, oracle = _scenario(seed, steps, invalidate)
    order = list(draw(st.permutations(range(len(messages)))))
    for _ in range(draw(st.integers(0, 3))):
        order.insert(draw(st.integers(0, len(order))), draw(st.sampled_from(order)))
    cuts = sorted(draw(st.sets(st.integers(1, max(1, len(order) - 1)), max_size=3)))
    batches = [order[a:b] for a, b in itertools.pairwise([0, *cuts, len(order)]) if order[a:b]]
    return messages, oracle, batches


def _written_off(conn, mrn: str) -> dict:
    rows = conn.execute(
        text(
            "SELECT goods_item, document_code, document_ref, SUM(quantity), SUM(value)"
            " FROM movement WHERE mrn = :mrn GROUP BY goods_item, document_code, document_ref"
        ),
        {"mrn": mrn},
    )
    found = {}
    for item, code, ref, quantity, value in rows:
        amounts = (Decimal(quantity or 0).scaleb(-6).normalize(), Decimal(value or 0).scaleb(-6))
        if amounts != (ZERO, ZERO):
            found[(mrn, item, code, ref)] = (amounts[0], amounts[1].normalize())
    return found


def _check(engine, delivery) -> None:
    messages, oracle, batches = delivery
    mrn = messages[0].mrn
    arrived = []
    for batch in batches:
        events = [read_event(messages[i].envelope, max_bytes=2**21) for i in batch]
        arrived.append([f"{messages[i].kind} v{messages[i].version}" for i in batch])
        with engine.begin() as conn:
            apply_declarations(conn, events, now=NOW, settings=Settings())
    with engine.connect() as conn:
        got = _written_off(conn, mrn)
    want = {key: amounts for key, amounts in oracle.document_write_offs().items()}
    assert got == want, (
        f"arrival {arrived}: the ledger holds {got}, the oracle (customs' order) {want}"
    )


@pytest.fixture
def ledger(engine):
    with engine.begin() as conn:
        store_known_licences(conn, _licences(), now=RELEASED_AT, source="interleavings")
    return engine


@pytest.mark.parametrize("examples", [60])
def test_any_interleaving_of_release_amendments_and_invalidation_ends_at_the_oracles_balance(
    ledger, ledger_url, examples
):
    count = examples if ledger_url.startswith("sqlite") else 12

    @settings(
        max_examples=count,
        deadline=None,
        derandomize=True,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(deliveries())
    def run(delivery):
        _check(ledger, delivery)

    run()


def test_an_amendment_arriving_before_its_release_and_twice_changes_nothing_more(ledger):
    """One interleaving spelled out: the amendment lowering a write-off comes first (held),
    again (a redelivery), then the release: the lowered quantity stands once."""
    messages, oracle = _scenario(7, [("lower", 0)], invalidate=False)
    release, _amendment = messages
    _check(ledger, (messages, oracle, [[1, 1], [0], [1]]))
    lowered = oracle.document_write_offs()
    assert len(lowered) >= 1 and all(q > 0 or v > 0 for q, v in lowered.values())
    assert lowered != {
        key: oracle.amounts(doc)
        for item in release.declaration.items
        for doc in item.documents
        if doc.writes_off
        for key in [(release.mrn, item.sequence, doc.code, doc.reference)]
    }

"""A declaration event stream with the traffic real customs systems add to it: the stream of
bridge.testkit.streams (releases, whole amendments, invalidations, redeliveries, reordering,
unreadable messages) interleaved with partial amendments as customs send them (FunctionCode 13,
TypeCode COR: only the goods item they change, sent whole by its Pointer path) of declarations
released in the stream, and declarations that do not concern the bridge at all (imports with
import-licence documents, transit, exports quoting only Y901).

Each event carries its ground truth (`TrafficEvent`): a partial amendment the goods items it
carries and what those write off; an irrelevant declaration that it is one. Deterministic for a
given seed, and streamed."""

from __future__ import annotations

import heapq
import random
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from decimal import ROUND_DOWN, Decimal

from bridge.core.envelope import EventKind, build_envelope
from bridge.core.model import Licence
from bridge.testkit.customs_traffic_xml import (
    DECLARATION_SECTION,
    GOODS_ITEM_SECTION,
    GOODS_SHIPMENT_SECTION,
    AmendmentNote,
    Doc,
    Item,
    Pointer,
    WcoDeclaration,
    render,
)
from bridge.testkit.declaration_plans import (
    DeclarationPlan,
    DeclarationPlanner,
    DocumentPlan,
    make_mrn,
)
from bridge.testkit.declarations import render_declaration
from bridge.testkit.streams import SynthEvent, event_stream

_DECIMALS = {"NAR": 0, "GRM": 0, "KGM": 3, "KGM#G": 3, "LTR": 1, "MTK": 2}


@dataclass(frozen=True, slots=True)
class TrafficEvent(SynthEvent):
    """A SynthEvent with what a partial amendment carries (`carried_items`: the goods items it
    replaces; `write_offs` what those items write off after it) or that the declaration does
    not concern the bridge (`irrelevant`)."""

    partial: bool = False
    carried_items: frozenset[int] = frozenset()
    irrelevant: bool = False


@dataclass
class _Chain:
    plan: DeclarationPlan
    items: dict[int, tuple[DocumentPlan, ...]]  # per goods item, its documents as customs hold them
    originals: dict[tuple[int, str, str], DocumentPlan]  # each dual-use document as released
    version: int = 1


def traffic_stream(
    licences: Sequence[Licence],
    n_events: int,
    *,
    seed: int,
    partial_amendments: float = 0.0,
    irrelevant: float = 0.0,
    start: datetime = datetime(2026, 3, 2, 8, 0, tzinfo=UTC),
    reorder: float = 0.0,
    reorder_window: int = 8,
    **stream: object,
) -> Iterator[SynthEvent]:
    """`n_events` events: those of `event_stream(licences, ..., seed=seed, reorder=reorder,
    **stream)`, and, with the given probabilities, partial amendments and irrelevant
    declarations (each the release of a new MRN of its own, or a partial amendment of one
    released before: lowering, removing, or restoring a dual-use document; reordered at rate
    `reorder` too)."""
    base = event_stream(
        licences,
        n_events,
        seed=seed,
        start=start,
        reorder=reorder,
        reorder_window=reorder_window,
        **stream,
    )
    rng = random.Random(f"traffic-stream:{seed}")
    planner = DeclarationPlanner(licences, seed=seed + 7919, goods_items=(2, 4))
    mrn_rng = random.Random(f"traffic-stream-mrn:{seed}")
    chains: list[_Chain] = []
    pending: list[tuple[float, int, SynthEvent]] = []
    serial = 0
    for position in range(n_events):
        at = start + timedelta(seconds=position)
        draw = rng.random()
        event: SynthEvent | None = None
        if draw < irrelevant:
            serial += 1
            event = _irrelevant(rng, mrn_rng, serial, position, at)
        elif draw < irrelevant + partial_amendments:
            if chains and rng.random() < 0.75:
                event = _partial_amendment(rng, rng.choice(chains), position, at)
            if event is None:
                serial += 1
                event, chain = _release(planner, mrn_rng, serial, position, at)
                chains.append(chain)
                if len(chains) > 256:
                    chains.pop(0)
        if event is None:
            event = next(base)
            yield event
            continue
        due = float(position)
        if reorder and rng.random() < reorder:
            due = position + rng.randint(1, reorder_window) + 0.5
            event = replace(event, reordered=True)
        heapq.heappush(pending, (due, position, event))
        while pending and pending[0][0] <= position:
            yield heapq.heappop(pending)[2]
    while pending:
        yield heapq.heappop(pending)[2]


def _release(planner, mrn_rng, serial, position, at) -> tuple[TrafficEvent, _Chain]:
    plan = planner.plan("")
    plan = replace(
        plan, mrn=make_mrn(mrn_rng, 2 * 10**8 + serial, year=at.year, country=plan.country)
    )
    message_id = f"{plan.mrn}-released-v1"
    envelope = build_envelope(
        message_id=message_id,
        mrn=plan.mrn,
        event=EventKind.RELEASED,
        event_time=at,
        payload=render_declaration(plan),
    )
    chain = _Chain(
        plan,
        {item.sequence: item.documents for item in plan.goods_items},
        {
            (item.sequence, d.category + d.type_code, d.reference): d
            for item in plan.goods_items
            for d in item.documents
            if d.write_off
        },
    )
    event = TrafficEvent(
        envelope, message_id, plan.mrn, str(EventKind.RELEASED), 1, position, plan.write_offs
    )
    return event, chain


def _step_down(document: DocumentPlan, rng: random.Random) -> DocumentPlan:
    """`document` writing off less: its declared quantity and amount cut (exactly, in the
    declared unit's steps), its ground truth with them."""
    base = document.write_off
    assert base is not None
    factor = Decimal(rng.choice(("0.5", "0.6", "0.75")))
    quantity, line_quantity = document.quantity, base.quantity
    if document.quantity is not None:
        step = Decimal(1).scaleb(-_DECIMALS.get(document.unit or "", 2))
        declared = max(step, (Decimal(document.quantity) * factor).quantize(step, ROUND_DOWN))
        quantity = format(declared.normalize(), "f")
        # The line's unit per declared unit (1, or 0.001 for grams against kilograms).
        ratio = base.quantity / Decimal(document.quantity)
        line_quantity = (declared * ratio).normalize()
    amount, value = document.amount, base.value
    if document.amount is not None:
        value = max(Decimal("0.01"), (Decimal(document.amount) * factor).quantize(Decimal("0.01")))
        amount = format(value, "f")
    write_off = replace(base, quantity=line_quantity, value=value)
    return replace(document, quantity=quantity, amount=amount, write_off=write_off)


def _partial_amendment(rng, chain: _Chain, position, at) -> TrafficEvent | None:
    """The next version of `chain`: one goods item, sent whole, with one of its dual-use
    documents lowered or removed, or one removed or lowered before restored as released."""
    sequence = rng.choice(sorted(chain.items))
    documents = list(chain.items[sequence])
    restorable = [
        original
        for (item, _, _), original in chain.originals.items()
        if item == sequence and original not in documents
    ]
    current = [d for d in documents if d.write_off]
    if restorable and (not current or rng.random() < 0.4):
        original = rng.choice(restorable)
        key = (original.category + original.type_code, original.reference)
        kept = [d for d in documents if (d.category + d.type_code, d.reference) != key]
        documents = [*kept, original]
    elif current and rng.random() < 0.35:
        documents.remove(rng.choice(current))
    elif current:
        chosen = rng.choice(current)
        documents[documents.index(chosen)] = _step_down(chosen, rng)
    else:
        return None
    chain.items[sequence] = tuple(documents)
    chain.version += 1
    plan = chain.plan
    item = next(i for i in plan.goods_items if i.sequence == sequence)
    carried = Item(
        sequence,
        item.cn,
        item.description,
        tuple(_doc(d) for d in documents),
        full=False,
    )
    path = (
        Pointer(DECLARATION_SECTION, 1),
        Pointer(GOODS_SHIPMENT_SECTION, 1),
        Pointer(GOODS_ITEM_SECTION, sequence),
    )
    amendment = WcoDeclaration(
        function_code="13",
        type_code="COR",
        lrn=f"{plan.lrn}-A{chain.version}",
        mrn=plan.mrn,
        country=plan.country,
        items=(carried,),
        amendments=(AmendmentNote("32", path, f"Amend goods item {sequence} documents"),),
        currency=plan.currency,
        full=False,
    )
    message_id = f"{plan.mrn}-amended-v{chain.version}"
    envelope = build_envelope(
        message_id=message_id,
        mrn=plan.mrn,
        event=EventKind.AMENDED,
        event_time=at,
        declaration_version=chain.version,
        payload=render(amendment),
    )
    write_offs = tuple(d.write_off for d in documents if d.write_off)
    return TrafficEvent(
        envelope,
        message_id,
        plan.mrn,
        str(EventKind.AMENDED),
        chain.version,
        position,
        write_offs,
        partial=True,
        carried_items=frozenset({sequence}),
    )


def _doc(document: DocumentPlan) -> Doc:
    return Doc(
        code=document.category + document.type_code,
        reference=document.reference,
        status=document.status,
        name=document.name,
        quantity=None if document.quantity is None else Decimal(document.quantity),
        unit=document.unit,
        amount=None if document.amount is None else Decimal(document.amount),
        currency=document.currency,
    )


_IRRELEVANT_DOCUMENTS = {
    "import": (("L001", "AIE-{n}", "EA"), ("Y100", "Y100-{n}", None), ("9100", "IML-{n}", "EE")),
    "transit": (("N740", "AWB-{n}", None), ("N705", "BL-{n}", None), ("C651", "AAD-{n}", None)),
    "y901": (("Y901", "Not subject to Reg 2021/821", None),),
}


def _irrelevant(rng, mrn_rng, serial, position, at) -> TrafficEvent:
    """An import, a transit declaration or an export quoting only Y901: nothing for the
    bridge, whatever it lacks (imports name no exporter EORI, transit no exporter at all)."""
    kind = rng.choice(tuple(_IRRELEVANT_DOCUMENTS))
    country = rng.choice(("DE", "FR", "NL", "GB"))
    items = []
    for sequence in range(1, rng.randint(1, 3) + 1):
        documents = []
        for code, ref, status in _IRRELEVANT_DOCUMENTS[kind]:
            quantity = Decimal(rng.randint(1, 50)) if status == "EA" else None
            documents.append(
                Doc(
                    code,
                    ref.format(n=rng.randint(10**5, 10**6)),
                    status,
                    None,
                    quantity,
                    "NAR" if quantity else None,
                )
            )
        items.append(Item(sequence, "84571010", "Machining centres", tuple(documents)))
    declaration = WcoDeclaration(
        function_code="9",
        type_code={"import": "IMZ", "transit": "T1", "y901": "EXA"}[kind],
        lrn=f"{country}IRR{serial:07d}",
        mrn=make_mrn(mrn_rng, 3 * 10**8 + serial, year=at.year, country=country),
        country=country,
        items=tuple(items),
        exporter=f"{country}1234567890" if kind == "y901" else None,
        importer=f"{country}9876543210" if kind == "import" else None,
        destination="US" if kind != "import" else None,
        currency="EUR",
    )
    assert declaration.mrn is not None
    message_id = f"{declaration.mrn}-released-v1"
    envelope = build_envelope(
        message_id=message_id,
        mrn=declaration.mrn,
        event=EventKind.RELEASED,
        event_time=at,
        payload=render(declaration),
    )
    return TrafficEvent(
        envelope,
        message_id,
        declaration.mrn,
        str(EventKind.RELEASED),
        1,
        position,
        irrelevant=True,
    )


def irrelevant_kinds() -> Iterable[str]:
    return tuple(_IRRELEVANT_DOCUMENTS)

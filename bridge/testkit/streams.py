"""Declaration event streams: MQTT messages (envelopes as bridge.core.envelope.build_envelope
writes them) quoting synthetic licences, with duplicates, reordering, amendments, invalidations
and unreadable or hostile messages at the rates asked, each carrying its ground truth: what it
was meant to be and what it writes off. `GroundTruth` adds a stream up into what the ledger must
hold after it, whatever order the events arrive in.

Deterministic for a given seed, and streamed: millions of events cost no memory."""

from __future__ import annotations

import heapq
import json
import random
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from bridge.core.declaration import DEC_NS
from bridge.core.envelope import EventKind, build_envelope
from bridge.core.model import Licence
from bridge.testkit.declaration_plans import (
    DeclarationPlan,
    DeclarationPlanner,
    PlannedWriteOff,
    make_mrn,
)
from bridge.testkit.declarations import cancellation_xml, render_declaration

BAD_KINDS = ("not-json", "bad-envelope", "unsafe-xml", "bad-quantity", "wrong-namespace")
# Hostile messages beyond the default mix, for streams that ask for them (`bad_kinds`): an
# external entity to a local file, an entity expansion bomb, an envelope that is not UTF-8, a
# declaration cut off in the middle.
HOSTILE_KINDS = ("external-entity", "entity-bomb", "invalid-utf8", "truncated-xml")


@dataclass(frozen=True, slots=True)
class SynthEvent:
    """One MQTT message of a generated stream, with its ground truth.

    `kind` is what the sender meant (released, amended, invalidated; "unreadable" for a bad
    message); `write_offs` what this declaration version writes off (empty for invalidations
    and bad messages); `duplicate_of` the message id this is a redelivery of (the same bytes);
    `bad` which kind of unreadable message it is (it must be quarantined); `reordered` whether
    it was held back behind later events; `position` its place in the intended order."""

    envelope: bytes
    message_id: str
    mrn: str | None
    kind: str
    version: int
    position: int
    write_offs: tuple[PlannedWriteOff, ...] = ()
    duplicate_of: str | None = None
    bad: str | None = None
    reordered: bool = False

    @property
    def readable(self) -> bool:
        return self.bad is None


@dataclass
class _Open:
    plan: DeclarationPlan
    version: int
    released_at: datetime


def event_stream(
    licences: Sequence[Licence] | Iterable[Licence],
    n_events: int,
    *,
    seed: int,
    duplicates: float = 0.0,
    reorder: float = 0.0,
    amendments: float = 0.0,
    invalidations: float = 0.0,
    bad: float = 0.0,
    minimal: bool = False,
    goods_items: tuple[int, int] = (7, 9),
    start: datetime = datetime(2026, 3, 2, 8, 0, tzinfo=UTC),
    reorder_window: int = 8,
    bad_kinds: Sequence[str] = BAD_KINDS,
    full_share: float = 0.0,
) -> Iterator[SynthEvent]:
    """`n_events` declaration events quoting `licences`. Each event is, with the given
    probabilities, a redelivery of an earlier message (same bytes), an amendment or an
    invalidation of a declaration released earlier, an unreadable message (of one of
    `bad_kinds`: BAD_KINDS and HOSTILE_KINDS), or else the release of a new declaration; with
    probability `reorder` an event is held back behind up to `reorder_window` later ones. With
    `minimal`, each new declaration is still written in full (about 20 KB, several goods items)
    with probability `full_share`. Deterministic for a given seed; streamed, so millions cost no
    memory."""
    unknown = [kind for kind in bad_kinds if kind not in BAD_KINDS + HOSTILE_KINDS]
    if unknown or not bad_kinds:
        raise ValueError(f"bad_kinds must be some of {BAD_KINDS + HOSTILE_KINDS}, not {unknown}")
    planner = DeclarationPlanner(licences, seed=seed, goods_items=goods_items)
    rng = random.Random(f"events:{seed}")
    # Its own draws, so that streams without full declarations stay as they always were.
    sizes = random.Random(f"sizes:{seed}")
    mrn_rng = random.Random(f"mrn:{seed}")
    open_mrns: list[_Open] = []
    recent: list[SynthEvent] = []
    pending: list[tuple[float, int, SynthEvent]] = []
    serial = 0
    for position in range(n_events):
        at = start + timedelta(seconds=position)
        draw = rng.random()
        event: SynthEvent | None = None
        if draw < bad:
            event = _bad_event(rng, planner, mrn_rng, position, at, bad_kinds)
        elif draw < bad + duplicates and recent:
            original = rng.choice(recent)
            event = replace(original, position=position, duplicate_of=original.message_id)
        elif draw < bad + duplicates + amendments and open_mrns:
            entry = rng.choice(open_mrns)
            entry.version += 1
            entry.plan = planner.amend(entry.plan)
            event = _declaration_event(entry.plan, EventKind.AMENDED, entry.version, at, position)
        elif draw < bad + duplicates + amendments + invalidations and open_mrns:
            entry = open_mrns.pop(rng.randrange(len(open_mrns)))
            payload = None
            if rng.random() < 0.5:
                payload = cancellation_xml(
                    entry.plan.mrn,
                    country=entry.plan.country,
                    lrn=entry.plan.lrn,
                    submitter=entry.plan.declarant_eori,
                )
            message_id = f"{entry.plan.mrn}-invalidated-v{entry.version}"
            event = SynthEvent(
                envelope=build_envelope(
                    message_id=message_id,
                    mrn=entry.plan.mrn,
                    event=EventKind.INVALIDATED,
                    event_time=at,
                    declaration_version=entry.version,
                    payload=payload,
                ),
                message_id=message_id,
                mrn=entry.plan.mrn,
                kind=str(EventKind.INVALIDATED),
                version=entry.version,
                position=position,
            )
        if event is None:
            serial += 1
            written_minimal = minimal and not (full_share and sizes.random() < full_share)
            plan = planner.plan("", minimal=written_minimal)
            plan = replace(plan, mrn=make_mrn(mrn_rng, serial, year=at.year, country=plan.country))
            event = _declaration_event(plan, EventKind.RELEASED, 1, at, position)
            open_mrns.append(_Open(plan, 1, at))
            if len(open_mrns) > 512:
                open_mrns.pop(0)
        if event.readable and event.duplicate_of is None:
            recent.append(event)
            if len(recent) > 256:
                recent.pop(0)
        due = float(position)
        if reorder and rng.random() < reorder:
            due = position + rng.randint(1, reorder_window) + 0.5
            event = replace(event, reordered=True)
        heapq.heappush(pending, (due, position, event))
        while pending and pending[0][0] <= position:
            yield heapq.heappop(pending)[2]
    while pending:
        yield heapq.heappop(pending)[2]


def _declaration_event(
    plan: DeclarationPlan, kind: EventKind, version: int, at: datetime, position: int
) -> SynthEvent:
    message_id = f"{plan.mrn}-{kind}-v{version}"
    envelope = build_envelope(
        message_id=message_id,
        mrn=plan.mrn,
        event=kind,
        event_time=at,
        declaration_version=version,
        payload=render_declaration(plan),
    )
    return SynthEvent(
        envelope=envelope,
        message_id=message_id,
        mrn=plan.mrn,
        kind=str(kind),
        version=version,
        position=position,
        write_offs=plan.write_offs,
    )


def _bad_event(
    rng: random.Random,
    planner: DeclarationPlanner,
    mrn_rng: random.Random,
    position: int,
    at: datetime,
    kinds: Sequence[str] = BAD_KINDS,
) -> SynthEvent:
    kind = rng.choice(kinds)
    message_id = f"unreadable-{position}"
    if kind == "not-json":
        envelope = f"<<not a JSON document {position}>>".encode()
        return SynthEvent(envelope, message_id, None, "unreadable", 0, position, bad=kind)
    mrn = make_mrn(mrn_rng, 10**9 + position, year=at.year, country="EU")
    if kind == "bad-envelope":
        document = {
            "envelope": "elbridge.declaration-event/0",
            "message_id": message_id,
            "mrn": mrn[:10],
            "event": "shipped",
            "declaration_version": 0,
        }
        envelope = json.dumps(document).encode()
        return SynthEvent(envelope, message_id, None, "unreadable", 0, position, bad=kind)
    plan = replace(planner.plan(mrn, minimal=True), mrn=mrn)
    xml = render_declaration(plan).decode("utf-8")
    if kind == "bad-quantity" and "<WriteOff>" not in xml:
        kind = "wrong-namespace"  # nothing left to write off: spoil the namespace instead
    if kind == "unsafe-xml":
        xml = xml.replace(
            "<md:MetaData",
            '<!DOCTYPE md:MetaData [<!ENTITY boom "boom">]>\n<md:MetaData',
            1,
        )
    elif kind == "bad-quantity":
        start = xml.find("<QuantityQuantity")
        if start < 0:  # a write-off by amount only
            start = xml.find("<AmountAmount")
        close = xml.find(">", start) + 1
        end = xml.find("<", close)
        xml = xml[:close] + "12,5" + xml[end:]
    elif kind == "external-entity":
        xml = xml.replace(
            "<md:MetaData",
            '<!DOCTYPE md:MetaData [<!ENTITY exporter SYSTEM "file:///etc/hostname">]>\n'
            "<md:MetaData",
            1,
        ).replace(f"<ID>{plan.exporter_eori}</ID>", "<ID>&exporter;</ID>", 1)
    elif kind == "entity-bomb":
        levels = ['<!ENTITY lol0 "lol">'] + [
            f'<!ENTITY lol{n} "{f"&lol{n - 1};" * 10}">' for n in range(1, 8)
        ]
        xml = xml.replace(
            "<md:MetaData",
            f"<!DOCTYPE md:MetaData [{''.join(levels)}]>\n<md:MetaData",
            1,
        ).replace(f"<ID>{plan.exporter_eori}</ID>", "<ID>&lol7;</ID>", 1)
    elif kind == "truncated-xml":
        xml = xml[: len(xml) * 3 // 5]
    elif kind == "wrong-namespace":  # a declaration of another major version
        xml = xml.replace(DEC_NS, "urn:wco:datamodel:WCO:DEC-DMS:1")
    envelope = build_envelope(
        message_id=message_id, mrn=mrn, event=EventKind.RELEASED, event_time=at, payload=xml
    )
    if kind == "invalid-utf8":
        # A byte that no UTF-8 text holds, where the declaration starts.
        envelope = envelope.replace(b"<md:MetaData", b"<md:\xffMetaData", 1)
    return SynthEvent(envelope, message_id, mrn, "unreadable", 1, position, bad=kind)


@dataclass
class GroundTruth:
    """What the ledger must hold after a stream, added up event by event (order does not
    matter): per MRN the write-offs of its highest readable version, nothing for an MRN that
    was invalidated; the messages that must be quarantined; the redeliveries."""

    latest: dict[str, tuple[int, tuple[PlannedWriteOff, ...]]] = field(default_factory=dict)
    invalidated: set[str] = field(default_factory=set)
    messages: int = 0
    unreadable: int = 0
    unreadable_ids: set[bytes] = field(default_factory=set)
    redeliveries: int = 0
    releases: int = 0

    def add(self, event: SynthEvent) -> None:
        self.messages += 1
        if event.bad is not None:
            self.unreadable += 1
            self.unreadable_ids.add(event.envelope)
            return
        if event.duplicate_of is not None:
            self.redeliveries += 1
            return
        assert event.mrn is not None
        if event.kind == EventKind.INVALIDATED:
            self.invalidated.add(event.mrn)
            return
        if event.kind == EventKind.RELEASED:
            self.releases += 1
        version, _ = self.latest.get(event.mrn, (0, ()))
        if event.version > version:
            self.latest[event.mrn] = (event.version, event.write_offs)

    def totals(self) -> dict[tuple[str, int], tuple[Decimal, Decimal]]:
        """(licence, line) -> (quantity, value) written off (or recorded) in the line's unit
        and currency, after every event."""
        totals: dict[tuple[str, int], tuple[Decimal, Decimal]] = {}
        for mrn, (_, write_offs) in self.latest.items():
            if mrn in self.invalidated:
                continue
            for w in write_offs:
                key = (w.reference, w.line_number)
                q, v = totals.get(key, (Decimal(0), Decimal(0)))
                totals[key] = (q + w.quantity, v + w.value)
        return {key: value for key, value in totals.items() if value != (0, 0)}

    @property
    def quarantined(self) -> int:
        """Distinct unreadable messages (a redelivered one is stored once)."""
        return len(self.unreadable_ids)

"""The ledger's invariants, for any stream of events (hypothesis, on the real ledger).

A stream is a few declarations, each released, perhaps amended (up, down, onto another line)
and perhaps invalidated, arriving in any order, some twice (the same bytes, or the same version
under a new message id), cut into batches anywhere, with an officer's manual write-offs in
between. Whatever the stream:

- every line's balance is its authorised quantity minus the sum of its movements, after every
  batch, and never below zero on a ceiling licence;
- the customs movements of a line add up to what the declarations write off now (`usage`);
- replaying any prefix of the stream changes nothing;
- with ceilings that nothing can reach, the final totals are what the declarations' last
  versions say, whatever the order, the duplicates and the batches (an oracle of a few lines
  that shares no code with the ledger's rules).

Each example gets licences and MRNs of its own in one ledger per test, so no example sees
another's rows and no example pays for a new database."""

from __future__ import annotations

import itertools
from collections import defaultdict
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal

import hypothesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from bridge.adapters.store.reconciliation import reconciliation_rows
from bridge.adapters.store.schema import declaration, licence, movement, processed_message, usage
from bridge.core.envelope import DeclarationEvent, build_envelope, mrn_from_lrn, read_event
from bridge.core.errors import Rejected
from bridge.core.model import Licence
from bridge.services.authority import manual_write_off
from bridge.services.config import Settings
from bridge.services.declarations import apply_declarations
from bridge.testkit.amendments import as_amendment
from bridge.testkit.declaration_plans import DeclarationPlan, DocumentPlan, GoodsItemPlan
from bridge.testkit.declarations import render_declaration
from tests.fixtures_mqtt import RELEASED_AT, kg_line, store_licences, uk_licence

SETTINGS = Settings()
CUSTOMS = "customs-declaration"  # the actor of the movements a declaration makes
OFFICER = "Officer on duty (ECJU)"
# Two licences, three lines; each line is (licence index, line number, CN code).
LINES = ((0, 1, "93063030"), (1, 1, "93063030"), (1, 2, "93059100"))
AMPLE = Decimal(10**6)
MAX_DECLARATIONS = 4
EXAMPLES = 100  # per database and test; the whole file stays under 30 s on both

_examples = itertools.count(1)


@dataclass(frozen=True)
class Version:
    line: int  # index into LINES
    quantity: int  # kg


@dataclass(frozen=True)
class Plan:
    """One declaration's life as the sender meant it: released as versions[0], amended to the
    later versions, perhaps invalidated at the end."""

    versions: tuple[Version, ...]
    invalidated: bool


@dataclass(frozen=True)
class Message:
    declaration: int  # index into the stream's plans
    event: str  # released | amended | invalidated
    version: int
    resent: bool = False  # the same event again under a new message id


@dataclass(frozen=True)
class Manual:
    line: int
    quantity: int


CUT = "cut"  # a batch ends here


versions = st.builds(Version, st.integers(0, len(LINES) - 1), st.integers(1, 25))
plans = st.builds(Plan, st.lists(versions, min_size=1, max_size=3).map(tuple), st.booleans())


@st.composite
def streams(draw):
    """(plans, stream items: Message | Manual | CUT) in arrival order."""
    declared = draw(st.lists(plans, min_size=1, max_size=MAX_DECLARATIONS))
    messages = []
    for n, plan in enumerate(declared):
        messages.append(Message(n, "released", 1))
        messages += [Message(n, "amended", v) for v in range(2, len(plan.versions) + 1)]
        if plan.invalidated:
            messages.append(Message(n, "invalidated", len(plan.versions) + 1))
    arrival = list(draw(st.permutations(messages)))
    for _ in range(draw(st.integers(0, 4))):  # redeliveries and resends, anywhere after
        original = draw(st.sampled_from(arrival))
        again = Message(
            original.declaration, original.event, original.version, resent=draw(st.booleans())
        )
        arrival.insert(draw(st.integers(arrival.index(original) + 1, len(arrival))), again)
    items: list = []
    for message in arrival:
        if draw(st.integers(0, 5)) == 0:
            items.append(Manual(draw(st.integers(0, len(LINES) - 1)), draw(st.integers(1, 15))))
        items.append(message)
        if draw(st.integers(0, 2)) == 0:
            items.append(CUT)
    return declared, items


class Example:
    """One example's licences, MRNs and messages, in the shared ledger."""

    def __init__(self, engine, ceilings: tuple[Decimal, ...]):
        self.engine = engine
        tag = next(_examples)
        self.licences: list[Licence] = [
            uk_licence(
                f"GBSIEP{tag:06d}-000{n}",
                f"GB2{tag:06d}0000{n}",
                *(
                    kg_line(line_number, cn, str(ceilings[i]), "PK")
                    for i, (owner, line_number, cn) in enumerate(LINES)
                    if owner == n
                ),
            )
            for n in (0, 1)
        ]
        self.numbers = [lic.number for lic in self.licences]
        store_licences(engine, self.licences)
        self.tag = tag

    def line_key(self, line: int) -> tuple[str, int]:
        owner, line_number, _ = LINES[line]
        return self.numbers[owner], line_number

    def mrn(self, declaration_index: int) -> str:
        return mrn_from_lrn(f"prop-{self.tag}-{declaration_index}", year=2026, country="GB")

    def event(self, plans: list[Plan], message: Message) -> DeclarationEvent:
        mrn = self.mrn(message.declaration)
        message_id = f"{mrn}-{message.event}-v{message.version}"
        if message.resent:
            message_id += "-resent"
        payload = None
        if message.event != "invalidated":
            version = plans[message.declaration].versions[message.version - 1]
            payload = self._declaration(mrn, message.declaration, version)
            if message.event == "amended":  # customs resend it whole as FunctionCode 13 COR
                payload = as_amendment(payload)
        envelope = build_envelope(
            message_id=message_id,
            mrn=mrn,
            event=message.event,
            event_time=RELEASED_AT + timedelta(minutes=message.version),
            declaration_version=message.version,
            payload=payload,
        )
        return read_event(envelope, max_bytes=SETTINGS.max_message_bytes)

    def _declaration(self, mrn: str, serial: int, version: Version) -> bytes:
        owner, _, cn = LINES[version.line]
        holder = self.licences[owner]
        document = DocumentPlan(
            category="X",
            type_code="002",
            reference=holder.number,
            status="EA",
            quantity=str(version.quantity),
            unit="KGM",
        )
        item = GoodsItemPlan(
            sequence=1,
            cn=cn,
            description="cartridges",
            destination="PK",
            documents=(document,),
            gross_mass=Decimal(10),
            statistical_value=Decimal(1000),
        )
        plan = DeclarationPlan(
            mrn=mrn,
            lrn=f"GB{self.tag:06d}{serial:03d}LRN",
            country="GB",
            currency="GBP",
            exporter_eori=holder.holder_eori,
            declarant_eori=holder.holder_eori,
            goods_items=(item,),
            minimal=True,
        )
        return render_declaration(plan)

    def run(self, plans: list[Plan], items: list) -> list[DeclarationEvent]:
        """Feed the stream to the ledger; checks the balances after every batch and manual
        act. Returns the events in arrival order."""
        sent: list[DeclarationEvent] = []
        batch: list[DeclarationEvent] = []
        for item in [*items, CUT]:
            if isinstance(item, Message):
                event = self.event(plans, item)
                batch.append(event)
                sent.append(event)
                continue
            if batch:
                with self.engine.begin() as conn:
                    result = apply_declarations(conn, batch, now=RELEASED_AT, settings=SETTINGS)
                for (
                    outcome
                ) in result.outcomes:  # what the examples reached (--hypothesis-show-statistics)
                    hypothesis.event(f"outcome {outcome.outcome}")
                batch = []
                self.check_balances()
            if isinstance(item, Manual):
                number, line_number = self.line_key(item.line)
                try:
                    manual_write_off(
                        self.engine,
                        number,
                        line_number,
                        Decimal(item.quantity),
                        "KGM",
                        reason="sample taken at the border",
                        actor=OFFICER,
                        now=RELEASED_AT,
                    )
                except Rejected as refused:
                    hypothesis.event("manual write-off refused")
                    assert {p.code for p in refused.problems} <= {"over-use", "licence-not-valid"}
                self.check_balances()
        return sent

    def check_balances(self) -> None:
        """Balance = authorised − the sum of the line's movements, never below zero; the
        customs movements of a line add up to its usage."""
        with self.engine.connect() as conn:
            rows = [r for n in self.numbers for r in reconciliation_rows(conn, n)]
            moved = self._sums(
                conn,
                select(
                    movement.c.licence_number, movement.c.line_number, movement.c.quantity
                ).where(movement.c.licence_number.in_(self.numbers)),
            )
            customs = self._sums(
                conn,
                select(movement.c.licence_number, movement.c.line_number, movement.c.quantity)
                .where(movement.c.licence_number.in_(self.numbers))
                .where(movement.c.actor == CUSTOMS),
            )
            used = self._sums(
                conn,
                select(usage.c.licence_number, usage.c.line_number, usage.c.quantity).where(
                    usage.c.licence_number.in_(self.numbers)
                ),
            )
        assert len(rows) == len(LINES)
        for row in rows:
            key = (row.licence_number, row.line_number)
            total = moved.get(key, Decimal(0))
            assert row.written_off_quantity == total, key
            assert row.remaining_quantity == row.authorised_quantity - total, key
            assert row.remaining_quantity >= 0, f"{key} overdrawn: {row.remaining_quantity}"
            assert customs.get(key, Decimal(0)) == used.get(key, Decimal(0)), key

    @staticmethod
    def _sums(conn, query) -> dict[tuple[str, int], Decimal]:
        sums: dict[tuple[str, int], Decimal] = defaultdict(Decimal)
        for number, line_number, quantity in conn.execute(query):
            sums[(number, line_number)] += quantity
        return dict(sums)

    def state(self) -> dict[str, list]:
        """Everything the example's stream left in the ledger that a replay could change."""
        mrns = [self.mrn(n) for n in range(MAX_DECLARATIONS)]
        with self.engine.connect() as conn:
            return {
                "movements": conn.execute(
                    select(
                        movement.c.id,
                        movement.c.kind,
                        movement.c.licence_number,
                        movement.c.line_number,
                        movement.c.quantity,
                    )
                    .where(movement.c.licence_number.in_(self.numbers))
                    .order_by(movement.c.id)
                ).all(),
                "usage": conn.execute(
                    select(usage).where(usage.c.mrn.in_(mrns)).order_by(*usage.primary_key)
                ).all(),
                "declarations": conn.execute(
                    select(
                        declaration.c.mrn,
                        declaration.c.version,
                        declaration.c.event,
                        declaration.c.invalidated,
                        declaration.c.held_version,
                    )
                    .where(declaration.c.mrn.in_(mrns))
                    .order_by(declaration.c.mrn)
                ).all(),
                "processed": conn.execute(
                    select(processed_message.c.message_id, processed_message.c.outcome)
                    .where(processed_message.c.mrn.in_(mrns))
                    .order_by(processed_message.c.message_id)
                ).all(),
                "status": conn.execute(
                    select(licence.c.number, licence.c.status).where(
                        licence.c.number.in_(self.numbers)
                    )
                ).all(),
            }

    def totals(self) -> dict[tuple[str, int], Decimal]:
        with self.engine.connect() as conn:
            return {
                (r.licence_number, r.line_number): r.written_off_quantity
                for n in self.numbers
                for r in reconciliation_rows(conn, n)
            }


def _replay_prefix(example: Example, sent: list[DeclarationEvent], cut: int) -> None:
    """The first `cut` events once more, in their order, in one batch: nothing may change."""
    before = example.state()
    with example.engine.begin() as conn:
        again = apply_declarations(conn, sent[:cut], now=RELEASED_AT, settings=SETTINGS)
    assert again.movements == again.refusals == 0
    assert {str(o.outcome) for o in again.outcomes} <= {"duplicate"}
    assert example.state() == before


ceilings = st.tuples(*(st.integers(5, 40).map(Decimal) for _ in LINES))
hypothesis_settings = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@hypothesis_settings
@given(stream=streams(), limits=ceilings, data=st.data())
def test_balances_hold_and_replaying_any_prefix_changes_nothing(engine, stream, limits, data):
    plans, items = stream
    example = Example(engine, limits)
    sent = example.run(plans, items)
    _replay_prefix(example, sent, data.draw(st.integers(0, len(sent)), label="prefix"))
    example.check_balances()
    with engine.connect() as conn:
        recorded = set(
            conn.execute(
                select(processed_message.c.message_id).where(
                    processed_message.c.mrn.in_({e.mrn for e in sent})
                )
            ).scalars()
        )
    assert recorded == {e.message_id for e in sent}  # each message once, every one recorded


def _oracle(plans: list[Plan], items: list) -> dict[int, Decimal]:
    """What each line carries at the end when no ceiling can bind: a declaration writes off
    what its newest version received says, once its release has come, and nothing once it is
    invalidated; plus the officer's write-offs."""
    received: dict[int, set[tuple[str, int]]] = defaultdict(set)
    for item in items:
        if isinstance(item, Message):
            received[item.declaration].add((item.event, item.version))
    carried: dict[int, Decimal] = defaultdict(Decimal)
    for n, plan in enumerate(plans):
        events = received[n]
        if ("released", 1) not in events or any(e == "invalidated" for e, _ in events):
            continue
        newest = max(version for _, version in events)
        final = plan.versions[newest - 1]
        carried[final.line] += final.quantity
    for item in items:
        if isinstance(item, Manual):
            carried[item.line] += item.quantity
    return carried


@hypothesis_settings
@given(stream=streams())
def test_with_room_enough_the_totals_do_not_depend_on_order_duplicates_or_batches(engine, stream):
    plans, items = stream
    example = Example(engine, (AMPLE,) * len(LINES))
    example.run(plans, items)
    expected = _oracle(plans, items)
    totals = example.totals()
    assert {
        example.line_key(line): totals[example.line_key(line)] for line in range(len(LINES))
    } == {example.line_key(line): expected.get(line, Decimal(0)) for line in range(len(LINES))}

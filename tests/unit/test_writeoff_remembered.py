"""The batch remembers what it worked out once (each line's balance until the line moves, the
correlation table's answer for each CN code and CLE): the decisions must be exactly those of
the rules working everything out again each time. Differential, over the testkit's generated
corpus and the hostile corpus's readable declarations, against ledgers that make every rule
speak (lines near their ceilings, licences customs do not know or hold in an older version,
a correlation table that doubts every CLE)."""

from __future__ import annotations

import random
from decimal import Decimal
from pathlib import Path

import pytest

from bridge.core.correlation import Correlation
from bridge.core.envelope import DeclarationEvent, read_event
from bridge.core.errors import Rejected
from bridge.core.ledger_state import ZERO
from bridge.core.model import Licence
from bridge.core.writeoff import write_off
from bridge.core.writeoff.batch import decide
from bridge.core.writeoff.checks import remaining
from bridge.core.writeoff.decision import Decision, LedgerSnapshot
from bridge.core.writeoff.running import RunningLedger
from bridge.testkit.licences import licences as synthetic_licences
from bridge.testkit.streams import event_stream
from tests.conftest import WCO_SAMPLES
from tests.hostile.corpus import declaration_cases, hostile_licences

BATCH = 250


def _worked_out_each_time(self: RunningLedger, number: str, line_number: int | None):
    # The balance as the rules define it, from the running totals, never remembered.
    licence = self.licences.get(number)
    line = licence.line(line_number) if licence and line_number is not None else None
    if licence is None or line is None:
        return None
    return remaining(licence, line, self.totals.get((number, line_number), (ZERO, ZERO)))


def _doubting(events: list[DeclarationEvent]) -> Correlation:
    """A table that links every declared CN code's chapter to a CLE no line has: every
    write-off with a CLE on its line gets a CN/CLE warning."""
    chapters = {
        item.cn_code[:2]
        for event in events
        if event.declaration is not None
        for item in event.declaration.goods_items
        if item.cn_code
    }
    return Correlation({chapter: frozenset({"9E999"}) for chapter in chapters})


def _ledgers(licences: list[Licence], seed: int) -> list[LedgerSnapshot]:
    by_number = {licence.number: licence for licence in licences}
    pick = random.Random(seed)
    totals = {}
    for licence in licences:
        for line in licence.lines:
            if line.quantity is not None and pick.random() < 0.5:
                share = Decimal(pick.choice(["0.5", "0.9", "0.99", "1"]))
                totals[(licence.number, line.line_number)] = (line.quantity * share, ZERO)
    known = frozenset(number for number in by_number if pick.random() < 0.8)
    older = {number: 0 for number in by_number if pick.random() < 0.1}
    return [
        LedgerSnapshot(licences=by_number),
        LedgerSnapshot(
            licences=by_number,
            line_totals=totals,
            known_to_customs=known,
            versions_at_customs=older,
        ),
    ]


def _decisions(events, ledgers, correlations) -> list[Decision]:
    return [
        decide(events[start : start + BATCH], ledger, correlation=correlation)
        for ledger in ledgers
        for correlation in correlations
        for start in range(0, len(events), BATCH)
    ]


def _assert_same_as_worked_out_each_time(monkeypatch, events, ledgers, correlations) -> None:
    remembered = _decisions(events, ledgers, correlations)
    with monkeypatch.context() as patched:
        patched.setattr(RunningLedger, "balance", _worked_out_each_time)
        patched.setattr(write_off, "_RememberedCorrelation", lambda table: table)
        each_time = _decisions(events, ledgers, correlations)
    assert len(remembered) == len(each_time)
    for fast, full in zip(remembered, each_time, strict=True):
        # repr: every field of every movement, usage, refusal, outcome (with each document's
        # balances and warnings), declaration state, alert and status change.
        assert repr(fast) == repr(full)


@pytest.mark.parametrize("minimal", [False, True], ids=["20KB", "1KB"])
def test_generated_corpus_decides_the_same_with_remembered_answers(monkeypatch, minimal):
    licences = list(synthetic_licences(300, seed=5, scale=1))
    stream = event_stream(
        licences, 1000, seed=9, minimal=minimal, amendments=0.15, invalidations=0.05
    )
    events = [read_event(generated.envelope, max_bytes=10**7) for generated in stream]
    decisions = _decisions(events, _ledgers(licences, seed=3), [_doubting(events)])
    # The corpus makes the rules speak: refusals, over-use, contingency and CN/CLE alerts.
    kinds = {alert.kind for decision in decisions for alert in decision.alerts}
    assert {"over-use", "contingency-over-use", "cn-cle-correlation"} <= kinds
    assert sum(len(decision.refusals) for decision in decisions) > 100
    _assert_same_as_worked_out_each_time(
        monkeypatch, events, _ledgers(licences, seed=3), [None, _doubting(events)]
    )


def test_hostile_corpus_decides_the_same_with_remembered_answers(monkeypatch, tmp_path: Path):
    canary = tmp_path / "canary.txt"
    canary.write_text("canary\n", encoding="utf-8")
    events = []
    for case in declaration_cases(
        WCO_SAMPLES, canary=canary, listener_url="http://127.0.0.1:9/unused"
    ):
        try:
            events.append(read_event(case.data, max_bytes=len(case.data)))
        except Rejected:
            continue  # quarantined before any rule sees it
    assert len(events) > 20
    licences = hostile_licences()
    _assert_same_as_worked_out_each_time(
        monkeypatch, events, _ledgers(licences, seed=4), [None, _doubting(events)]
    )

"""What a batch of declaration events starts from (the ledger state it touches) and what the
rules decide it does (movements, usage, refusals, declaration states, alerts, status changes,
and the outcome of every message with a result for each of its documents)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from bridge.core.acted_on import ActedOn
from bridge.core.envelope import DeclarationEvent, DocumentResult
from bridge.core.ledger_state import (
    Alert,
    Key,
    LineKey,
    Movement,
    Outcome,
    Record,
    Refusal,
    StatusChange,
    Totals,
    Usage,
)
from bridge.core.model import Licence


@dataclass(frozen=True, slots=True)
class DeclarationState:
    mrn: str
    version: int = 0  # the highest declaration version applied (0: none yet)
    event: str | None = None
    invalidated: bool = False
    message_id: str | None = None
    held: tuple[DeclarationEvent, ...] = ()  # amendments waiting for their release, by version
    # The declaration as released and amended (bridge.core.acted_on); None before the release,
    # and for a declaration released before the ledger kept it.
    acted_on: ActedOn | None = None


@dataclass(frozen=True, slots=True)
class LedgerSnapshot:
    """The part of the ledger a batch touches, as it is before the batch.

    `known_to_customs`: the licences customs acknowledged a certificate of (any version);
    None stands for every licence in `licences` (rules tested without the outbox).
    `versions_at_customs`: the newest version of each such licence customs acknowledged; a
    licence missing from it (or None) counts as held by customs in its current version."""

    licences: Mapping[str, Licence] = field(default_factory=dict)
    usage: Mapping[Key, Usage] = field(default_factory=dict)
    line_totals: Mapping[LineKey, Totals] = field(default_factory=dict)
    declarations: Mapping[str, DeclarationState] = field(default_factory=dict)
    seen_message_ids: frozenset[str] = frozenset()
    known_to_customs: frozenset[str] | None = None
    versions_at_customs: Mapping[str, int] | None = None


@dataclass(frozen=True, slots=True)
class MessageOutcome:
    message_id: str
    mrn: str
    event: str
    outcome: Outcome
    detail: str = ""
    record: Record = Record.INSERT
    version: int | None = None
    documents: tuple[DocumentResult, ...] = ()  # what became of each document, for the result


@dataclass
class Decision:
    movements: list[Movement] = field(default_factory=list)
    usage: dict[Key, Usage] = field(default_factory=dict)  # final value of each changed key
    refusals: list[Refusal] = field(default_factory=list)
    outcomes: list[MessageOutcome] = field(default_factory=list)
    declarations: dict[str, DeclarationState] = field(default_factory=dict)  # changed states
    alerts: list[Alert] = field(default_factory=list)
    status_changes: list[StatusChange] = field(default_factory=list)  # in the order they happen


def referenced_licences(
    events: Iterable[DeclarationEvent], states: Iterable[DeclarationState] = ()
) -> set[str]:
    """Every document reference the events write off against, and those the declarations they
    amend quote (a superset of the licences the rules will look at): what the ledger must
    load."""
    numbers = set()
    for event in events:
        if event.declaration is not None:
            numbers.update(document.reference for _, document in event.declaration.write_offs())
    for state in states:
        if state.acted_on is not None:
            numbers.update(state.acted_on.references())
    return numbers

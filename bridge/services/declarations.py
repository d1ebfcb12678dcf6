"""Apply declaration events: a batch of customs' events into the ledger, in the caller's
transaction, with a result message for each.

Straight down and back: the store reads what the rules need (`load_snapshot`, under the
writers' locks), the rules decide (bridge.core.writeoff.batch.decide), the store writes the
decision with each message's result (`write_decision`), the authority's alerts are raised and
the licence status changes the rules decided are made (bridge.services.licence_status:
exhausted, valid again). The caller commits, then publishes the results it is given. Unreadable
messages are quarantined with a `quarantined` result for each one whose sender can be named."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache

from sqlalchemy import Connection

from bridge.adapters.store import ledger
from bridge.adapters.store.alerts import raise_alert
from bridge.adapters.store.db import lock_licences
from bridge.adapters.store.ledger import PendingResult, Unreadable, quarantine_key
from bridge.adapters.store.licences import load_licences
from bridge.adapters.store.line_totals import totals_of_licences
from bridge.core import acted_on
from bridge.core.correlation import load_correlation
from bridge.core.documents import national_document_codes
from bridge.core.envelope import (
    DeclarationEvent,
    DeclarationResult,
    build_result,
    read_event,
    result_message_id,
)
from bridge.core.errors import Rejected
from bridge.core.ledger_state import (
    Outcome,
    ProcessedMessage,
    Record,
    StatusChange,
    StoredDeclaration,
)
from bridge.core.model import LicenceStatus
from bridge.core.writeoff.batch import decide
from bridge.core.writeoff.decision import (
    Decision,
    DeclarationState,
    LedgerSnapshot,
    MessageOutcome,
    referenced_licences,
)
from bridge.services.config import Settings
from bridge.services.licence_status import change_status

log = logging.getLogger(__name__)

ACTOR = "customs-declaration"  # who the ledger says moved what a declaration writes off


@dataclass(frozen=True)
class BatchResult:
    outcomes: tuple[MessageOutcome, ...] = ()
    movements: int = 0
    refusals: int = 0
    counts: dict[str, int] = field(default_factory=dict)  # outcome -> messages
    results: tuple[PendingResult, ...] = ()  # to publish once the batch is committed, in order
    status_changes: tuple[StatusChange, ...] = ()  # made in the same transaction
    alerts: int = 0

    def count(self, outcome: Outcome) -> int:
        return self.counts.get(str(outcome), 0)


def combine(results: Iterable[BatchResult]) -> BatchResult:
    """Several results as one (a batch applied in parts)."""
    outcomes: list[MessageOutcome] = []
    counts: Counter[str] = Counter()
    pending: list[PendingResult] = []
    changes: list[StatusChange] = []
    movements = refusals = alerts = 0
    for result in results:
        outcomes.extend(result.outcomes)
        counts.update(result.counts)
        pending.extend(result.results)
        changes.extend(result.status_changes)
        movements += result.movements
        refusals += result.refusals
        alerts += result.alerts
    return BatchResult(
        tuple(outcomes), movements, refusals, dict(counts), tuple(pending), tuple(changes), alerts
    )


def apply_declarations(
    conn: Connection,
    events: Sequence[DeclarationEvent],
    *,
    now: datetime,
    settings: Settings,
) -> BatchResult:
    """Apply `events` (in order) to the ledger inside the caller's transaction: every message
    id recorded with its outcome and its result message (pending publication), the decision's
    alerts raised, then the licence status changes the rules decided (exhausted when every line
    with a ceiling is used up, valid again when quantity comes back), each through
    bridge.services.licence_status so that customs get the status message. Returns the results
    to publish after the commit, in event order."""
    if not events:
        return BatchResult()
    snapshot = load_snapshot(conn, events)
    decision = decide(
        events,
        snapshot,
        national=national_table(settings.national_document_codes),
        correlation=load_correlation(),
    )
    results = write_decision(conn, decision, snapshot, now)
    for alert in decision.alerts:  # rare: over-use, CN/CLE warnings
        raise_alert(
            conn,
            alert.kind,
            alert.message,
            now=now,
            licence_number=alert.licence_number,
            line_number=alert.line_number,
            mrn=alert.mrn,
            details=dict(alert.details),
        )
    for change in decision.status_changes:
        _change_status(conn, change, now)
    counts = Counter(str(o.outcome) for o in decision.outcomes if o.record is not Record.UPDATE)
    return BatchResult(
        outcomes=tuple(decision.outcomes),
        movements=len(decision.movements),
        refusals=len(decision.refusals),
        counts=dict(counts),
        results=tuple(results),
        status_changes=tuple(decision.status_changes),
        alerts=len(decision.alerts),
    )


def load_snapshot(conn: Connection, events: Sequence[DeclarationEvent]) -> LedgerSnapshot:
    """The ledger state `events` touch: processed message ids, declaration states, usage of
    their MRNs, the licences they quote and those licences' line totals.

    Read under the writers' locks (bridge.adapters.store.db), held until the caller's
    transaction ends: on SQLite the write lock first; on PostgreSQL the MRNs' declaration rows,
    then the licences, before anything that depends on them is read. So two consumers, or a
    consumer and a manual movement, never both decide on the same remaining balance."""
    mrns = {event.mrn for event in events}
    states = {
        mrn: _declaration_state(row) for mrn, row in ledger.lock_declarations(conn, mrns).items()
    }
    seen = ledger.processed_ids(conn, {event.message_id for event in events})
    held = [event for state in states.values() for event in state.held]
    usage = ledger.usage_of(conn, mrns)
    # The licences quoted, those the declarations acted on quote (an amendment rechecks the
    # merged declaration), and those the MRNs wrote off before (an invalidation or amendment
    # gives back to them, which may end their exhaustion).
    numbers = referenced_licences([*events, *held], states.values())
    numbers.update(u.licence_number for u in usage.values())
    lock_licences(conn, numbers)
    licences = load_licences(conn, numbers) if numbers else {}
    # One row per line (line_total), however long the line's history.
    totals = totals_of_licences(conn, set(licences) | {u.licence_number for u in usage.values()})
    at_customs = ledger.versions_at_customs(conn, licences)
    return LedgerSnapshot(
        licences=licences,
        usage=usage,
        line_totals=totals,
        declarations=states,
        seen_message_ids=frozenset(seen),
        known_to_customs=frozenset(at_customs),
        versions_at_customs=at_customs,
    )


def write_decision(
    conn: Connection, decision: Decision, snapshot: LedgerSnapshot, now: datetime
) -> list[PendingResult]:
    """Write what the rules decided, each message's outcome with its result message; returns
    the results to publish: the new ones, then those of messages processed in an earlier batch
    that came again (their stored result goes out again, unchanged: customs may have missed
    it, and the same id lets them recognise it)."""
    ledger.insert_movements(conn, decision.movements, actor=ACTOR, now=now)
    ledger.write_usage(conn, decision.usage, snapshot.usage, now)
    ledger.insert_refusals(conn, decision.refusals, now)
    ledger.write_declarations(
        conn,
        [_stored(state) for state in decision.declarations.values()],
        snapshot.declarations,
        now,
    )
    processed = [
        ProcessedMessage(
            o.message_id,
            o.mrn,
            o.event,
            str(o.outcome),
            _result(o, now),
            update=o.record is Record.UPDATE,
        )
        for o in decision.outcomes
        if o.record is not Record.NONE
    ]
    results = ledger.record_processed(conn, processed, now)
    again = {
        o.message_id
        for o in decision.outcomes
        if o.record is Record.NONE and o.message_id in snapshot.seen_message_ids
    }
    return results + ledger.resend_results(conn, sorted(again))


def quarantine_messages(
    conn: Connection, messages: Sequence[Unreadable], now: datetime
) -> tuple[int, list[PendingResult]]:
    """Store unreadable messages with their reasons, once each; returns how many were stored
    now and the results to publish: a `quarantined` result for each message whose sender's
    message id could be read (the others cannot be answered); a redelivery's stored result
    again."""
    results: dict[str, bytes] = {}
    for message in messages:
        if message.message_id is not None:
            key = quarantine_key(message.payload)
            if key not in results:
                results[key] = _quarantined_result(message, now)
    return ledger.quarantine_batch(conn, messages, now, results)


def _change_status(conn: Connection, change: StatusChange, now: datetime) -> None:
    try:
        changed = change_status(
            conn,
            change.licence_number,
            change.to_status,
            reason=change.reason,
            actor=change.actor,
            now=now,
        )
    except Rejected as refused:  # e.g. suspended meanwhile by an authority: theirs stands
        log.warning(
            "licence %s: status %s -> %s not made: %s",
            change.licence_number,
            change.from_status,
            change.to_status,
            refused,
        )
        return
    if changed and change.to_status is LicenceStatus.EXHAUSTED:
        raise_alert(
            conn,
            "exhausted",
            f"licence {change.licence_number} is exhausted: {change.reason}",
            now=now,
            licence_number=change.licence_number,
        )


def _declaration_state(row: StoredDeclaration) -> DeclarationState:
    # Each was read once before it was held; read again (whatever today's limit).
    held = tuple(read_event(raw, max_bytes=len(raw)) for raw in row.held_messages)
    return DeclarationState(
        mrn=row.mrn,
        version=row.version,
        event=row.event,
        invalidated=row.invalidated,
        message_id=row.message_id,
        held=tuple(sorted(held, key=lambda event: event.version)),
        acted_on=None if row.acted_on is None else acted_on.from_json(row.acted_on),
    )


def _stored(state: DeclarationState) -> StoredDeclaration:
    return StoredDeclaration(
        mrn=state.mrn,
        version=state.version,
        event=state.event,
        invalidated=state.invalidated,
        message_id=state.message_id,
        held_messages=tuple(event.raw for event in state.held),
        held_version=max((event.version for event in state.held), default=None),
        acted_on=None if state.acted_on is None else acted_on.to_json(state.acted_on),
    )


def _result(outcome: MessageOutcome, now: datetime) -> bytes:
    return build_result(
        DeclarationResult(
            message_id=result_message_id(outcome.message_id, str(outcome.outcome)),
            in_reply_to=outcome.message_id,
            outcome=str(outcome.outcome),
            processed_at=now,
            mrn=outcome.mrn,
            declaration_version=outcome.version,
            event=outcome.event,
            detail=outcome.detail,
            documents=outcome.documents,
        )
    )


def _quarantined_result(message: Unreadable, now: datetime) -> bytes:
    assert message.message_id is not None
    return build_result(
        DeclarationResult(
            message_id=result_message_id(message.message_id, str(Outcome.QUARANTINED)),
            in_reply_to=message.message_id,
            outcome=str(Outcome.QUARANTINED),
            processed_at=now,
            mrn=message.mrn,
            event=message.event,
            detail="\n".join(str(p) for p in message.problems) or "unreadable",
        )
    )


@lru_cache(maxsize=16)
def national_table(spec: str):
    """The national document code table of a deployment's `national_document_codes`."""
    return national_document_codes(spec)

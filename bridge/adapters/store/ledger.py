"""Customs write-offs in the ledger: load what a batch touches, let the rules decide
(bridge.core.writeoff), write the result; quarantine for unreadable messages; the result message of
every event, kept until it is published.

A batch costs a handful of grouped queries and one executemany per table, whatever its size.
The caller owns the transaction: everything a batch writes commits (or not) together, its
result messages included, so that a crash between the commit and the publication loses none:
they stay `pending` in processed_message until `mark_results_published`."""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache

from sqlalchemy import (
    Connection,
    and_,
    bindparam,
    insert,
    select,
    update,
)

from bridge.adapters.store.alerts import raise_alert
from bridge.adapters.store.bulk import (
    DECLARATION_COLUMNS,
    MOVEMENT_COLUMNS,
    PROCESSED_COLUMNS,
    REFUSAL_COLUMNS,
    USAGE_COLUMNS,
    USAGE_UPDATE_KEYS,
    insert_many,
)
from bridge.adapters.store.db import begin_writing, lock_licences
from bridge.adapters.store.licences import load_licences
from bridge.adapters.store.line_totals import totals_of_licences
from bridge.adapters.store.schema import (
    declaration,
    movement,
    outbox,
    processed_message,
    quarantine,
    refusal,
    usage,
)
from bridge.core.correlation import load_correlation
from bridge.core.documents import national_document_codes
from bridge.core.envelope import (
    DeclarationEvent,
    DeclarationResult,
    build_result,
    read_event,
    result_message_id,
)
from bridge.core.errors import Problem, Rejected
from bridge.core.writeoff import (
    DeclarationState,
    Key,
    LedgerSnapshot,
    MessageOutcome,
    Outcome,
    Record,
    StatusChange,
    Usage,
    decide,
    referenced_licences,
)
from bridge.services.config import Settings

ACTOR = "customs-declaration"
PENDING = "pending"  # result_state: written, not yet taken by the broker
PUBLISHED = "published"
DELIVERED_CERTIFICATE = ("certificate", "delivered")  # outbox kind and status customs acked
_CHUNK = 500  # bound parameters per IN list, well under every database's limit


# A result message to publish: (its processed_message key, the message bytes).
PendingResult = tuple[str, bytes]


@dataclass(frozen=True)
class BatchResult:
    outcomes: tuple[MessageOutcome, ...] = ()
    movements: int = 0
    refusals: int = 0
    counts: dict[str, int] = field(default_factory=dict)  # outcome -> messages
    results: tuple[PendingResult, ...] = ()  # to publish once the batch is committed, in order
    status_changes: tuple[
        StatusChange, ...
    ] = ()  # for bridge.services.licence_status, same transaction
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


@lru_cache(maxsize=16)
def _national(spec: str):
    return national_document_codes(spec)


def apply_batch(
    conn: Connection, events: Sequence[DeclarationEvent], *, now: datetime, settings: Settings
) -> BatchResult:
    """Apply `events` (in order) to the ledger inside the caller's transaction, record every
    message id with its outcome and its result message (pending publication) in
    processed_message, and raise the decision's alerts. The licence status changes the rules
    decided are returned for the caller to make in the same transaction
    (bridge.services.licence_status); the results to publish after the commit, in event order."""
    if not events:
        return BatchResult()
    snapshot = load_snapshot(conn, events)
    decision = decide(
        events,
        snapshot,
        national=_national(settings.national_document_codes),
        correlation=load_correlation(),
    )

    insert_many(
        conn,
        movement,
        MOVEMENT_COLUMNS,
        [
            (
                m.licence_number,
                m.line_number,
                str(m.kind),
                m.quantity,
                m.value,
                m.declared_quantity,
                m.declared_unit,
                m.mrn,
                m.goods_item,
                m.document_code,
                m.document_ref,
                m.message_id,
                ACTOR,
                m.reason,
                now,
            )
            for m in decision.movements
        ],
    )
    _write_usage(conn, decision.usage, snapshot.usage, now)
    insert_many(
        conn,
        refusal,
        REFUSAL_COLUMNS,
        [
            (
                r.mrn,
                r.goods_item,
                r.document_code,
                r.document_ref,
                r.licence_number,
                r.line_number,
                r.code,
                r.reason,
                r.message_id,
                now,
            )
            for r in decision.refusals
        ],
    )
    _write_declarations(conn, decision.declarations, snapshot.declarations, now)
    results = _write_processed(conn, decision.outcomes, now)
    results += _resend_results(conn, decision.outcomes, snapshot.seen_message_ids)
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

    Read under the writers' locks (bridge.adapters.store.db), held until the caller's transaction
    ends:
    on SQLite the write lock first; on PostgreSQL the MRNs' declaration rows, then the
    licences, before anything that depends on them is read. So two consumers, or a consumer
    and a manual movement, never both decide on the same remaining balance."""
    begin_writing(conn)
    mrns = {event.mrn for event in events}
    states = _load_declarations(conn, mrns, lock=True)
    seen = _processed_ids(conn, {event.message_id for event in events})
    held = [state.held for state in states.values() if state.held is not None]
    current_usage: dict[Key, Usage] = {}
    for chunk in _chunks(mrns):
        for row in conn.execute(select(usage).where(usage.c.mrn.in_(chunk))):
            current_usage[(row.mrn, row.goods_item, row.document_code, row.document_ref)] = Usage(
                row.licence_number,
                row.line_number,
                row.quantity,
                row.value,
                row.declaration_version,
                row.event,
            )
    # The licences quoted, and those the MRNs wrote off before (an invalidation or amendment
    # gives back to them, which may end their exhaustion).
    numbers = referenced_licences([*events, *held])
    numbers.update(u.licence_number for u in current_usage.values())
    lock_licences(conn, numbers)
    licences = load_licences(conn, numbers) if numbers else {}
    # One row per line (line_total), however long the line's history.
    totals = totals_of_licences(
        conn, set(licences) | {u.licence_number for u in current_usage.values()}
    )
    return LedgerSnapshot(
        licences=licences,
        usage=current_usage,
        line_totals=totals,
        declarations=states,
        seen_message_ids=frozenset(seen),
        known_to_customs=frozenset(known_to_customs(conn, licences)),
    )


def known_to_customs(conn: Connection, numbers: Iterable[str]) -> set[str]:
    """Which of these licences customs acknowledged a certificate of (any version)."""
    kind, delivered = DELIVERED_CERTIFICATE
    known: set[str] = set()
    for chunk in _chunks(numbers):
        # The status is compared here, not in SQL: with it in the WHERE clause and hundreds of
        # numbers in the IN list, SQLite's planner (without statistics) walks ix_outbox_status
        # over every delivered row of the ledger (33 ms a batch at 250,000 licences, against
        # 0.4 ms through ix_outbox_certificate_state, which this query is answered from).
        rows = conn.execute(
            select(outbox.c.licence_number, outbox.c.status)
            .distinct()
            .where(outbox.c.licence_number.in_(chunk), outbox.c.kind == kind)
        )
        known.update(number for number, status in rows if status == delivered)
    return known


def _load_declarations(
    conn: Connection, mrns: Iterable[str], *, lock: bool = False
) -> dict[str, DeclarationState]:
    """The declarations' states; with `lock`, their rows locked (in MRN order) on PostgreSQL."""
    states = {}
    for chunk in _chunks(mrns):
        query = select(declaration).where(declaration.c.mrn.in_(chunk))
        if lock:
            query = query.order_by(declaration.c.mrn).with_for_update(key_share=True)
        for row in conn.execute(query):
            held = None
            if row.held_message is not None:
                # It was read once before it was held; read it again (whatever today's limit).
                raw = bytes(row.held_message)
                held = read_event(raw, max_bytes=len(raw))
            states[row.mrn] = DeclarationState(
                mrn=row.mrn,
                version=row.version,
                event=row.event,
                invalidated=bool(row.invalidated),
                message_id=row.message_id,
                held=held,
            )
    return states


def _write_usage(
    conn: Connection, changed: dict[Key, Usage], before: Mapping[Key, Usage], now: datetime
) -> None:
    rows = [
        (
            *key,
            u.licence_number,
            u.line_number,
            u.quantity,
            u.value,
            u.declaration_version,
            u.event,
            now,
        )
        for key, u in changed.items()
    ]
    new = [row for row in rows if row[:4] not in before]
    insert_many(conn, usage, USAGE_COLUMNS, new)
    existing = [dict(zip(USAGE_UPDATE_KEYS, row, strict=True)) for row in rows if row[:4] in before]
    if existing:
        conn.execute(
            update(usage).where(
                and_(
                    usage.c.mrn == bindparam("k_mrn"),
                    usage.c.goods_item == bindparam("k_goods_item"),
                    usage.c.document_code == bindparam("k_document_code"),
                    usage.c.document_ref == bindparam("k_document_ref"),
                )
            ),  # SET: the row's other keys, by column name
            existing,
        )


def _write_declarations(
    conn: Connection,
    changed: dict[str, DeclarationState],
    before: Mapping[str, DeclarationState],
    now: datetime,
) -> None:
    rows = [
        (
            state.mrn,
            state.version,
            state.event,
            int(state.invalidated),
            state.message_id,
            state.held.version if state.held else None,
            state.held.raw if state.held else None,
            now,
        )
        for state in changed.values()
    ]
    insert_many(conn, declaration, DECLARATION_COLUMNS, [r for r in rows if r[0] not in before])
    existing = [
        dict(zip(("k_mrn", *DECLARATION_COLUMNS[1:]), row, strict=True))
        for row in rows
        if row[0] in before
    ]
    if existing:
        conn.execute(
            update(declaration).where(declaration.c.mrn == bindparam("k_mrn")),
            existing,
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


def _write_processed(
    conn: Connection, outcomes: Sequence[MessageOutcome], now: datetime
) -> list[PendingResult]:
    """Record the outcomes with their result messages; returns the results to publish."""
    results: list[PendingResult] = []
    new = []
    later = []
    for o in outcomes:
        if o.record is Record.NONE:
            continue
        result = _result(o, now)
        results.append((o.message_id, result))
        if o.record is Record.INSERT:
            new.append((o.message_id, o.mrn, o.event, str(o.outcome), now, result, PENDING))
        else:
            later.append(
                {
                    "k_message_id": o.message_id,
                    "outcome": str(o.outcome),
                    "result": result,
                    "result_state": PENDING,
                    "result_published_at": None,
                }
            )
    insert_many(conn, processed_message, PROCESSED_COLUMNS, new)
    if later:
        conn.execute(
            update(processed_message).where(
                processed_message.c.message_id == bindparam("k_message_id")
            ),
            later,
        )
    return results


def _resend_results(
    conn: Connection, outcomes: Sequence[MessageOutcome], seen_before: frozenset[str]
) -> list[PendingResult]:
    """A message processed in an earlier batch came again: its stored result goes out again,
    unchanged (customs may have missed it; the same id lets them recognise it)."""
    again = sorted(
        {o.message_id for o in outcomes if o.record is Record.NONE and o.message_id in seen_before}
    )
    return _set_pending(conn, again)


def _set_pending(conn: Connection, keys: Sequence[str]) -> list[PendingResult]:
    stored: dict[str, bytes] = {}
    for chunk in _chunks(keys):
        stored.update(
            (key, bytes(result))
            for key, result in conn.execute(
                select(processed_message.c.message_id, processed_message.c.result).where(
                    processed_message.c.message_id.in_(chunk),
                    processed_message.c.result.is_not(None),
                )
            )
        )
        conn.execute(
            update(processed_message)
            .where(
                processed_message.c.message_id.in_(chunk),
                processed_message.c.result.is_not(None),
            )
            .values(result_state=PENDING, result_published_at=None)
        )
    return [(key, stored[key]) for key in keys if key in stored]


def pending_results(conn: Connection, *, limit: int = 1000) -> list[PendingResult]:
    """Result messages written but not yet published (a crash or a broker away between a
    commit and its publication), oldest first."""
    rows = conn.execute(
        select(processed_message.c.message_id, processed_message.c.result)
        .where(processed_message.c.result_state == PENDING)
        .order_by(processed_message.c.received_at, processed_message.c.message_id)
        .limit(limit)
    )
    return [(key, bytes(result)) for key, result in rows]


def mark_results_published(conn: Connection, keys: Iterable[str], now: datetime) -> int:
    """The broker acknowledged these results: they are not sent again unless their event is."""
    marked = 0
    for chunk in _chunks(keys):
        marked += conn.execute(
            update(processed_message)
            .where(
                processed_message.c.message_id.in_(chunk),
                processed_message.c.result_state == PENDING,
            )
            .values(result_state=PUBLISHED, result_published_at=now)
        ).rowcount
    return marked


@dataclass(frozen=True, slots=True)
class Unreadable:
    """A message that could not be read: kept byte for byte with every reason."""

    topic: str
    payload: bytes
    message_id: str | None  # when the envelope got far enough to name one
    problems: tuple[Problem, ...]


def quarantine_key(payload: bytes) -> str:
    """The processed_message id of an unreadable message: a hash of its bytes, so that a
    redelivery is recognised without trusting anything inside it."""
    return "sha256:" + hashlib.sha256(payload).hexdigest()


def quarantine_messages(conn: Connection, messages: Sequence[Unreadable], now: datetime) -> int:
    """Store unreadable messages with their reasons, once each (a redelivery of the same bytes
    is recognised). Returns how many were stored now."""
    return quarantine_batch(conn, messages, now)[0]


def quarantine_batch(
    conn: Connection, messages: Sequence[Unreadable], now: datetime
) -> tuple[int, list[PendingResult]]:
    """`quarantine_messages`, with the result messages to publish: one `quarantined` result
    for each message whose sender's message id could be read (the others cannot be answered);
    a redelivery sends its stored result again."""
    keys = [quarantine_key(m.payload) for m in messages]
    # SQLite: the write lock before the read. PostgreSQL: two consumers storing the same bytes
    # at once meet on processed_message's key, and the later one's transaction runs again.
    begin_writing(conn)
    seen_before = _processed_ids(conn, keys)
    seen = set(seen_before)
    fresh = []
    for key, message in zip(keys, messages, strict=True):
        if key not in seen:
            seen.add(key)
            fresh.append((key, message))
    again = _set_pending(conn, sorted({key for key in keys if key in seen_before}))
    if not fresh:
        return 0, again
    results = {key: _quarantined_result(m, now) for key, m in fresh if m.message_id is not None}
    conn.execute(
        insert(quarantine),
        [
            {
                "message_id": _storable((m.message_id or "")[:200]) or None,
                "topic": m.topic[:500],
                "payload": m.payload,
                "reason": "\n".join(str(p) for p in m.problems) or "unreadable",
                "problems": json.dumps([p.as_dict() for p in m.problems]),
                "received_at": now,
            }
            for _, m in fresh
        ],
    )
    conn.execute(
        insert(processed_message),
        [
            {"message_id": key, "mrn": None, "event": None, "outcome": "quarantined"}
            | {"received_at": now, "result": results.get(key)}
            | {"result_state": PENDING if key in results else None}
            for key, _ in fresh
        ],
    )
    return len(fresh), [*again, *results.items()]


def _storable(text: str) -> str:
    # A hint read from an unreadable message may hold a lone surrogate, which no database
    # stores as text, or NUL, which PostgreSQL does not: keep them visible as escapes.
    return text.encode("utf-8", "backslashreplace").decode("utf-8").replace("\x00", "\\x00")


def _quarantined_result(message: Unreadable, now: datetime) -> bytes:
    assert message.message_id is not None
    return build_result(
        DeclarationResult(
            message_id=result_message_id(message.message_id, str(Outcome.QUARANTINED)),
            in_reply_to=message.message_id,
            outcome=str(Outcome.QUARANTINED),
            processed_at=now,
            detail="\n".join(str(p) for p in message.problems) or "unreadable",
        )
    )


def quarantine_message(
    conn: Connection,
    topic: str,
    payload: bytes,
    message_id: str | None,
    problems: Sequence[Problem] | Rejected,
    now: datetime,
) -> bool:
    """Store one unreadable message with its reasons; False when it was stored before."""
    if isinstance(problems, Rejected):
        problems = problems.problems
    stored = quarantine_messages(
        conn, [Unreadable(topic, payload, message_id, tuple(problems))], now
    )
    return stored == 1


def _processed_ids(conn: Connection, message_ids: Iterable[str]) -> set[str]:
    """Which of these message ids the ledger has processed already."""
    seen: set[str] = set()
    for chunk in _chunks(message_ids):
        seen.update(
            conn.execute(
                select(processed_message.c.message_id).where(
                    processed_message.c.message_id.in_(chunk)
                )
            ).scalars()
        )
    return seen


def _chunks(values: Iterable[str]) -> Iterable[list[str]]:
    ordered = sorted(values)
    for start in range(0, len(ordered), _CHUNK):
        yield ordered[start : start + _CHUNK]


__all__ = [
    "BatchResult",
    "PendingResult",
    "Unreadable",
    "apply_batch",
    "combine",
    "known_to_customs",
    "load_snapshot",
    "mark_results_published",
    "pending_results",
    "quarantine_batch",
    "quarantine_message",
    "quarantine_messages",
]

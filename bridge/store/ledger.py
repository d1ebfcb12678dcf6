"""Customs write-offs in the ledger: load what a batch touches, let the rules decide
(bridge.writeoff), write the result; quarantine for unreadable messages; line balances.

A batch costs a handful of grouped queries and one executemany per table, whatever its size.
The caller owns the transaction: everything a batch writes commits (or not) together."""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from functools import lru_cache

from sqlalchemy import Connection, Table, and_, bindparam, func, insert, select, type_coerce, update

from bridge.config import Settings
from bridge.envelope import DeclarationEvent, read_event
from bridge.errors import Problem, Rejected
from bridge.store.licences import load_licences
from bridge.store.schema import (
    Micro,
    declaration,
    movement,
    processed_message,
    quarantine,
    refusal,
    usage,
)
from bridge.writeoff import (
    DeclarationState,
    Key,
    LedgerSnapshot,
    MessageOutcome,
    Outcome,
    Record,
    Usage,
    decide,
    national_document_codes,
    referenced_licences,
)

ACTOR = "customs-declaration"
MOVEMENT_COLUMNS = (
    "licence_number",
    "line_number",
    "kind",
    "quantity",
    "value",
    "declared_quantity",
    "declared_unit",
    "mrn",
    "goods_item",
    "document_code",
    "document_ref",
    "message_id",
    "actor",
    "reason",
    "at",
)
REFUSAL_COLUMNS = (
    "mrn",
    "goods_item",
    "document_code",
    "document_ref",
    "licence_number",
    "line_number",
    "code",
    "reason",
    "message_id",
    "at",
)
USAGE_COLUMNS = (
    "mrn",
    "goods_item",
    "document_code",
    "document_ref",
    "licence_number",
    "line_number",
    "quantity",
    "value",
    "declaration_version",
    "event",
    "updated_at",
)
USAGE_UPDATE_KEYS = (
    "k_mrn",
    "k_goods_item",
    "k_document_code",
    "k_document_ref",
    *USAGE_COLUMNS[4:],
)
DECLARATION_COLUMNS = (
    "mrn",
    "version",
    "event",
    "invalidated",
    "message_id",
    "held_version",
    "held_message",
    "updated_at",
)
PROCESSED_COLUMNS = ("message_id", "mrn", "event", "outcome", "received_at")
_CHUNK = 500  # bound parameters per IN list, well under every database's limit


@dataclass(frozen=True)
class BatchResult:
    outcomes: tuple[MessageOutcome, ...] = ()
    movements: int = 0
    refusals: int = 0
    counts: dict[str, int] = field(default_factory=dict)  # outcome -> messages

    def count(self, outcome: Outcome) -> int:
        return self.counts.get(str(outcome), 0)


def combine(results: Iterable[BatchResult]) -> BatchResult:
    """Several results as one (a batch applied in parts)."""
    outcomes: list[MessageOutcome] = []
    counts: Counter[str] = Counter()
    movements = refusals = 0
    for result in results:
        outcomes.extend(result.outcomes)
        counts.update(result.counts)
        movements += result.movements
        refusals += result.refusals
    return BatchResult(tuple(outcomes), movements, refusals, dict(counts))


@lru_cache(maxsize=16)
def _national(spec: str):
    return national_document_codes(spec)


def apply_batch(
    conn: Connection, events: Sequence[DeclarationEvent], *, now: datetime, settings: Settings
) -> BatchResult:
    """Apply `events` (in order) to the ledger inside the caller's transaction and record
    every message id with its outcome in processed_message."""
    if not events:
        return BatchResult()
    snapshot = load_snapshot(conn, events)
    decision = decide(events, snapshot, national=_national(settings.national_document_codes))

    _insert_many(
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
    _insert_many(
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
    _write_processed(conn, decision.outcomes, now)
    counts = Counter(str(o.outcome) for o in decision.outcomes if o.record is not Record.UPDATE)
    return BatchResult(
        outcomes=tuple(decision.outcomes),
        movements=len(decision.movements),
        refusals=len(decision.refusals),
        counts=dict(counts),
    )


def load_snapshot(conn: Connection, events: Sequence[DeclarationEvent]) -> LedgerSnapshot:
    """The ledger state `events` touch: processed message ids, declaration states, usage of
    their MRNs, the licences they quote and those licences' line totals."""
    seen = _processed_ids(conn, {event.message_id for event in events})
    mrns = {event.mrn for event in events}
    states = _load_declarations(conn, mrns)
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
    numbers = referenced_licences([*events, *held])
    licences = load_licences(conn, numbers) if numbers else {}
    line_numbers = set(licences) | {u.licence_number for u in current_usage.values()}
    totals = {}
    for chunk in _chunks(line_numbers):
        query = (
            select(
                movement.c.licence_number,
                movement.c.line_number,
                type_coerce(func.sum(movement.c.quantity), Micro()),
                type_coerce(func.sum(movement.c.value), Micro()),
            )
            .where(movement.c.licence_number.in_(chunk))
            .group_by(movement.c.licence_number, movement.c.line_number)
        )
        for number, line_number, quantity, value in conn.execute(query):
            totals[(number, line_number)] = (quantity or Decimal(0), value or Decimal(0))
    return LedgerSnapshot(
        licences=licences,
        usage=current_usage,
        line_totals=totals,
        declarations=states,
        seen_message_ids=frozenset(seen),
    )


def _load_declarations(conn: Connection, mrns: Iterable[str]) -> dict[str, DeclarationState]:
    states = {}
    for chunk in _chunks(mrns):
        for row in conn.execute(select(declaration).where(declaration.c.mrn.in_(chunk))):
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
    _insert_many(conn, usage, USAGE_COLUMNS, new)
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
    _insert_many(conn, declaration, DECLARATION_COLUMNS, [r for r in rows if r[0] not in before])
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


def _write_processed(conn: Connection, outcomes: Sequence[MessageOutcome], now: datetime) -> None:
    new = [
        (o.message_id, o.mrn, o.event, str(o.outcome), now)
        for o in outcomes
        if o.record is Record.INSERT
    ]
    _insert_many(conn, processed_message, PROCESSED_COLUMNS, new)
    later = [
        {"k_message_id": o.message_id, "outcome": str(o.outcome)}
        for o in outcomes
        if o.record is Record.UPDATE
    ]
    if later:
        conn.execute(
            update(processed_message).where(
                processed_message.c.message_id == bindparam("k_message_id")
            ),
            later,
        )


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
    keys = [quarantine_key(m.payload) for m in messages]
    seen = _processed_ids(conn, keys)
    fresh = []
    for key, message in zip(keys, messages, strict=True):
        if key not in seen:
            seen.add(key)
            fresh.append((key, message))
    if not fresh:
        return 0
    conn.execute(
        insert(quarantine),
        [
            {
                "message_id": (m.message_id or "")[:200] or None,
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
            | {"received_at": now}
            for key, _ in fresh
        ],
    )
    return len(fresh)


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


def _insert_many(conn: Connection, table: Table, names: Sequence[str], rows: list[tuple]) -> None:
    """INSERT `rows` (tuples in the order of `names`) in one executemany. The statement goes
    to the driver as is, each value through its column's own bind conversion (Micro, dates):
    the rows SQLAlchemy would write, at a fraction of its per-row cost on the hot path."""
    if not rows:
        return
    dialect = conn.dialect
    if dialect.paramstyle not in ("qmark", "format", "pyformat"):
        conn.execute(insert(table), [dict(zip(names, row, strict=True)) for row in rows])
        return
    marker = "?" if dialect.paramstyle == "qmark" else "%s"
    quote = dialect.identifier_preparer.quote
    statement = (
        f"INSERT INTO {dialect.identifier_preparer.format_table(table)}"
        f" ({', '.join(quote(name) for name in names)})"
        f" VALUES ({', '.join([marker] * len(names))})"
    )
    converters = [
        (index, converter)
        for index, name in enumerate(names)
        if (converter := table.c[name].type.bind_processor(dialect)) is not None
    ]
    if converters:
        converted = []
        last: dict[int, tuple[object, object]] = {}  # a batch repeats values (its `now`)
        for row in rows:
            values = list(row)
            for index, converter in converters:
                value = values[index]
                if value is None:
                    continue
                seen = last.get(index)
                if seen is not None and seen[0] is value:
                    values[index] = seen[1]
                else:
                    values[index] = converter(value)
                    last[index] = (value, values[index])
            converted.append(tuple(values))
        rows = converted
    conn.exec_driver_sql(statement, rows)


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
    "Unreadable",
    "apply_batch",
    "combine",
    "load_snapshot",
    "quarantine_message",
    "quarantine_messages",
]

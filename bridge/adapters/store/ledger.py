"""The write-off ledger's rows: declarations, usage per key, movements, refusals, processed
messages with their result messages, and the quarantine of unreadable messages. Reads and
writes only; what to write is decided elsewhere (bridge.services.declarations).

A batch costs a handful of grouped queries and one executemany per table, whatever its size.
The caller owns the transaction: everything a batch writes commits (or not) together, its
result messages included, so that a crash between the commit and the publication loses none:
they stay `pending` in processed_message until `mark_results_published`."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Container, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import (
    Connection,
    and_,
    bindparam,
    func,
    insert,
    select,
    update,
)

from bridge.adapters.store.bulk import (
    DECLARATION_COLUMNS,
    PROCESSED_COLUMNS,
    REFUSAL_COLUMNS,
    USAGE_COLUMNS,
    USAGE_UPDATE_KEYS,
    insert_many,
)
from bridge.adapters.store.chain import CHAIN_COLUMNS, linked
from bridge.adapters.store.db import begin_writing
from bridge.adapters.store.schema import (
    declaration,
    movement,
    outbox,
    processed_message,
    quarantine,
    refusal,
    usage,
)
from bridge.core.errors import Problem
from bridge.core.ledger_chain import MOVEMENT, MOVEMENT_FIELDS, as_utc
from bridge.core.ledger_state import (
    Key,
    Movement,
    ProcessedMessage,
    Refusal,
    StoredDeclaration,
    Usage,
)
from bridge.core.quarantine import QuarantinedMessage, problems_from_json, problems_to_json

PENDING = "pending"  # result_state: written, not yet taken by the broker
PUBLISHED = "published"
QUARANTINED = "quarantined"  # processed_message.outcome of an unreadable message
DELIVERED_CERTIFICATE = ("certificate", "delivered")  # outbox kind and status customs acked
_CHUNK = 500  # bound parameters per IN list, well under every database's limit


# A result message to publish: (its processed_message key, the message bytes).
PendingResult = tuple[str, bytes]


# Reads ------------------------------------------------------------------------------------


def lock_declarations(conn: Connection, mrns: Iterable[str]) -> dict[str, StoredDeclaration]:
    """Take the writers' lock (bridge.adapters.store.db.begin_writing: SQLite's write lock),
    then read the MRNs' declaration rows, locked in MRN order on PostgreSQL until the caller's
    transaction ends. Held amendments come back as the bytes received."""
    begin_writing(conn)
    states = {}
    for chunk in _chunks(mrns):
        query = (
            select(declaration)
            .where(declaration.c.mrn.in_(chunk))
            .order_by(declaration.c.mrn)
            .with_for_update(key_share=True)
        )
        for row in conn.execute(query):
            states[row.mrn] = StoredDeclaration(
                mrn=row.mrn,
                version=row.version,
                event=row.event,
                invalidated=bool(row.invalidated),
                message_id=row.message_id,
                held_messages=_held_messages(row.held_message),
                held_version=row.held_version,
                acted_on=row.acted_on,
            )
    return states


def _held_messages(stored: bytes | None) -> tuple[bytes, ...]:
    # One held message as received (a JSON object), or several as a JSON array of strings.
    if stored is None:
        return ()
    stored = bytes(stored)
    if stored.lstrip()[:1] != b"[":
        return (stored,)
    return tuple(message.encode("utf-8") for message in json.loads(stored))


def _held_column(messages: Sequence[bytes]) -> bytes | None:
    if not messages:
        return None
    if len(messages) == 1:
        return messages[0]
    # Every held message was read as UTF-8 JSON once, so each decodes.
    return json.dumps([m.decode("utf-8") for m in messages]).encode("utf-8")


def usage_of(conn: Connection, mrns: Iterable[str]) -> dict[Key, Usage]:
    """What each key of these MRNs writes off now."""
    found: dict[Key, Usage] = {}
    for chunk in _chunks(mrns):
        for row in conn.execute(select(usage).where(usage.c.mrn.in_(chunk))):
            found[(row.mrn, row.goods_item, row.document_code, row.document_ref)] = Usage(
                row.licence_number,
                row.line_number,
                row.quantity,
                row.value,
                row.declaration_version,
                row.event,
            )
    return found


def processed_ids(conn: Connection, message_ids: Iterable[str]) -> set[str]:
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


def known_to_customs(conn: Connection, numbers: Iterable[str]) -> set[str]:
    """Which of these licences customs acknowledged a certificate of (any version)."""
    return set(versions_at_customs(conn, numbers))


def versions_at_customs(conn: Connection, numbers: Iterable[str]) -> dict[str, int]:
    """For each of these licences customs acknowledged a certificate of, the newest version
    they acknowledged (the licence as customs hold it)."""
    kind, delivered = DELIVERED_CERTIFICATE
    known: dict[str, int] = {}
    for chunk in _chunks(numbers):
        # The status is compared here, not in SQL: with it in the WHERE clause and hundreds of
        # numbers in the IN list, SQLite's planner (without statistics) walks ix_outbox_status
        # over every delivered row of the ledger (33 ms a batch at 250,000 licences, against
        # 0.4 ms through ix_outbox_certificate_state, which this query is answered from).
        rows = conn.execute(
            select(outbox.c.licence_number, outbox.c.licence_version, outbox.c.status)
            .distinct()
            .where(outbox.c.licence_number.in_(chunk), outbox.c.kind == kind)
        )
        for number, version, status in rows:
            if status == delivered and version > known.get(number, 0):
                known[number] = version
    return known


# Writes -----------------------------------------------------------------------------------


def insert_movements(
    conn: Connection, movements: Sequence[Movement], *, actor: str, now: datetime
) -> None:
    """Append the batch's movements, each a link in its licence's hash chain (the heads read
    once for the batch: the caller holds the licences' locks)."""
    now = as_utc(now)
    rows = [
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
            actor,
            m.reason,
            now,
            1 if m.contingency else 0,
        )
        for m in movements
    ]
    insert_many(conn, movement, (*MOVEMENT_FIELDS, *CHAIN_COLUMNS), linked(conn, MOVEMENT, rows))


def write_usage(
    conn: Connection, changed: Mapping[Key, Usage], existing: Container[Key], now: datetime
) -> None:
    """Each changed key's usage: inserted, or updated where `existing` holds its row."""
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
    insert_many(conn, usage, USAGE_COLUMNS, [row for row in rows if row[:4] not in existing])
    updated = [
        dict(zip(USAGE_UPDATE_KEYS, row, strict=True)) for row in rows if row[:4] in existing
    ]
    if updated:
        conn.execute(
            update(usage).where(
                and_(
                    usage.c.mrn == bindparam("k_mrn"),
                    usage.c.goods_item == bindparam("k_goods_item"),
                    usage.c.document_code == bindparam("k_document_code"),
                    usage.c.document_ref == bindparam("k_document_ref"),
                )
            ),  # SET: the row's other keys, by column name
            updated,
        )


def insert_refusals(conn: Connection, refusals: Sequence[Refusal], now: datetime) -> None:
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
            for r in refusals
        ],
    )


def write_declarations(
    conn: Connection,
    changed: Iterable[StoredDeclaration],
    existing: Container[str],
    now: datetime,
) -> None:
    """Each changed declaration's row: inserted, or updated where `existing` holds its MRN."""
    rows = [
        (
            state.mrn,
            state.version,
            state.event,
            int(state.invalidated),
            state.message_id,
            state.held_version,
            _held_column(state.held_messages),
            now,
            state.acted_on,
        )
        for state in changed
    ]
    insert_many(conn, declaration, DECLARATION_COLUMNS, [r for r in rows if r[0] not in existing])
    updated = [
        dict(zip(("k_mrn", *DECLARATION_COLUMNS[1:]), row, strict=True))
        for row in rows
        if row[0] in existing
    ]
    if updated:
        conn.execute(
            update(declaration).where(declaration.c.mrn == bindparam("k_mrn")),
            updated,
        )


def record_processed(
    conn: Connection, messages: Sequence[ProcessedMessage], now: datetime
) -> list[PendingResult]:
    """Record each message's outcome with its result message, pending publication; returns the
    results to publish, in order."""
    new = []
    later = []
    for m in messages:
        if m.update:
            later.append(
                {
                    "k_message_id": m.message_id,
                    "outcome": m.outcome,
                    "result": m.result,
                    "result_state": PENDING,
                    "result_published_at": None,
                }
            )
        else:
            new.append((m.message_id, m.mrn, m.event, m.outcome, now, m.result, PENDING))
    insert_many(conn, processed_message, PROCESSED_COLUMNS, new)
    if later:
        conn.execute(
            update(processed_message).where(
                processed_message.c.message_id == bindparam("k_message_id")
            ),
            later,
        )
    return [(m.message_id, m.result) for m in messages if m.result is not None]


def resend_results(conn: Connection, message_ids: Sequence[str]) -> list[PendingResult]:
    """The stored results of these messages, set pending again (to go out again unchanged);
    in the order given, those without a stored result left out."""
    stored: dict[str, bytes] = {}
    for chunk in _chunks(message_ids):
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
    return [(key, stored[key]) for key in message_ids if key in stored]


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


# Quarantine -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Unreadable:
    """A message that could not be read: kept byte for byte with every reason."""

    topic: str
    payload: bytes
    message_id: str | None  # when the envelope got far enough to name one
    problems: tuple[Problem, ...]
    mrn: str | None = None  # when the envelope names a well-formed one
    event: str | None = None  # when the envelope (or the payload) says which


def quarantine_key(payload: bytes) -> str:
    """The processed_message id of an unreadable message: a hash of its bytes, so that a
    redelivery is recognised without trusting anything inside it."""
    return "sha256:" + hashlib.sha256(payload).hexdigest()


def quarantine_batch(
    conn: Connection,
    messages: Sequence[Unreadable],
    now: datetime,
    results: Mapping[str, bytes] | None = None,
) -> tuple[int, list[PendingResult]]:
    """Store unreadable messages with their reasons, once each (a redelivery of the same bytes
    is recognised), each with its result message from `results` (by `quarantine_key`) when it
    has one. Returns how many were stored now, and the results to publish: those of the
    messages stored now, and the stored results of redeliveries, set pending again."""
    results = results or {}
    keys = [quarantine_key(m.payload) for m in messages]
    # SQLite: the write lock before the read. PostgreSQL: two consumers storing the same bytes
    # at once meet on processed_message's key, and the later one's transaction runs again.
    begin_writing(conn)
    seen_before = processed_ids(conn, keys)
    seen = set(seen_before)
    fresh = []
    for key, message in zip(keys, messages, strict=True):
        if key not in seen:
            seen.add(key)
            fresh.append((key, message))
    again = resend_results(conn, sorted({key for key in keys if key in seen_before}))
    if not fresh:
        return 0, again
    answers = {key: results[key] for key, _ in fresh if key in results}
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
            {"message_id": key, "mrn": m.mrn, "event": m.event, "outcome": QUARANTINED}
            | {"received_at": now, "result": answers.get(key)}
            | {"result_state": PENDING if key in answers else None}
            for key, m in fresh
        ],
    )
    return len(fresh), [*again, *answers.items()]


def _storable(text: str) -> str:
    # A hint read from an unreadable message may hold a lone surrogate, which no database
    # stores as text, or NUL, which PostgreSQL does not: keep them visible as escapes.
    return text.encode("utf-8", "backslashreplace").decode("utf-8").replace("\x00", "\\x00")


def _chunks(values: Iterable[str]) -> Iterable[list[str]]:
    ordered = sorted(values)
    for start in range(0, len(ordered), _CHUNK):
        yield ordered[start : start + _CHUNK]


# Quarantine for operators ---------------------------------------------------------------------
# (bridge.services.quarantine: list, show, replay)


def quarantined_messages(
    conn: Connection,
    *,
    ids: Iterable[int] | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    open_only: bool = False,
) -> list[QuarantinedMessage]:
    """Quarantined messages in arrival order: those of `ids` when given, received from `since`
    (inclusive) to `until` (exclusive) when given; with `open_only`, only those no replay has
    settled (never replayed, or still unreadable at their last replay)."""
    query = select(quarantine).order_by(quarantine.c.id)
    if ids is not None:
        query = query.where(quarantine.c.id.in_(sorted(set(ids))))
    if since is not None:
        query = query.where(quarantine.c.received_at >= since)
    if until is not None:
        query = query.where(quarantine.c.received_at < until)
    if open_only:
        query = query.where(
            (quarantine.c.replay_outcome.is_(None)) | (quarantine.c.replay_outcome == QUARANTINED)
        )
    return [_quarantined(row) for row in conn.execute(query)]


def lock_quarantined(conn: Connection, quarantine_id: int) -> QuarantinedMessage | None:
    """One quarantined message, held until the caller's transaction ends (SQLite: the write
    lock; PostgreSQL: its row), so that two replays of it take turns; None when there is none."""
    begin_writing(conn)
    row = conn.execute(
        select(quarantine).where(quarantine.c.id == quarantine_id).with_for_update()
    ).first()
    return None if row is None else _quarantined(row)


def record_replay(
    conn: Connection,
    quarantine_id: int,
    *,
    now: datetime,
    outcome: str,
    result_id: str | None = None,
    problems: Sequence[Problem] = (),
    replayed_by: str | None = None,
) -> None:
    """What a replay of this quarantined message came to: its outcome, the id of the result
    message that answers it, the reasons when it still cannot be read, who asked for it."""
    conn.execute(
        update(quarantine)
        .where(quarantine.c.id == quarantine_id)
        .values(
            replayed_at=now,
            replays=func.coalesce(quarantine.c.replays, 0) + 1,
            replay_outcome=outcome,
            replay_result_id=None if result_id is None else result_id[:250],
            replay_problems=problems_to_json(problems) if problems else None,
            replayed_by=None if replayed_by is None else replayed_by[:200],
        )
    )


def _quarantined(row) -> QuarantinedMessage:
    return QuarantinedMessage(
        id=row.id,
        received_at=row.received_at,
        topic=row.topic,
        message_id=row.message_id,
        payload=bytes(row.payload),
        problems=problems_from_json(row.problems) or (Problem(row.reason),),
        replayed_at=row.replayed_at,
        replays=row.replays or 0,
        replay_outcome=row.replay_outcome,
        replay_result_id=row.replay_result_id,
        replay_problems=problems_from_json(row.replay_problems),
        replayed_by=row.replayed_by,
    )

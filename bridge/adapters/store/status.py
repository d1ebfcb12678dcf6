"""What the ledger says about the bridge's health: counts and ages read for `elbridge status`,
/ready and /metrics (bridge.services.health). Reads only, in the caller's connection; every
query is a count, a minimum or a sum over an indexed or small table, except the count of
processed messages by outcome, which reads that table once."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import Connection, Engine, and_, func, or_, select

from bridge.adapters.store.schema import (
    alert,
    declaration,
    movement,
    outbox,
    processed_message,
    quarantine,
    refusal,
    reject,
)

PENDING, DELIVERED, FAILED = "pending", "delivered", "failed"
STILL_QUARANTINED = "quarantined"  # a replay's outcome when the message still cannot be read
OPEN_ALERT = "open"  # alert.state, once the ledger has it (0006_alert_state)


def _utc(moment: datetime | None) -> datetime | None:
    # SQLite hands DateTime(timezone=True) back without its zone; everything stored is UTC.
    if moment is None or moment.tzinfo is not None:
        return moment
    return moment.replace(tzinfo=UTC)


def missing_sqlite_file(engine: Engine) -> Path | None:
    """The SQLite ledger file `engine` names when it does not exist (connecting would create
    an empty one), else None (it exists, or the ledger is not a SQLite file)."""
    url = engine.url
    if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
        return None
    path = Path(url.database)
    return None if path.exists() else path


def ping(conn: Connection) -> None:
    """One round trip that also shows the ledger's tables are there."""
    conn.execute(select(func.count()).select_from(outbox).where(outbox.c.id < 0)).scalar_one()


def message_outcomes(conn: Connection) -> dict[str, int]:
    """Processed declaration messages per outcome (applied, refused, ignored, quarantined,
    duplicate, stale, held), outcomes never seen left out."""
    query = select(processed_message.c.outcome, func.count()).group_by(processed_message.c.outcome)
    return {outcome: number for outcome, number in conn.execute(query)}


def count_rows(conn: Connection, table_name: str) -> int:
    """Rows of one of the tables that only grow: `reject` (national records rejected),
    `movement`, `quarantine`."""
    table = {"reject": reject, "movement": movement, "quarantine": quarantine}
    return conn.execute(select(func.count()).select_from(table[table_name])).scalar_one()


def refused_documents(conn: Connection) -> int:
    """Supporting documents refused: a document refused for two reasons has two refusal rows
    (one per code) and counts once here."""
    documents = (
        select(refusal.c.message_id, refusal.c.goods_item, refusal.c.document_code)
        .add_columns(refusal.c.document_ref)
        .distinct()
        .subquery()
    )
    return conn.execute(select(func.count()).select_from(documents)).scalar_one()


def refusals_by_code(conn: Connection) -> dict[str, int]:
    """Refusal rows per code (over-use, licence-expired, ...): a document refused for two
    reasons counts under each, as the statistics page counts refusals."""
    query = select(refusal.c.code, func.count()).group_by(refusal.c.code)
    return {code: number for code, number in conn.execute(query)}


def movements_by_kind(conn: Connection) -> dict[str, int]:
    """Movements per kind (write_off, adjustment, reversal, manual_write_off, ...)."""
    query = select(movement.c.kind, func.count()).group_by(movement.c.kind)
    return {kind: number for kind, number in conn.execute(query)}


def unsettled_quarantine(conn: Connection) -> int:
    """Quarantined messages nobody has replayed successfully yet: never replayed, or replayed
    and still unreadable."""
    query = (
        select(func.count())
        .select_from(quarantine)
        .where(
            or_(
                quarantine.c.replay_outcome.is_(None),
                quarantine.c.replay_outcome == STILL_QUARANTINED,
            )
        )
    )
    return conn.execute(query).scalar_one()


def held_declarations(conn: Connection) -> int:
    """Declarations with amendments received before their release, held (not applied) until
    it comes."""
    query = (
        select(func.count()).select_from(declaration).where(declaration.c.held_version.is_not(None))
    )
    return conn.execute(query).scalar_one()


def unpublished_results(conn: Connection) -> int:
    """Result messages written with their batch but not yet taken by the broker."""
    query = (
        select(func.count())
        .select_from(processed_message)
        .where(processed_message.c.result_state == PENDING)
    )
    return conn.execute(query).scalar_one()


@dataclass(frozen=True)
class OutboxState:
    """The outbox by status (every status the ledger holds, pending/delivered/failed always),
    the failed ones by why they failed (refused, budget, invalid, orphan; "unknown" for rows
    failed before that was recorded), when the oldest pending message was queued (or sent again
    by hand), and when the oldest failed one failed (its last attempt, else when it was queued:
    a certificate invalid as built is never tried)."""

    by_status: dict[str, int]
    failed_by_failure: dict[str, int]
    oldest_pending_since: datetime | None
    oldest_failed_since: datetime | None


def outbox_state(conn: Connection) -> OutboxState:
    counts = dict.fromkeys((PENDING, DELIVERED, FAILED), 0)
    for status, number in conn.execute(
        select(outbox.c.status, func.count()).group_by(outbox.c.status)
    ):
        counts[status] = number
    failures = {
        failure or "unknown": number
        for failure, number in conn.execute(
            select(outbox.c.failure, func.count())
            .where(outbox.c.status == FAILED)
            .group_by(outbox.c.failure)
        )
    }
    queued = func.coalesce(outbox.c.retried_at, outbox.c.created_at)
    oldest_pending = conn.execute(
        select(func.min(queued)).where(outbox.c.status == PENDING)
    ).scalar_one()
    oldest_failed = conn.execute(
        select(func.min(func.coalesce(outbox.c.last_attempt_at, queued))).where(
            outbox.c.status == FAILED
        )
    ).scalar_one()
    return OutboxState(
        counts, failures, _utc(_as_datetime(oldest_pending)), _utc(_as_datetime(oldest_failed))
    )


def _as_datetime(value: datetime | str | None) -> datetime | None:
    # min(coalesce(...)) loses the column's type on SQLite: the stored text comes back.
    if value is None or isinstance(value, datetime):
        return value
    return datetime.fromisoformat(value)


@dataclass(frozen=True)
class Deliveries:
    """Delivered outbox messages with a delivery time: how many and their summed latency
    (delivered_at minus created_at, seconds) over all time; the latencies of those delivered
    since a moment, in the order delivered; and the latest delivery's latency."""

    count: int
    total_seconds: float
    recent_seconds: tuple[float, ...]
    last_seconds: float | None
    last_delivered_at: datetime | None


def _latency(conn: Connection):
    if conn.dialect.name == "sqlite":
        return (
            func.julianday(outbox.c.delivered_at) - func.julianday(outbox.c.created_at)
        ) * 86400.0
    return func.extract("epoch", outbox.c.delivered_at - outbox.c.created_at)


def deliveries(conn: Connection, since: datetime) -> Deliveries:
    # A row delivered without a time (written as delivered by a migration or by hand) has no
    # latency to tell.
    delivered = and_(outbox.c.status == DELIVERED, outbox.c.delivered_at.is_not(None))
    count, total = conn.execute(
        select(func.count(), func.coalesce(func.sum(_latency(conn)), 0.0)).where(delivered)
    ).one()
    rows = conn.execute(
        select(outbox.c.created_at, outbox.c.delivered_at)
        .where(and_(delivered, outbox.c.delivered_at >= since))
        .order_by(outbox.c.delivered_at, outbox.c.id)
    ).all()
    recent = tuple(_seconds(created, done) for created, done in rows)
    last = conn.execute(
        select(outbox.c.created_at, outbox.c.delivered_at)
        .where(delivered)
        .order_by(outbox.c.delivered_at.desc(), outbox.c.id.desc())
        .limit(1)
    ).first()
    return Deliveries(
        count=count,
        total_seconds=float(total),
        recent_seconds=recent,
        last_seconds=None if last is None else _seconds(last[0], last[1]),
        last_delivered_at=None if last is None else _utc(last[1]),
    )


def _seconds(created: datetime, delivered: datetime) -> float:
    return max(0.0, (_utc(delivered) - _utc(created)).total_seconds())


def open_alerts(conn: Connection) -> tuple[dict[str, int], bool]:
    """Alerts per kind that are open, and whether the ledger tells open from acknowledged
    (an `alert.state` column); without one every alert counts as open."""
    stateful = "state" in alert.c
    query = select(alert.c.kind, func.count()).group_by(alert.c.kind)
    if stateful:
        query = query.where(alert.c.state == OPEN_ALERT)
    return {kind: number for kind, number in conn.execute(query)}, stateful


@dataclass(frozen=True)
class MessageDocuments:
    """One processed declaration message and what became of its supporting documents: how many
    were written off (or adjusted, reversed, recorded: a movement each) and how many refused."""

    message_id: str
    mrn: str | None
    event: str | None
    outcome: str
    moved: int
    refused: int
    received_at: datetime | None


def message_documents(conn: Connection) -> list[MessageDocuments]:
    """Every processed message, oldest first, with its documents' movements and refusals
    counted (a document is its goods item, document code and reference)."""

    def documents(table):
        key = (table.c.goods_item, table.c.document_code, table.c.document_ref)
        distinct = select(table.c.message_id, *key).where(table.c.message_id.is_not(None))
        inner = distinct.distinct().subquery()
        return {
            message_id: number
            for message_id, number in conn.execute(
                select(inner.c.message_id, func.count()).group_by(inner.c.message_id)
            )
        }

    moved, refused = documents(movement), documents(refusal)
    rows = conn.execute(
        select(
            processed_message.c.message_id,
            processed_message.c.mrn,
            processed_message.c.event,
            processed_message.c.outcome,
            processed_message.c.received_at,
        ).order_by(processed_message.c.received_at, processed_message.c.message_id)
    )
    return [
        MessageDocuments(
            message_id=row.message_id,
            mrn=row.mrn,
            event=row.event,
            outcome=row.outcome,
            moved=moved.get(row.message_id, 0),
            refused=refused.get(row.message_id, 0),
            received_at=_utc(row.received_at),
        )
        for row in rows
    ]

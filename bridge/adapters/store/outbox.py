"""The outbox: certificates and status updates waiting for, or done with, delivery to customs.

Rows are written before anything is sent, and each row's new status is committed soon after its
call, several calls' outcomes to one transaction (`record_outcomes`): a crash loses no
certificate, and at most the knowledge that its last calls went out, which sends them again
under the same message ids, answered DUPLICATE by customs.

Status: pending (to send, at `next_attempt_at` or later), delivered (customs acknowledged),
failed (customs refused it for good, or it could not be built validly; `last_error` says why)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Connection, and_, bindparam, func, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite

from bridge.adapters.store.schema import licence_version, outbox

PENDING = "pending"
DELIVERED = "delivered"
FAILED = "failed"
STATUSES = (PENDING, DELIVERED, FAILED)


def _utc(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        raise ValueError("outbox times must carry their time zone")
    return moment.astimezone(UTC)


def _read_utc(moment: datetime | None) -> datetime | None:
    # SQLite hands DateTime(timezone=True) back without its zone; everything stored is UTC.
    if moment is None or moment.tzinfo is not None:
        return moment
    return moment.replace(tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class PendingMessage:
    """A pending row, without its document (read when it is about to be sent)."""

    id: int
    message_id: str
    kind: str
    licence_number: str
    licence_version: int
    attempts: int
    next_attempt_at: datetime


@dataclass(frozen=True, slots=True)
class NewMessage:
    message_id: str
    kind: str
    licence_number: str
    licence_version: int
    document: str
    status: str  # pending, or failed when it can never be sent
    last_error: str | None = None


def uncertified_versions(conn: Connection, kind: str = "certificate") -> list[tuple[str, int, str]]:
    """(number, version, canonical licence as JSON) for every licence version that has no
    outbox row of `kind`, by number and version."""
    rows = conn.execute(
        select(licence_version.c.number, licence_version.c.version, licence_version.c.document)
        .outerjoin(
            outbox,
            and_(
                outbox.c.licence_number == licence_version.c.number,
                outbox.c.licence_version == licence_version.c.version,
                outbox.c.kind == kind,
            ),
        )
        .where(outbox.c.id.is_(None))
        .order_by(licence_version.c.number, licence_version.c.version)
    )
    return [(number, version, document) for number, version, document in rows]


def add_messages(conn: Connection, messages: Iterable[NewMessage], *, now: datetime) -> int:
    """Queue `messages` (due at once); returns how many were written."""
    rows = _rows(messages, now)
    if rows:
        conn.execute(insert(outbox), rows)
    return len(rows)


def add_new_messages(
    conn: Connection, messages: Iterable[NewMessage], *, now: datetime
) -> set[str]:
    """Queue those of `messages` whose message id the outbox does not hold yet (INSERT ... ON
    CONFLICT DO NOTHING), so that two runs queuing the same messages at once write each once;
    returns the message ids written by this call."""
    rows = _rows(messages, now)
    if not rows:
        return set()
    if conn.dialect.name == "postgresql":
        statement = postgresql.insert(outbox)
    elif conn.dialect.name == "sqlite":
        statement = sqlite.insert(outbox)
    else:
        raise NotImplementedError(f"the outbox does not know the {conn.dialect.name} database")
    statement = statement.on_conflict_do_nothing(index_elements=[outbox.c.message_id])
    return set(conn.execute(statement.returning(outbox.c.message_id), rows).scalars())


def _rows(messages: Iterable[NewMessage], now: datetime) -> list[dict]:
    at = _utc(now)
    return [
        {
            "message_id": message.message_id,
            "kind": message.kind,
            "licence_number": message.licence_number,
            "licence_version": message.licence_version,
            "document": message.document,
            "status": message.status,
            "attempts": 0,
            "next_attempt_at": at,
            "last_error": message.last_error,
            "created_at": at,
        }
        for message in messages
    ]


def pending_messages(conn: Connection) -> list[PendingMessage]:
    """Every pending row, oldest first (the order they were queued)."""
    rows = conn.execute(
        select(
            outbox.c.id,
            outbox.c.message_id,
            outbox.c.kind,
            outbox.c.licence_number,
            outbox.c.licence_version,
            outbox.c.attempts,
            outbox.c.next_attempt_at,
        )
        .where(outbox.c.status == PENDING)
        .order_by(outbox.c.id)
    )
    return [
        PendingMessage(row[0], row[1], row[2], row[3], row[4], row[5], _read_utc(row[6]))
        for row in rows
    ]


def certificate_states(
    conn: Connection, versions: Iterable[tuple[str, int]]
) -> dict[tuple[str, int], str]:
    """The outbox status (pending, delivered, failed) of the certificate of each (licence,
    version) asked for that has one."""
    wanted = set(versions)
    if not wanted:
        return {}
    numbers = sorted({number for number, _ in wanted})
    rows = conn.execute(
        select(outbox.c.licence_number, outbox.c.licence_version, outbox.c.status).where(
            outbox.c.kind == "certificate", outbox.c.licence_number.in_(numbers)
        )
    )
    return {
        (number, version): status for number, version, status in rows if (number, version) in wanted
    }


def message_document(conn: Connection, row_id: int) -> str:
    return conn.execute(select(outbox.c.document).where(outbox.c.id == row_id)).scalar_one()


def _still_pending(row_id: int):
    return and_(outbox.c.id == row_id, outbox.c.status == PENDING)


def message_documents(conn: Connection, row_ids: Iterable[int]) -> dict[int, str]:
    """The documents of these rows, by row id (in pages, to bound the IN lists)."""
    ordered = sorted(set(row_ids))
    documents: dict[int, str] = {}
    for start in range(0, len(ordered), 500):
        rows = conn.execute(
            select(outbox.c.id, outbox.c.document).where(
                outbox.c.id.in_(ordered[start : start + 500])
            )
        )
        documents.update((row_id, document) for row_id, document in rows)
    return documents


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one call did to a pending row: delivered (with customs' acknowledgement), failed
    (with the reason), or still pending and due again at `next_attempt_at`."""

    row_id: int
    status: str  # DELIVERED | FAILED | PENDING
    attempts: int
    at: datetime
    reason: str | None = None
    acknowledgement: str | None = None
    receipt_id: str | None = None
    next_attempt_at: datetime | None = None


def record_outcomes(conn: Connection, outcomes: Iterable[Outcome]) -> None:
    """Write several rows' outcomes in the caller's transaction, one statement per kind of
    outcome; a row no longer pending (another run recorded it first) is left as it is."""
    delivered, failed, rescheduled = [], [], []
    for o in outcomes:
        at = _utc(o.at)
        if o.status == DELIVERED:
            delivered.append(
                {
                    "row_id": o.row_id,
                    "attempts": o.attempts,
                    "acknowledgement": o.acknowledgement,
                    "receipt_id": o.receipt_id,
                    "last_attempt_at": at,
                    "delivered_at": at,
                }
            )
        elif o.status == FAILED:
            failed.append(
                {
                    "row_id": o.row_id,
                    "attempts": o.attempts,
                    "last_error": o.reason,
                    "last_attempt_at": at,
                }
            )
        else:
            assert o.next_attempt_at is not None
            rescheduled.append(
                {
                    "row_id": o.row_id,
                    "attempts": o.attempts,
                    "last_error": o.reason,
                    "last_attempt_at": at,
                    "next_attempt_at": _utc(o.next_attempt_at),
                }
            )
    for status, changes in ((DELIVERED, delivered), (FAILED, failed), (PENDING, rescheduled)):
        if not changes:
            continue
        # SET: every column named in the changes (bound as new_<column>); status when it moves.
        values: dict = {name: bindparam(f"new_{name}") for name in changes[0] if name != "row_id"}
        if status != PENDING:
            values["status"] = status
        conn.execute(
            update(outbox)
            .where(outbox.c.id == bindparam("row_id"), outbox.c.status == PENDING)
            .values(values),
            [
                {("row_id" if k == "row_id" else f"new_{k}"): v for k, v in change.items()}
                for change in changes
            ],
        )


def mark_delivered(
    conn: Connection,
    row_id: int,
    *,
    attempts: int,
    acknowledgement: str,
    receipt_id: str,
    at: datetime,
) -> None:
    conn.execute(
        update(outbox)
        .where(_still_pending(row_id))
        .values(
            status=DELIVERED,
            attempts=attempts,
            acknowledgement=acknowledgement,
            receipt_id=receipt_id,
            last_attempt_at=_utc(at),
            delivered_at=_utc(at),
        )
    )


def mark_failed(conn: Connection, row_id: int, *, attempts: int, reason: str, at: datetime) -> None:
    conn.execute(
        update(outbox)
        .where(_still_pending(row_id))
        .values(status=FAILED, attempts=attempts, last_error=reason, last_attempt_at=_utc(at))
    )


def reschedule(
    conn: Connection,
    row_id: int,
    *,
    attempts: int,
    reason: str,
    at: datetime,
    next_attempt_at: datetime,
) -> None:
    conn.execute(
        update(outbox)
        .where(_still_pending(row_id))
        .values(
            attempts=attempts,
            last_error=reason,
            last_attempt_at=_utc(at),
            next_attempt_at=_utc(next_attempt_at),
        )
    )


def count_by_status(conn: Connection) -> dict[str, int]:
    """Rows per status; every status listed, zero included."""
    counts = dict.fromkeys(STATUSES, 0)
    for status, number in conn.execute(
        select(outbox.c.status, func.count()).group_by(outbox.c.status)
    ):
        counts[status] = number
    return counts


def outbox_rows(conn: Connection, licence_number: str | None = None) -> list[dict]:
    """Every row as a dict (documents included), for reports and tests."""
    query = select(outbox).order_by(outbox.c.id)
    if licence_number is not None:
        query = query.where(outbox.c.licence_number == licence_number)
    rows = []
    for row in conn.execute(query).mappings():
        data = dict(row)
        for name in ("next_attempt_at", "last_attempt_at", "created_at", "delivered_at"):
            data[name] = _read_utc(data[name])
        rows.append(data)
    return rows

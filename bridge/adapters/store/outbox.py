"""The outbox: certificates and status updates waiting for, or done with, delivery to customs.

Rows are written before anything is sent, and each row's new status is committed soon after its
call, several calls' outcomes to one transaction (`record_outcomes`): a crash loses no
certificate, and at most the knowledge that its last calls went out, which sends them again
under the same message ids, answered DUPLICATE by customs.

Status: pending (to send, at `next_attempt_at` or later), delivered (customs acknowledged),
failed (`failure` says how, `last_error` why: REFUSED by customs for good, the retry BUDGET spent
on transient failures, INVALID as built, or an ORPHAN status update whose certificate failed).
A failed row is pending again only when someone sends it again (`requeue`)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Connection, and_, bindparam, func, insert, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite

from bridge.adapters.store.schema import licence_version, outbox

PENDING = "pending"
DELIVERED = "delivered"
FAILED = "failed"
STATUSES = (PENDING, DELIVERED, FAILED)
# What a row carries to customs (the `kind` column).
CERTIFICATE = "certificate"
STATUS = "status"  # a CertificateStatus update
# Why a row failed (the `failure` column).
REFUSED = "refused"  # customs answered with a permanent failure: the same message cannot pass
BUDGET = "budget"  # transient failures for longer than the retry budget
INVALID = "invalid"  # the certificate built from the licence version breaks the contract
ORPHAN = "orphan"  # a status update whose certificate failed
FAILURES = (REFUSED, BUDGET, INVALID, ORPHAN)


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
    first_failed_at: datetime | None = None  # of the current attempt series


@dataclass(frozen=True, slots=True)
class NewMessage:
    message_id: str
    kind: str
    licence_number: str
    licence_version: int
    document: str
    status: str  # pending, or failed when it can never be sent
    last_error: str | None = None
    failure: str | None = None  # with status failed: why (INVALID, ...)


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
            "failure": message.failure,
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
            outbox.c.first_failed_at,
        )
        .where(outbox.c.status == PENDING)
        .order_by(outbox.c.id)
    )
    return [
        PendingMessage(
            row[0], row[1], row[2], row[3], row[4], row[5], _read_utc(row[6]), _read_utc(row[7])
        )
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
    (with the reason and the kind of `failure`), or still pending and due again at
    `next_attempt_at`. `first_failed_at`: the first failure of the row's current attempt
    series, when a failure is recorded."""

    row_id: int
    status: str  # DELIVERED | FAILED | PENDING
    attempts: int
    at: datetime
    reason: str | None = None
    acknowledgement: str | None = None
    receipt_id: str | None = None
    next_attempt_at: datetime | None = None
    failure: str | None = None  # with FAILED: REFUSED | BUDGET | ORPHAN
    first_failed_at: datetime | None = None


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
                    "failure": o.failure or REFUSED,
                    "first_failed_at": _utc(o.first_failed_at or o.at),
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
                    "first_failed_at": _utc(o.first_failed_at or o.at),
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


def count_by_status(conn: Connection) -> dict[str, int]:
    """Rows per status; every status listed, zero included."""
    counts = dict.fromkeys(STATUSES, 0)
    for status, number in conn.execute(
        select(outbox.c.status, func.count()).group_by(outbox.c.status)
    ):
        counts[status] = number
    return counts


_TIMES = (
    "next_attempt_at",
    "last_attempt_at",
    "created_at",
    "delivered_at",
    "first_failed_at",
    "retried_at",
)


def _as_dict(row) -> dict:
    data = dict(row)
    for name in _TIMES:
        if name in data:
            data[name] = _read_utc(data[name])
    return data


def outbox_rows(conn: Connection, licence_number: str | None = None) -> list[dict]:
    """Every row as a dict (documents included), for reports and tests."""
    query = select(outbox).order_by(outbox.c.id)
    if licence_number is not None:
        query = query.where(outbox.c.licence_number == licence_number)
    return [_as_dict(row) for row in conn.execute(query).mappings()]


# Every column but the document, which can be large and is not for display.
_LISTED = [column for column in outbox.columns if column.name != "document"]


def listed_rows(
    conn: Connection,
    *,
    status: str | None = None,
    licence_number: str | None = None,
    row_ids: Iterable[int] | None = None,
    limit: int | None = None,
) -> list[dict]:
    """Rows without their documents, newest first, as dicts of the table's columns: those of
    `status`, of `licence_number`, with these ids, at most `limit`, as asked."""
    query = select(*_LISTED).order_by(outbox.c.id.desc())
    if status is not None:
        query = query.where(outbox.c.status == status)
    if licence_number is not None:
        query = query.where(outbox.c.licence_number == licence_number)
    if row_ids is not None:
        query = query.where(outbox.c.id.in_(sorted(set(row_ids))))
    if limit is not None:
        query = query.limit(limit)
    return [_as_dict(row) for row in conn.execute(query).mappings()]


def undelivered_rows(conn: Connection, *, queued_before: datetime) -> list[dict]:
    """Rows without their documents, oldest first: every failed one, and the pending ones
    queued (or last sent again) before `queued_before`."""
    queued = func.coalesce(outbox.c.retried_at, outbox.c.created_at)
    query = (
        select(*_LISTED)
        .where(
            or_(
                outbox.c.status == FAILED,
                and_(outbox.c.status == PENDING, queued < _utc(queued_before)),
            )
        )
        .order_by(outbox.c.id)
    )
    return [_as_dict(row) for row in conn.execute(query).mappings()]


def delivered_certificate_versions(conn: Connection, numbers: Iterable[str]) -> dict[str, int]:
    """For each of these licences with a certificate customs acknowledged: its highest version
    so acknowledged."""
    wanted = sorted(set(numbers))
    found: dict[str, int] = {}
    for start in range(0, len(wanted), 500):
        rows = conn.execute(
            select(outbox.c.licence_number, func.max(outbox.c.licence_version))
            .where(
                outbox.c.kind == "certificate",
                outbox.c.status == DELIVERED,
                outbox.c.licence_number.in_(wanted[start : start + 500]),
            )
            .group_by(outbox.c.licence_number)
        )
        found.update((number, version) for number, version in rows)
    return found


def requeue(conn: Connection, row_ids: Iterable[int], *, actor: str, at: datetime) -> list[int]:
    """Make these rows pending again, due at `at`, if they are failed: a new attempt series
    (attempts from 0, no first failure yet, no failure kind), `retried_by` `actor` and
    `retried_at` `at`. Their last error stays until the next attempt replaces it. Returns the
    ids made pending (a row no longer failed is left as it is)."""
    wanted = sorted(set(row_ids))
    done: list[int] = []
    for start in range(0, len(wanted), 500):
        chunk = wanted[start : start + 500]
        done.extend(
            conn.execute(
                update(outbox)
                .where(outbox.c.id.in_(chunk), outbox.c.status == FAILED)
                .values(
                    status=PENDING,
                    attempts=0,
                    next_attempt_at=_utc(at),
                    first_failed_at=None,
                    failure=None,
                    retried_at=_utc(at),
                    retried_by=actor,
                )
                .returning(outbox.c.id)
            ).scalars()
        )
    return sorted(done)

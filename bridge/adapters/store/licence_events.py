"""A licence's status in the ledger and the audit trail of its changes (`licence_event`), each
change a link in the licence's hash chain of events (docs/ledger-audit.md)."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime

from sqlalchemy import Connection, func, insert, select, update

from bridge.adapters.store.chain import CHAIN_COLUMNS, linked
from bridge.adapters.store.schema import licence, licence_event, licence_version
from bridge.core.ledger_chain import LICENCE_EVENT, LICENCE_EVENT_FIELDS, as_utc
from bridge.core.model import LicenceStatus


@dataclass(frozen=True, slots=True)
class LicenceHeader:
    """What a status change needs to know of a licence."""

    number: str
    status: LicenceStatus
    version: int
    holder_eori: str
    valid_to: date | None


def licence_header(conn: Connection, number: str) -> LicenceHeader | None:
    row = conn.execute(
        select(
            licence.c.number,
            licence.c.status,
            licence.c.current_version,
            licence.c.holder_eori,
            licence.c.valid_to,
        ).where(licence.c.number == number)
    ).one_or_none()
    if row is None:
        return None
    return LicenceHeader(row[0], LicenceStatus(row[1]), row[2], row[3], row[4])


def set_status(
    conn: Connection,
    number: str,
    *,
    expected: LicenceStatus,
    new: LicenceStatus,
    now: datetime,
) -> bool:
    """Compare and set: the licence's status becomes `new` only while it is `expected`
    (a concurrent change makes this return False instead of overwriting it)."""
    result = conn.execute(
        update(licence)
        .where(licence.c.number == number, licence.c.status == expected.value)
        .values(status=new.value, updated_at=now)
    )
    return result.rowcount == 1


def event_count(conn: Connection, number: str) -> int:
    return conn.execute(
        select(func.count())
        .select_from(licence_event)
        .where(licence_event.c.licence_number == number)
    ).scalar_one()


def add_event(
    conn: Connection,
    number: str,
    *,
    version: int,
    from_status: LicenceStatus,
    to_status: LicenceStatus,
    reason: str,
    actor: str,
    at: datetime,
) -> None:
    """Append the status change, a link in the licence's chain of events
    (docs/ledger-audit.md; the caller holds the licence's lock)."""
    fields = (number, version, from_status.value, to_status.value, reason, actor, as_utc(at))
    (row,) = linked(conn, LICENCE_EVENT, [fields])
    conn.execute(
        insert(licence_event).values(
            dict(zip((*LICENCE_EVENT_FIELDS, *CHAIN_COLUMNS), row, strict=True))
        )
    )


def last_event_status(conn: Connection, number: str) -> LicenceStatus | None:
    """The status the latest recorded change of licence `number` led to, if any."""
    status = conn.execute(
        select(licence_event.c.to_status)
        .where(licence_event.c.licence_number == number)
        .order_by(licence_event.c.id.desc())
        .limit(1)
    ).scalar_one_or_none()
    return None if status is None else LicenceStatus(status)


def status_of_version_before(conn: Connection, number: str, version: int) -> LicenceStatus | None:
    """The status the newest stored version of licence `number` older than `version` says
    (versions need not be consecutive: national records may skip numbers); None if none."""
    document = conn.execute(
        select(licence_version.c.document)
        .where(licence_version.c.number == number, licence_version.c.version < version)
        .order_by(licence_version.c.version.desc())
        .limit(1)
    ).scalar_one_or_none()
    return None if document is None else LicenceStatus(json.loads(document)["status"])


def licence_events(conn: Connection, number: str) -> list[dict]:
    """Every status change of licence `number`, oldest first."""
    rows = conn.execute(
        select(licence_event)
        .where(licence_event.c.licence_number == number)
        .order_by(licence_event.c.id)
    ).mappings()
    events = []
    for row in rows:
        event = dict(row)
        if event["at"].tzinfo is None:  # SQLite drops the zone; everything stored is UTC
            event["at"] = event["at"].replace(tzinfo=UTC)
        events.append(event)
    return events


def licences_past_validity(
    conn: Connection, today: date, *, skip: Iterable[LicenceStatus] = ()
) -> list[str]:
    """Numbers of licences whose last valid day is before `today`, except those in a status
    of `skip`, in number order."""
    query = select(licence.c.number).where(
        licence.c.valid_to.is_not(None), licence.c.valid_to < today
    )
    skipped = [status.value for status in skip]
    if skipped:
        query = query.where(licence.c.status.not_in(skipped))
    return [number for (number,) in conn.execute(query.order_by(licence.c.number))]


def licence_numbers_of_holder(conn: Connection, holder_eori: str) -> list[str]:
    """Every licence granted to the holder with this EORI, in number order."""
    rows = conn.execute(
        select(licence.c.number)
        .where(licence.c.holder_eori == holder_eori)
        .order_by(licence.c.number)
    )
    return [number for (number,) in rows]

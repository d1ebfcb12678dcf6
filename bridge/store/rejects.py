"""National licence records that failed mapping or validation, kept with every reason."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, insert, select

from bridge.errors import Problem
from bridge.store.schema import reject


@dataclass(frozen=True, slots=True)
class StoredReject:
    id: int
    source: str
    format: str
    record: str
    problems: tuple[Problem, ...]
    at: datetime


def save_reject(
    conn: Connection,
    source: str,
    format: str,
    record_text: str,
    problems: Iterable[Problem],
    now: datetime,
) -> int:
    """Keep a rejected record as read, with all its problems; returns the reject's id.

    The same record from the same source and format is kept once, so re-reading a file does not
    pile up copies of its rejects."""
    source = source[:500]
    existing = conn.execute(
        select(reject.c.id).where(
            reject.c.source == source, reject.c.format == format, reject.c.record == record_text
        )
    ).scalar_one_or_none()
    if existing is not None:
        return existing
    document = json.dumps([problem.as_dict() for problem in problems], ensure_ascii=False)
    return conn.execute(
        insert(reject).values(
            source=source, format=format, record=record_text, problems=document, at=now
        )
    ).inserted_primary_key[0]


def list_rejects(conn: Connection, *, format: str | None = None) -> list[StoredReject]:
    """Every stored reject (of one format when given), oldest first."""
    query = select(reject).order_by(reject.c.id)
    if format is not None:
        query = query.where(reject.c.format == format)
    return [
        StoredReject(
            id=row.id,
            source=row.source,
            format=row.format,
            record=row.record,
            problems=tuple(Problem(**problem) for problem in json.loads(row.problems)),
            at=row.at,
        )
        for row in conn.execute(query)
    ]

"""National licence records that failed mapping or validation, kept with every reason."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, insert, select

from bridge.adapters.store.schema import reject
from bridge.core.errors import Problem


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
    pile up copies of its rejects. Any text is kept exactly, also what no database text column
    holds (NUL on PostgreSQL, lone surrogates from JSON escapes anywhere): `record` then shows
    those characters as backslash escapes and `record_bytes` keeps the record itself."""
    source = storable_text(source)[:500]
    shown = storable_text(record_text)
    exact = None if shown == record_text else record_text.encode("utf-8", "surrogatepass")
    existing = conn.execute(
        select(reject.c.id).where(
            reject.c.source == source,
            reject.c.format == format,
            reject.c.record == shown,
            reject.c.record_bytes.is_(None) if exact is None else reject.c.record_bytes == exact,
        )
    ).scalar_one_or_none()
    if existing is not None:
        return existing
    listed = [problem.as_dict() for problem in problems]
    document = json.dumps(listed, ensure_ascii=False)
    if storable_text(document) != document:  # a lone surrogate: JSON's escapes keep it exactly
        document = json.dumps(listed)
    return conn.execute(
        insert(reject).values(
            source=source,
            format=format,
            record=shown,
            record_bytes=exact,
            problems=document,
            at=now,
        )
    ).inserted_primary_key[0]


_UNSTORABLE = re.compile(r"[\x00\ud800-\udfff]")


def storable_text(text: str) -> str:
    """`text` as every database's text columns hold it: NUL (which PostgreSQL refuses) and lone
    surrogates (which UTF-8 cannot encode) written as backslash escapes, the rest unchanged."""
    if not _UNSTORABLE.search(text):
        return text
    return _UNSTORABLE.sub(lambda found: f"\\u{ord(found.group()):04x}", text)


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
            record=row.record
            if row.record_bytes is None
            else row.record_bytes.decode("utf-8", "surrogatepass"),
            problems=tuple(Problem(**problem) for problem in json.loads(row.problems)),
            at=row.at,
        )
        for row in conn.execute(query)
    ]

"""The query audit (table query_audit): one row per question put to the query service,
answered or refused, written by the service and read by `elbridge query-service audit`."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import Connection, insert, select

from bridge.adapters.store.schema import query_audit
from bridge.core.query_access import QueryAuditEntry


def _fit(value: str | None, column: str) -> str | None:
    # What a caller sent may be longer than the contract allows (refused before validation):
    # kept up to the column's length.
    if value is None:
        return None
    length = query_audit.c[column].type.length
    return value if length is None or len(value) <= length else value[: length - 1] + "…"


def _utc(at: datetime) -> datetime:
    # SQLite hands back naive datetimes; the audit is written in UTC only.
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)


def record_query(conn: Connection, entry: QueryAuditEntry) -> None:
    """Add `entry` to the audit (in the caller's transaction)."""
    conn.execute(
        insert(query_audit).values(
            at=entry.at.astimezone(UTC),
            identity=_fit(entry.identity, "identity"),
            authentication=entry.authentication,
            credential=_fit(entry.credential, "credential"),
            client_address=_fit(entry.client_address, "client_address"),
            operation=_fit(entry.operation, "operation"),
            holder_eori=_fit(entry.holder_eori, "holder_eori"),
            licence_number=_fit(entry.licence_number, "licence_number"),
            outcome=entry.outcome,
            code=_fit(entry.code, "code"),
            reason=entry.reason,
        )
    )


def query_audit_entries(
    conn: Connection,
    *,
    since: datetime | None = None,
    identity: str | None = None,
    limit: int | None = None,
) -> list[QueryAuditEntry]:
    """The audit's rows, oldest first: from `since` on, of `identity` only, the last `limit`."""
    query = select(query_audit)
    if since is not None:  # SQLite keeps no zone: compare in UTC, as written
        query = query.where(query_audit.c.at >= since.astimezone(UTC))
    if identity is not None:
        query = query.where(query_audit.c.identity == identity)
    query = query.order_by(query_audit.c.id.desc())
    if limit is not None:
        query = query.limit(limit)
    rows = list(conn.execute(query).mappings())
    return [
        QueryAuditEntry(
            at=_utc(row["at"]),
            operation=row["operation"],
            outcome=row["outcome"],
            identity=row["identity"],
            authentication=row["authentication"],
            credential=row["credential"],
            client_address=row["client_address"],
            holder_eori=row["holder_eori"],
            licence_number=row["licence_number"],
            code=row["code"],
            reason=row["reason"],
        )
        for row in reversed(rows)
    ]

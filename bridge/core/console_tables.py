"""The console's ledger tables, described once (bridge.core.tables): the reconciliation and the
sheets of its workbook (licences, lines, movements, refusals, alerts) and the operations pages
(rejected national records, the quarantine, the outbox). Pages render them as HTML, exports as
CSV and xlsx, reports as files, all from these descriptions. Pure."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from bridge.core.reconcile import ReconciliationRow
from bridge.core.tables import Column, Kind, TableSpec

_I, _Q, _M, _T, _D = Kind.INTEGER, Kind.QUANTITY, Kind.MONEY, Kind.DATETIME, Kind.DATE

LICENCES = TableSpec(
    "licences",
    "Licences",
    (
        Column("number", "licence", width=24),
        Column("type", "type"),
        Column("status", "status"),
        Column("version", "version", _I),
        Column("issuing_member_state", "member state"),
        Column("issuing_authority", "issuing authority", width=28),
        Column("holder_name", "holder", width=28),
        Column("holder_eori", "EORI", width=18),
        Column("valid_from", "valid from", _D),
        Column("valid_to", "valid to", _D),
        Column("general_authorisation", "general authorisation"),
        Column("updated_at", "updated", _T),
    ),
)

LINES = TableSpec(
    "reconciliation",
    "Reconciliation: per licence line, authorised, written off, remaining",
    (
        Column("licence_number", "licence", width=24),
        Column("line_number", "line", _I),
        Column("licence_type", "type"),
        Column("status", "status"),
        Column("control_list_entry", "control list entry", width=16),
        Column("unit", "unit"),
        Column("authorised_quantity", "authorised quantity", _Q),
        Column("written_off_quantity", "written off quantity", _Q),
        Column("remaining_quantity", "remaining quantity", _Q),
        Column("currency", "currency"),
        Column("authorised_value", "authorised value", _M),
        Column("written_off_value", "written off value", _M),
        Column("remaining_value", "remaining value", _M),
        Column("movements", "movements", _I),
        Column("certificate", "at customs"),
        Column("over_used", "over-used", Kind.FLAG),
        Column("contingency_movements", "contingency movements", _I),
        Column("contingency_quantity", "contingency quantity", _Q),
        Column("contingency_value", "contingency value", _M),
        Column("dropped_in_version", "dropped in version", _I),
    ),
)

MOVEMENTS = TableSpec(
    "movements",
    "Movements",
    (
        Column("id", "id", _I),
        Column("at", "recorded", _T),
        Column("licence_number", "licence", width=24),
        Column("line_number", "line", _I),
        Column("kind", "kind"),
        Column("quantity", "quantity", _Q),
        Column("unit", "unit"),
        Column("value", "value", _M),
        Column("currency", "currency"),
        Column("declared_quantity", "declared quantity", _Q),
        Column("declared_unit", "declared unit"),
        Column("mrn", "MRN", width=20),
        Column("goods_item", "goods item", _I),
        Column("document_code", "document code"),
        Column("document_ref", "document reference", width=24),
        Column("actor", "who", width=24),
        Column("reason", "why", width=40),
        Column("contingency", "contingency", Kind.FLAG),
    ),
)

REFUSALS = TableSpec(
    "refusals",
    "Refused write-offs",
    (
        Column("id", "id", _I),
        Column("at", "refused", _T),
        Column("mrn", "MRN", width=20),
        Column("goods_item", "goods item", _I),
        Column("document_code", "document code"),
        Column("document_ref", "document reference", width=24),
        Column("licence_number", "licence", width=24),
        Column("line_number", "line", _I),
        Column("code", "reason code", width=18),
        Column("reason", "reason", width=60),
    ),
)

ALERTS = TableSpec(
    "alerts",
    "Alerts",
    (
        Column("id", "id", _I),
        Column("at", "raised", _T),
        Column("kind", "kind", width=18),
        Column("licence_number", "licence", width=24),
        Column("line_number", "line", _I),
        Column("mrn", "MRN", width=20),
        Column("message", "what", width=60),
        Column("state", "state"),
        Column("acknowledged_by", "acknowledged by", width=24),
        Column("acknowledged_at", "acknowledged", _T),
    ),
)

REJECTS = TableSpec(
    "rejected_records",
    "Rejected national records, every reason",
    (
        Column("id", "record id", _I),
        Column("at", "rejected", _T),
        Column("file", "file", width=32),
        Column("where", "where in the file", width=24),
        Column("format", "mapping", width=18),
        Column("number", "reason no.", _I),
        Column("code", "reason code", width=18),
        Column("path", "field", width=24),
        Column("reason", "reason", width=60),
        Column("value", "value found", width=20),
    ),
)

QUARANTINE = TableSpec(
    "quarantine",
    "Quarantined messages",
    (
        # Why, next to what: the reason is what the reader came for.
        Column("id", "id", _I),
        Column("received_at", "received", _T),
        Column("mrn", "MRN", width=20),
        Column("event", "event"),
        Column("state", "state", width=20),
        Column("first_reason", "reason", width=60),
        Column("reasons", "reasons", _I),
        Column("message_id", "message id", width=24),
        Column("replayed_at", "last replayed", _T),
        Column("replay_outcome", "replay outcome"),
        Column("replayed_by", "replayed by", width=24),
        Column("topic", "topic", width=24),
    ),
)

OUTBOX = TableSpec(
    "outbox",
    "Outbox: certificates and status updates for customs",
    (
        Column("id", "id", _I),
        Column("kind", "kind"),
        Column("licence", "licence", width=24),
        Column("version", "version", _I),
        Column("status", "status"),
        Column("failure", "why failed"),
        Column("attempts", "attempts", _I),
        Column("queued_at", "queued", _T),
        Column("last_attempt_at", "last attempt", _T),
        Column("next_attempt_at", "next attempt", _T),
        Column("delivered_at", "delivered", _T),
        Column("acknowledgement", "customs said"),
        Column("retried_by", "sent again by", width=24),
        Column("last_error", "last error", width=60),
    ),
)


def reconciliation_records(rows: Iterable[ReconciliationRow]) -> list[dict[str, Any]]:
    """Reconciliation rows as records of LINES (derived figures included)."""
    return [{column.key: getattr(row, column.key) for column in LINES.columns} for row in rows]


def split_source(source: str) -> tuple[str, str]:
    """A reject's source (`file.csv line 7`, `export.json $.licences[5]`) as (file, where in
    it): the file is the text up to the first blank."""
    file, _, where = source.partition(" ")
    return file, where


def reject_records(rejects: Iterable[Any]) -> list[dict[str, Any]]:
    """Stored rejects (bridge.adapters.store.rejects.StoredReject) as records of REJECTS, one
    per reason (a record without any reason still gets its row)."""
    records = []
    for stored in rejects:
        file, where = split_source(stored.source)
        base = {
            "id": stored.id,
            "at": stored.at,
            "file": file,
            "where": where,
            "format": stored.format,
        }
        for number, problem in enumerate(stored.problems or (None,), 1):
            records.append(
                {
                    **base,
                    "number": number if problem is not None else None,
                    "code": getattr(problem, "code", None),
                    "path": getattr(problem, "path", None),
                    "reason": getattr(problem, "reason", None),
                    "value": getattr(problem, "value", None),
                }
            )
    return records


def pick(records: Iterable[Mapping[str, Any]], spec: TableSpec) -> list[dict[str, Any]]:
    """Only the columns of `spec` from each record (what a file may show of a wider row)."""
    keys = [column.key for column in spec.columns]
    return [{key: record.get(key) for key in keys} for record in records]

"""What customs may ask the bridge before they release goods: would this write-off be accepted
now (CheckAvailability), and which licences may this holder use today, with what left on each
line (ListSupportingDocuments). Both read the ledger and ask the write-off rules' dry run
(bridge.core.availability); neither writes anything."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from datetime import date

from sqlalchemy import Engine

from bridge.adapters.store.ledger import known_to_customs
from bridge.adapters.store.licence_events import licence_numbers_of_holder
from bridge.adapters.store.licences import load_licences
from bridge.adapters.store.query_audit import record_query as record_query_row
from bridge.adapters.store.reconciliation import reconciliation_rows
from bridge.core.availability import (
    Availability,
    AvailabilityRequest,
    SupportingDocument,
    check_availability,
    line_totals_from,
    supporting_documents,
)
from bridge.core.codes import normalise_eori
from bridge.core.model import LicenceType
from bridge.core.query_access import QueryAuditEntry


def availability(
    engine: Engine,
    request: AvailabilityRequest,
    today: date,
    *,
    national: Mapping[str, Mapping[str, LicenceType | None]] | None = None,
) -> Availability:
    """Whether the write-off `request` describes would be accepted on `today` (unless the
    request names its own date), with the line's balance and every reason when not. National
    document codes count as licences as `national` says (the table the write-offs use)."""
    number = request.reference
    with engine.connect() as conn:
        licence = load_licences(conn, [number]).get(number)
        rows = reconciliation_rows(conn, number) if licence is not None else []
        known = number in known_to_customs(conn, [number])
    return check_availability(
        licence,
        line_totals_from(rows),
        request,
        today,
        known_to_customs=known,
        national=national,
    )


def usable_documents(
    engine: Engine, holder_eori: str, on: date, *, issued_by: Collection[str] | None = None
) -> list[SupportingDocument]:
    """The licences of the holder (EORI in any spelling) customs may accept on `on`, with
    every line's balance; only those issued by the member states `issued_by` when given (the
    caller's scope)."""
    eori = normalise_eori(holder_eori)
    with engine.connect() as conn:
        numbers = licence_numbers_of_holder(conn, eori)
        licences = load_licences(conn, numbers)
        if issued_by is not None:
            licences = {
                number: licence
                for number, licence in licences.items()
                if licence.issuing_member_state in issued_by
            }
            numbers = [number for number in numbers if number in licences]
        rows = {number: reconciliation_rows(conn, number) for number in licences}
        known = known_to_customs(conn, numbers)
    return supporting_documents(licences.values(), rows, known, on)


def licence_issuer(engine: Engine, number: str) -> str | None:
    """The member state that issued licence `number`, or None when the ledger has no such
    licence: what decides whether a caller may ask about it (bridge.core.query_access)."""
    with engine.connect() as conn:
        licence = load_licences(conn, [number]).get(number)
    return None if licence is None else licence.issuing_member_state


def record_query(engine: Engine, entry: QueryAuditEntry) -> None:
    """Write one question's audit row in its own transaction (before its answer is sent)."""
    with engine.begin() as conn:
        record_query_row(conn, entry)

"""What customs may ask the bridge before they release goods: would this write-off be accepted
now (CheckAvailability), and which licences may this holder use today, with what left on each
line (ListSupportingDocuments). Both read the ledger and ask the write-off rules' dry run
(bridge.core.availability); neither writes anything."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date

from sqlalchemy import Engine

from bridge.adapters.store.ledger import known_to_customs
from bridge.adapters.store.licence_events import licence_numbers_of_holder
from bridge.adapters.store.licences import load_licences
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


def usable_documents(engine: Engine, holder_eori: str, on: date) -> list[SupportingDocument]:
    """The licences of the holder (EORI in any spelling) customs may accept on `on`, with
    every line's balance."""
    eori = normalise_eori(holder_eori)
    with engine.connect() as conn:
        numbers = licence_numbers_of_holder(conn, eori)
        licences = load_licences(conn, numbers)
        rows = {number: reconciliation_rows(conn, number) for number in licences}
        known = known_to_customs(conn, numbers)
    return supporting_documents(licences.values(), rows, known, on)

"""What customs do before they release goods: ask the bridge's query service, for every
dual-use licence document the declaration writes off against, whether that write-off would be
accepted now. The goods go only when every answer is available."""

from __future__ import annotations

from dataclasses import asdict, replace
from datetime import UTC, date, datetime

from bridge.adapters.soap.query_client import AvailabilityAnswer, query_client
from bridge.core.availability import availability_requests
from bridge.core.declaration import Declaration, read_declaration
from bridge.core.documents import national_document_codes as national_document_codes_table


def check_before_release(
    query_url: str,
    declaration: Declaration | bytes,
    *,
    on: date | None = None,
    national_document_codes: str = "",
) -> list[AvailabilityAnswer]:
    """CheckAvailability for every dual-use licence document `declaration` (a Declaration, or
    the WCO DEC-DMS XML) writes off against, on `on` (default: today, UTC), in document order:
    customs release the goods only when every answer is available. National document codes
    count as licences as the deployment declares them (`national_document_codes`, written as
    ELBRIDGE_NATIONAL_DOCUMENT_CODES; the built-in ones always). Raises QueryFailed when the
    service cannot answer, Rejected for a declaration that cannot be read."""
    if isinstance(declaration, bytes):
        declaration = read_declaration(declaration, source="declaration before release")
    day = on or datetime.now(UTC).date()
    client = query_client(query_url)
    national = national_document_codes_table(national_document_codes)
    answers = []
    for goods_item, request in availability_requests(declaration, day, national):
        answer = client.check_availability(**asdict(request))
        answers.append(replace(answer, goods_item=goods_item, document_code=request.document_code))
    return answers

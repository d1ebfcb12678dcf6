"""What customs may ask the bridge before they release goods (the query service): is this
write-off available now, and which supporting documents does a holder have. Pure.

The decision is the write-off rules' own dry run (`bridge.core.writeoff.dry_run`), so an answer
"available" means the same write-off would be accepted. This module only adds what a query can
say and a declaration cannot: a control list entry to find the licence line by, and the listing
of a holder's documents with their balances."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import date
from decimal import Decimal

from bridge.core.certificate import document_code_for
from bridge.core.control_lists import ControlLists, project_control_lists
from bridge.core.declaration import Declaration
from bridge.core.documents import NATIONAL_DOCUMENT_CODES, licence_document
from bridge.core.envelope import Reason
from bridge.core.errors import Rejected
from bridge.core.ledger_state import Totals
from bridge.core.model import ANNEX_I_LIST, OPEN_LINE, Licence, LicenceLine, LicenceType
from bridge.core.reconcile import ReconciliationRow
from bridge.core.supporting_documents import SupportingDocument, SupportingLine
from bridge.core.writeoff.checks import licence_state_problems, scope_problems
from bridge.core.writeoff.dry_run import Availability, availability

__all__ = [
    "Availability",
    "AvailabilityRequest",
    "availability_requests",
    "check_availability",
    "line_totals_from",
    "supporting_documents",
]


@dataclass(frozen=True, slots=True)
class AvailabilityRequest:
    """CheckAvailability as customs ask it: the document, optionally the line (by number, or
    by CN code and/or control list entry), the write-off they intend (quantity with unit and/or
    amount with currency), the release date, exporter, destination and document code."""

    reference: str
    line_item_number: int | None = None
    cn_code: str | None = None
    control_list_entry: str | None = None
    quantity: Decimal | None = None
    unit: str | None = None
    amount: Decimal | None = None
    currency: str | None = None
    on_date: date | None = None
    exporter_eori: str | None = None
    destination: str | None = None
    document_code: str | None = None
    country: str | None = None  # the customs country whose national document codes apply


def availability_requests(
    declaration: Declaration,
    on: date,
    national: Mapping[str, Mapping[str, object]] | None = None,
) -> list[tuple[int, AvailabilityRequest]]:
    """(goods item number, request) for every dual-use licence document the declaration writes
    off against, in document order: what customs ask before they release it on `on`."""
    table = NATIONAL_DOCUMENT_CODES if national is None else national
    requests = []
    for item, document in declaration.write_offs():
        is_licence, _ = licence_document(document.document_code, declaration.country, table)
        if not is_licence:
            continue
        requests.append(
            (
                item.sequence,
                AvailabilityRequest(
                    reference=document.reference,
                    line_item_number=document.line_item_number,
                    cn_code=item.cn_code,
                    quantity=document.quantity,
                    unit=document.unit,
                    amount=document.amount,
                    currency=document.currency,
                    on_date=on,
                    exporter_eori=declaration.exporter_eori,
                    destination=item.destination,
                    document_code=document.document_code,
                    country=declaration.country,
                ),
            )
        )
    return requests


def line_totals_from(rows: Iterable[ReconciliationRow]) -> dict[int, Totals]:
    """What is written off so far per line number, from reconciliation rows of one licence."""
    return {row.line_number: (row.written_off_quantity, row.written_off_value) for row in rows}


def check_availability(
    licence: Licence | None,
    line_totals: Mapping[int, Totals],
    request: AvailabilityRequest,
    on: date,
    *,
    known_to_customs: bool = True,
    national: Mapping[str, Mapping[str, LicenceType | None]] | None = None,
    control_lists: ControlLists | None = None,
) -> Availability:
    """Whether the write-off `request` describes could happen on `request.on_date` (else `on`),
    with the line's remaining balance and, when not, every refusal (code and reason) the
    write-off rules would give. A control list entry given without a line number picks the
    line; given with one, it must be that line's. The entry asked is read in each line's own
    list (`control_lists`, default the project's table): ML1a finds a Common Military List line
    ML1.a, 6A002a3f an Annex I line 6A002.a.3.f. `national`: the deployment's national
    document codes, as the write-offs read them (default: the built-in table)."""
    day = request.on_date or on
    line_number = request.line_item_number
    asked_cle = request.control_list_entry
    lists = control_lists or project_control_lists()

    def is_asked(line: LicenceLine) -> bool:
        return _same_entry(lists, line, asked_cle or "")

    if licence is not None and asked_cle is not None and line_number is None and licence.lines:
        by_cle = [x for x in licence.lines if is_asked(x)]
        if len(by_cle) == 1:
            line_number = by_cle[0].line_number
        elif not by_cle:
            shown = ", ".join(f"{x.line_number} {x.control_list_entry}" for x in licence.lines)
            why = (
                f"control list entry {request.control_list_entry} is on no line of licence"
                f" {licence.number} (lines: {shown})"
            )
            return Availability(
                available=False,
                licence_number=request.reference,
                code="no-matching-line",
                reason=why,
                refusals=(Reason("no-matching-line", why),),
            )
        # several lines under one CLE: the CN code (or the line number) has to tell
    answer = availability(
        licence,
        number=request.reference,
        on=day,
        line_number=line_number,
        cn_code=request.cn_code,
        quantity=request.quantity,
        unit=request.unit,
        amount=request.amount,
        currency=request.currency,
        exporter=request.exporter_eori,
        destination=request.destination,
        document_code=request.document_code,
        country=request.country,
        line_totals=line_totals,
        known_to_customs=known_to_customs,
        national=national,
    )
    line = (
        None if licence is None or answer.line_number is None else licence.line(answer.line_number)
    )
    outside: list[tuple[str, str]] = []
    if line is None or asked_cle is None:
        pass
    elif licence.is_open:  # its scope, not a line's entry
        outside = scope_problems(licence, request.control_list_entry)
    elif not is_asked(line):
        why = (
            f"licence {licence.number} line {line.line_number} is control list entry"
            f" {line.control_list_entry}, not {request.control_list_entry}"
        )
        outside = [("no-matching-line", why)]
    if outside:
        refusals = (*answer.refusals, *(Reason(code, why) for code, why in outside))
        return replace(
            answer,
            available=False,
            code=refusals[0].code,
            reason="; ".join(r.reason for r in refusals),
            refusals=refusals,
        )
    return answer


def _same_entry(lists: ControlLists, line: LicenceLine, asked: str) -> bool:
    """Whether `asked` is the line's control list entry, both read in the line's own list."""
    wanted = lists.spelling(line.control_list, asked)
    own = lists.spelling(line.control_list, line.control_list_entry) or line.control_list_entry
    return wanted is not None and wanted == own


def supporting_documents(
    licences: Iterable[Licence],
    rows: Mapping[str, list[ReconciliationRow]],
    known_to_customs: Iterable[str],
    on: date,
) -> list[SupportingDocument]:
    """The licences that may be used on `on` (status valid, within validity, known to customs:
    the same state checks as a write-off), in reference order, with each line's balance from
    its reconciliation `rows`."""
    known = set(known_to_customs)
    found = []
    for licence in sorted(licences, key=lambda x: x.number):
        if licence_state_problems(licence, on=on, known_to_customs=licence.number in known):
            continue
        try:
            code = document_code_for(licence)
        except Rejected:  # a licence without a document code cannot be quoted by customs
            continue
        lines = tuple(
            SupportingLine(
                line_number=row.line_number,
                control_list_entry=row.control_list_entry,
                cn_code=_cn(licence, row.line_number),
                unit=row.unit,
                authorised_quantity=row.authorised_quantity,
                written_off_quantity=row.written_off_quantity,
                remaining_quantity=row.remaining_quantity,
                currency=row.currency,
                authorised_value=row.authorised_value,
                written_off_value=row.written_off_value,
                remaining_value=row.remaining_value,
                control_list=_control_list(licence, row.line_number),
            )
            for row in rows.get(licence.number, [])
            # A dropped line is no longer the licence's; an open licence's line 0 is no line
            # customs could quote (the contract's lines are numbered from 1).
            if row.dropped_in_version is None and row.line_number != OPEN_LINE
        )
        found.append(
            SupportingDocument(
                document_code=code,
                reference=licence.number,
                version=licence.version,
                status=licence.status.value,
                valid_from=licence.valid_from,
                valid_to=licence.valid_to,
                general_authorisation=licence.general_authorisation,
                lines=lines,
            )
        )
    return found


def _control_list(licence: Licence, line_number: int) -> str:
    line = licence.line(line_number)
    return ANNEX_I_LIST if line is None else line.control_list


def _cn(licence: Licence, line_number: int) -> str | None:
    line = licence.line(line_number)
    return None if line is None else line.cn_code

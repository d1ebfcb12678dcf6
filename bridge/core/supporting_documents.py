"""A holder's supporting documents as customs see them (ListSupportingDocuments): each usable
licence with, per line, what it authorises, what is written off and what remains. Plain data,
shared by the rules that list them (bridge.core.availability) and the customs-side client that
reads them from the query service (bridge.adapters.soap.query_client)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal

from bridge.core.model import ANNEX_I_LIST


@dataclass(frozen=True, slots=True)
class SupportingLine:
    """One line of a supporting document with what it authorises, what is written off and what
    remains; None where the line counts no quantity (or no value)."""

    line_number: int
    control_list_entry: str
    cn_code: str | None
    unit: str | None
    authorised_quantity: Decimal | None
    written_off_quantity: Decimal
    remaining_quantity: Decimal | None
    currency: str | None
    authorised_value: Decimal | None
    written_off_value: Decimal
    remaining_value: Decimal | None
    control_list: str = ANNEX_I_LIST  # the list the entry belongs to (certificate 1.3)


@dataclass(frozen=True, slots=True)
class SupportingDocument:
    """A licence customs may accept from its holder on a date (ListSupportingDocuments)."""

    document_code: str
    reference: str
    version: int
    status: str
    valid_from: date
    valid_to: date | None
    general_authorisation: str | None
    lines: tuple[SupportingLine, ...]

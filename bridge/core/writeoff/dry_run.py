"""The write-off rules' dry run (customs' CheckAvailability): would this write-off be accepted
now, and what has the line left. The checks of the batch (bridge.core.writeoff.checks), nothing
written.

Asked before release, so every check refuses as it says: a licence whose certificate customs do
not hold is `not-known-to-customs` here. Only goods already released against such a licence are
recorded anyway, as contingency write-offs (bridge.core.writeoff.write_off, docs/contingency.md)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import date
from decimal import Decimal

from bridge.core.codes import normalise_eori
from bridge.core.correlation import Correlation
from bridge.core.documents import NATIONAL_DOCUMENT_CODES, licence_document
from bridge.core.envelope import Balance, Reason
from bridge.core.ledger_state import ZERO, Finding, Totals
from bridge.core.model import Licence, LicenceType
from bridge.core.writeoff.checks import (
    correlation_warnings,
    destination_problems,
    document_type_problems,
    exporter_problems,
    licence_state_problems,
    line_measures,
    match_line,
    merged_reasons,
    over_use,
    remaining,
    where,
)


@dataclass(frozen=True, slots=True)
class Availability:
    """Whether a write-off could happen now, and what the line has left (CheckAvailability)."""

    available: bool
    licence_number: str
    code: str | None = None  # the first refusal code; None when available
    reason: str = ""
    refusals: tuple[Reason, ...] = ()
    warnings: tuple[Reason, ...] = ()
    line_number: int | None = None
    remaining: Balance | None = None  # before the asked write-off; None: no ceiling


def availability(
    licence: Licence | None,
    *,
    number: str,
    on: date,
    line_number: int | None = None,
    cn_code: str | None = None,
    quantity: Decimal | None = None,
    unit: str | None = None,
    amount: Decimal | None = None,
    currency: str | None = None,
    exporter: str | None = None,
    destination: str | None = None,
    document_code: str | None = None,
    country: str | None = None,
    line_totals: Mapping[int, Totals] | None = None,
    known_to_customs: bool = True,
    national: Mapping[str, Mapping[str, LicenceType | None]] | None = None,
    correlation: Correlation | None = None,
) -> Availability:
    """A dry run of one write-off of `quantity` `unit` and/or `amount` `currency` against
    licence `number` on `on`: the checks of `decide`, nothing written. `line_totals` are the
    licence's totals so far by line number. Exporter, destination and document code are
    checked only when given; with neither quantity nor amount, only whether the licence and
    line may be used, and what remains."""
    if licence is None:
        return _unavailable(number, [("licence-unknown", f"licence {number} is not in the ledger")])
    problems: list[Finding] = []
    if document_code is not None:
        national = NATIONAL_DOCUMENT_CODES if national is None else national
        is_licence, asserted = licence_document(document_code, country, national)
        if not is_licence:
            problems.append(
                (
                    "document-type-mismatch",
                    f"document code {document_code} is not a dual-use licence document",
                )
            )
        else:
            problems += document_type_problems(licence, document_code, asserted)
    if exporter is not None:
        problems += exporter_problems(licence, normalise_eori(exporter))
    problems += licence_state_problems(licence, on=on, known_to_customs=known_to_customs)
    line, unmatched = match_line(licence, line_number=line_number, cn_code=cn_code)
    if line is None:
        assert unmatched is not None
        return _unavailable(number, [*problems, unmatched])
    if destination is not None:
        problems += destination_problems(licence, line, destination)
    asked_q, asked_v, measure = line_measures(
        licence, line, quantity=quantity, unit=unit, amount=amount, currency=currency
    )
    problems += measure
    used = (line_totals or {}).get(line.line_number, (ZERO, ZERO))
    if not measure and (why := over_use(licence, line, used, asked_q, asked_v)):
        problems.append(("over-use", why))
    balance = remaining(licence, line, used)
    warnings = correlation_warnings(correlation, licence, line, cn_code)
    if problems:
        result = _unavailable(number, problems)
        return replace(
            result,
            line_number=line.line_number,
            remaining=balance,
            warnings=merged_reasons(warnings),
        )
    if balance is None:
        left = "no ceiling: usage is recorded"
    else:
        left = " and ".join(
            f"{figure} {what}"
            for figure, what in (
                (balance.quantity, balance.unit),
                (balance.value, balance.currency),
            )
            if figure is not None
        )
    return Availability(
        available=True,
        licence_number=number,
        reason=f"{where(licence, line)}: {left} remaining",
        warnings=merged_reasons(warnings),
        line_number=line.line_number,
        remaining=balance,
    )


def _unavailable(number: str, problems: list[Finding]) -> Availability:
    reasons = merged_reasons(problems)
    return Availability(
        available=False,
        licence_number=number,
        code=reasons[0].code,
        reason="; ".join(r.reason for r in reasons),
        refusals=reasons,
    )

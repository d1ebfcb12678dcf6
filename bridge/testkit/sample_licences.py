"""The licences the real WCO sample declarations (TT_EX004a and TT_EX010a of the shared
fixtures) write off against, as the ledger holds them, and the builders of UK licences the tests
make their own variants with. One set for the tests, the hostile corpus and the fuzz targets."""

from __future__ import annotations

from dataclasses import replace
from datetime import date
from decimal import Decimal
from typing import Any

from bridge.core.model import Licence, LicenceLine, LicenceType

# The MRN customs gave TT_EX010a (its DMSACC/DMSCLE notifications).
TT_EX010A_MRN = "24GBDIRIGZ7QLCPAA8"


def uk_licence(number: str, holder_eori: str, *lines: LicenceLine, **changes: Any) -> Licence:
    """A UK individual licence (SIEL) valid through 2026-2027, with `changes` made to it."""
    licence = Licence(
        number=number,
        type=LicenceType.INDIVIDUAL,
        issuing_member_state="GB",
        issuing_authority="Export Control Joint Unit",
        holder_name=f"Holder of {number}",
        holder_eori=holder_eori,
        valid_from=date(2026, 1, 1),
        valid_to=date(2027, 12, 31),
        lines=lines,
    )
    return replace(licence, **changes)


def kg_line(
    line_number: int, cn_code: str, quantity: str, *destinations: str, **changes: Any
) -> LicenceLine:
    """A line of `quantity` kilograms of goods of ML1.a, to `destinations`, with `changes` made
    to it (a value ceiling and its currency, say)."""
    line = LicenceLine(
        line_number=line_number,
        control_list_entry="ML1.a",
        description=f"goods of CN {cn_code}",
        cn_code=cn_code,
        quantity=Decimal(quantity),
        unit="KGM",
        destinations=destinations,
    )
    return replace(line, **changes) if changes else line


def tt_ex004a_licences(**line_changes: Any) -> list[Licence]:
    """The licences TT_EX004a writes off against: the X002 licence (500 kg of CN 93059100 to
    Sudan) and the UK 9104 licence covering both goods items; `line_changes` made to every
    line."""

    def line(number: int, cn_code: str, quantity: str) -> LicenceLine:
        return replace(kg_line(number, cn_code, quantity, "SD"), **line_changes)

    return [
        uk_licence("GBSIEXYK3ZZZPADR-0002", "GB896458895015", line(1, "93059100", "500")),
        uk_licence(
            "GBSIEXYK3ZZZ-0001",
            "GB896458895015",
            line(1, "93019000", "100"),
            line(2, "93059100", "100"),
        ),
    ]


def tt_ex010a_licence(
    quantity: str = "250", holder_eori: str = "GB417869120000", **line_changes: Any
) -> Licence:
    """The licence TT_EX010a writes off against: `quantity` kg of CN 93063030 to Pakistan;
    `line_changes` made to its line."""
    line = replace(kg_line(1, "93063030", quantity, "PK"), **line_changes)
    return uk_licence("GBSIEE2E350001-0001", holder_eori, line)


def sample_licences(**line_changes: Any) -> list[Licence]:
    """Every licence the sample declarations quote (TT_EX004a's, then TT_EX010a's), with
    `line_changes` made to every line (say, far larger ceilings)."""
    return [*tt_ex004a_licences(**line_changes), tt_ex010a_licence(**line_changes)]

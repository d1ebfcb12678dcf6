"""CheckAvailability's own rules (bridge.core.availability): a line found by a control list
entry read in the line's own list, and micro units counted exactly or refused, as the
write-off rules do."""

from __future__ import annotations

from dataclasses import replace
from datetime import date
from decimal import Decimal

import pytest

from bridge.core.availability import AvailabilityRequest, check_availability
from bridge.core.control_lists import project_control_lists
from bridge.core.model import Licence
from tests.fixtures_soap import individual_licence

ON = date(2026, 3, 10)


def _mixed_licence() -> Licence:
    """Line 1 on the Common Military List, line 2 on Annex I, line 3 on a UK national list."""
    cameras, arrays = individual_licence().lines
    return individual_licence(
        lines=(
            replace(cameras, control_list="eu-military", control_list_entry="ML8.a.1"),
            arrays,
            replace(arrays, line_number=3, control_list="uk-national", control_list_entry="PL5001"),
        )
    )


def _ask(entry: str, **values) -> object:
    request = AvailabilityRequest("DE-EA-2026-004711", control_list_entry=entry, **values)
    return check_availability(_mixed_licence(), {}, request, ON)


@pytest.mark.parametrize(
    ("entry", "line"),
    [
        ("ML8.a.1", 1),
        ("ML8a1", 1),  # the list's other spelling
        ("ml8.a.1", 1),
        ("6A002a3f", 2),  # Annex I as before: the tariff-footnote spelling
        ("6A002.a.3.f", 2),
        ("pl5001", 3),
    ],
)
def test_a_line_is_found_by_its_entry_read_in_its_own_list(entry, line):
    answer = _ask(entry, quantity=Decimal(1), unit="NAR" if line == 1 else "KGM")
    assert (answer.available, answer.line_number) == (True, line)


def test_an_entry_on_no_line_or_on_another_line_is_no_matching_line():
    missing = _ask("ML8.a.2")
    assert (missing.available, missing.code) == (False, "no-matching-line")
    assert "ML8.a.2 is on no line" in missing.reason and "1 ML8.a.1" in missing.reason
    other = _ask("ML8a1", line_item_number=2)
    assert (other.available, other.code) == (False, "no-matching-line")
    assert "line 2 is control list entry 6A002.a.3.f, not ML8a1" in other.reason
    # An Annex I entry is never read with the military syntax, nor the other way round.
    assert _ask("6A002.a.3.f", line_item_number=1).code == "no-matching-line"


def test_a_list_the_tables_do_not_declare_compares_entries_as_written():
    lists = project_control_lists()
    assert lists.spelling("eu-military", "ml8a1") == "ML8.a.1"
    assert lists.spelling("eu-dual-use", "6A002a3f") == "6A002.a.3.f"
    assert lists.spelling("eu-military", "5A002.a") is None
    assert lists.spelling("xx-national", " ab-12 ") == "AB-12"


def test_micro_units_are_counted_exactly_or_refused_as_the_write_off_would_be():
    licence = _mixed_licence()
    request = AvailabilityRequest(licence.number, line_item_number=2, unit="MGM")
    exact = check_availability(licence, {}, replace(request, quantity=Decimal(1500)), ON)
    assert (exact.available, exact.remaining.quantity) == (True, Decimal("12.5"))
    speck = check_availability(licence, {}, replace(request, quantity=Decimal("1.5")), ON)
    assert (speck.available, speck.code) == (False, "unit-precision")
    assert "1.5 MGM is 0.0000015 KGM, which needs 7 decimals" in speck.reason
    assert "line 2 counts in KGM and the ledger keeps 6 decimals" in speck.reason

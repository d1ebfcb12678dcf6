"""The statistics' counting rules on facts made by hand (no ledger): the shares of use, the
periods of a day's report, and the ranges a page may ask for."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

import pytest

from bridge.core.statistics import (
    Facts,
    Granularity,
    LineFacts,
    StatisticsQuery,
    count,
    periods_between,
)

D = Decimal


def _line(number: int, quantity: Decimal | None, value: Decimal | None) -> LineFacts:
    return LineFacts(
        licence_number="DE-2026-1",
        line_number=number,
        licence_type="individual",
        valid_from=date(2026, 3, 1),
        control_list_entry="5A002.a.1",
        unit="KGM",
        quantity=quantity,
        currency="EUR",
        value=value,
    )


def _facts(lines: list[LineFacts], used: dict[int, tuple[Decimal, Decimal]]) -> Facts:
    return Facts(
        licences={"DE-2026-1": ("individual", date(2026, 3, 1))},
        lines={("DE-2026-1", line.line_number): line for line in lines},
        movements=[],
        used={("DE-2026-1", n): figures for n, figures in used.items()},
        destinations={},
        refusals=[],
        alerts=[],
    )


def test_a_line_without_a_ceiling_does_not_count_against_the_others_ceilings():
    # Line 1: 100 kg and 1,000 EUR authorised, 50 kg and 250 EUR used. Line 2 has no quantity
    # ceiling and used 460 kg; line 3 has no value ceiling and used 900 EUR.
    lines = [_line(1, D(100), D(1000)), _line(2, None, D(5000)), _line(3, D(10), None)]
    used = {1: (D(50), D(250)), 2: (D(460), D(0)), 3: (D(0), D(900))}
    query = StatisticsQuery.of_days(date(2026, 1, 1), date(2026, 12, 31))
    (row,) = count(query, _facts(lines, used))["stats_by_type"].rows
    assert (row["authorised_quantity"], row["used_quantity"]) == (D(110), D(510))
    assert row["used_quantity_share"] == D(50) / D(110)  # lines 1 and 3: 50 of 110 kg
    assert (row["authorised_value"], row["used_value"]) == (D(6000), D(1150))
    assert row["used_value_share"] == D(250) / D(6000)  # lines 1 and 2: 250 of 6,000 EUR
    assert row["over_used_lines"] == 0


def test_a_day_counted_by_day_is_one_period_named_by_its_date():
    start = datetime(2026, 5, 20, tzinfo=UTC)
    end = datetime(2026, 5, 22, tzinfo=UTC)
    assert periods_between(start, end, Granularity.DAY) == ["2026-05-20", "2026-05-21"]
    assert periods_between(start, end, Granularity.MONTH) == ["2026-05"]


def test_a_page_may_ask_by_day_for_at_most_400_days():
    today = date(2026, 12, 6)
    query = StatisticsQuery.from_params(
        {"from": "2026-01-01", "to": "2026-02-04", "period": "day"}, today=today
    )
    assert query.granularity is Granularity.DAY
    assert len(periods_between(query.start, query.end, query.granularity)) == 35
    with pytest.raises(ValueError, match="401 days by day: choose at most 400 days"):
        StatisticsQuery.from_params(
            {"from": "2025-01-01", "to": "2026-02-05", "period": "day"}, today=today
        )

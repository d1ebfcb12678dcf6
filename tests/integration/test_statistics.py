"""The statistics page against an independent count: the demo's ledger built as the demo builds
it (national sample files with their rejects, certificates delivered to a customs simulator,
the demo's declaration events incl. a cancellation and a refused over-use), plus manual acts
(a write-off with a value, a correction, an over-use forced by hand, a reversal) on later days.
Every figure of every table the page shows is read from its HTML and compared with counts
and sums made with the tests' own queries (tests/browser/statistics_count.py). SQLite and
PostgreSQL."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from bridge.adapters.store.db import make_engine
from bridge.services.authority import correct, manual_write_off, reverse_movement
from bridge.services.config import Settings
from tests.browser.helpers import console_client, fill_demo_ledger
from tests.browser.statistics_count import (
    expected_tables,
    in_cents,
    months,
    page_tables,
    quarters,
    same_rows,
)

T0 = datetime(2026, 3, 14, 9, 30, tzinfo=UTC)  # the demo's events
T1 = datetime(2026, 5, 20, 14, 0, tzinfo=UTC)  # manual acts
T2 = datetime(2026, 6, 2, 8, 15, tzinfo=UTC)  # a reversal
OFFICER = "Test Officer (test)"


@pytest.fixture
def demo(ledger_url: str, tmp_path: Path):
    """The demo's ledger at T0, then the manual acts at T1 and T2: (settings, engine)."""
    settings = Settings(home=tmp_path / "home", database_url=ledger_url)
    filled = fill_demo_ledger(settings, now=T0)
    assert (filled.events_applied, filled.rejected_records) == (5, 3)
    engine = make_engine(ledger_url)
    first = manual_write_off(
        engine, "EA-2025-004711", 1, Decimal(7), "NAR", value=Decimal("70000.50"),
        currency="EUR", reason="paper declaration found in an audit", actor=OFFICER, now=T1,
    )  # fmt: skip
    correct(
        engine, "EA-2025-004711", 1, Decimal(3), "NAR", value=Decimal("30000"),
        currency="EUR", reason="three units missed by customs", actor=OFFICER, now=T1,
    )  # fmt: skip
    manual_write_off(
        engine, "GBSIEE2E350001-0001", 1, Decimal(300), "KGM",
        reason="shipment customs let through during an outage", actor=OFFICER, now=T1,
        force=True,
    )  # fmt: skip
    reverse_movement(engine, first.movement_id, reason="recorded twice", actor=OFFICER, now=T2)
    yield settings, engine
    engine.dispose()


@pytest.mark.parametrize(
    ("first", "last", "period", "periods"),
    [
        (date(2024, 1, 1), date(2026, 12, 31), "quarter", quarters),
        (date(2026, 4, 1), date(2026, 6, 30), "month", months),
    ],
    ids=["three-years-by-quarter", "q2-2026-by-month"],
)
def test_every_figure_of_the_statistics_page_equals_an_independent_count(
    demo, first, last, period, periods
):
    settings, engine = demo
    client = console_client(settings, role="auditor", engine=engine)
    answer = client.get(
        "/statistics", params={"from": first.isoformat(), "to": last.isoformat(), "period": period}
    )
    assert answer.status_code == 200, answer.text
    shown = page_tables(answer.text)
    start = datetime(first.year, first.month, first.day, tzinfo=UTC)
    end = datetime(last.year, last.month, last.day, tzinfo=UTC) + timedelta(days=1)
    with engine.connect() as conn:
        expected = in_cents(expected_tables(conn, periods(first, last), start, end))
    assert set(shown) == set(expected)
    figures = 0
    for name, rows in expected.items():
        same_rows(shown[name], rows)
        figures += sum(len(row) for row in rows)
        print(f"{name}: {len(rows)} rows equal the independent count")
    print(f"{figures} figures compared")
    assert figures > 0


def test_the_demo_story_reads_in_the_figures(demo):
    """What happened in the demo, as an officer reads it on the page: the cancellation
    nets TT_EX010a's 10 kg to Pakistan out, the over-use was refused, the forced write-off
    shows as an over-used line, and the manual write-off reversed in June leaves the
    correction alone."""
    settings, engine = demo
    client = console_client(settings, role="officer", engine=engine)
    shown = page_tables(
        client.get("/statistics", params={"from": "2026-01-01", "to": "2026-12-31"}).text
    )
    months = {row["period"]: row for row in shown["stats_overview"]}
    assert len(months) == 12
    assert (months["2026-03"]["write_offs"], months["2026-03"]["changes"]) == (6, 1)
    assert months["2026-03"]["refusals"] == months["2026-03"]["over_use_refusals"] == 1
    assert (months["2026-05"]["write_offs"], months["2026-05"]["changes"]) == (2, 1)
    assert months["2026-05"]["over_use_alerts"] == 1  # the forced write-off
    assert (months["2026-06"]["write_offs"], months["2026-06"]["changes"]) == (0, 1)
    destinations = {
        (row["destination"], row["unit"]): row for row in shown["stats_exports_by_destination"]
    }
    assert destinations[("PK", "KGM")]["quantity"] == 0  # released, then cancelled
    assert destinations[("SD", "KGM")]["quantity"] == 122
    manual = destinations[("not declared", "NAR")]  # 7 written off, 3 corrected, 7 reversed
    assert (manual["write_offs"], manual["changes"], manual["quantity"]) == (1, 2, 3)
    assert manual["value"] == Decimal("30000.00")
    (over,) = shown["stats_over_used"]
    assert (over["licence_number"], over["used_quantity"], over["authorised_quantity"]) == (
        "GBSIEE2E350001-0001",
        300,
        250,
    )
    refused = shown["stats_refusals"]
    assert refused == [{"period": "2026-03", "code": "over-use", "refusals": 1}]


def test_a_range_the_page_cannot_read_is_named_and_this_year_shown(demo):
    settings, engine = demo
    client = console_client(settings, role="auditor", engine=engine)
    answer = client.get("/statistics", params={"from": "2026-02-30", "to": "2026-12-31"})
    assert answer.status_code == 200
    assert "from &#39;2026-02-30&#39; is not a date (YYYY-MM-DD)" in answer.text
    answer = client.get("/statistics", params={"from": "2026-06-01", "to": "2026-05-01"})
    assert "the range ends (2026-05-01) before it starts (2026-06-01)" in answer.text
    answer = client.get("/statistics", params={"period": "week"})
    assert "period &#39;week&#39;: choose year, quarter, month or day" in answer.text
    answer = client.get(
        "/statistics", params={"from": "2025-01-01", "to": "2026-03-01", "period": "day"}
    )
    assert "425 days by day: choose at most 400 days, or count by month" in answer.text

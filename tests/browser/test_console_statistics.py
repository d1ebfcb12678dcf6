"""The statistics and exports in Chromium, on the console fixture's ledger: the figures of a period
chosen in the page's form equal the test's own count on the ledger (tests/browser/
statistics_count.py, SQL of its own), and another period changes them; a table downloaded as
CSV (`;` with a decimal comma, `,` with a decimal point) and as xlsx holds what the page shows,
numbers as numbers; the reconciliation workbook holds the ledger's rows."""

from __future__ import annotations

import csv
import io
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import openpyxl
import pytest
from sqlalchemy import text

from tests.browser.conftest import FORCED_LICENCE
from tests.browser.statistics_count import (
    expected_tables,
    in_cents,
    months,
    page_tables,
    quarters,
    same_rows,
)

BOM = "\ufeff"
MILLION = Decimal(1_000_000)  # the ledger keeps quantities and amounts in millionths


def _sql(console, sql: str, **params) -> list:
    with console.engine.connect() as conn:
        return conn.execute(text(sql), params).all()


def _ranges(console) -> dict[str, tuple[date, date, str]]:
    """This year to today by month; by quarter, from the first licence's first valid day to
    the end of last year (licences issued, no movement: every movement is made today), and
    to today (everything)."""
    today = datetime.now(UTC).date()
    ((first_valid,),) = _sql(console, "SELECT min(valid_from) FROM licence")
    first_valid = date.fromisoformat(str(first_valid)[:10])
    last_year_end = date(today.year - 1, 12, 31)
    assert first_valid <= last_year_end, "the sample licences start this year: choose other ranges"
    return {
        "this-year": (date(today.year, 1, 1), today, "month"),
        "the-years-before": (first_valid, last_year_end, "quarter"),
        "everything": (first_valid, today, "quarter"),
    }


def _choose(page, console, first: date, last: date, period: str) -> dict[str, list[dict]]:
    """Choose the range in the page's form, as a person does; the page's tables."""
    page.goto(console.url_for("/statistics"))
    form = page.locator("form.filters:has(input[type=date])")  # not an export's form
    form.locator("input[name=from]").fill(first.isoformat())
    form.locator("input[name=to]").fill(last.isoformat())
    form.locator("select[name=period]").select_option(period)
    form.locator("button[type=submit]").click()
    page.wait_for_url(f"**/statistics?from={first}&to={last}&period={period}")
    return page_tables(page.content())


def _counted(console, first: date, last: date, period: str) -> dict[str, list[dict]]:
    periods = months if period == "month" else quarters
    start = datetime(first.year, first.month, first.day, tzinfo=UTC)
    end = datetime(last.year, last.month, last.day, tzinfo=UTC) + timedelta(days=1)
    with console.engine.connect() as conn:
        return in_cents(expected_tables(conn, periods(first, last), start, end))


def _total(rows: list[dict], key: str) -> Decimal:
    return sum((Decimal(row[key]) for row in rows if row.get(key) is not None), Decimal(0))


def test_the_figures_of_a_chosen_period_equal_the_ledgers_and_another_period_changes_them(
    officer_page, console
):
    shown = {}
    for name, (first, last, period) in _ranges(console).items():
        shown[name] = _choose(officer_page, console, first, last, period)
        counted = _counted(console, first, last, period)
        assert set(shown[name]) == set(counted)
        for table, rows in counted.items():
            same_rows(shown[name][table], rows)
        figures = sum(len(row) for rows in counted.values() for row in rows)
        overview = shown[name]["stats_overview"]
        print(
            f"{name} {first}..{last} by {period}: {figures} figures equal the count;"
            f" licences issued {_total(overview, 'licences')},"
            f" write-offs {_total(overview, 'write_offs')},"
            f" reversals and corrections {_total(overview, 'changes')},"
            f" refusals {_total(overview, 'refusals')}"
        )
    this_year, before, everything = (
        shown[name] for name in ("this-year", "the-years-before", "everything")
    )
    issued = [_total(t["stats_overview"], "licences") for t in (this_year, before, everything)]
    assert issued[0] + issued[1] == issued[2] and issued[1] > 0
    written_off = [_total(t["stats_overview"], "write_offs") for t in (this_year, before)]
    assert written_off[0] > 0 and written_off[1] == 0
    assert this_year["stats_by_type"] != before["stats_by_type"] != everything["stats_by_type"]
    # What only the bridge knows, used against authorised: up to the end of the range, so
    # nothing yet at the end of last year, and today's write-offs in the whole range.
    assert _total(before["stats_by_type"], "used_quantity") == 0
    assert _total(everything["stats_by_type"], "used_quantity") > 0
    assert any(row["used_quantity_share"] for row in everything["stats_by_type"])


def _download(page, section: str, fmt: str, sep: str = "", decimal: str = "") -> bytes:
    """Download a table of the page through its export form."""
    choice = page.locator(f"#section-{section} details.export")
    choice.locator("summary").click()
    if sep:
        choice.locator("select[name=sep]").select_option(sep)
        choice.locator("select[name=decimal]").select_option(decimal)
    with page.expect_download() as download:
        choice.locator(f"button[value={fmt}]").click()
    return download.value.path().read_bytes()


def _headings(page, table: str) -> list[str]:
    return page.locator(f"#{table} thead th").all_inner_texts()


def _keys(page, table: str) -> list[str]:
    cells = page.locator(f"#{table} tbody tr").first.locator("td[data-key]")
    return [cells.nth(i).get_attribute("data-key") for i in range(cells.count())]


def _from_csv(cell: str, shown, mark: str):
    """A CSV cell read as the page's figure it should equal: numbers with the file's decimal
    mark (and no other), shares as ("%", percent), empty as None."""
    if shown is None or cell == "":
        return None if cell == "" else cell
    if isinstance(shown, Decimal | tuple):
        other = "." if mark == "," else ","
        assert other not in cell, f"{cell!r}: a {other!r} in a file with the decimal mark {mark!r}"
        number = Decimal(cell.replace(mark, "."))
        return ("%", number) if isinstance(shown, tuple) else number
    return cell


@pytest.mark.parametrize(
    ("sep", "decimal", "delimiter", "mark"),
    [("semicolon", "comma", ";", ","), ("comma", "point", ",", ".")],
    ids=["semicolon-decimal-comma", "comma-decimal-point"],
)
def test_a_table_as_csv_holds_the_figures_of_the_page(
    officer_page, console, sep, decimal, delimiter, mark
):
    page = officer_page
    first, last, period = _ranges(console)["everything"]
    shown = _choose(page, console, first, last, period)["stats_by_type"]
    assert any(
        isinstance(row.get("authorised_value"), Decimal)
        and row["authorised_value"] != row["authorised_value"].to_integral()
        for row in shown
    ), "no amount with cents in the table: the decimal mark is not put to the test"
    data = _download(page, "stats_by_type", "csv", sep, decimal)
    assert data.startswith(BOM.encode("utf-8"))
    rows = list(csv.reader(io.StringIO(data.decode("utf-8-sig"), newline=""), delimiter=delimiter))
    headings, keys = _headings(page, "stats_by_type"), _keys(page, "stats_by_type")
    assert [h.removesuffix(" (%)") for h in rows[0]] == headings
    assert len(rows) - 1 == len(shown) > 0
    for cells, row in zip(rows[1:], shown, strict=True):
        assert len(cells) == len(keys)
        read = {key: _from_csv(cell, row[key], mark) for key, cell in zip(keys, cells, strict=True)}
        assert read == row
    print(f"{len(shown)} rows of {len(keys)} columns read back from {sep}/{decimal}: {rows[1]}")


def test_a_table_as_xlsx_holds_the_figures_of_the_page_numbers_as_numbers(officer_page, console):
    page = officer_page
    first, last, period = _ranges(console)["everything"]
    tables = _choose(page, console, first, last, period)
    for name in ("stats_by_type", "stats_overview"):
        shown = tables[name]
        book = openpyxl.load_workbook(io.BytesIO(_download(page, name, "xlsx")))
        (sheet,) = book.worksheets
        rows = list(sheet.iter_rows(values_only=True))
        keys = _keys(page, name)
        assert [h.removesuffix(" (%)") for h in rows[0]] == _headings(page, name)
        assert len(rows) - 1 == len(shown) > 0
        numbers = 0
        for cells, row in zip(rows[1:], shown, strict=True):
            for key, cell in zip(keys, cells, strict=True):
                figure = row[key]
                if isinstance(figure, Decimal | tuple):
                    assert isinstance(cell, int | float), (name, key, cell)
                    numbers += 1
                    if isinstance(figure, tuple):  # a share, kept as a fraction, shown in %
                        assert (Decimal(str(cell)) * 100).quantize(Decimal("0.1")) == figure[1]
                    else:
                        assert Decimal(str(cell)) == figure, (name, key, cell, figure)
                else:
                    assert cell == figure, (name, key, cell, figure)
        print(f"{name}: {len(shown)} rows, {numbers} numbers stored as numbers")
        assert numbers > 0


def test_the_reconciliation_workbook_holds_the_ledger(auditor_page, console):
    page = auditor_page
    page.goto(console.url_for("/exports"))
    assert page.locator("h1").inner_text() == "Exports"
    with page.expect_download() as download:
        page.click("text=Download the workbook (xlsx)")
    book = openpyxl.load_workbook(io.BytesIO(download.value.path().read_bytes()))
    assert book.sheetnames == ["licences", "lines", "movements", "refusals", "alerts"]
    counts = {
        sheet: _sql(console, f"SELECT count(*) FROM {table}")[0][0]
        for sheet, table in (
            ("licences", "licence"),
            ("lines", "licence_line"),
            ("movements", "movement"),
            ("refusals", "refusal"),
            ("alerts", "alert"),
        )
    }
    rows = {name: list(book[name].iter_rows(values_only=True)) for name in book.sheetnames}
    assert {name: len(found) - 1 for name, found in rows.items()} == counts
    print(f"sheets and rows: {counts}")

    # per licence, the movements' quantities add up to what the ledger holds
    heading = rows["movements"][0]
    licence_at, quantity_at = heading.index("licence"), heading.index("quantity")
    sums: dict[str, Decimal] = {}
    for row in rows["movements"][1:]:
        sums[row[licence_at]] = sums.get(row[licence_at], Decimal(0)) + Decimal(
            str(row[quantity_at])
        )
    expected = {
        number: Decimal(total) / MILLION
        for number, total in _sql(
            console, "SELECT licence_number, sum(quantity) FROM movement GROUP BY licence_number"
        )
    }
    assert sums == expected and FORCED_LICENCE in sums
    # the line written off beyond its ceiling, flagged
    heading = rows["lines"][0]
    (forced,) = [
        row
        for row in rows["lines"][1:]
        if row[heading.index("licence")] == FORCED_LICENCE and row[heading.index("line")] == 1
    ]
    ((authorised, used),) = _sql(
        console,
        "SELECT l.quantity, t.quantity FROM licence_line l JOIN line_total t"
        " ON t.licence_number = l.number AND t.line_number = l.line_number"
        " WHERE l.number = :n AND l.line_number = 1",
        n=FORCED_LICENCE,
    )
    assert Decimal(str(forced[heading.index("authorised quantity")])) == authorised / MILLION
    assert Decimal(str(forced[heading.index("written off quantity")])) == used / MILLION
    assert used > authorised and forced[heading.index("over-used")] == "yes"


OVER_USED_LINES = (
    "SELECT l.number, l.line_number FROM licence_line l JOIN line_total t"
    " ON t.licence_number = l.number AND t.line_number = l.line_number"
    " WHERE (l.quantity IS NOT NULL AND t.quantity > l.quantity)"
    " OR (l.value IS NOT NULL AND t.value > l.value)"
)


def _lines_shown(page) -> list[tuple[str, int]]:
    rows = page.locator("#reconciliation tbody tr")
    return sorted(
        (
            rows.nth(i).locator("td[data-key=licence_number]").inner_text(),
            int(rows.nth(i).locator("td[data-key=line_number]").inner_text()),
        )
        for i in range(rows.count())
    )


@pytest.mark.parametrize("role", ["officer", "auditor"])
def test_the_reconciliation_lists_every_line_and_its_filters_narrow_it(request, console, role):
    page = request.getfixturevalue(f"{role}_page")
    every = sorted(
        (number, line)
        for number, line in _sql(console, "SELECT number, line_number FROM licence_line")
    )
    over = sorted((number, line) for number, line in _sql(console, OVER_USED_LINES))
    assert 0 < len(over) < len(every)
    page.goto(console.url_for("/reconciliation"))
    assert page.locator("h1").inner_text() == "Reconciliation"
    assert _lines_shown(page) == every
    assert page.locator("#reconciliation tbody tr.over").count() == len(over)

    page.check("input[name=over_used]")
    page.click("form.filters button[type=submit]")
    page.wait_for_url("**/reconciliation?*over_used=1*")
    assert _lines_shown(page) == over
    (forced,) = [line for line in over if line[0] == FORCED_LICENCE]
    row = page.locator("#reconciliation tbody tr.over").filter(has_text=FORCED_LICENCE)
    ((authorised, used),) = _sql(
        console,
        "SELECT l.quantity, t.quantity FROM licence_line l JOIN line_total t"
        " ON t.licence_number = l.number AND t.line_number = l.line_number"
        " WHERE l.number = :n AND l.line_number = :line",
        n=forced[0],
        line=forced[1],
    )
    shown = row.locator("td[data-key=written_off_quantity]").inner_text().replace("\u202f", "")
    assert Decimal(shown) == Decimal(used) / MILLION > Decimal(authorised) / MILLION

"""Exports round trip: every table of the statistics and reconciliation pages downloaded as CSV
(each choice of separator and decimal mark) and as xlsx, read back with the csv module and
openpyxl, holds the same figures as the page shows. The reconciliation workbook has its five
sheets with the ledger's rows. SQLite and PostgreSQL, on the demo's ledger of
test_statistics."""

from __future__ import annotations

import csv
import io
from decimal import Decimal

import openpyxl
import pytest
from sqlalchemy import func, select

from bridge.adapters.store.schema import alert, movement, refusal
from bridge.core.tables import Column, Kind, TableSpec
from bridge.services.exports import BOM, CsvOptions, table_csv, tables_xlsx
from tests.browser.helpers import console_client
from tests.integration.test_statistics import T1, demo, page_tables  # noqa: F401 - a fixture

RANGE = {"from": "2024-01-01", "to": "2026-12-31", "period": "quarter"}
CHOICES = [
    ("semicolon", "comma", ";", ","),
    ("tab", "point", "\t", "."),
    ("comma", "point", ",", "."),
]
STATISTICS_TABLES = (
    "stats_overview",
    "stats_by_type",
    "stats_authorised_by_category",
    "stats_exports_by_category",
    "stats_exports_by_destination",
    "stats_licences_by_destination",
    "stats_refusals",
    "stats_over_used",
)


def _page_and_files(demo):  # noqa: F811 - the fixture's value
    settings, engine = demo
    client = console_client(settings, role="auditor", engine=engine)
    page = client.get("/statistics", params=RANGE)
    assert page.status_code == 200
    return client, page_tables(page.text)


def _csv_rows(data: bytes, delimiter: str) -> list[list[str]]:
    assert data.startswith(BOM.encode("utf-8")), "no byte order mark: Excel would misread accents"
    return list(csv.reader(io.StringIO(data.decode("utf-8-sig"), newline=""), delimiter=delimiter))


def _equal_cell(shown, text: str, mark: str) -> bool:
    """Whether a CSV cell says what the page shows."""
    if shown is None:
        return text == ""
    if isinstance(shown, tuple):  # a share, shown "25.5 %", written 25.5
        return Decimal(text.replace(mark, ".")) == shown[1]
    if isinstance(shown, Decimal):
        if mark == "," and "." in text:
            return False  # a point in a decimal-comma file: a German Excel reads it as text
        return Decimal(text.replace(mark, ".")) == shown
    return text == shown


@pytest.mark.parametrize(("sep", "decimal", "delimiter", "mark"), CHOICES)
def test_statistics_tables_as_csv_hold_the_page_figures(demo, sep, decimal, delimiter, mark):  # noqa: F811
    client, shown = _page_and_files(demo)
    cells = 0
    for name in STATISTICS_TABLES:
        answer = client.get(
            f"/exports/{name}", params={**RANGE, "format": "csv", "sep": sep, "decimal": decimal}
        )
        assert answer.status_code == 200, answer.text
        assert answer.headers["content-type"].startswith("text/csv")
        assert f'filename="{name}-' in answer.headers["content-disposition"]
        heading, *rows = _csv_rows(answer.content, delimiter)
        page_rows = shown[name]
        assert len(rows) == len(page_rows), name
        for row, page_row in zip(rows, page_rows, strict=True):
            assert len(row) == len(heading) == len(page_row), (name, row)
            for text, figure in zip(row, page_row.values(), strict=True):
                assert _equal_cell(figure, text, mark), (name, figure, text)
                cells += 1
    print(f"{cells} cells of {len(STATISTICS_TABLES)} CSV files ({sep}, {decimal}) equal the page")
    # The figures the demo gives with decimals are written with the chosen mark.
    by_type = client.get(
        "/exports/stats_by_type", params={**RANGE, "format": "csv", "sep": sep, "decimal": decimal}
    ).content.decode("utf-8-sig")
    assert f"12{mark}75" in by_type and f"48300{mark}50" in by_type


def _equal_xlsx(shown, value) -> bool:
    if shown is None:
        return value is None
    if isinstance(shown, tuple):
        return (Decimal(str(value)) * 100).quantize(Decimal("0.1")) == shown[1]
    if isinstance(shown, Decimal):
        return isinstance(value, int | float) and Decimal(str(value)) == shown
    return value == shown


def test_statistics_tables_as_xlsx_hold_the_page_figures_as_numbers(demo):  # noqa: F811
    client, shown = _page_and_files(demo)
    numbers = 0
    for name in STATISTICS_TABLES:
        answer = client.get(f"/exports/{name}", params={**RANGE, "format": "xlsx"})
        assert answer.status_code == 200, answer.text
        book = openpyxl.load_workbook(io.BytesIO(answer.content))
        (sheet,) = book.worksheets
        assert sheet.title == name and sheet.freeze_panes == "A2"
        header = [cell for cell in sheet[1]]
        assert all(cell.font.bold for cell in header)
        for index in range(1, len(header) + 1):
            width = sheet.column_dimensions[openpyxl.utils.get_column_letter(index)].width
            assert width and width >= len(str(header[index - 1].value)) + 2
        rows = list(sheet.iter_rows(min_row=2))
        assert len(rows) == len(shown[name])
        for row, page_row in zip(rows, shown[name], strict=True):
            for cell, figure in zip(row, page_row.values(), strict=True):
                assert _equal_xlsx(figure, cell.value), (name, figure, cell.value)
                if isinstance(figure, tuple):
                    assert cell.number_format == "0.0%"
                if isinstance(figure, Decimal):
                    numbers += 1
    print(f"{numbers} numbers read back from xlsx equal the page")
    assert numbers > 100


def test_the_reconciliation_as_one_workbook(demo):  # noqa: F811
    settings, engine = demo
    client = console_client(settings, role="auditor", engine=engine)
    shown = page_tables(client.get("/reconciliation").text)["reconciliation"]
    book = openpyxl.load_workbook(io.BytesIO(client.get("/exports/reconciliation.xlsx").content))
    assert book.sheetnames == ["licences", "lines", "movements", "refusals", "alerts"]
    lines = list(book["lines"].iter_rows(min_row=2))
    assert len(lines) == len(shown) == 17
    for row, page_row in zip(lines, shown, strict=True):
        for cell, figure in zip(row, page_row.values(), strict=True):
            assert _equal_xlsx(figure, cell.value), (figure, cell.value)
    with engine.connect() as conn:
        counts = {
            table.name: conn.execute(select(func.count()).select_from(table)).scalar_one()
            for table in (movement, refusal, alert)
        }
        in_may = conn.execute(
            select(func.count())
            .select_from(movement)
            .where(
                movement.c.at >= T1.replace(day=1, hour=0, minute=0),
                movement.c.at < T1.replace(month=6, day=1, hour=0, minute=0),
            )
        ).scalar_one()
    assert book["movements"].max_row - 1 == counts["movement"] == 11
    assert book["refusals"].max_row - 1 == counts["refusal"]
    assert book["alerts"].max_row - 1 == counts["alert"]
    licences = book["licences"]
    assert licences.max_row - 1 == 12 and licences.freeze_panes == "A2"
    valid_from = [c.value for c in licences["I"][1:]]
    assert all(cell.is_date for cell in licences["I"][1:])  # dates as dates
    assert min(valid_from).year == 2024
    # The range limits movements, refusals and alerts, not the licences or the balances.
    may = openpyxl.load_workbook(
        io.BytesIO(
            client.get(
                "/exports/reconciliation.xlsx", params={"from": "2026-05-01", "to": "2026-05-31"}
            ).content
        )
    )
    assert may["movements"].max_row - 1 == in_may == 3
    assert may["lines"].max_row == book["lines"].max_row


def test_choices_that_cannot_work_are_refused_saying_why(demo):  # noqa: F811
    settings, engine = demo
    client = console_client(settings, role="officer", engine=engine)
    answer = client.get("/exports/stats_overview", params={"sep": "comma", "decimal": "comma"})
    assert answer.status_code == 400
    assert "a comma cannot be both the separator and the decimal mark" in answer.text
    answer = client.get("/exports/stats_overview", params={"sep": "pipe"})
    assert answer.status_code == 400 and "separator &#39;pipe&#39;" in answer.text
    answer = client.get("/exports/stats_overview", params={"format": "pdf"})
    assert answer.status_code == 400 and "choose csv or xlsx" in answer.text
    assert client.get("/exports/no_such_table").status_code == 404
    answer = client.get("/exports/movements", params={"from": "2026-13-01"})
    assert answer.status_code == 400 and "is not a date" in answer.text
    # The last choice is remembered for the next export forms.
    client.get("/exports/stats_refusals", params={"sep": "tab", "decimal": "point"})
    page = client.get("/statistics").text
    assert '<option value="tab" selected>' in page and '<option value="point" selected>' in page


AWKWARD = TableSpec(
    "awkward",
    "Awkward texts",
    (
        Column("text", "holder; name"),
        Column("amount", "amount", Kind.MONEY),
        Column("share", "used", Kind.PERCENT),
    ),
)


def test_text_with_separators_quotes_and_lines_round_trips():
    rows = [
        {"text": 'Bärenfeld "Chemie"; GmbH, Köln', "amount": Decimal("-1234.5"), "share": None},
        {"text": "two\nlines\twith tab", "amount": None, "share": Decimal("0.0625")},
    ]
    table = AWKWARD.table(rows)
    for sep, decimal, delimiter, mark in CHOICES:
        heading, *read = _csv_rows(table_csv(table, CsvOptions(sep, decimal)), delimiter)
        assert heading == ["holder; name", "amount", "used (%)"]
        assert read[0] == [rows[0]["text"], f"-1234{mark}50", ""]
        assert read[1] == [rows[1]["text"], "", f"6{mark}2"]
    sheet = openpyxl.load_workbook(io.BytesIO(tables_xlsx([table]))).active
    assert [c.value for c in sheet[2]] == [rows[0]["text"], -1234.5, None]
    assert sheet["B2"].number_format == "#,##0.00"
    assert sheet["C3"].value == 0.0625

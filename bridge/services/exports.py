"""Every table of the console as a file people open: CSV with the separator and decimal mark
their spreadsheet expects (UTF-8 with a byte order mark, so Excel reads the accents), and xlsx
(openpyxl) with numbers as numbers in their formats, dates as dates, the header row frozen and
the columns wide enough; the reconciliation as one workbook (licences, lines, movements,
refusals, alerts).

A table is described once (bridge.core.tables); this module only writes it."""

from __future__ import annotations

import csv
import io
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal

from openpyxl import Workbook
from openpyxl.cell import WriteOnlyCell
from openpyxl.styles import Alignment, Font, PatternFill
from openpyxl.utils import get_column_letter
from sqlalchemy import Engine

from bridge.adapters.store import ledger_export
from bridge.adapters.store.reconciliation import reconciliation_rows
from bridge.core import console_tables
from bridge.core.reconcile import ReconciliationRow
from bridge.core.tables import Column, Kind, Table, csv_text, display, heading

BOM = "\ufeff"
SEPARATORS = {"semicolon": ";", "comma": ",", "tab": "\t"}
DECIMAL_MARKS = {"comma": ",", "point": "."}
XLSX_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
CSV_TYPE = "text/csv; charset=utf-8"
MAX_WIDTH = 60  # characters: wider text wraps in the cell instead
_SHEET_FORBIDDEN = str.maketrans({c: "-" for c in "[]:*?/\\"})


@dataclass(frozen=True)
class CsvOptions:
    """How a CSV file is written: `separator` and `decimal_mark` by name (semicolon, comma,
    tab; comma, point). The default suits the spreadsheets of most member states (`;` and
    `,`: a German, French or Italian Excel opens it as columns)."""

    separator: str = "semicolon"
    decimal_mark: str = "comma"

    def __post_init__(self) -> None:
        if self.separator not in SEPARATORS:
            raise ValueError(f"separator {self.separator!r}: choose {', '.join(SEPARATORS)}")
        if self.decimal_mark not in DECIMAL_MARKS:
            raise ValueError(
                f"decimal mark {self.decimal_mark!r}: choose {', '.join(DECIMAL_MARKS)}"
            )
        if self.separator == "comma" and self.decimal_mark == "comma":
            raise ValueError(
                "a comma cannot be both the separator and the decimal mark: with a decimal"
                " comma choose the semicolon or tab separator"
            )

    @classmethod
    def from_params(cls, params: Mapping[str, str]) -> CsvOptions:
        """The options a query asks for (`sep`, `decimal`), the defaults for what it leaves
        out; ValueError naming a value that is not one of the choices."""
        return cls(
            separator=(params.get("sep") or cls.separator).strip(),
            decimal_mark=(params.get("decimal") or cls.decimal_mark).strip(),
        )

    @property
    def delimiter(self) -> str:
        return SEPARATORS[self.separator]

    @property
    def mark(self) -> str:
        return DECIMAL_MARKS[self.decimal_mark]


def table_csv(table: Table, options: CsvOptions = CsvOptions()) -> bytes:
    """The table as CSV: a heading row, then one row per record, UTF-8 with a byte order
    mark, lines ended CRLF (RFC 4180), numbers with the chosen decimal mark and no grouping."""
    out = io.StringIO()
    out.write(BOM)
    writer = csv.writer(out, delimiter=options.delimiter, lineterminator="\r\n")
    writer.writerow([heading(column) for column in table.columns])
    for row in table.rows:
        writer.writerow(
            [csv_text(row.get(column.key), column.kind, options.mark) for column in table.columns]
        )
    return out.getvalue().encode("utf-8")


# --------------------------------------------------------------------------- xlsx

_HEADER_FONT = Font(bold=True)
_HEADER_FILL = PatternFill("solid", fgColor="EEF1F6")
_WRAP = Alignment(wrap_text=True, vertical="top")


def _places(values: Sequence[Decimal]) -> int:
    return max((max(0, -v.as_tuple().exponent) for v in values), default=0)


def _number_format(column: Column, values: Sequence) -> str | None:
    if column.kind is Kind.MONEY:
        return "#,##0.00"
    if column.kind is Kind.QUANTITY:
        places = min(6, _places([v for v in values if isinstance(v, Decimal)]))
        return "#,##0" + ("." + "0" * places if places else "")
    if column.kind is Kind.INTEGER:
        return "0"
    if column.kind is Kind.PERCENT:
        return "0.0%"
    if column.kind is Kind.DATE:
        return "yyyy-mm-dd"
    if column.kind is Kind.DATETIME:
        return "yyyy-mm-dd hh:mm:ss"
    return None


def _cell_value(value, kind: Kind):
    """What openpyxl stores: numbers as numbers (exact Decimals), dates as dates, times as
    naive UTC (Excel has no time zones; the heading says UTC), flags as yes/blank."""
    if value is None:
        return None
    if kind is Kind.DATETIME and isinstance(value, datetime):
        return value.astimezone(UTC).replace(tzinfo=None)
    if kind is Kind.FLAG:
        return "yes" if value else None
    if kind is Kind.DATE and isinstance(value, date):
        return value
    return value


def _width(column: Column, shown: Sequence[str]) -> float:
    if column.width is not None:
        return column.width
    longest = max([len(heading(column)), *(len(text) for text in shown)])
    return min(MAX_WIDTH, max(6, longest + 2))


def sheet_title(name: str, taken: set[str]) -> str:
    """A sheet name Excel accepts (at most 31 characters, none of []:*?/\\), unique."""
    base = name.translate(_SHEET_FORBIDDEN)[:31] or "sheet"
    title, n = base, 2
    while title.lower() in taken:
        suffix = f" ({n})"
        title, n = base[: 31 - len(suffix)] + suffix, n + 1
    taken.add(title.lower())
    return title


def _add_sheet(book: Workbook, table: Table, title: str) -> None:
    sheet = book.create_sheet(title)
    values = [table.values(row) for row in table.rows]
    formats = [
        _number_format(column, [row[i] for row in values]) for i, column in enumerate(table.columns)
    ]
    sample = values[:2000]  # widths from the first rows: enough to size a column
    for i, column in enumerate(table.columns):
        shown = [display(row[i], column.kind) for row in sample]
        sheet.column_dimensions[get_column_letter(i + 1)].width = _width(column, shown)
    sheet.freeze_panes = "A2"
    if table.columns:
        last = get_column_letter(len(table.columns))
        sheet.auto_filter.ref = f"A1:{last}{max(1, len(values) + 1)}"
    header = []
    for column in table.columns:
        cell = WriteOnlyCell(sheet, heading(column))
        cell.font, cell.fill = _HEADER_FONT, _HEADER_FILL
        header.append(cell)
    sheet.append(header)
    for row in values:
        cells = []
        for i, (value, column) in enumerate(zip(row, table.columns, strict=True)):
            cell = WriteOnlyCell(sheet, _cell_value(value, column.kind))
            if formats[i] and value is not None:
                cell.number_format = formats[i]
            if column.kind is Kind.TEXT and isinstance(value, str) and len(value) > MAX_WIDTH:
                cell.alignment = _WRAP
            cells.append(cell)
        sheet.append(cells)


def tables_xlsx(tables: Sequence[Table], *, title: str = "", names: Sequence[str] = ()) -> bytes:
    """The tables as one workbook, a sheet each (named `names`, else by the tables' names),
    in order. Written in openpyxl's streaming mode: a large ledger does not sit in memory twice."""
    book = Workbook(write_only=True)
    taken: set[str] = set()
    for index, table in enumerate(tables):
        _add_sheet(book, table, sheet_title(names[index] if names else table.name, taken))
    if not tables:
        book.create_sheet("empty")
    book.properties.title = title or (tables[0].title if tables else "")
    book.properties.creator = "eLicensing bridge"
    notes = {k: v for table in tables for k, v in table.notes.items()}
    if notes:
        book.properties.description = "; ".join(f"{k}: {v}" for k, v in notes.items())
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def table_xlsx(table: Table) -> bytes:
    return tables_xlsx([table], title=table.title)


# --------------------------------------------------------------------------- reconciliation

RECONCILIATION_SPECS = (
    console_tables.LICENCES,
    console_tables.LINES,
    console_tables.MOVEMENTS,
    console_tables.REFUSALS,
    console_tables.ALERTS,
)
RECONCILIATION_SHEETS = ("licences", "lines", "movements", "refusals", "alerts")


def reconciliation_tables(
    engine: Engine,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    names: Collection[str] | None = None,
) -> list[Table]:
    """The reconciliation as tables, in the workbook's order: licences, lines (balances as
    the ledger holds them now), and the movements, refusals and alerts recorded from `since`
    (inclusive) to `until` (exclusive), all of them without a range. `names`: only the tables
    of these names (bridge.core.console_tables), still in that order."""
    wanted = {spec.name for spec in RECONCILIATION_SPECS} if names is None else set(names)
    unknown = wanted - {spec.name for spec in RECONCILIATION_SPECS}
    if unknown:
        raise ValueError(f"no reconciliation table {', '.join(sorted(unknown))}")
    notes = {"range": _range_note(since, until)}
    tables = []
    with engine.connect() as conn:
        for spec in RECONCILIATION_SPECS:
            if spec.name not in wanted:
                continue
            if spec is console_tables.LICENCES:
                records = ledger_export.licence_headers(conn)
                tables.append(spec.table(console_tables.pick(records, spec)))
            elif spec is console_tables.LINES:
                rows = reconciliation_rows(conn)
                tables.append(spec.table(console_tables.reconciliation_records(rows)))
            else:
                read = {
                    console_tables.MOVEMENTS.name: ledger_export.movement_rows,
                    console_tables.REFUSALS.name: ledger_export.refusal_rows,
                    console_tables.ALERTS.name: ledger_export.alert_rows,
                }[spec.name]
                records = read(conn, since=since, until=until)
                tables.append(spec.table(console_tables.pick(records, spec), **notes))
    return tables


@dataclass(frozen=True)
class LineFilter:
    """Which reconciliation lines a page shows: licence number containing `licence`, of
    `licence_type` and `status` (empty: any), only over-used ones, only lines with movements."""

    licence: str = ""
    licence_type: str = ""
    status: str = ""
    over_used: bool = False
    moved: bool = False

    def keeps(self, row: ReconciliationRow) -> bool:
        return (
            self.licence.strip().upper() in row.licence_number.upper()
            and (not self.licence_type or row.licence_type == self.licence_type)
            and (not self.status or row.status == self.status)
            and (not self.over_used or row.over_used)
            and (not self.moved or row.movements > 0)
        )


def reconciliation_table(engine: Engine, wanted: LineFilter = LineFilter()) -> Table:
    """The reconciliation lines `wanted` keeps, in licence and line order."""
    with engine.connect() as conn:
        rows = [row for row in reconciliation_rows(conn) if wanted.keeps(row)]
    return console_tables.LINES.table(console_tables.reconciliation_records(rows))


def _range_note(since: datetime | None, until: datetime | None) -> str:
    if since is None and until is None:
        return "everything in the ledger"
    start = "the start" if since is None else f"{since:%Y-%m-%d %H:%M} UTC"
    end = "now" if until is None else f"{until:%Y-%m-%d %H:%M} UTC"
    return f"from {start} to {end}"


def reconciliation_workbook(
    engine: Engine, *, since: datetime | None = None, until: datetime | None = None
) -> bytes:
    """The reconciliation as one xlsx workbook, sheets licences, lines, movements, refusals,
    alerts (see `reconciliation_tables`)."""
    tables = reconciliation_tables(engine, since=since, until=until)
    return tables_xlsx(tables, title="Reconciliation", names=RECONCILIATION_SHEETS)

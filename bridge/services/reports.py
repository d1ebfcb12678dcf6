"""The daily reports people open (docs/reports.md): the console's reconciliation, statistics and
alerts pages as static HTML files, and their tables as xlsx workbooks and CSV files, for the
write-offs of one day up to a given time.

The HTML files are the console's own templates and style sheet, made self-contained: the style
sheet is inside the page, the chart is inline SVG, and every link points at a file of the same
folder (no link needs the console's server). Files are written atomically (a temporary file in
the folder, then renamed over the old one: a reader sees the old file or the new, never half)
with the mode asked for, and the folder gets the matching search bits (0640 -> 0750), so the
group that reads the reports can open them whatever the writing process's umask."""

from __future__ import annotations

import base64
from collections.abc import Callable, Mapping
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup
from sqlalchemy import Engine

from bridge.adapters.report_files import folder_mode, make_folder, write_atomically
from bridge.adapters.store.alerts import OPEN, list_alerts
from bridge.core import console_tables
from bridge.core.charts import grouped_bars
from bridge.core.statistics import SPECS, Granularity, StatisticsQuery, chart_series, day_start
from bridge.core.tables import Kind, display
from bridge.services.exports import (
    RECONCILIATION_SHEETS,
    CsvOptions,
    reconciliation_tables,
    table_csv,
    tables_xlsx,
)
from bridge.services.statistics import statistics

# The console's templates and style sheet (bridge/entrypoints/console): read as files, so that
# this service renders the same pages without importing the web application.
CONSOLE_DIR = Path(__file__).resolve().parent.parent / "entrypoints" / "console"
TEMPLATES_DIR = CONSOLE_DIR / "templates"
STYLE_SHEET = CONSOLE_DIR / "static" / "console.css"
DEFAULT_MODE = 0o640

# The console's page names and the report file standing for each.
PAGE_FILES = {
    "home": "index.html",
    "stats_page": "statistics.html",
    "stats_reconciliation": "reconciliation.html",
    "alerts": "alerts.html",
}


def file_mode(mode: int | str) -> int:
    """`mode` as a number (an octal string such as "0640" is read as octal); ValueError when
    it is not a file mode the owner can read and write."""
    if isinstance(mode, str):
        try:
            mode = int(mode.strip(), 8)
        except ValueError:
            raise ValueError(f"report mode {mode!r} is not an octal mode such as 0640") from None
    if not 0 <= mode <= 0o777 or mode & 0o600 != 0o600:
        raise ValueError(
            f"report mode {mode:#o}: an octal file mode the owner can read and write (e.g. 0640)"
        )
    return mode


def report_range(day: date, now: datetime) -> tuple[datetime, datetime]:
    """From the start of `day` to the end of it, or to `now` when the day is not over (UTC);
    ValueError when `now` is before the day starts."""
    start = day_start(day)
    now = now.replace(tzinfo=UTC) if now.tzinfo is None else now.astimezone(UTC)
    if now <= start:
        raise ValueError(f"the report of {day} cannot be written at {now:%Y-%m-%d %H:%M} UTC")
    return start, min(now, start + timedelta(days=1))


def _environment() -> Environment:
    environment = Environment(
        loader=FileSystemLoader(TEMPLATES_DIR),
        autoescape=select_autoescape(["html", "svg", "xml"], default_for_string=True),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    # The console's filters, as its pages write them (bridge.core.tables.display).
    environment.filters["quantity"] = lambda value, places=None: display(
        value if places is None else round(value, places), Kind.QUANTITY
    )
    environment.filters["moment"] = lambda value: display(
        value, Kind.DATETIME if isinstance(value, datetime) else Kind.DATE
    )
    return environment


def _static_context(report_files: Mapping[str, list[tuple[str, str]]], written_at: str) -> dict:
    css = base64.b64encode(STYLE_SHEET.read_bytes()).decode("ascii")

    def page_url(name: str, query: Mapping[str, Any] | None = None, **params: Any) -> str:
        # A page of this report, else nothing to follow: no link may need the server.
        return PAGE_FILES.get(name, "#")

    return {
        "user": None,
        "nav": [],
        "csrf_field": "",
        "csrf_token": "",
        "flashes": [],
        "current_route": "",
        "page_url": page_url,
        "url_for": page_url,
        "static": lambda path: f"data:text/css;base64,{css}",
        "cell": display,
        "report_files": report_files,
        "written_at": written_at,
        "over_class": lambda row: "over" if row.get("over_used") else "",
        "licence_link": lambda row: None,
    }


def _files(name: str, *, csv: bool = True, xlsx: str | None = None) -> list[tuple[str, str]]:
    found = []
    if csv:
        found.append(("CSV", f"{name}.csv"))
    if xlsx:
        found.append(("Excel (xlsx)", xlsx))
    return found


def write_reports(
    engine: Engine,
    folder: Path | str,
    *,
    day: date,
    now: datetime,
    mode: int | str = DEFAULT_MODE,
    csv_options: CsvOptions | None = None,
) -> list[Path]:
    """Write the reports of `day` (its write-offs, refusals and alerts from the start of the
    day to its end, or to `now` when the day is not over) into `folder`, and return the files
    written, in the order written:

    - statistics.html, statistics.xlsx and a CSV file per table (statistics-overview.csv,
      statistics-by-type.csv...): the statistics page of the range (bridge.core.statistics);
    - reconciliation.html, reconciliation.xlsx (sheets licences, lines, movements, refusals,
      alerts) and reconciliation.csv, movements.csv, refusals.csv, alerts.csv;
    - alerts.html: the alerts raised in the range and every alert still open;
    - index.html: what the folder holds, linking each file.

    Every file gets `mode` (default 0640: the group reads), the folder and any parent made
    for it the matching search bits; CSV files use `csv_options` (default `;` and `,`)."""
    mode = file_mode(mode)
    csv_options = csv_options or CsvOptions()
    folder = Path(folder)
    start, end = report_range(day, now)
    make_folder(folder, folder_mode(mode))
    written: list[Path] = []

    def put(name: str, data: bytes) -> None:
        written.append(write_atomically(folder / name, data, mode))

    stamp = f"{end:%Y-%m-%d %H:%M} UTC"
    query = StatisticsQuery(start, end, Granularity.DAY)  # one day's report: that day
    result = statistics(engine, query)
    tables = [result[spec.name] for spec in SPECS]
    ledger_tables = reconciliation_tables(engine, since=start, until=end)
    by_name = {table.name: table for table in ledger_tables}
    with engine.connect() as conn:
        open_alerts = list_alerts(conn, state=OPEN)
    still_open = console_tables.ALERTS.table(
        console_tables.pick(open_alerts, console_tables.ALERTS)
    )

    files: dict[str, list[tuple[str, str]]] = {}
    for table in tables:
        csv_name = "statistics-" + table.name.removeprefix("stats_").replace("_", "-")
        files[table.name] = _files(csv_name, xlsx="statistics.xlsx")
        put(f"{csv_name}.csv", table_csv(table, csv_options))
    put("statistics.xlsx", tables_xlsx(tables, title=f"Statistics {query.describe()}"))
    for table, csv_name in zip(
        ledger_tables,
        ("licences", "reconciliation", "movements", "refusals", "alerts"),
        strict=True,
    ):
        files[table.name] = _files(csv_name, xlsx="reconciliation.xlsx")
        put(f"{csv_name}.csv", table_csv(table, csv_options))
    put(
        "reconciliation.xlsx",
        tables_xlsx(ledger_tables, title=f"Reconciliation {day}", names=RECONCILIATION_SHEETS),
    )

    environment = _environment()
    context = _static_context(files, stamp)
    render = _renderer(environment, context)
    chart_title = f"Licences issued, write-offs and refused write-offs, {query.describe()}"
    put(
        "statistics.html",
        render(
            "stats_page.html",
            {
                "stats": result,
                "tables": tables,
                "chart": Markup(grouped_bars(chart_series(result), title=chart_title)),
                "params": query.params(),
                "granularities": [g.value for g in Granularity],
                "problem": None,
            },
        ),
    )
    put(
        "reconciliation.html",
        render("stats_reconciliation.html", {"table": by_name["reconciliation"], "query": {}}),
    )
    put(
        "alerts.html",
        render(
            "export_report_alerts.html",
            {"raised": by_name["alerts"], "still_open": still_open, "day": day},
        ),
    )
    put(
        "index.html",
        render(
            "export_report_index.html",
            {"day": day, "range": query.describe(), "files": [p.name for p in written]},
        ),
    )
    return written


def _renderer(environment: Environment, base: Mapping[str, Any]) -> Callable[[str, dict], bytes]:
    def render(template: str, context: dict) -> bytes:
        page = environment.get_template(template).render({**base, **context})
        return page.encode("utf-8")

    return render

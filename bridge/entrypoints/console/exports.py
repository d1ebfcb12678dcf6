"""Every table of the console as a file: CSV (separator and decimal mark of the reader's
choice) or xlsx, and the reconciliation as one workbook.

A page module offers its tables for export with a module attribute `exports`, a list of
`Export(spec, load, page)`: `load(request) -> Table` reads the page's own query parameters (so
a file holds what the page showed), and the export form under each table
(templates/export_table.html, `export_choice(table, params)`) sends those parameters along.
The reader's last choice of separator and decimal mark is kept in their session."""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from bridge.core import console_tables
from bridge.core.tables import Table, TableSpec, display
from bridge.entrypoints.console.render import (
    READERS,
    NavEntry,
    day_range,
    ledger,
    now,
    render,
    require_role,
)
from bridge.services.exports import (
    CSV_TYPE,
    RECONCILIATION_SPECS,
    XLSX_TYPE,
    CsvOptions,
    reconciliation_tables,
    reconciliation_workbook,
    table_csv,
    table_xlsx,
)

Loader = Callable[[Request], Table]


@dataclass(frozen=True)
class Export:
    """A table a page offers: its description, how to load it for a request (from the page's
    query parameters), and the name of the page's route (None: no page of its own)."""

    spec: TableSpec
    load: Loader
    page: str | None = None


# The modules whose `exports` are offered, in the order the exports page lists them.
EXPORTING_MODULES = (
    "bridge.entrypoints.console.pages",
    "bridge.entrypoints.console.operations",
    "bridge.entrypoints.console.statistics",
    "bridge.entrypoints.console.exports",
)
SEPARATOR_LABELS = (("semicolon", "; semicolon"), ("comma", ", comma"), ("tab", "tab"))
DECIMAL_LABELS = (("comma", ", comma"), ("point", ". point"))
SESSION_KEY = "csv"


def csv_choice(request: Request) -> CsvOptions:
    """The reader's last choice of separator and decimal mark (the defaults before any)."""
    kept = request.session.get(SESSION_KEY) if "session" in request.scope else None
    try:
        return CsvOptions(**kept) if isinstance(kept, dict) else CsvOptions()
    except (TypeError, ValueError):
        return CsvOptions()


def table_context(request: Request) -> dict[str, Any]:
    """What templates/export_table.html needs: how cells are written, the CSV choices."""
    return {
        "cell": display,
        "csv_choice": csv_choice(request),
        "separators": SEPARATOR_LABELS,
        "decimal_marks": DECIMAL_LABELS,
    }


def exportable() -> dict[str, Export]:
    """Every table offered for export, by name, in EXPORTING_MODULES' order. Two modules
    offering the same name is a mistake in the console, raised here."""
    found: dict[str, Export] = {}
    origin: dict[str, str] = {}
    for name in EXPORTING_MODULES:
        if importlib.util.find_spec(name) is None:
            continue
        for export in getattr(importlib.import_module(name), "exports", ()):
            table = export.spec.name
            if table in found:
                raise RuntimeError(f"{name} and {origin[table]} both export a table {table!r}")
            found[table], origin[table] = export, name
    return found


def _refused(request: Request, message: str, status: int = 400) -> Response:
    return render(request, "error.html", {"title": "Cannot export", "message": message}, status)


def _attachment(data: bytes, media_type: str, filename: str) -> Response:
    return Response(
        data,
        media_type=media_type,
        headers={
            "content-disposition": f'attachment; filename="{filename}"',
            "cache-control": "no-store",
        },
    )


@require_role(*READERS)
def export_table(request: Request) -> Response:
    name = request.path_params["table"]
    export = exportable().get(name)
    if export is None:
        return _refused(request, f"there is no table {name!r} to export", 404)
    fmt = request.query_params.get("format", "csv")
    if fmt not in ("csv", "xlsx"):
        return _refused(request, f"format {fmt!r}: choose csv or xlsx")
    try:
        options = CsvOptions.from_params(request.query_params)
        table = export.load(request)
    except ValueError as error:
        return _refused(request, str(error))
    stamp = now(request).strftime("%Y-%m-%d")
    if fmt == "xlsx":
        return _attachment(table_xlsx(table), XLSX_TYPE, f"{name}-{stamp}.xlsx")
    request.session[SESSION_KEY] = {
        "separator": options.separator,
        "decimal_mark": options.decimal_mark,
    }
    return _attachment(table_csv(table, options), CSV_TYPE, f"{name}-{stamp}.csv")


@require_role(*READERS)
def export_reconciliation(request: Request) -> Response:
    try:
        since, until = day_range(request)
    except ValueError as error:
        return _refused(request, str(error))
    data = reconciliation_workbook(ledger(request), since=since, until=until)
    stamp = now(request).strftime("%Y-%m-%d")
    return _attachment(data, XLSX_TYPE, f"reconciliation-{stamp}.xlsx")


@require_role(*READERS)
def exports_page(request: Request) -> Response:
    query = {k: request.query_params.get(k, "") for k in ("from", "to")}
    return render(
        request,
        "export_page.html",
        {"exports": list(exportable().values()), "query": query, **table_context(request)},
    )


def _reconciliation_loader(spec: TableSpec) -> Loader:
    def load(request: Request) -> Table:
        since, until = day_range(request)
        (table,) = reconciliation_tables(
            ledger(request), since=since, until=until, names=[spec.name]
        )
        return table

    return load


# The reconciliation workbook's sheets, each also a table of its own (the lines are the
# reconciliation page's: bridge.entrypoints.console.statistics).
exports = [
    Export(spec, _reconciliation_loader(spec))
    for spec in RECONCILIATION_SPECS
    if spec is not console_tables.LINES
]

routes = [
    Route("/exports", exports_page, methods=["GET"], name="exports"),
    Route(
        "/exports/reconciliation.xlsx",
        export_reconciliation,
        methods=["GET"],
        name="export_reconciliation",
    ),
    Route("/exports/{table}", export_table, methods=["GET"], name="export_table"),
]
nav = [NavEntry("Exports", "exports", order=60)]

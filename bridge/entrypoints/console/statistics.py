"""The statistics page (per period: licences issued, authorised and used, exports by control
list category and destination, refusals and over-use, with a chart drawn on the server) and the
reconciliation page (every licence line: authorised, written off, remaining)."""

from __future__ import annotations

from typing import Any

from markupsafe import Markup
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from bridge.core.charts import grouped_bars
from bridge.core.console_tables import LINES
from bridge.core.model import LicenceStatus, LicenceType
from bridge.core.statistics import (
    SPECS,
    Granularity,
    Statistics,
    StatisticsQuery,
    chart_series,
)
from bridge.core.tables import Table, TableSpec
from bridge.entrypoints.console.exports import Export, table_context
from bridge.entrypoints.console.render import (
    READERS,
    NavEntry,
    ledger,
    now,
    page_url,
    render,
    require_role,
)
from bridge.services.exports import LineFilter, reconciliation_table
from bridge.services.statistics import statistics


def _query(request: Request) -> StatisticsQuery:
    return StatisticsQuery.from_params(request.query_params, today=now(request).date())


def statistics_context(result: Statistics) -> dict[str, Any]:
    """What stats_page.html shows of `result` (the console's page and the report file)."""
    series = chart_series(result)
    title = (
        f"Licences issued, write-offs and refused write-offs per {result.query.granularity},"
        f" {result.query.describe()}"
    )
    return {
        "stats": result,
        "tables": [result[spec.name] for spec in SPECS],
        # grouped_bars escapes every text it places
        "chart": Markup(grouped_bars(series, title=title)),
        "params": result.query.params(),
        "granularities": [g.value for g in Granularity],
    }


@require_role(*READERS)
def statistics_page(request: Request) -> Response:
    problem = None
    try:
        query = _query(request)
    except ValueError as error:
        problem = f"{error}; showing this year instead"
        query = StatisticsQuery.from_params({}, today=now(request).date())
    context = statistics_context(statistics(ledger(request), query))
    return render(
        request, "stats_page.html", {**context, "problem": problem, **table_context(request)}
    )


def over_class(row: dict[str, Any]) -> str:
    """The class of an over-used line's row (shown red)."""
    return "over" if row.get("over_used") else ""


def _line_filter(request: Request) -> LineFilter:
    params = request.query_params
    return LineFilter(
        licence=params.get("licence", ""),
        licence_type=params.get("type", ""),
        status=params.get("status", ""),
        over_used=params.get("over_used") == "1",
        moved=params.get("moved") == "1",
    )


@require_role(*READERS)
def reconciliation_page(request: Request) -> Response:
    wanted = _line_filter(request)
    table = reconciliation_table(ledger(request), wanted)
    return render(
        request,
        "stats_reconciliation.html",
        {
            "table": table,
            "query": dict(request.query_params),
            "types": [t.value for t in LicenceType],
            "statuses": [s.value for s in LicenceStatus],
            "over_class": over_class,
            "licence_link": lambda row: page_url(request, "licence", number=row["licence_number"]),
            **table_context(request),
        },
    )


def _statistics_loader(spec: TableSpec):
    def load(request: Request) -> Table:
        return statistics(ledger(request), _query(request))[spec.name]

    return load


exports = [
    Export(
        LINES,
        lambda request: reconciliation_table(ledger(request), _line_filter(request)),
        "stats_reconciliation",
    ),
    *(Export(spec, _statistics_loader(spec), "stats_page") for spec in SPECS),
]

routes = [
    Route("/statistics", statistics_page, methods=["GET"], name="stats_page"),
    Route("/reconciliation", reconciliation_page, methods=["GET"], name="stats_reconciliation"),
]
nav = [
    NavEntry("Reconciliation", "stats_reconciliation", order=45),
    NavEntry("Statistics", "stats_page", order=50),
]

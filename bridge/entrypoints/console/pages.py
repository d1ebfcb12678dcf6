"""The console's reading pages and the alerts' acknowledgement: the licences (search and
filters in the query string, so a filtered list is a link to share), one licence, the alerts
inbox. The data comes from bridge.services.console_views."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from bridge.entrypoints.console import charts
from bridge.entrypoints.console.render import (
    OFFICER,
    READERS,
    NavEntry,
    actor,
    flash,
    form,
    ledger,
    not_found,
    now,
    page_url,
    render,
    require_role,
    settings,
)
from bridge.services import console_views
from bridge.services.console_views import LicenceFilter

PAGE_SIZE = 100
MAX_EXPIRING_DAYS = 3660
_TRUE = {"1", "on", "true", "yes"}


def _int(value: str | None, default: int, low: int, high: int) -> int:
    try:
        number = int(value) if value not in (None, "") else default
    except ValueError:
        return default
    return max(low, min(high, number))


def licence_filter(request: Request) -> LicenceFilter:
    """The search the query string asks for (unknown values ask nothing)."""
    query = request.query_params
    status = query.get("status", "")
    kind = query.get("type", "")
    return LicenceFilter(
        text=query.get("q", "")[:100],
        holder=query.get("holder", "")[:200],
        eori=query.get("eori", "")[:20],
        status=status if status in console_views.LICENCE_STATUSES else "",
        licence_type=kind if kind in console_views.LICENCE_TYPES else "",
        control_list_entry=query.get("cle", "")[:40],
        over_use=query.get("over_use", "") in _TRUE,
        expiring=query.get("expiring", "") in _TRUE,
        expiring_days=_int(
            query.get("days"), settings(request).console_expiring_days, 0, MAX_EXPIRING_DAYS
        ),
    )


@require_role(*READERS)
def licences(request: Request) -> Response:
    wanted = licence_filter(request)
    page = _int(request.query_params.get("page"), 1, 1, 100_000)
    today = now(request).date()
    listing = console_views.find_licences(
        ledger(request), wanted, today=today, limit=PAGE_SIZE, offset=(page - 1) * PAGE_SIZE
    )
    shown = {k: v for k, v in request.query_params.items() if k != "page"}
    return render(
        request,
        "licences.html",
        {
            "listing": listing,
            "wanted": wanted,
            "query": shown,
            "page": page,
            "pages": max(1, -(-listing.total // PAGE_SIZE)),
            "filtered": any(v for k, v in shown.items() if k != "days"),
            "today": today,
        },
    )


@require_role(*READERS)
def licence(request: Request) -> Response:
    number = request.path_params["number"]
    view = console_views.licence_view(ledger(request), number)
    if view is None:
        return not_found(request, f"the ledger has no licence {number}")
    today = now(request)
    # The licence's life so far: from its first valid day to today (or its last movement).
    start = view.licence.valid_from
    end = today
    lines = []
    for line in view.lines:
        row = line.row
        by_quantity = row.authorised_quantity is not None or row.authorised_value is None
        unit = (row.unit or "") if by_quantity else (row.currency or "")
        points = [(p.at, p.used_quantity if by_quantity else p.used_value) for p in line.usage]
        lines.append(
            {
                "view": line,
                "bar": charts.usage_bar(line.used_share),
                "chart": charts.usage_chart(
                    points,
                    ceiling=row.authorised_quantity if by_quantity else row.authorised_value,
                    unit=unit,
                    start=start,
                    end=end,
                ),
                "chart_unit": unit,
            }
        )
    return render(request, "licence.html", {"view": view, "lines": lines, "licence": view.licence})


@require_role(*READERS)
def alerts(request: Request) -> Response:
    query = request.query_params
    state = query.get("state", "open")
    if state not in (*console_views.ALERT_STATES, "all"):
        state = "open"
    inbox = console_views.alert_inbox(
        ledger(request),
        state=None if state == "all" else state,
        licence_number=query.get("licence", "")[:70] or None,
        kind=query.get("kind", "")[:40] or None,
    )
    context: dict[str, Any] = {"inbox": inbox, "state": state, "query": dict(query)}
    return render(request, "alerts.html", context)


@require_role(OFFICER)
def acknowledge(request: Request) -> Response:
    posted = form(request)
    ids = sorted({int(v) for v in posted.getlist("id") if str(v).isdigit()})
    back = page_url(request, "alerts", {"state": posted.get("state") or None})
    if not ids:
        flash(request, "Tick at least one alert to acknowledge.", "problem")
        return RedirectResponse(back, 303)
    done = console_views.acknowledge(ledger(request), ids, actor=actor(request), now=now(request))
    if done.changed:
        flash(request, f"Acknowledged {len(done.changed)} alert(s): {_ids(done.changed)}.")
    for alert_id, by in sorted(done.already.items()):
        flash(request, f"Alert {alert_id} was already acknowledged by {by}.", "problem")
    if done.unknown:
        flash(request, f"No alert {_ids(done.unknown)} in the ledger.", "problem")
    target = str(posted.get("next") or "")
    return RedirectResponse(target if _inside(request, target) else back, 303)


def _ids(ids: list[int]) -> str:
    return ", ".join(f"#{i}" for i in ids)


def _inside(request: Request, target: str) -> bool:
    root = request.scope.get("root_path", "")
    return target.startswith(f"{root}/") and not target.startswith("//") and "\\" not in target


routes = [
    Route("/licences", licences, methods=["GET"], name="licences"),
    Route("/licences/{number:path}", licence, methods=["GET"], name="licence"),
    Route("/alerts", alerts, methods=["GET"], name="alerts"),
    Route("/alerts/acknowledge", acknowledge, methods=["POST"], name="alert_acknowledge"),
]
nav = [NavEntry("Licences", "licences", order=10), NavEntry("Alerts", "alerts", order=20)]

"""The manual movement forms: a write-off by hand, a correction, the reversal of an earlier
manual movement. Officers only; the logged-in officer is recorded as who did it. The acts are
bridge.services.authority's (as `elbridge manual`); a refused act writes nothing and the form
comes back with every reason next to what was typed, nothing lost."""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from typing import Any

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from bridge.core.errors import Problem, Rejected
from bridge.entrypoints.console.render import (
    OFFICER,
    actor,
    flash,
    form,
    ledger,
    licence_url,
    not_found,
    now,
    render,
    require_role,
)
from bridge.services import authority, console_views

KINDS = {
    "write_off": {
        "title": "Manual write-off",
        "route": "manual_write_off",
        "explain": "Writes off what was exported without an automatic write-off (e.g. a paper"
        " declaration while CSW-CERTEX was down). Refused beyond what the line has left"
        " unless you record it anyway.",
    },
    "correction": {
        "title": "Correction",
        "route": "manual_correction",
        "explain": "Adjusts what a line has written off, e.g. after an audit found a customs"
        " error: a positive quantity writes off more, a negative one gives back.",
    },
}
_PLAIN = re.compile(r"^[+-]?\d+(\.\d+)?$")
_COMMA = re.compile(r"^[+-]?\d+,\d+$")


def parse_amount(text: str, what: str, problems: list[Problem]) -> Decimal | None:
    """An exact decimal as an officer types it: `1500`, `12.5` or `12,5` (a comma as the
    decimal mark); a number that reads two ways (`1,500`) or with group separators is refused
    with the reason, as is anything else. None when empty."""
    raw = text.strip().replace(" ", "").replace("\u202f", "")
    if not raw:
        return None
    if _COMMA.match(raw):
        if len(raw.split(",")[1]) == 3:
            problems.append(
                Problem(
                    f"{raw!r} reads as a thousand-something or as a decimal: write it without"
                    " a separator for thousands and with '.' or ',' for decimals (1500 or 1.5)",
                    path=what,
                    code="ambiguous-number",
                )
            )
            return None
        raw = raw.replace(",", ".")
    if not _PLAIN.match(raw):
        problems.append(Problem(f"{text!r} is not a number", path=what, code="not-a-number"))
        return None
    try:
        return Decimal(raw)
    except InvalidOperation:  # pragma: no cover - the pattern admits only decimals
        problems.append(Problem(f"{text!r} is not a number", path=what, code="not-a-number"))
        return None


def _values(posted: Any, names: tuple[str, ...]) -> dict[str, str]:
    return {name: str(posted.get(name, "")).strip() for name in names}


FIELDS = ("line", "quantity", "unit", "value", "currency", "reason", "reference", "force")


def _form_page(
    request: Request,
    kind: str,
    number: str,
    values: dict[str, str],
    problems: list[Problem],
    status: int = 200,
) -> Response:
    view = console_views.licence_view(ledger(request), number)
    if view is None:
        return not_found(request, f"the ledger has no licence {number}")
    by_field: dict[str, list[str]] = {}
    for problem in problems:
        field = problem.path if problem.path in FIELDS else ""
        by_field.setdefault(field, []).append(problem.reason)
    return render(
        request,
        "manual.html",
        {
            "kind": kind,
            "about": KINDS[kind],
            "view": view,
            "licence": view.licence,
            "values": values,
            "problems": problems,
            "by_field": by_field,
        },
        status,
    )


def _start_values(request: Request, view: Any) -> dict[str, str]:
    line = request.query_params.get("line", "")
    rows = [item.row for item in view.lines if item.row.dropped_in_version is None]
    chosen = next((r for r in rows if str(r.line_number) == line), rows[0] if rows else None)
    return {
        "line": str(chosen.line_number) if chosen else "",
        "unit": (chosen.unit or "") if chosen else "",
        "currency": (chosen.currency or "") if chosen else "",
    }


def _show(kind: str):
    @require_role(OFFICER)
    def show(request: Request) -> Response:
        number = request.query_params.get("licence", "")
        view = console_views.licence_view(ledger(request), number) if number else None
        if view is None:
            return not_found(request, f"the ledger has no licence {number!r}")
        return _form_page(request, kind, number, _start_values(request, view), [])

    return show


def _act(kind: str):
    @require_role(OFFICER)
    def act(request: Request) -> Response:
        posted = form(request)
        number = str(posted.get("licence", "")).strip()
        values = _values(posted, FIELDS)
        problems: list[Problem] = []
        line = int(values["line"]) if values["line"].isdigit() else None
        if line is None:
            problems.append(Problem("choose the licence line", path="line", code="line-missing"))
        quantity = parse_amount(values["quantity"], "quantity", problems)
        if quantity is None and not any(p.path == "quantity" for p in problems):
            problems.append(Problem("give the quantity", path="quantity", code="quantity-missing"))
        value = parse_amount(values["value"], "value", problems)
        if not values["reason"]:
            problems.append(
                Problem("say why (it goes into the ledger)", path="reason", code="reason-missing")
            )
        if problems:
            return _form_page(request, kind, number, values, problems, 422)
        act_on = authority.manual_write_off if kind == "write_off" else authority.correct
        try:
            result = act_on(
                ledger(request),
                number,
                line,  # type: ignore[arg-type]  # checked above
                quantity,  # type: ignore[arg-type]
                values["unit"],
                value=value,
                # The form offers the line's currency: it counts only with a value.
                currency=(values["currency"] or None) if value is not None else None,
                reason=values["reason"],
                actor=actor(request),
                now=now(request),
                reference=values["reference"] or None,
                force=values["force"] in ("1", "on"),
            )
        except Rejected as refused:
            return _form_page(request, kind, number, values, list(refused.problems), 422)
        flash(request, f"Recorded: {result.describe()}")
        return RedirectResponse(licence_url(request, number) + "#movements", 303)

    return act


@require_role(OFFICER)
def reversal_form(request: Request) -> Response:
    raw = request.query_params.get("movement", "")
    return _reversal_page(request, raw, {"reason": "", "force": ""}, [])


def _reversal_page(
    request: Request, raw: str, values: dict[str, str], problems: list[Problem], status: int = 200
) -> Response:
    movement = console_views.movement(ledger(request), int(raw)) if raw.isdigit() else None
    if movement is None:
        return not_found(request, f"the ledger has no movement {raw!r}")
    return render(
        request,
        "manual_reversal.html",
        {"movement": movement, "values": values, "problems": problems},
        status,
    )


@require_role(OFFICER)
def reverse(request: Request) -> Response:
    posted = form(request)
    raw = str(posted.get("movement", "")).strip()
    values = _values(posted, ("reason", "force"))
    if not raw.isdigit():
        return not_found(request, f"the ledger has no movement {raw!r}")
    problems: list[Problem] = []
    if not values["reason"]:
        problems.append(
            Problem("say why (it goes into the ledger)", path="reason", code="reason-missing")
        )
    if problems:
        return _reversal_page(request, raw, values, problems, 422)
    try:
        result = authority.reverse_movement(
            ledger(request),
            int(raw),
            reason=values["reason"],
            actor=actor(request),
            now=now(request),
            force=values["force"] in ("1", "on"),
        )
    except Rejected as refused:
        return _reversal_page(request, raw, values, list(refused.problems), 422)
    flash(request, f"Recorded: {result.describe()}")
    return RedirectResponse(
        licence_url(request, result.movement.licence_number) + "#movements", 303
    )


routes = [
    Route("/manual/write-off", _show("write_off"), methods=["GET"], name="manual_write_off"),
    Route("/manual/write-off", _act("write_off"), methods=["POST"], name="manual_write_off_post"),
    Route("/manual/correction", _show("correction"), methods=["GET"], name="manual_correction"),
    Route(
        "/manual/correction", _act("correction"), methods=["POST"], name="manual_correction_post"
    ),
    Route("/manual/reversal", reversal_form, methods=["GET"], name="manual_reversal"),
    Route("/manual/reversal", reverse, methods=["POST"], name="manual_reversal_post"),
]
nav: list = []  # reached from a licence's page

"""What every console page uses: who is logged in, role checks, protection against cross-site
requests, and rendering a template into a page.

A page is a Starlette route whose endpoint is wrapped in `require_role(...)`:

    @require_role(OFFICER, AUDITOR)          # who may see it (GET) or do it (POST)
    def licences(request: Request) -> Response:  # plain def: runs in a worker thread
        rows = console_views.licence_list(ledger(request), ...)
        return render(request, "licences.html", {"rows": rows})

`require_role` sends a visitor who is not logged in to the login page, answers 403 to a user
without the role, and on POST checks the request came from the console itself (Origin, else
Referer) and carries the session's CSRF token (form field `csrf_token`) before the endpoint
runs; the form is then in `request.state.form`. Templates extend base.html and put
`{{ csrf_field }}` in every POST form."""

from __future__ import annotations

import functools
import inspect
import secrets
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup
from sqlalchemy import Engine
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.templating import Jinja2Templates

from bridge.core.statistics import day_start
from bridge.entrypoints.console.auth import AUDITOR, OFFICER, ROLES, User
from bridge.services.config import Settings

__all__ = [
    "AUDITOR",
    "OFFICER",
    "READERS",
    "WRITERS",
    "NavEntry",
    "actor",
    "check_csrf",
    "csrf_token",
    "current_user",
    "flash",
    "forbidden",
    "form",
    "ledger",
    "licence_url",
    "not_found",
    "now",
    "page_url",
    "render",
    "require_role",
    "settings",
]

HERE = Path(__file__).resolve().parent
TEMPLATES_DIR = HERE / "templates"
STATIC_DIR = HERE / "static"
READERS = ROLES  # every role reads
WRITERS = (OFFICER,)  # who writes movements and acknowledges alerts
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"

Endpoint = Callable[[Request], Response | Awaitable[Response]]


@dataclass(frozen=True)
class NavEntry:
    """A link in the navigation: `label`, the name of its route, who sees it, and where it
    goes in the bar (lower first)."""

    label: str
    route: str
    roles: tuple[str, ...] = READERS
    order: int = 50


# --------------------------------------------------------------------------- formatting


def quantity(value: Decimal | int | None, places: int | None = None) -> str:
    """A quantity or amount as people read it: exact digits, groups of three separated by a
    narrow space (no "," or "." that a reader of another country takes for the decimal mark)."""
    if value is None:
        return "–"
    number = Decimal(value)
    if places is not None:
        number = number.quantize(Decimal(1).scaleb(-places))
    text = format(number, "f")
    sign, text = ("-", text[1:]) if text.startswith("-") else ("", text)
    whole, _, fraction = text.partition(".")
    groups = []
    while len(whole) > 3:
        groups.insert(0, whole[-3:])
        whole = whole[:-3]
    groups.insert(0, whole)
    return sign + "\u202f".join(groups) + (f".{fraction}" if fraction else "")


def moment(value: datetime | date | None) -> str:
    """A time as `2026-03-01 14:05 UTC` (a date as `2026-03-01`)."""
    if value is None:
        return "–"
    if isinstance(value, datetime):
        at = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
        return at.strftime("%Y-%m-%d %H:%M UTC")
    return value.isoformat()


def _environment() -> Environment:
    environment = Environment(
        loader=FileSystemLoader(TEMPLATES_DIR),
        autoescape=select_autoescape(["html", "svg", "xml"], default_for_string=True),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    environment.filters["quantity"] = quantity
    environment.filters["moment"] = moment
    return environment


templates = Jinja2Templates(env=_environment())


# --------------------------------------------------------------------------- request state


def day_range(request: Request) -> tuple[datetime | None, datetime | None]:
    """The UTC range of the query's `from` and `to` days (both counted; either may be left
    out); ValueError, worded for the page, when a day cannot be read or the range ends before
    it starts."""
    days = []
    for key in ("from", "to"):
        text = (request.query_params.get(key) or "").strip()
        try:
            days.append(date.fromisoformat(text) if text else None)
        except ValueError:
            raise ValueError(f"{key} {text!r} is not a date (YYYY-MM-DD)") from None
    first, last = days
    if first and last and last < first:
        raise ValueError(f"the range ends ({last}) before it starts ({first})")
    return (
        day_start(first) if first else None,
        day_start(last + timedelta(days=1)) if last else None,
    )


def settings(request: Request) -> Settings:
    return request.app.state.settings


def ledger(request: Request) -> Engine:
    """The ledger's engine the console was made with."""
    return request.app.state.engine


def now(request: Request) -> datetime:
    """The time now (UTC), from the console's clock (a test may set its own)."""
    return request.app.state.clock()


def current_user(request: Request) -> User | None:
    """The logged-in user (None: nobody), looked up in the users file at every request, so a
    user removed or given another role is so at once."""
    if "session" not in request.scope:
        return None
    name = request.session.get("user")
    return None if not name else request.app.state.users.get(name)


def actor(request: Request) -> str:
    """The logged-in person as the ledger records the actor of what they do."""
    user = current_user(request)
    if user is None:
        raise PermissionError("nobody is logged in")
    return user.actor


def form(request: Request) -> FormData:
    """The POSTed form `require_role` read (empty for a GET)."""
    return getattr(request.state, "form", None) or FormData()


def client_address(request: Request) -> str:
    return request.client.host if request.client else "unknown address"


def page_url(
    request: Request, name: str, query: Mapping[str, Any] | None = None, **params: Any
) -> str:
    """The URL of the route `name` (with its path parameters) as the browser should use it
    (under the prefix the console is mounted at), with `query` (items whose value is None or ""
    left out)."""
    url = str(request.url_for(name, **params))
    if query:
        pairs = [(k, str(v)) for k, v in query.items() if v is not None and v != ""]
        if pairs:
            url += "?" + urlencode(pairs)
    return url


def licence_url(request: Request, number: str) -> str:
    """The licence page of licence `number` (numbers may hold '/', as GBOIEL/2025/00042)."""
    return page_url(request, "licence", number=quote(number, safe="/"))


# --------------------------------------------------------------------------- CSRF


def csrf_token(request: Request) -> str:
    """The session's token a POST must carry (made when the session first needs one)."""
    token = request.session.get("csrf")
    if not token:
        token = secrets.token_urlsafe(32)
        request.session["csrf"] = token
    return token


def _origin_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower()


def same_origin(request: Request) -> bool:
    """Whether the request says it comes from a page of this console: its Origin header (or,
    without one, its Referer) names the host it was sent to, or a trusted origin."""
    host = request.headers.get("host", "")
    expected = {f"{request.url.scheme}://{host}".lower(), *request.app.state.trusted_origins}
    origin = request.headers.get("origin")
    if origin is not None:
        return origin.lower() in expected
    referer = request.headers.get("referer")
    return bool(referer) and _origin_of(referer) in expected


def check_csrf(request: Request, posted: FormData | None) -> str | None:
    """None when a state-changing request is the console's own, else why it is refused."""
    if not same_origin(request):
        return "the request did not come from a page of this console (Origin/Referer)"
    expected = request.session.get("csrf") if "session" in request.scope else None
    given = request.headers.get(CSRF_HEADER) or (posted.get(CSRF_FIELD) if posted else None)
    if not expected or not isinstance(given, str) or not secrets.compare_digest(given, expected):
        return "the form is stale or was not sent by this console (CSRF token); reload the page"
    return None


# --------------------------------------------------------------------------- pages


def flash(request: Request, text: str, kind: str = "notice") -> None:
    """A message for the next page this user sees (after a redirect): kind `notice` (done)
    or `problem`."""
    request.session.setdefault("flash", []).append([kind, text])
    request.session["flash"] = request.session["flash"][-5:]  # the cookie stays small


def _context(request: Request) -> dict[str, Any]:
    user = current_user(request)
    has_session = "session" in request.scope
    token = csrf_token(request) if has_session else ""
    nav = [
        entry
        for entry in sorted(request.app.state.nav, key=lambda e: (e.order, e.label))
        if user is not None and user.role in entry.roles
    ]
    return {
        "user": user,
        "nav": nav,
        "csrf_token": token,
        "csrf_field": Markup('<input type="hidden" name="{}" value="{}">').format(
            CSRF_FIELD, token
        ),
        "page_url": functools.partial(page_url, request),
        "licence_url": functools.partial(licence_url, request),
        "static": lambda path: str(request.url_for("static", path=path)),
        "console_title": request.app.state.title,
        "current_route": (request.scope.get("route").name if request.scope.get("route") else ""),
        "flashes": request.session.pop("flash", []) if has_session else [],
    }


def render(
    request: Request, template: str, context: Mapping[str, Any] | None = None, status: int = 200
) -> HTMLResponse:
    """The page `template` (under console/templates/) rendered with `context`, plus what every
    page has: `user`, `nav`, `csrf_field`, `csrf_token`, `page_url(name, query, **params)`,
    `static(path)`, `request` and Starlette's `url_for`."""
    response = templates.TemplateResponse(
        request, template, {**_context(request), **(context or {})}, status_code=status
    )
    response.headers["Cache-Control"] = "no-store"
    return response


def forbidden(request: Request, reason: str) -> HTMLResponse:
    return render(request, "error.html", {"title": "Not allowed", "message": reason}, 403)


def not_found(request: Request, what: str) -> HTMLResponse:
    return render(request, "error.html", {"title": "Not found", "message": what}, 404)


def require_role(*roles: str) -> Callable[[Endpoint], Endpoint]:
    """Wrap an endpoint so that only a logged-in user with one of `roles` reaches it (no roles
    given: any logged-in user). A visitor not logged in is sent to the login page (a POST gets
    403); on POST the origin and the CSRF token are checked and the form read into
    `request.state.form` first. A plain `def` endpoint runs in a worker thread (the ledger's
    calls block)."""
    unknown = set(roles) - set(ROLES)
    if unknown:
        raise ValueError(f"unknown roles {sorted(unknown)}: use {ROLES}")
    allowed = roles or ROLES

    def wrap(endpoint: Endpoint) -> Endpoint:
        @functools.wraps(endpoint)
        async def guarded(request: Request) -> Response:
            user = current_user(request)
            posting = request.method not in ("GET", "HEAD", "OPTIONS")
            if user is None:
                if posting:
                    return forbidden(request, "you are not logged in (or your session ended)")
                target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
                return RedirectResponse(page_url(request, "login", {"next": target}), 303)
            if posting:
                request.state.form = await request.form()
                refusal = check_csrf(request, request.state.form)
                if refusal:
                    return forbidden(request, refusal)
            if user.role not in allowed:
                what = "do this" if posting else "see this page"
                return forbidden(
                    request,
                    f"your role ({user.role}) may not {what}; it takes {' or '.join(allowed)}",
                )
            if inspect.iscoroutinefunction(endpoint):
                return await endpoint(request)  # type: ignore[misc]
            return await run_in_threadpool(endpoint, request)  # type: ignore[arg-type]

        guarded.roles = allowed  # type: ignore[attr-defined]  # tests check every POST's
        return guarded

    return wrap

"""The authority console as one Starlette application: `create_app(settings, engine)`.

Its pages come from this package (login, licences, a licence, alerts, manual movements) and
from the modules in ROUTE_MODULES when they are installed, each giving a `routes` list and
optionally a `nav` list of NavEntry. Every link is made with url_for, so the app works as well
at the root of its own server (`elbridge console serve`) as mounted under a prefix in another
application (Airflow's plugin)."""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import Engine
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Receive, Scope, Send

from bridge.adapters.http.request import RefusedUnread, declared_length
from bridge.core.errors import ConfigError
from bridge.entrypoints.console import login, manual, pages
from bridge.entrypoints.console.auth import (
    LoginThrottle,
    UserRegistry,
    session_secret,
    users_file,
)
from bridge.entrypoints.console.render import STATIC_DIR, NavEntry, not_found, page_url
from bridge.services.config import Settings

SESSION_COOKIE = "elbridge_console"
TITLE = "eLicensing bridge — authority console"

# Modules that add pages (or, for health_routes, open endpoints) to the console when they are
# there. Listed, not discovered, and imported without hiding their errors: a module that is
# present but broken stops the console, it does not silently vanish from it.
ROUTE_MODULES = (
    "bridge.entrypoints.console.operations",
    "bridge.entrypoints.console.statistics",
    "bridge.entrypoints.console.exports",
    "bridge.entrypoints.health_routes",
)

# No script runs in the console's pages, nothing is loaded from elsewhere, and only a page of
# the same site (Airflow's, when mounted there) may frame it.
SECURITY_HEADERS = {
    "content-security-policy": (
        "default-src 'none'; style-src 'self' 'unsafe-inline'; img-src 'self' data:;"
        " form-action 'self'; frame-ancestors 'self'; base-uri 'none'"
    ),
    "x-content-type-options": "nosniff",
    "referrer-policy": "same-origin",
    "x-frame-options": "SAMEORIGIN",
}


class Console(Starlette):
    """The console's ASGI app; `listening_at` is what bridge.adapters.http.server.serve asks."""

    def listening_at(self, base_url: str) -> str:
        self.state.url = f"{base_url}/"
        return self.state.url


class _Guard:
    """Security headers on every answer; a request body over the limit refused unread (413)."""

    def __init__(self, app: ASGIApp, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = declared_length(Request(scope))
        if declared is not None and declared > self.max_body_bytes:
            refusal = RefusedUnread(
                413,
                f"a console request carries at most {self.max_body_bytes} bytes\n".encode(),
                "text/plain; charset=utf-8",
                declared=declared,
            )
            await refusal(scope, receive, send)
            return

        async def with_headers(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                names = {name.lower() for name, _ in message.get("headers", [])}
                extra = [
                    (name.encode(), value.encode())
                    for name, value in SECURITY_HEADERS.items()
                    if name.encode() not in names
                ]
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        await self.app(scope, receive, with_headers)


def _alive(request: Request) -> Response:
    """Open: the console process answers (what bridge.entrypoints.console.process waits for).
    How the ledger and its neighbours are is /health's and /ready's (health_routes)."""
    return JSONResponse({"status": "ok", "url": request.app.state.url})


def _home(request: Request) -> Response:
    return RedirectResponse(page_url(request, "licences"), status_code=303)


async def _not_found(request: Request, _exc: Exception) -> Response:
    return not_found(request, f"there is no page at {request.url.path}")


def extra_modules(names: Iterable[str] = ROUTE_MODULES) -> list[Any]:
    """The modules of `names` that are installed, imported (an import error is raised)."""
    return [importlib.import_module(n) for n in names if importlib.util.find_spec(n) is not None]


def public_origin(url: str) -> str:
    """The origin (scheme://host[:port]) of ELBRIDGE_CONSOLE_PUBLIC_URL; "" when it is not set.
    Anything but an http(s) address with a host is a configuration error naming it."""
    if not url:
        return ""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(
            f"ELBRIDGE_CONSOLE_PUBLIC_URL {url!r} is not an http(s) address with a host"
            " (e.g. https://airflow.example/elbridge-console/)"
        )
    return f"{parts.scheme}://{parts.netloc}".lower()


def create_app(
    settings: Settings,
    engine: Engine | None = None,
    *,
    clock: Callable[[], datetime] | None = None,
    secure_cookies: bool | None = None,
    trusted_origins: Iterable[str] = (),
    route_modules: Iterable[str] = ROUTE_MODULES,
    max_body_bytes: int | None = None,
) -> Console:
    """The console on the ledger `engine` (default: the settings' ledger, migrated), its users
    from the users file the settings name, its sessions signed with the settings' secret.
    `secure_cookies`: the session cookie only over HTTPS (default: when the settings serve
    TLS); `trusted_origins`: other origins whose pages may POST to it (a proxy's public
    address, e.g. "https://airflow.example"); `clock`: the time now (tests)."""
    if engine is None:
        from bridge.adapters.store.db import make_engine

        engine = make_engine(settings.ledger_url)
    modules = extra_modules(route_modules)
    routes: list[BaseRoute] = [
        Route("/", _home, name="home"),
        Route("/alive", _alive, name="alive"),
        *login.routes,
        *pages.routes,
        *manual.routes,
    ]
    nav: list[NavEntry] = [*pages.nav, *manual.nav]
    for module in modules:
        routes.extend(module.routes)
        nav.extend(getattr(module, "nav", ()))
    routes.append(Mount("/static", StaticFiles(directory=STATIC_DIR), name="static"))
    public = public_origin(settings.console_public_url)
    secure = bool(settings.http_tls_cert) if secure_cookies is None else secure_cookies
    secure = secure or public.startswith("https://")
    trusted_origins = [*trusted_origins, *([public] if public else [])]
    app = Console(
        routes=routes,
        middleware=[
            Middleware(_Guard, max_body_bytes=max_body_bytes or settings.http_max_body_bytes),
            Middleware(
                SessionMiddleware,
                secret_key=session_secret(settings),
                session_cookie=SESSION_COOKIE,
                max_age=max(60, int(settings.console_session_hours * 3600)),
                same_site="strict",
                https_only=secure,
            ),
        ],
        exception_handlers={404: _not_found},
    )
    app.state.settings = settings
    app.state.engine = engine
    app.state.users = UserRegistry(users_file(settings))
    app.state.login_throttle = LoginThrottle()
    app.state.clock = clock or (lambda: datetime.now(UTC))
    app.state.nav = nav
    app.state.title = TITLE
    app.state.trusted_origins = frozenset(o.rstrip("/").lower() for o in trusted_origins)
    app.state.url = None
    return app

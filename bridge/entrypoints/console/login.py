"""The login and logout pages. A login is checked against the users file (bridge.entrypoints.
console.auth); a failed one is logged (the name tried, from where, why: never the password) and
answered with the same words whatever went wrong. Repeated failures are throttled
(auth.LoginThrottle): 429 and the time logins are allowed again."""

from __future__ import annotations

import logging
import secrets

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from bridge.entrypoints.console.render import (
    check_csrf,
    client_address,
    current_user,
    forbidden,
    page_url,
    render,
)

log = logging.getLogger("bridge.console.auth")


def _safe_next(request: Request, target: str | None) -> str:
    """Where to go after login: a path inside the console, never another site."""
    root = request.scope.get("root_path", "")
    home = page_url(request, "home")
    if not target or not target.startswith(f"{root}/") or target.startswith("//"):
        return home
    if "\\" in target or any(ord(c) < 32 for c in target):
        return home
    return target


async def login_page(request: Request) -> Response:
    if current_user(request) is not None:
        return RedirectResponse(_safe_next(request, request.query_params.get("next")), 303)
    context = {"next": request.query_params.get("next", ""), "error": "", "name": ""}
    return render(request, "login.html", context)


async def login(request: Request) -> Response:
    posted = await request.form()
    refusal = check_csrf(request, posted)
    if refusal:
        return forbidden(request, refusal)
    name = str(posted.get("name", "")).strip()[:64]
    password = str(posted.get("password", ""))
    target = str(posted.get("next", ""))
    users = request.app.state.users
    throttle = request.app.state.login_throttle
    address, now = client_address(request), request.app.state.clock()
    until = throttle.blocked_until(name, address, now)
    if until is not None:
        log.warning(
            "console login refused for %r from %s: too many failed logins, until %s",
            name,
            address,
            f"{until:%Y-%m-%d %H:%M:%S} UTC",
        )
        error = f"Too many failed logins. Try again after {until:%H:%M} UTC."
        context = {"next": target, "error": error, "name": name}
        return render(request, "login.html", context, status=429)
    user, why = await run_in_threadpool(users.authenticate, name, password)
    if user is None:
        throttle.failed(name, address, now)
        log.warning("console login refused for %r from %s: %s", name, address, why)
        context = {"next": target, "error": "Unknown user or wrong password.", "name": name}
        return render(request, "login.html", context, status=401)
    throttle.succeeded(name)
    # A new session at login: nothing from before it (a token planted by someone) survives.
    request.session.clear()
    request.session.update({"user": user.name, "csrf": secrets.token_urlsafe(32)})
    log.info("console login: %s (%s) from %s", user.name, user.role, client_address(request))
    return RedirectResponse(_safe_next(request, target), status_code=303)


async def logout(request: Request) -> Response:
    refusal = check_csrf(request, await request.form())
    if refusal:
        return forbidden(request, refusal)
    name = request.session.get("user")
    request.session.clear()
    if name:
        log.info("console logout: %s", name)
    return RedirectResponse(page_url(request, "login"), status_code=303)


routes = [
    Route("/login", login_page, methods=["GET"], name="login"),
    Route("/login", login, methods=["POST"], name="login_post"),
    Route("/logout", logout, methods=["POST"], name="logout"),
]

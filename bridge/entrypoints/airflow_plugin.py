"""The bridge's Airflow 3 plugin: the authority console served by Airflow's API server under
/elbridge-console/, and an entry in Airflow's navigation that shows it.

Registered by the `airflow.plugins` entry point of the package (pyproject.toml), so every
Airflow that runs from the bridge's environment has it, with nothing in its plugins folder.

Airflow loads plugins in all its processes (scheduler, workers, DAG processor), so the console
is built only when its first request comes, in the API server: until then no settings are read
and no ledger is opened. Its settings are the tasks' (bridge.entrypoints.airflow_wiring: the
ELBRIDGE_* variables, the `elbridge_settings` Variable, the Connection `elbridge_ledger`), so
it shows the ledger the DAGs write. Its own login applies (users from
ELBRIDGE_CONSOLE_USERS_FILE): Airflow's login does not reach into it."""

from __future__ import annotations

import logging
import threading
from typing import Any
from urllib.parse import urlsplit

from airflow.plugins_manager import AirflowPlugin
from starlette.types import ASGIApp, Receive, Scope, Send

log = logging.getLogger(__name__)

URL_PREFIX = "/elbridge-console"
NAV_NAME = "Authority console"


class LazyConsole:
    """An ASGI app that builds the console (bridge.entrypoints.console.app.create_app) on its
    first request and hands every request to it. While it cannot be built (settings or ledger
    wrong), each request is answered 503 with the reason, and the next one tries again."""

    def __init__(self) -> None:
        self._app: ASGIApp | None = None
        self._lock = threading.Lock()

    @property
    def routes(self) -> list[Any]:
        """The console's routes once built: Airflow's router, which mounts this app, finds the
        console's pages through them when a page asks for a URL (url_for)."""
        return list(getattr(self._app, "routes", []))

    def _build(self) -> ASGIApp:
        with self._lock:
            if self._app is None:
                from bridge.entrypoints.airflow_wiring import settings_from_airflow
                from bridge.entrypoints.console.app import create_app

                self._app = create_app(settings_from_airflow())
            return self._app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return  # a mounted app gets no lifespan events; websockets it does not serve
        app = self._app
        if app is None:
            import anyio.to_thread

            try:
                # Reading the settings may reach Airflow's secrets and the ledger: not on the
                # event loop.
                app = await anyio.to_thread.run_sync(self._build)
            except Exception as error:
                log.exception("the authority console could not be started")
                await _unavailable(error, scope, receive, send)
                return
        await app(scope, receive, send)


async def _unavailable(error: Exception, scope: Scope, receive: Receive, send: Send) -> None:
    from starlette.responses import PlainTextResponse

    answer = PlainTextResponse(
        f"The authority console cannot start inside Airflow: {error}\n"
        "Check the bridge's settings on the Airflow API server (ELBRIDGE_* variables, the"
        " Connection elbridge_ledger) and its log.\n",
        status_code=503,
    )
    await answer(scope, receive, send)


def console_href() -> str:
    """Where the console is, as the browser reaches it: under Airflow's base URL's path."""
    from airflow.configuration import conf

    base = urlsplit(conf.get("api", "base_url", fallback="") or "").path.rstrip("/")
    return f"{base}{URL_PREFIX}/"


def _external_views() -> list[dict[str, Any]]:
    try:
        href = console_href()
    except Exception:  # configuration not readable here: the default base path
        href = f"{URL_PREFIX}/"
    return [
        {
            "name": NAV_NAME,
            "href": href,
            "destination": "nav",
            # Shown inside Airflow's UI at /plugin/elbridge-console (the console allows being
            # framed by its own site only, which Airflow's pages are).
            "url_route": "elbridge-console",
        }
    ]


class ElbridgePlugin(AirflowPlugin):
    """The authority console in Airflow: mounted in the API server, listed in the navigation."""

    name = "elbridge"
    fastapi_apps = [  # noqa: RUF012 (Airflow reads these class attributes)
        {"name": "elbridge_console", "app": LazyConsole(), "url_prefix": URL_PREFIX}
    ]
    external_views = _external_views()

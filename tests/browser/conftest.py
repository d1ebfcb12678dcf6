"""The console in a real browser: one console server (a subprocess in its own process group, on
a free 127.0.0.1 port) on a ledger holding the demo's sample data (and the rejects, failed
certificate and quarantined messages of operations_data.py), and one headless Chromium (Debian's,
through Playwright) for the whole session; each test gets fresh logged-in pages."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import Engine

from bridge.adapters.mqtt.broker import start_broker
from bridge.adapters.store.db import make_engine
from bridge.core.lifecycle import AuthorityAction
from bridge.entrypoints.console.auth import users_file
from bridge.entrypoints.console.process import start_console
from bridge.services.authority import manual_write_off
from bridge.services.config import Settings
from bridge.services.licence_status import apply_authority_action
from tests.browser.helpers import USERS, fill_demo_ledger, make_users
from tests.browser.operations_data import OperationsProblems, add_operations_problems

CHROMIUM = "/usr/bin/chromium"
# One licence written off beyond its ceiling by force, so that over-use has something to find.
FORCED_LICENCE = "LV-DU-2025-000311"
FORCED_BY = "Setup Officer (fixture)"
# One licence suspended by the authority, so that the lifecycle has an event to show.
SUSPENDED_LICENCE = "RO-ANCEX-2025-0142"
SUSPENSION_REASON = "end-user check pending at the embassy"


@dataclass
class ConsoleServer:
    """The console under test: where it is, its ledger, and its users {role: (login,
    password)}."""

    url: str
    ledger_url: str
    home: Path
    users: dict[str, tuple[str, str]]
    log_path: Path
    engine: Engine = field(repr=False, default=None)  # type: ignore[assignment]
    # What the operations pages show (tests/browser/operations_data.py).
    problems: OperationsProblems | None = None

    def url_for(self, path: str) -> str:
        return self.url.rstrip("/") + path

    def actor(self, role: str) -> str:
        """How the ledger records the user of `role` as an actor."""
        name, full_name = USERS[role]
        return f"{full_name} ({name})"


@pytest.fixture(scope="package")
def console(tmp_path_factory) -> Iterator[ConsoleServer]:
    home = tmp_path_factory.mktemp("console-home")
    settings = Settings(home=home)
    filled = fill_demo_ledger(settings)
    assert filled.events_applied == 5 and filled.rejected_records > 0
    engine = make_engine(settings.ledger_url)
    problems = add_operations_problems(settings, engine)
    manual_write_off(
        engine,
        FORCED_LICENCE,
        1,
        Decimal(45),
        "NAR",
        reason="paper declarations found in an audit, recorded beyond the ceiling",
        actor=FORCED_BY,
        now=datetime.now(UTC),
        force=True,
    )
    apply_authority_action(
        engine,
        SUSPENDED_LICENCE,
        AuthorityAction.SUSPEND,
        reason=SUSPENSION_REASON,
        actor=FORCED_BY,
        now=datetime.now(UTC),
    )
    users = make_users(settings)
    # A replay from the console publishes its results: to this broker.
    broker = start_broker(home / "mosquitto")
    environment = {
        "ELBRIDGE_HOME": str(home),
        "ELBRIDGE_DATABASE_URL": settings.ledger_url,
        "ELBRIDGE_CONSOLE_USERS_FILE": str(users_file(settings)),
        "ELBRIDGE_CONSOLE_SECRET": secrets.token_urlsafe(32),
        "ELBRIDGE_MQTT_HOST": broker.host,
        "ELBRIDGE_MQTT_PORT": str(broker.port),
    }
    try:
        server = start_console(home / "run", environment=environment)
        try:
            yield ConsoleServer(
                server.url, settings.ledger_url, home, users, server.log_path, engine, problems
            )
        finally:
            server.stop()
    finally:
        broker.stop()
        engine.dispose()


@pytest.fixture(scope="package")
def browser():
    if not Path(CHROMIUM).exists():
        pytest.fail(f"Chromium is not installed at {CHROMIUM} (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=CHROMIUM, args=["--no-sandbox"], headless=True
        )
        yield chromium
        chromium.close()


_states: dict[str, dict] = {}


def log_in(page, console: ConsoleServer, role: str) -> None:
    """Log in through the login page as the user of `role`."""
    name, password = console.users[role]
    page.goto(console.url_for("/login"))
    page.fill("input[name=name]", name)
    page.fill("input[name=password]", password)
    page.click("button[type=submit]")
    page.wait_for_url("**/licences")


def _logged_in_page(browser, console: ConsoleServer, role: str):
    # Logged in once per role and session; each test starts from that cookie in a context of
    # its own (nothing else carried over between tests).
    if role not in _states:
        context = browser.new_context()
        log_in(context.new_page(), console, role)
        _states[role] = context.storage_state()
        context.close()
    context = browser.new_context(storage_state=_states[role])
    return context, context.new_page()


@pytest.fixture
def officer_page(browser, console):
    context, page = _logged_in_page(browser, console, "officer")
    yield page
    context.close()


@pytest.fixture
def auditor_page(browser, console):
    context, page = _logged_in_page(browser, console, "auditor")
    yield page
    context.close()


@pytest.fixture
def anonymous_page(browser):
    context = browser.new_context()
    yield context.new_page()
    context.close()

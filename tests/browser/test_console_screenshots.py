"""Screenshots of the console's main pages for docs/ (docs/console.md, README.md): taken when
ELBRIDGE_SCREENSHOTS names the folder to write them to (scripts/screenshots.sh does), skipped
otherwise. Each page is checked to show what it is about before it is photographed."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import text

from tests.browser.conftest import FORCED_LICENCE

FOLDER = os.environ.get("ELBRIDGE_SCREENSHOTS", "")
WIDTH, HEIGHT = 1360, 900

pytestmark = pytest.mark.skipif(
    not FOLDER, reason="screenshots only when ELBRIDGE_SCREENSHOTS names a folder"
)


def _shoot(page, name: str, *, full_page: bool = True) -> None:
    folder = Path(FOLDER)
    folder.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(folder / f"{name}.png"), full_page=full_page)
    assert (folder / f"{name}.png").stat().st_size > 10_000


def test_screenshots_of_the_main_pages(browser, console):
    from tests.browser.conftest import log_in

    context = browser.new_context(viewport={"width": WIDTH, "height": HEIGHT})
    page = context.new_page()
    try:
        page.goto(console.url_for("/login"))
        assert page.locator("h1").inner_text() == "Log in"
        _shoot(page, "console-login", full_page=False)
        log_in(page, console, "officer")

        page.goto(console.url_for("/licences"))
        assert page.locator("#licences tbody tr[data-licence]").count() >= 10
        _shoot(page, "console-licences")

        page.goto(console.url_for("/licences?cle=5A002&status=valid"))
        assert page.locator("#licences tbody tr[data-licence]").count() >= 1
        _shoot(page, "console-licences-filtered", full_page=False)

        page.goto(console.url_for("/licences/GBSIEXYK3ZZZPADR-0002"))
        assert page.locator("#refusals tbody tr").count() >= 1
        _shoot(page, "console-licence")

        page.goto(console.url_for(f"/licences/{FORCED_LICENCE}"))
        assert page.locator("#lines tr.over").count() == 1
        _shoot(page, "console-licence-over-use")

        page.goto(console.url_for("/alerts?state=all"))
        assert page.locator("#alerts tbody tr[data-alert]").count() >= 1
        _shoot(page, "console-alerts", full_page=False)

        page.goto(console.url_for("/manual/write-off?licence=GBSIEXYK3ZZZ-0001"))
        page.fill("input[name=quantity]", "1,500")
        page.fill("textarea[name=reason]", "paper declaration DE-2026-0815 during the outage")
        page.click("main button[type=submit]")
        assert page.locator("#problems").count() == 1  # "1,500" reads two ways: refused
        _shoot(page, "console-write-off-refused", full_page=False)

        with console.engine.connect() as conn:
            first = conn.execute(text("SELECT min(valid_from) FROM licence")).scalar_one()
        today = datetime.now(UTC).date()
        page.goto(console.url_for(f"/statistics?from={str(first)[:10]}&to={today}&period=quarter"))
        assert page.locator("svg.chart").count() == 1
        assert page.locator("#stats_by_type tbody tr").count() >= 2
        _shoot(page, "console-statistics", full_page=False)

        page.goto(console.url_for("/operations/quarantine"))
        assert page.locator("#quarantine tbody input[type=checkbox]").count() >= 2
        _shoot(page, "console-quarantine")

        page.goto(console.url_for("/operations/rejects"))
        assert page.locator("section[data-file]").count() >= 2
        _shoot(page, "console-rejects", full_page=False)

        page.goto(console.url_for("/exports"))
        assert page.locator("#exports tbody tr[data-export]").count() >= 10
        _shoot(page, "console-exports", full_page=False)
    finally:
        context.close()

"""Every page of the console loads in Chromium, for an officer and for an auditor, on the demo's
ledger, and shows what the ledger holds."""

from __future__ import annotations

from urllib.parse import quote

import pytest
from sqlalchemy import text

from tests.browser.conftest import (
    FORCED_BY,
    FORCED_LICENCE,
    SUSPENDED_LICENCE,
    SUSPENSION_REASON,
)

OVER_USE_MRN = "26GBDEMOOVERUSE001"


def _numbers(console) -> list[str]:
    with console.engine.connect() as conn:
        return [n for (n,) in conn.execute(text("SELECT number FROM licence ORDER BY number"))]


def _page_errors(page) -> list[str]:
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on(
        "console", lambda message: errors.append(message.text) if message.type == "error" else None
    )
    return errors


@pytest.mark.parametrize("role", ["officer", "auditor"])
def test_every_reading_page_loads_for_each_role(request, console, role):
    page = request.getfixturevalue(f"{role}_page")
    errors = _page_errors(page)
    numbers = _numbers(console)
    assert len(numbers) >= 10

    page.goto(console.url_for("/licences"))
    assert page.locator("h1").inner_text() == "Licences"
    assert page.locator("#licences tbody tr[data-licence]").count() == len(numbers)
    assert console.actor(role).split(" (")[0] in page.locator("header").inner_text()

    for number in numbers:
        answer = page.goto(console.url_for(f"/licences/{quote(number, safe='/')}"))
        assert answer.status == 200, number
        assert number in page.locator("h1").inner_text()
        with console.engine.connect() as conn:
            lines = conn.execute(
                text("SELECT count(*) FROM licence_line WHERE number = :n"), {"n": number}
            ).scalar_one()
        assert page.locator("#lines tbody tr").count() == lines, number
        assert page.locator("svg.chart").count() == lines, number

    for state in ("open", "acknowledged", "all"):
        answer = page.goto(console.url_for(f"/alerts?state={state}"))
        assert answer.status == 200
        assert page.locator("h1").inner_text() == "Alerts"
    assert errors == []


def test_a_licence_page_shows_lines_movements_refusals_alerts_and_deliveries(officer_page, console):
    page = officer_page
    number = "GBSIEXYK3ZZZPADR-0002"  # TT_EX004a's licence: written off, then an over-use refused
    page.goto(console.url_for(f"/licences/{number}"))
    with console.engine.connect() as conn:
        authorised, used = conn.execute(
            text(
                "SELECT l.quantity, t.quantity FROM licence_line l JOIN line_total t"
                " ON t.licence_number = l.number AND t.line_number = l.line_number"
                " WHERE l.number = :n AND l.line_number = 1"
            ),
            {"n": number},
        ).one()
        movements = conn.execute(
            text("SELECT count(*) FROM movement WHERE licence_number = :n"), {"n": number}
        ).scalar_one()
        deliveries = conn.execute(
            text("SELECT count(*) FROM outbox WHERE licence_number = :n"), {"n": number}
        ).scalar_one()
    # stored as millionths: 102 kg written off of 500 kg authorised
    assert (authorised, used) == (500_000_000, 102_000_000)
    line = page.locator("#lines tbody tr[data-line='1']")
    assert "500 KGM" in line.inner_text()
    assert line.locator(".used-quantity").inner_text() == "102 KGM"
    assert line.locator(".remaining-quantity").inner_text() == "398"
    assert page.locator("#movements tbody tr[data-movement]").count() == movements >= 1
    assert "customs-declaration" in page.locator("#movements").inner_text()
    refusals = page.locator("#refusals tbody").inner_text()
    assert OVER_USE_MRN in refusals and "over-use" in refusals
    assert "over-use" in page.locator("#licence-alerts").inner_text()
    assert page.locator("#deliveries tbody tr").count() == deliveries >= 1
    assert "delivered" in page.locator("#deliveries").inner_text()


def test_a_forced_write_off_shows_as_over_use_with_its_actor(auditor_page, console):
    page = auditor_page
    page.goto(console.url_for(f"/licences/{FORCED_LICENCE}"))
    assert "over-use" in page.locator("h1").inner_text()
    assert page.locator("#lines tr.over").count() == 1
    assert FORCED_BY in page.locator("#movements").inner_text()
    # an auditor sees no write action
    assert page.locator("text=Write off…").count() == 0
    assert page.locator("#movements >> text=Reverse").count() == 0


def test_the_lifecycle_shows_the_suspension_and_its_status_update(officer_page, console):
    officer_page.goto(console.url_for(f"/licences/{SUSPENDED_LICENCE}"))
    assert "suspended" in officer_page.locator("h1").inner_text()
    events = officer_page.locator("#events tbody").inner_text()
    assert "valid → suspended" in events and SUSPENSION_REASON in events and FORCED_BY in events
    assert "status update" in officer_page.locator("#deliveries").inner_text()


def test_an_unknown_licence_is_a_clear_404(officer_page, console):
    answer = officer_page.goto(console.url_for("/licences/XX-NOT-A-LICENCE"))
    assert answer.status == 404
    assert "no licence XX-NOT-A-LICENCE" in officer_page.locator("main").inner_text()

"""The licences list's filters, used through the page's form in Chromium: each narrows the list
to the licences an independent SQL query on the ledger finds, and the filtered list is a URL
another person opens to see the same."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import text


def _shown(page) -> list[str]:
    return page.locator("#licences tbody tr[data-licence]").evaluate_all(
        "rows => rows.map(row => row.dataset.licence)"
    )


def _query(console, sql: str, **params) -> list[str]:
    with console.engine.connect() as conn:
        return sorted(n for (n,) in conn.execute(text(sql), params))


def _filter(page, console, **fields) -> list[str]:
    """Fill the filter form as a person would (text boxes, selects, checkboxes) and submit."""
    page.goto(console.url_for("/licences"))
    form = page.locator("form.filters")
    for name, value in fields.items():
        target = form.locator(f"[name={name}]")
        if name in ("status", "type"):
            target.select_option(value)
        elif value is True:
            target.check()
        else:
            target.fill(str(value))
    form.locator("button[type=submit]").click()
    page.wait_for_load_state()
    return sorted(_shown(page))


HOLDER = "SELECT number FROM licence WHERE lower(holder_name) LIKE :pattern"
EORI = "SELECT number FROM licence WHERE holder_eori LIKE :prefix"
STATUS = "SELECT number FROM licence WHERE status = :status"
TYPE = "SELECT number FROM licence WHERE type = :type"
ENTRY = (
    "SELECT DISTINCT number FROM licence_line WHERE control_list_entry = :entry"
    " OR control_list_entry LIKE :below"
)
OVER_USED = (
    "SELECT DISTINCT l.number FROM licence_line l JOIN line_total t"
    " ON t.licence_number = l.number AND t.line_number = l.line_number"
    " WHERE (l.quantity IS NOT NULL AND t.quantity > l.quantity)"
    " OR (l.value IS NOT NULL AND t.value > l.value)"
)


@pytest.mark.parametrize(
    ("fields", "sql", "params"),
    [
        ({"holder": "precision"}, HOLDER, {"pattern": "%precision%"}),
        ({"q": "Thames"}, HOLDER, {"pattern": "%thames%"}),
        ({"eori": "GB8"}, EORI, {"prefix": "GB8%"}),
        ({"status": "suspended"}, STATUS, {"status": "suspended"}),
        ({"type": "global"}, TYPE, {"type": "global"}),
        ({"cle": "5A002.a.1"}, ENTRY, {"entry": "5A002.a.1", "below": "5A002.a.1.%"}),
        ({"over_use": True}, OVER_USED, {}),
    ],
    ids=["holder", "number-or-holder", "eori", "status", "type", "control-list-entry", "over-use"],
)
def test_a_filter_narrows_the_list_to_what_the_ledger_holds(
    officer_page, console, fields, sql, params
):
    everything = _query(console, "SELECT number FROM licence")
    expected = _query(console, sql, **params)
    assert 0 < len(expected) < len(everything), "the sample data no longer tells this filter apart"
    assert _filter(officer_page, console, **fields) == expected
    count = officer_page.locator("#match-count").inner_text()
    assert count.startswith(f"{len(expected)} licence")


def test_a_control_list_entry_in_its_tariff_spelling_finds_the_same_licences(officer_page, console):
    annex = _filter(officer_page, console, cle="5A002.a.1")
    tariff = _filter(officer_page, console, cle="5A002a1")
    assert tariff == annex and annex
    category = _filter(officer_page, console, cle="5A")
    assert set(annex) < set(category)
    assert category == _query(
        console, "SELECT DISTINCT number FROM licence_line WHERE control_list_entry LIKE '5A%'"
    )


def test_expiring_soon_finds_the_valid_licences_ending_within_the_days_asked(officer_page, console):
    today = datetime.now(UTC).date()
    ends = _query(
        console,
        "SELECT valid_to FROM licence WHERE status = 'valid' AND valid_to >= :today",
        today=today,
    )
    assert ends, "every sample licence has ended: the sample data needs new dates"
    first = min(date.fromisoformat(str(end)[:10]) for end in ends)
    days = (first - today).days + 1
    expected = _query(
        console,
        "SELECT number FROM licence WHERE status = 'valid' AND valid_to >= :today"
        " AND valid_to <= :until",
        today=today,
        until=today + timedelta(days=days),
    )
    shown = _filter(officer_page, console, expiring=True, days=days)
    assert shown == expected and expected
    assert officer_page.locator("#licences .badge.expiring").count() == len(expected)


def test_filters_combine_and_the_url_shows_the_same_list_to_someone_else(
    officer_page, auditor_page, console
):
    shown = _filter(officer_page, console, status="valid", cle="5A002")
    expected = _query(
        console,
        "SELECT DISTINCT l.number FROM licence_line l JOIN licence c ON c.number = l.number"
        " WHERE c.status = 'valid' AND l.control_list_entry LIKE '5A002%'",
    )
    assert shown == expected and expected
    shared = officer_page.url
    assert "status=valid" in shared and "cle=5A002" in shared
    auditor_page.goto(shared)
    assert sorted(_shown(auditor_page)) == expected


def test_a_filter_matching_nothing_says_so(officer_page, console):
    assert _filter(officer_page, console, holder="no such holder anywhere") == []
    assert "No licence matches" in officer_page.locator("#licences").inner_text()

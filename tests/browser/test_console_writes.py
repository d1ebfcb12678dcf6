"""What an officer does in the console, in Chromium: a manual write-off and its reversal round
trip (shown on the licence page, recorded in the ledger with the logged-in officer as actor), a
refused write-off that keeps the form, an alert acknowledged; and what is refused: an auditor
writing, a POST without the session's token or from another origin, a wrong login."""

from __future__ import annotations

import threading
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import quote

from sqlalchemy import text

from tests.browser.conftest import FORCED_LICENCE

LICENCE = "GBSIEXYK3ZZZ-0001"  # TT_EX010a's licence: written off, then cancelled


def _remaining(page) -> str:
    return page.locator("#lines tbody tr[data-line='1'] .remaining-quantity").inner_text()


def _movements(console, **where) -> list[dict]:
    clauses = " AND ".join(f"{key} = :{key}" for key in where)
    with console.engine.connect() as conn:
        rows = conn.execute(
            text(f"SELECT * FROM movement WHERE {clauses} ORDER BY id"), where
        ).mappings()
        return [dict(row) for row in rows]


def _alert(console, kind: str, licence: str) -> dict:
    with console.engine.connect() as conn:
        return dict(
            conn.execute(
                text(
                    "SELECT id, state, acknowledged_by FROM alert WHERE kind = :kind"
                    " AND licence_number = :licence ORDER BY id LIMIT 1"
                ),
                {"kind": kind, "licence": licence},
            )
            .mappings()
            .one()
        )


def test_a_manual_write_off_and_its_reversal_round_trip(officer_page, console):
    page = officer_page
    officer = console.actor("officer")
    page.goto(console.url_for(f"/licences/{LICENCE}"))
    before = _remaining(page)
    page.click("text=Write off…")
    page.select_option("select[name=line]", "1")
    page.fill("input[name=quantity]", "12,5")  # a comma as the decimal mark
    page.fill("input[name=unit]", "KGM")
    page.fill("textarea[name=reason]", "paper declaration DE-2026-0815 during the CSW outage")
    page.fill("input[name=reference]", "DE-2026-0815")
    page.click("main button[type=submit]")
    page.wait_for_url(f"**/licences/{LICENCE}*")
    assert "Recorded: movement" in page.locator("main .notice").inner_text()

    (written,) = _movements(console, licence_number=LICENCE, kind="manual_write_off")
    assert written["actor"] == officer
    assert written["quantity"] == 12_500_000  # millionths of a kilogram: 12.5 kg exactly
    row = page.locator(f"#movements tr[data-movement='{written['id']}']")
    assert officer in row.inner_text() and "DE-2026-0815" in row.inner_text()
    assert Decimal(_remaining(page)) == Decimal(before) - Decimal("12.5")

    row.locator("text=Reverse").click()
    page.fill("textarea[name=reason]", "customs sent the declaration after all")
    page.click("main button[type=submit]")
    page.wait_for_url(f"**/licences/{LICENCE}*")
    (reversal,) = _movements(console, licence_number=LICENCE, kind="reversal", actor=officer)
    assert reversal["message_id"] == f"reversal-of:{written['id']}"
    assert reversal["quantity"] == -12_500_000
    shown = page.locator(f"#movements tr[data-movement='{reversal['id']}']").inner_text()
    assert f"of #{written['id']}" in shown and officer in shown
    assert _remaining(page) == before
    # reversed once only: no second Reverse, and a second reversal asked by URL is refused
    first = page.locator(f"#movements tr[data-movement='{written['id']}']")
    assert first.locator("text=Reverse").count() == 0
    page.goto(console.url_for(f"/manual/reversal?movement={written['id']}"))
    page.fill("textarea[name=reason]", "again")
    page.click("main button[type=submit]")
    assert "Nothing was recorded" in page.locator("#problems").inner_text()
    assert len(_movements(console, licence_number=LICENCE, kind="reversal", actor=officer)) == 1


def test_a_refused_write_off_shows_why_and_keeps_what_was_typed(officer_page, console):
    page = officer_page
    count = len(_movements(console, licence_number=LICENCE))
    page.goto(console.url_for(f"/manual/write-off?licence={LICENCE}&line=2"))
    page.fill("input[name=quantity]", "5000")
    page.fill("textarea[name=reason]", "a shipment far beyond the line's ceiling")
    page.click("main button[type=submit]")
    problems = page.locator("#problems").inner_text()
    assert "Nothing was recorded" in problems and "remaining" in problems
    assert page.input_value("input[name=quantity]") == "5000"
    assert page.input_value("select[name=line]") == "2"
    assert "beyond the line's ceiling" in page.input_value("textarea[name=reason]")
    assert len(_movements(console, licence_number=LICENCE)) == count


def test_an_officer_acknowledges_an_alert(officer_page, console):
    page = officer_page
    alert = _alert(console, "over-use", "GBSIEXYK3ZZZPADR-0002")
    assert alert["state"] == "open"
    page.goto(console.url_for("/alerts"))
    page.check(f"#alerts tr[data-alert='{alert['id']}'] input[type=checkbox]")
    page.click("text=Acknowledge selected")
    assert f"#{alert['id']}" in page.locator("main .notice").inner_text()
    assert page.locator(f"#alerts tr[data-alert='{alert['id']}']").count() == 0  # not open now
    after = _alert(console, "over-use", "GBSIEXYK3ZZZPADR-0002")
    assert after["state"] == "acknowledged"
    assert after["acknowledged_by"] == console.actor("officer")
    page.goto(console.url_for("/alerts?state=acknowledged"))
    shown = page.locator(f"#alerts tr[data-alert='{alert['id']}']").inner_text()
    assert console.actor("officer") in shown


def test_an_auditor_reads_but_may_not_write(auditor_page, console):
    page = auditor_page
    page.goto(console.url_for(f"/licences/{LICENCE}"))
    assert page.locator("text=Write off…").count() == 0
    answer = page.goto(console.url_for(f"/manual/write-off?licence={LICENCE}"))
    assert answer.status == 403
    assert "auditor" in page.locator("main").inner_text()
    alert = _alert(console, "manual-over-use", FORCED_LICENCE)
    page.goto(console.url_for("/alerts"))
    assert page.locator("#alerts input[type=checkbox]").count() == 0
    token = page.locator("input[name=csrf_token]").first.input_value()
    answer = page.request.post(
        console.url_for("/alerts/acknowledge"),
        form={"id": str(alert["id"]), "csrf_token": token},
        headers={"Origin": console.url.rstrip("/")},
        max_redirects=0,
    )
    assert answer.status == 403
    assert _alert(console, "manual-over-use", FORCED_LICENCE)["state"] == "open"


class _ForeignSite:
    """A page on another origin with a form that posts to the console (what a cross-site
    request forgery would send), served on its own free port."""

    def __init__(self, target: str, fields: dict[str, str]) -> None:
        inputs = "".join(f'<input type="hidden" name="{k}" value="{v}">' for k, v in fields.items())
        page = (
            f'<html><body><form method="post" action="{target}">{inputs}'
            '<button type="submit">win a prize</button></form></body></html>'
        ).encode()

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "text/html")
                self.end_headers()
                self.wfile.write(page)

            def log_message(self, *_args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_a_post_without_the_token_or_from_another_origin_is_refused(officer_page, console):
    page = officer_page
    alert = _alert(console, "manual-over-use", FORCED_LICENCE)
    assert alert["state"] == "open"
    target = console.url_for("/alerts/acknowledge")
    page.goto(console.url_for("/alerts"))
    token = page.locator("input[name=csrf_token]").first.input_value()
    origin = console.url.rstrip("/")

    without_token = page.request.post(
        target, form={"id": str(alert["id"])}, headers={"Origin": origin}, max_redirects=0
    )
    wrong_token = page.request.post(
        target,
        form={"id": str(alert["id"]), "csrf_token": ("y" if token[0] == "x" else "x") + token[1:]},
        headers={"Origin": origin},
        max_redirects=0,
    )
    other_origin = page.request.post(
        target,
        form={"id": str(alert["id"]), "csrf_token": token},
        headers={"Origin": "http://evil.example"},
        max_redirects=0,
    )
    assert [without_token.status, wrong_token.status, other_origin.status] == [403, 403, 403]
    assert "CSRF" in without_token.text() and "Origin" in other_origin.text()

    # The same from a real page on another origin, clicked in the officer's browser.
    foreign = _ForeignSite(target, {"id": str(alert["id"]), "csrf_token": "guessed"})
    try:
        page.goto(foreign.url)
        with page.expect_navigation():
            page.click("text=win a prize")
        assert "Not allowed" in page.locator("h1").inner_text()
    finally:
        foreign.close()
    assert _alert(console, "manual-over-use", FORCED_LICENCE)["state"] == "open"

    # with the token and from the console itself, the same POST goes through
    done = page.request.post(
        target,
        form={"id": str(alert["id"]), "csrf_token": token},
        headers={"Origin": origin},
        max_redirects=0,
    )
    assert done.status == 303
    assert _alert(console, "manual-over-use", FORCED_LICENCE)["state"] == "acknowledged"


def test_a_failed_login_says_so_and_is_logged_without_the_password(anonymous_page, console):
    page = anonymous_page
    name, password = console.users["officer"]
    page.goto(console.url_for(f"/licences/{quote(LICENCE)}"))
    assert "/login" in page.url  # sent to log in first
    for tried_name, tried_password in ((name, "not-the-password-42"), ("nobody", password)):
        page.fill("input[name=name]", tried_name)
        page.fill("input[name=password]", tried_password)
        with page.expect_response(lambda r: r.request.method == "POST") as answer:
            page.click("main button[type=submit]")
        assert answer.value.status == 401
        assert "Unknown user or wrong password." in page.locator("main").inner_text()
    log = console.log_path.read_text()
    assert f"console login refused for '{name}'" in log and "wrong password" in log
    assert "console login refused for 'nobody'" in log and "unknown user" in log
    assert "not-the-password-42" not in log and password not in log
    page.fill("input[name=name]", name)
    page.fill("input[name=password]", password)
    page.click("main button[type=submit]")
    page.wait_for_url(f"**/licences/{LICENCE}")  # back where the visitor wanted to go
    assert page.locator("h1").inner_text().startswith(f"Licence {LICENCE}")

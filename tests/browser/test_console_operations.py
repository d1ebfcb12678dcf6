"""The operations pages in Chromium, on the console fixture's ledger (the demo's sample data plus
tests/browser/operations_data.py: a national file with two broken records, a certificate failed
against customs answering 503, two quarantined messages): the rejected records of a file with
every reason; a quarantined message shown with its reason, its bytes downloaded, replayed from
its page once (a second replay changes nothing); bytes that stay unreadable replayed from the
list; a failed certificate sent again from the outbox; an auditor who sees it all and may do
none of it. Every figure is checked against the ledger with the test's own SQL."""

from __future__ import annotations

import json

from sqlalchemy import text

from tests.browser.operations_data import (
    BAD_DATE_LICENCE,
    BAD_EORI_LICENCE,
    GARBAGE,
    NATIONAL_FILE,
    RELEASE_LICENCE,
    SMALL_LIMIT,
)


def _rows(console, sql: str, **params) -> list[dict]:
    with console.engine.connect() as conn:
        return [dict(row) for row in conn.execute(text(sql), params).mappings()]


def _quarantined(console) -> tuple[dict, dict]:
    """The quarantined release and the quarantined bytes that are no JSON, as stored."""
    rows = _rows(console, "SELECT * FROM quarantine ORDER BY id")
    (garbage,) = [r for r in rows if bytes(r["payload"]) == GARBAGE]
    (release,) = [r for r in rows if console.problems.release_mrn.encode() in bytes(r["payload"])]
    return release, garbage


def _notice(page) -> str:
    return page.locator("main p[role=status]").all_inner_texts()


def _post(page, console, path: str, fields: dict[str, str]):
    """POST as the page's own form would (the session's token, the console's Origin)."""
    token = page.locator("input[name=csrf_token]").first.input_value()
    return page.request.post(
        console.url_for(path),
        form={**fields, "csrf_token": token},
        headers={"Origin": console.url.rstrip("/")},
        max_redirects=0,
    )


def test_the_rejects_of_a_file_are_listed_with_every_reason(auditor_page, console):
    page = auditor_page
    stored = _rows(
        console,
        "SELECT id, source, problems FROM reject WHERE source LIKE :file ORDER BY id",
        file=f"{NATIONAL_FILE} %",
    )
    assert [r["source"].split(" ", 1)[1] for r in stored] == ["$.licences[1]", "$.licences[2]"]
    every = _rows(console, "SELECT source FROM reject")
    files = {r["source"].split(" ", 1)[0] for r in every}

    page.goto(console.url_for("/operations/rejects"))
    assert page.locator("h1").inner_text() == "Rejected national records"
    assert page.locator("section[data-file]").count() == len(files) >= 4
    assert page.locator("#reject-count").inner_text() == (
        f"{len(every)} record(s) rejected in {len(files)} file(s)"
    )

    page.select_option("select[name=file]", NATIONAL_FILE)
    page.click("form.filters button[type=submit]")
    page.wait_for_url("**/operations/rejects?*")
    assert page.locator("#reject-count").inner_text() == "2 record(s) rejected in 1 file(s)"
    section = page.locator(f"section[data-file='{NATIONAL_FILE}']")
    assert page.locator("section[data-file]").count() == 1
    numbers = (BAD_DATE_LICENCE, BAD_EORI_LICENCE)
    for index, (record, number) in enumerate(zip(stored, numbers, strict=True)):
        problems = json.loads(record["problems"])
        assert len(problems) == 2
        table = section.locator(f"#reject-{record['id']}")
        assert table.locator("tbody tr").count() == len(problems)
        shown = table.inner_text()
        for problem in problems:
            assert problem["reason"] in shown and problem["code"] in shown
            assert problem["path"] in shown and problem["value"] in shown
        # the record as read, for the authority to fix it, one click away
        read = section.locator("details").nth(index)
        read.locator("summary").click()
        assert number in read.locator("pre").inner_text()
    print(section.inner_text())


def test_a_quarantined_message_is_shown_downloaded_and_replayed_once(officer_page, console):
    page = officer_page
    officer = console.actor("officer")
    release, _ = _quarantined(console)
    mrn = console.problems.release_mrn
    assert release["replays"] is None and release["replay_outcome"] is None
    used_before = _rows(
        console,
        "SELECT quantity FROM line_total WHERE licence_number = :n AND line_number = 1",
        n=RELEASE_LICENCE,
    )[0]["quantity"]

    page.goto(console.url_for("/operations/quarantine"))
    row = page.locator(f"#quarantine tbody tr:has(input[value='{release['id']}'])")
    assert mrn in row.inner_text()
    assert f"over the limit of {SMALL_LIMIT}" in row.inner_text()
    assert "quarantined" in row.locator("td[data-key=state]").inner_text()
    row.locator("td[data-key=id] a").click()
    page.wait_for_url(f"**/operations/quarantine/{release['id']}")
    assert page.locator("#message-state").inner_text() == "quarantined"
    reasons = page.locator("#reasons").inner_text()
    assert f"{len(release['payload'])} bytes, over the limit of {SMALL_LIMIT}" in reasons
    assert mrn in page.locator("main").inner_text()

    with page.expect_download() as download:
        page.click("text=download it exactly as received")
    saved = download.value.path().read_bytes()
    assert saved == bytes(release["payload"]) and len(saved) > SMALL_LIMIT
    assert download.value.suggested_filename == f"quarantine-{release['id']}.json"

    page.click("text=Replay this message")
    page.wait_for_url("**/operations/quarantine?state=all")
    (said,) = _notice(page)
    print(said)
    assert said == (
        "replay: 1 message(s), applied 1, still quarantined 0, replayed before 0,"
        " results published 1, pending 0"
    )
    (after,) = _rows(console, "SELECT * FROM quarantine WHERE id = :i", i=release["id"])
    assert (after["replay_outcome"], after["replays"], after["replayed_by"]) == (
        "applied",
        1,
        officer,
    )
    moved = _rows(console, "SELECT * FROM movement WHERE mrn = :mrn", mrn=mrn)
    assert [(m["licence_number"], m["kind"], m["quantity"]) for m in moved] == [
        (RELEASE_LICENCE, "write_off", 10_000_000)  # 10 kg, in millionths
    ]
    (processed,) = _rows(
        console,
        "SELECT outcome, result_state FROM processed_message WHERE message_id = :m",
        m=console.problems.release_message_id,
    )
    assert processed == {"outcome": "applied", "result_state": "published"}
    used_after = _rows(
        console,
        "SELECT quantity FROM line_total WHERE licence_number = :n AND line_number = 1",
        n=RELEASE_LICENCE,
    )[0]["quantity"]
    assert used_after == used_before + 10_000_000
    listed = page.locator(f"#quarantine tbody tr:has(td[data-key=id] a[href$='/{release['id']}'])")
    assert "applied" in listed.inner_text() and officer in listed.inner_text()

    # Settled: the page offers no replay, and a replay asked all the same changes nothing.
    page.goto(console.url_for(f"/operations/quarantine/{release['id']}"))
    assert page.locator("text=Replay this message").count() == 0
    assert officer in page.locator("main").inner_text()
    answer = _post(page, console, "/operations/quarantine/replay", {"id": str(release["id"])})
    assert answer.status == 303
    page.goto(console.url_for("/operations/quarantine?state=all"))
    (said,) = _notice(page)
    assert "replayed before 1" in said and "applied" not in said
    (again,) = _rows(console, "SELECT * FROM quarantine WHERE id = :i", i=release["id"])
    assert (again["replays"], again["replayed_at"]) == (1, after["replayed_at"])
    assert len(_rows(console, "SELECT id FROM movement WHERE mrn = :mrn", mrn=mrn)) == 1


def test_bytes_still_unreadable_stay_quarantined_with_the_reasons_of_the_day(officer_page, console):
    page = officer_page
    _, garbage = _quarantined(console)
    page.goto(console.url_for("/operations/quarantine"))
    page.check(f"#quarantine input[value='{garbage['id']}']")
    page.click("text=Replay selected")
    page.wait_for_url("**/operations/quarantine*")
    (said,) = _notice(page)
    assert "still quarantined 1" in said
    # still in the list of open messages
    assert page.locator(f"#quarantine input[value='{garbage['id']}']").count() == 1
    (after,) = _rows(console, "SELECT * FROM quarantine WHERE id = :i", i=garbage["id"])
    assert after["replay_outcome"] == "quarantined" and after["replays"] >= 1
    page.goto(console.url_for(f"/operations/quarantine/{garbage['id']}"))
    assert "not a JSON document" in page.locator("#replay_reasons").inner_text()
    assert "\\x1b[31mnot JSON" in page.locator("main pre").inner_text()  # escapes shown


def test_a_failed_certificate_is_sent_again_from_the_outbox(officer_page, console):
    page = officer_page
    licence = console.problems.failed_licence
    failed = _rows(console, "SELECT * FROM outbox WHERE status = 'failed' ORDER BY id")
    (certificate,) = [r for r in failed if r["licence_number"] == licence]
    assert certificate["kind"] == "certificate" and "HTTP 503" in certificate["last_error"]

    page.goto(console.url_for("/operations/outbox"))
    page.select_option("select[name=status]", "failed")
    page.click("form.filters button[type=submit]")
    page.wait_for_url("**/operations/outbox?*status=failed*")
    shown = page.locator("#outbox tbody tr").all_inner_texts()
    assert len(shown) == len(failed)
    row = page.locator(f"#outbox tbody tr:has(input[value='{certificate['id']}'])")
    assert licence in row.inner_text() and "HTTP 503" in row.inner_text()
    assert row.locator("td[data-key=status]").inner_text() == "failed"

    row.locator("input[type=checkbox]").check()
    page.click("text=Send the selected again")
    page.wait_for_url("**/operations/outbox*")
    assert _notice(page) == ["1 message(s) queued to be sent again"]
    (after,) = _rows(console, "SELECT * FROM outbox WHERE id = :i", i=certificate["id"])
    assert (after["status"], after["retried_by"]) == ("pending", console.actor("officer"))
    assert page.locator(f"#outbox input[value='{certificate['id']}']").count() == 0
    page.goto(console.url_for(f"/operations/outbox?licence={licence}"))
    assert page.locator("#outbox td[data-key=status]").all_inner_texts() == ["pending"]


def test_an_auditor_sees_the_operations_but_may_not_replay_or_send_again(auditor_page, console):
    page = auditor_page
    _, garbage = _quarantined(console)
    (some,) = _rows(console, "SELECT min(id) AS id FROM outbox")
    for path, table in (
        ("/operations/quarantine?state=all", "#quarantine"),
        ("/operations/outbox", "#outbox"),
    ):
        answer = page.goto(console.url_for(path))
        assert answer.status == 200
        assert page.locator(f"{table} tbody tr").count() >= 2
        assert page.locator(f"{table} input[type=checkbox]").count() == 0
        assert page.locator("main form[method=post] button").count() == 0
    page.goto(console.url_for(f"/operations/quarantine/{garbage['id']}"))
    assert page.locator("text=Replay this message").count() == 0
    replays = garbage["replays"]

    refused = _post(page, console, "/operations/quarantine/replay", {"id": str(garbage["id"])})
    assert refused.status == 403
    refused = _post(page, console, "/operations/outbox/retry", {"id": str(some["id"])})
    assert refused.status == 403
    (after,) = _rows(console, "SELECT replays FROM quarantine WHERE id = :i", i=garbage["id"])
    assert after["replays"] == replays

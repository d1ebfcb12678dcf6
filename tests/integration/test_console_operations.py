"""The operations pages' forms over HTTP (Starlette's TestClient on the real app, SQLite and
PostgreSQL), on the demo's ledger with a failed certificate and quarantined messages
(tests/browser/operations_data.py): whatever an officer posts to "send again" or "replay" (no
choice, an id that is not one, an id of nothing, a message that cannot be sent again or stays
unreadable) is answered by a message on the page it came from, never an error of the server;
and a retry or a dry run does what it says."""

from __future__ import annotations

import lxml.html
import pytest
from sqlalchemy import text

from bridge.adapters.store.db import make_engine
from bridge.services.config import Settings
from tests.browser.helpers import ORIGIN, console_client, fill_demo_ledger, post_form
from tests.browser.operations_data import GARBAGE, SMALL_LIMIT, add_operations_problems

TOO_BIG = str(2**70)  # no ledger column holds it


@pytest.fixture
def ledger(ledger_url, tmp_path):
    settings = Settings(home=tmp_path / "home", database_url=ledger_url)
    fill_demo_ledger(settings)
    engine = make_engine(ledger_url)
    problems = add_operations_problems(settings, engine)
    yield settings, engine, problems
    engine.dispose()


def _one(engine, sql: str, **params):
    with engine.connect() as conn:
        return conn.execute(text(sql), params).one()


def _messages(client, answer) -> list[tuple[str, str]]:
    """Where a POST sent the officer (a 303 to a page of the console), and the messages that
    page shows once: [(kind, text)]."""
    assert answer.status_code == 303, answer.text
    location = answer.headers["location"]
    assert location.startswith(f"{ORIGIN}/operations/"), location
    page = client.get(location)
    assert page.status_code == 200
    document = lxml.html.fromstring(page.text)
    return [
        (p.get("class"), p.text_content().strip()) for p in document.xpath("//p[@role='status']")
    ]


def test_sending_again_answers_every_choice_with_a_message_never_an_error(ledger):
    settings, engine, problems = ledger
    client = console_client(settings, role="officer", engine=engine)
    failed_id, failed_status = _one(
        engine,
        "SELECT id, status FROM outbox WHERE licence_number = :n",
        n=problems.failed_licence,
    )
    (delivered_id,) = _one(engine, "SELECT min(id) FROM outbox WHERE status = 'delivered'")
    assert failed_status == "failed"
    retry = "/operations/outbox/retry"

    cases = [
        ({}, "choose the failed messages to send again first"),
        ({"id": "abc"}, "'abc' is not the number of a message"),
        ({"id": "-3"}, "'-3' is not the number of a message"),
        ({"id": TOO_BIG}, f"'{TOO_BIG}' is not the number of a message"),
        ({"id": "99999"}, "nothing sent again: id 99999: no such message in the outbox"),
        ({"id": str(delivered_id)}, f"message {delivered_id} left as it is"),
    ]
    for data, expected in cases:
        shown = _messages(client, post_form(client, retry, data))
        print(data, shown)
        assert [kind for kind, _ in shown] == ["problem"], (data, shown)
        assert expected in shown[0][1], (data, shown)
    # none of that changed a thing
    assert _one(engine, "SELECT status FROM outbox WHERE id = :i", i=failed_id) == ("failed",)

    shown = _messages(client, post_form(client, retry, {"id": str(failed_id)}))
    assert shown == [("notice", "1 message(s) queued to be sent again")]
    status, retried_by, attempts = _one(
        engine, "SELECT status, retried_by, attempts FROM outbox WHERE id = :i", i=failed_id
    )
    assert (status, retried_by, attempts) == ("pending", client.actor, 0)
    # sent again already: pending now, so a second click leaves it alone and says why
    shown = _messages(client, post_form(client, retry, {"all_failed": "1"}))
    assert shown == [("problem", "0 message(s) queued to be sent again")]


def test_the_quarantine_page_says_what_is_wrong_with_a_day_range(ledger):
    settings, engine, problems = ledger
    client = console_client(settings, role="auditor", engine=engine)
    listed = client.get("/operations/quarantine", params={"from": "2026-06-01", "to": "2026-05-01"})
    assert listed.status_code == 200
    assert "the range ends (2026-05-01) before it starts (2026-06-01)" in listed.text
    assert problems.release_mrn not in listed.text  # nothing listed for a range that cannot be
    unreadable = client.get("/operations/quarantine", params={"from": "1 June"})
    assert "from &#39;1 June&#39; is not a date (YYYY-MM-DD)" in unreadable.text
    everything = client.get("/operations/quarantine", params={"from": "2000-01-01"})
    assert problems.release_mrn in everything.text


def test_replaying_answers_every_choice_with_a_message_never_an_error(ledger):
    settings, engine, problems = ledger
    client = console_client(settings, role="officer", engine=engine)
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT id, payload FROM quarantine ORDER BY id")).all()
    ids = {bytes(payload): quarantine_id for quarantine_id, payload in rows}
    garbage_id = ids.pop(GARBAGE)
    (release_id,) = ids.values()
    listed = client.get("/operations/quarantine").text
    assert problems.release_mrn in listed and f"over the limit of {SMALL_LIMIT}" in listed
    replay = "/operations/quarantine/replay"

    cases = [
        ({}, "choose the messages to replay first"),
        ({"id": "x1"}, "'x1' is not the number of a message"),
        ({"id": TOO_BIG}, f"'{TOO_BIG}' is not the number of a message"),
        ({"id": "99999"}, "there is no quarantined message 99999"),
    ]
    for data, expected in cases:
        shown = _messages(client, post_form(client, replay, data))
        print(data, shown)
        assert shown == [("problem", expected)], (data, shown)

    # Bytes that are no JSON stay quarantined, with the reasons of the day; a `back` to
    # another site is not followed.
    answer = post_form(client, replay, {"id": str(garbage_id), "back": "https://evil.example/"})
    assert answer.headers["location"] == f"{ORIGIN}/operations/quarantine"
    (shown,) = _messages(client, answer)
    assert shown[0] == "notice" and "still quarantined 1" in shown[1], shown
    outcome, replays, replayed_by = _one(
        engine,
        "SELECT replay_outcome, replays, replayed_by FROM quarantine WHERE id = :i",
        i=garbage_id,
    )
    assert (outcome, replays, replayed_by) == ("quarantined", 1, client.actor)

    # A dry run says what a replay would do and keeps nothing.
    movements = _one(engine, "SELECT count(*) FROM movement")
    answer = post_form(client, replay, {"id": str(release_id), "dry_run": "1"})
    (shown,) = _messages(client, answer)
    assert shown[1].startswith("dry run (nothing kept): 1 message(s), applied 1"), shown
    assert _one(engine, "SELECT count(*) FROM movement") == movements
    assert _one(engine, "SELECT replays FROM quarantine WHERE id = :i", i=release_id) == (None,)

    # One known and one unknown: the known one replayed (dry), the other named.
    answer = post_form(client, replay, {"id": [str(release_id), "99998"], "dry_run": "1"})
    shown = _messages(client, answer)
    assert [kind for kind, _ in shown] == ["notice", "problem"], shown
    assert shown[1][1] == "there is no quarantined message 99998"


def test_a_message_that_is_not_there_is_a_404_not_an_error(ledger):
    settings, engine, _ = ledger
    client = console_client(settings, role="auditor", engine=engine)
    for path in (
        "/operations/quarantine/99999",
        f"/operations/quarantine/{TOO_BIG}",
        f"/operations/quarantine/{TOO_BIG}/payload",
    ):
        answer = client.get(path)
        assert answer.status_code == 404, path
        assert "there is no quarantined message" in answer.text

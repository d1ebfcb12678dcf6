"""`elbridge licence ...`: the authority's lifecycle commands, wired to a real SQLite ledger."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime

import pytest

from bridge.adapters.store.licence_events import licence_events
from bridge.adapters.store.licences import load_licences, save_licence
from bridge.adapters.store.outbox import outbox_rows
from bridge.core.model import LicenceStatus
from bridge.entrypoints.cli import build_parser, main
from bridge.entrypoints.exit_codes import Exit
from tests.fixtures_soap import individual_licence

NUMBER = "DE-EA-2026-004711"


def _run(engine, *argv: str) -> int:
    """`elbridge` on this ledger, the global option after the command as a user may put it."""
    return main([*argv, "--database-url", engine.url.render_as_string(hide_password=False)])


@pytest.fixture
def ledger(engine):
    with engine.begin() as conn:
        save_licence(
            conn,
            individual_licence(valid_to=date(2026, 12, 31)),
            source="test",
            now=datetime(2026, 3, 1, tzinfo=UTC),
            explicit_version=False,
        )
    return engine


def _status(engine) -> LicenceStatus:
    with engine.connect() as conn:
        return load_licences(conn, [NUMBER])[NUMBER].status


def test_suspend_then_reinstate_with_reason_and_actor(ledger, capsys):
    assert (
        _run(ledger, "licence", "suspend", NUMBER, "--reason", "inquiry", "--actor", "K. W.") == 0
    )
    assert _status(ledger) is LicenceStatus.SUSPENDED
    assert "is suspended" in capsys.readouterr().out
    assert _run(ledger, "licence", "reinstate", NUMBER, "--reason", "ok", "--actor", "K. W.") == 0
    assert _status(ledger) is LicenceStatus.VALID
    capsys.readouterr()
    assert _run(ledger, "licence", "events", NUMBER, "--json") == 0
    events = json.loads(capsys.readouterr().out)["events"]
    assert [(e["from_status"], e["to_status"], e["actor"], e["reason"]) for e in events] == [
        ("valid", "suspended", "K. W.", "inquiry"),
        ("suspended", "valid", "K. W.", "ok"),
    ]
    _run(ledger, "licence", "events", NUMBER)  # a table: every change, who and why
    printed = capsys.readouterr().out
    assert "inquiry" in printed and "K. W." in printed and "2 changes" in printed
    with ledger.connect() as conn:
        assert [r["kind"] for r in outbox_rows(conn, NUMBER)] == ["status", "status"]


@pytest.mark.parametrize("missing", ["--reason", "--actor"])
def test_reason_and_actor_are_mandatory(ledger, missing, capsys):
    argv = ["licence", "revoke", NUMBER, "--reason", "r", "--actor", "a"]
    index = argv.index(missing)
    del argv[index : index + 2]
    with pytest.raises(SystemExit) as exit_:
        _run(ledger, *argv)
    assert exit_.value.code == Exit.USAGE
    (line,) = capsys.readouterr().err.splitlines()  # one line naming what is missing
    assert line.startswith("elbridge licence revoke: ") and missing in line
    assert _status(ledger) is LicenceStatus.VALID


def test_a_forbidden_action_is_refused_with_its_reason_and_changes_nothing(ledger, capsys):
    _run(ledger, "licence", "annul", NUMBER, "--reason", "issued in error", "--actor", "K. W.")
    capsys.readouterr()
    refused = _run(ledger, "licence", "reinstate", NUMBER, "--reason", "no", "--actor", "K. W.")
    assert refused == Exit.REFUSED
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("elbridge licence reinstate: ") and "annulled" in line
    assert _status(ledger) is LicenceStatus.ANNULLED
    with ledger.connect() as conn:
        assert len(licence_events(conn, NUMBER)) == 1


def test_expire_due_expires_what_ended_before_the_day_given(ledger, capsys):
    assert _run(ledger, "licence", "expire-due", "--today", "2026-12-31") == 0
    assert "no licence to expire" in capsys.readouterr().out
    assert _run(ledger, "licence", "expire-due", "--today", "2027-01-01") == 0
    assert f"expired 1 licences: {NUMBER}" in capsys.readouterr().out
    assert _status(ledger) is LicenceStatus.EXPIRED


def test_query_service_serve_is_wired():
    args = build_parser().parse_args(["query-service", "serve", "--port", "0"])
    assert (args.host, args.port, args.path) == ("127.0.0.1", 0, "/certex-query")
    assert args.func.__name__ == "cmd_query_serve"

"""`elbridge licence ...`: the authority's lifecycle commands, wired to a real SQLite ledger."""

from __future__ import annotations

import argparse
from datetime import UTC, date, datetime

import pytest

from bridge.adapters.store.licence_events import licence_events
from bridge.adapters.store.licences import load_licences, save_licence
from bridge.adapters.store.outbox import outbox_rows
from bridge.core.lifecycle import StatusChangeRefused
from bridge.core.model import LicenceStatus
from bridge.entrypoints.cli_licences import add_licence_commands, add_query_service_commands
from tests.fixtures_soap import individual_licence

NUMBER = "DE-EA-2026-004711"


def _run(engine, *argv: str) -> int:
    parser = argparse.ArgumentParser(prog="elbridge")
    commands = parser.add_subparsers(dest="command", required=True)
    add_licence_commands(commands, open_ledger=lambda _args: engine)
    add_query_service_commands(commands, ledger_url=lambda _args: str(engine.url))
    args = parser.parse_args(argv)
    return args.func(args)


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
    _run(ledger, "licence", "events", NUMBER)
    printed = capsys.readouterr().out
    assert "valid -> suspended  by K. W.: inquiry" in printed
    assert "suspended -> valid  by K. W.: ok" in printed
    with ledger.connect() as conn:
        assert [r["kind"] for r in outbox_rows(conn, NUMBER)] == ["status", "status"]


@pytest.mark.parametrize("missing", ["--reason", "--actor"])
def test_reason_and_actor_are_mandatory(ledger, missing, capsys):
    argv = ["licence", "revoke", NUMBER, "--reason", "r", "--actor", "a"]
    index = argv.index(missing)
    del argv[index : index + 2]
    with pytest.raises(SystemExit) as exit_:
        _run(ledger, *argv)
    assert exit_.value.code == 2
    assert missing in capsys.readouterr().err
    assert _status(ledger) is LicenceStatus.VALID


def test_a_forbidden_action_is_refused_with_its_reason_and_changes_nothing(ledger):
    _run(ledger, "licence", "annul", NUMBER, "--reason", "issued in error", "--actor", "K. W.")
    with pytest.raises(StatusChangeRefused) as refused:
        _run(ledger, "licence", "reinstate", NUMBER, "--reason", "no", "--actor", "K. W.")
    assert refused.value.code == "status-final"
    assert _status(ledger) is LicenceStatus.ANNULLED
    with ledger.connect() as conn:
        assert len(licence_events(conn, NUMBER)) == 1


def test_expire_due_expires_what_ended_before_the_day_given(ledger, capsys):
    assert _run(ledger, "licence", "expire-due", "--today", "2026-12-31") == 0
    assert "no licence to expire" in capsys.readouterr().out
    assert _run(ledger, "licence", "expire-due", "--today", "2027-01-01") == 0
    assert f"expired 1 licences: {NUMBER}" in capsys.readouterr().out
    assert _status(ledger) is LicenceStatus.EXPIRED


def test_query_service_serve_is_wired(ledger):
    parser = argparse.ArgumentParser(prog="elbridge")
    commands = parser.add_subparsers(dest="command", required=True)
    add_query_service_commands(commands, ledger_url=lambda _args: "sqlite://")
    args = parser.parse_args(["query-service", "serve", "--port", "0"])
    assert (args.host, args.port, args.path) == ("127.0.0.1", 0, "/certex-query")
    assert args.func.keywords["ledger_url"](args) == "sqlite://"

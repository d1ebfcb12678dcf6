"""Every `elbridge` command by the conventions (docs/cli.md), found by walking the command tree:
it explains itself; it takes the global options after its name; with --json it prints one JSON
document and nothing else on standard output; a representative failure is one line on standard
error, no traceback, with the documented exit status. A command added without a case here fails
`test_every_command_has_its_case`.

The commands run in this process (`main`) on a copy of a ledger filled with the demo's data:
licences with their rejects, certificates, write-offs and a refusal, a manual write-off, a
quarantined message, a console user."""

from __future__ import annotations

import json
import shutil
import socket
import threading
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from bridge.core.paths import PROJECT_ROOT
from bridge.entrypoints.cli import build_parser, main
from bridge.entrypoints.cli_output import (
    command_parsers,
    global_value,
    logging_for_the_command,
    run_command,
)
from bridge.entrypoints.exit_codes import Exit
from bridge.services.config import Settings
from tests.conftest import WCO_SAMPLES

LICENCE = "EA-2025-004711"  # individual, line 2: 12.75 KGM (demo samples)
SUSPENDED = "EA-2025-004802"
WHO = ["--reason", "audit 2026-14", "--actor", "K. Weber (BAFA)"]
UNREACHABLE_LEDGER = "postgresql://nobody@127.0.0.1:{port}/ledger"


@dataclass(frozen=True)
class Case:
    """How one command is tried: `json` (arguments of a run that reports; None for a command
    that serves until stopped) and the status it exits with; `failure` (arguments of a run
    that cannot succeed), its status and what its one error line says."""

    json: list[str] | None
    json_exit: int
    failure: list[str]
    failure_exit: int
    says: str
    env: dict[str, str] = field(default_factory=dict)
    broker: bool = False  # the JSON run needs a real broker


CASES: dict[str, Case] = {
    # The sample file holds a record the rules reject: partly done.
    "ingest": Case(["{sample}"], Exit.PARTIAL, ["{home}/nowhere.csv"], Exit.FAILURE, "nowhere.csv"),
    "sync": Case(
        ["--certify-only"],
        Exit.OK,
        [],
        Exit.USAGE,
        "ELBRIDGE_SIGNING_CERT_FILE",
        env={"ELBRIDGE_SIGNING_KEY_FILE": "{home}/authority.key"},
    ),
    "consume": Case(
        ["--idle", "0.5"],
        Exit.OK,
        ["--idle", "0.5"],
        Exit.FAILURE,
        "MQTT broker 127.0.0.1:{port}: not reachable",
        env={"ELBRIDGE_MQTT_PORT": "{port}"},
        broker=True,
    ),
    "reconcile": Case([], Exit.OK, ["--history"], Exit.USAGE, "--history shows one licence"),
    "manual write-off": Case(
        ["--licence", LICENCE, "--line", "2", "--quantity", "500", "--unit", "g", *WHO],
        Exit.OK,
        ["--licence", LICENCE, "--line", "2", "--quantity", "100", "--unit", "kg", *WHO],
        Exit.REFUSED,
        "remaining on licence",
    ),
    "manual correct": Case(
        ["--licence", LICENCE, "--line", "2", "--quantity=-0.1", "--unit", "kg", *WHO],
        Exit.OK,
        ["--licence", LICENCE, "--line", "2", "--quantity", "1", "--unit", "stone", *WHO],
        Exit.USAGE,
        "unknown unit 'stone'; known units: MC",
    ),
    "manual reverse": Case(
        ["--movement", "{movement}", *WHO],
        Exit.OK,
        ["--movement", "999999", *WHO],
        Exit.REFUSED,
        "999999",
    ),
    "licence suspend": Case(
        [LICENCE, *WHO], Exit.OK, ["XX-NO-SUCH-1", *WHO], Exit.REFUSED, "XX-NO-SUCH-1"
    ),
    "licence reinstate": Case([SUSPENDED, *WHO], Exit.OK, [LICENCE, *WHO], Exit.REFUSED, LICENCE),
    "licence revoke": Case([LICENCE, *WHO], Exit.OK, ["XX-NO-SUCH-1", *WHO], Exit.REFUSED, "XX"),
    "licence annul": Case([LICENCE, *WHO], Exit.OK, ["XX-NO-SUCH-1", *WHO], Exit.REFUSED, "XX"),
    "licence expire-due": Case(
        [], Exit.OK, ["--today", "tomorrow"], Exit.USAGE, "'tomorrow' is not a date"
    ),
    "licence events": Case(
        [SUSPENDED],
        Exit.OK,
        [LICENCE, "--database-url", UNREACHABLE_LEDGER],
        Exit.FAILURE,
        "the ledger database: cannot use it",
    ),
    "query-service serve": Case(
        None, Exit.OK, ["--client-ca", "{home}/ca.pem"], Exit.USAGE, "need HTTPS"
    ),
    "query-service audit": Case(
        [], Exit.OK, ["--since", "yesterday"], Exit.USAGE, "'yesterday' is not a date"
    ),
    "quarantine list": Case([], Exit.OK, ["--since", "x"], Exit.USAGE, "'x' is neither a day"),
    "quarantine show": Case(
        ["{quarantined}"], Exit.OK, ["999999"], Exit.FAILURE, "no quarantined message 999999"
    ),
    "quarantine replay": Case(
        ["--all", "--dry-run", "--no-publish"], Exit.PARTIAL, [], Exit.USAGE, "name the messages"
    ),
    "audit verify": Case(
        [], Exit.OK, ["--anchor", "{home}/no-anchor.json"], Exit.FAILURE, "no-anchor.json"
    ),
    "audit head": Case(
        [], Exit.OK, ["--output", "{home}/no/such/folder/heads.json"], Exit.FAILURE, "heads.json"
    ),
    "db upgrade": Case([], Exit.OK, ["--url", "nosuchdb://x"], Exit.USAGE, "the database URL"),
    "db current": Case(
        [],
        Exit.OK,
        ["--url", UNREACHABLE_LEDGER],
        Exit.FAILURE,
        "the ledger database: cannot use it",
    ),
    "db history": Case([], Exit.OK, ["--bogus"], Exit.USAGE, "unrecognized arguments: --bogus"),
    "db grant": Case(
        None, Exit.OK, ["--runtime-role", "bridge"], Exit.FAILURE, "PostgreSQL"
    ),  # PostgreSQL only: tests/integration/test_migrations.py grants for real
    "config show": Case(
        [],
        Exit.OK,
        ["--settings", "{home}/bad.toml"],
        Exit.USAGE,
        "unknown setting 'mqtt_hots' (did you mean 'mqtt_host'?)",
    ),
    "customs-sim serve": Case(
        None, Exit.OK, ["--client-ca", "{home}/ca.pem"], Exit.USAGE, "need HTTPS"
    ),
    "customs-sim publish": Case(
        ["--check", "{garbage}"],
        Exit.REFUSED,
        ["{declaration}"],
        Exit.FAILURE,
        "127.0.0.1:{port}",
        env={"ELBRIDGE_MQTT_PORT": "{port}"},
    ),
    "demo": Case(None, Exit.OK, ["--bogus"], Exit.USAGE, "unrecognized arguments: --bogus"),
    "console serve": Case(
        None, Exit.OK, ["--client-ca", "{home}/ca.pem"], Exit.USAGE, "need HTTPS"
    ),
    "console user add": Case(
        ["clerk", "--role", "auditor", "--password-file", "{home}/password"],
        Exit.OK,
        ["clerk", "--role", "officer", "--password-file", "{home}/no-password"],
        Exit.USAGE,
        "no-password",
    ),
    "console user remove": Case(["officer1"], Exit.OK, ["nobody"], Exit.USAGE, "nobody"),
    "console user list": Case(
        [], Exit.OK, ["--settings", "{home}/bad.toml"], Exit.USAGE, "unknown setting"
    ),
    "status": Case(
        ["--check", "ledger"], Exit.PARTIAL, ["--check", "nonsense"], Exit.USAGE, "nonsense"
    ),
    "outbox list": Case([], Exit.OK, ["--status", "lost"], Exit.USAGE, "lost"),
    "outbox retry": Case(
        ["--all-failed", "--actor", "K. Weber"],
        Exit.OK,
        ["--id", "999999"],
        Exit.USAGE,
        "no such message in the outbox",
    ),
}


def leaf_commands() -> list[str]:
    """Every command a user can run: the parsers of the tree without subcommands."""
    return [
        " ".join(path)
        for path, parser in command_parsers(build_parser())
        if path and not parser._subparsers
    ]


def test_every_command_has_its_case():
    found = leaf_commands()
    assert len(found) > 30
    assert sorted(set(found) - set(CASES)) == [], "add a case for each new command above"
    assert sorted(set(CASES) - set(found)) == []


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> dict[str, str]:
    """A home with the demo's ledger, a manual write-off, a quarantined message, a console
    user; the values the cases name."""
    from bridge.adapters.mqtt.client import Received
    from bridge.adapters.store.db import make_engine
    from bridge.entrypoints.console.auth import add_user, users_file
    from bridge.services.authority import manual_write_off
    from bridge.services.consumer import ConsumeReport, store_batch
    from tests.browser.helpers import fill_demo_ledger

    home = tmp_path_factory.mktemp("elbridge-home")
    settings = Settings(home=home)
    fill_demo_ledger(settings)
    engine = make_engine(settings.ledger_url)
    try:
        movement = manual_write_off(
            engine,
            LICENCE,
            2,
            Decimal("0.25"),
            "KGM",
            value=None,
            currency=None,
            reason="paper declaration",
            actor="K. Weber (BAFA)",
            now=datetime.now(UTC),
            reference=None,
            force=False,
        ).movement_id
        garbage = Received("customs/declarations/events", b"not JSON at all", 1, 1, 0, False)
        store_batch(settings, engine, [garbage], threading.Event(), ConsumeReport())
    finally:
        engine.dispose()
    add_user(users_file(settings), "officer1", "officer", "a-long-pass-phrase", full_name="O")
    (home / "password").write_text("another-long-pass-phrase\n")
    (home / "bad.toml").write_text('mqtt_hots = "broker"\n')
    (home / "garbage.xml").write_text("<Declaration>not what customs send")
    return {
        "template": str(home),
        "movement": str(movement),
        "quarantined": "1",
        "sample": str(sorted(home.glob("inbox/done/*.csv"))[0]),
        "declaration": str(sorted(WCO_SAMPLES.glob("*.xml"))[0]),
    }


@pytest.fixture
def home(template, tmp_path, monkeypatch) -> dict[str, str]:
    """A copy of the template's home, and the environment without the caller's settings."""
    for name in [name for name in __import__("os").environ if name.startswith("ELBRIDGE_")]:
        monkeypatch.delenv(name)
    copy = tmp_path / "home"
    shutil.copytree(template["template"], copy)
    closed = _free_port()
    return template | {
        "home": str(copy),
        "garbage": str(copy / "garbage.xml"),
        "port": str(closed),
    }


def _fill(words: list[str], values: dict[str, str]) -> list[str]:
    return [word.format(**values) for word in words]


def _run(argv: list[str]) -> int:
    try:
        return main(argv)
    except SystemExit as exited:  # a wrong command line: argparse's exit
        return int(exited.code or 0)


@pytest.mark.parametrize("command", sorted(CASES))
def test_the_command_explains_itself(command, capsys):
    assert _run([*command.split(), "--help"]) == 0
    text = capsys.readouterr().out
    assert text.startswith(f"usage: elbridge {command}")
    assert "--json" in text and "--home" in text and "-q, --quiet" in text  # global options


@pytest.mark.parametrize("command", sorted(c for c, case in CASES.items() if case.json is not None))
def test_json_is_one_document_on_standard_output(command, home, capsys, monkeypatch, request):
    case = CASES[command]
    values = dict(home)
    if case.broker:
        broker = request.getfixturevalue("mosquitto")
        tag = uuid.uuid4().hex[:8]
        monkeypatch.setenv("ELBRIDGE_MQTT_HOST", broker.host)
        monkeypatch.setenv("ELBRIDGE_MQTT_PORT", str(broker.port))
        monkeypatch.setenv("ELBRIDGE_MQTT_TOPIC", f"test/{tag}/declarations")
        monkeypatch.setenv("ELBRIDGE_MQTT_CLIENT_ID", f"elbridge-cli-{tag}")
    # The global options after the command's own arguments, as a user may write them.
    argv = [*command.split(), *_fill(case.json, values), "--home", home["home"], "--json"]
    status = _run(argv)
    out, err = capsys.readouterr()
    assert status == case.json_exit, err
    assert isinstance(json.loads(out), dict)  # the whole of standard output is one document
    assert "Traceback" not in err


@pytest.mark.parametrize("command", sorted(CASES))
def test_a_failure_is_one_line_and_its_exit_status(command, home, capsys, monkeypatch):
    case = CASES[command]
    for name, value in case.env.items():
        monkeypatch.setenv(name, value.format(**home))
    status = _run(["--home", home["home"], *command.split(), *_fill(case.failure, home)])
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert "Traceback" not in err + out
    assert len(lines) == 1, err
    assert lines[0].startswith(f"elbridge {command}: "), lines[0]
    assert case.says.format(**home) in lines[0]
    assert status == case.failure_exit, lines[0]


def test_with_json_a_failure_is_also_told_on_standard_output(home, capsys):
    status = _run(["--home", home["home"], "--json", "reconcile", "--history"])
    out, err = capsys.readouterr()
    assert status == Exit.USAGE
    told = json.loads(out)
    assert told["ok"] is False and told["exit"] == Exit.USAGE
    assert told["command"] == "reconcile" and "--history shows one licence" in told["error"]
    assert err.startswith("elbridge reconcile: ")


def test_version_names_the_release_the_contracts_and_the_ledger_schema(capsys):
    from importlib.metadata import version

    from bridge.adapters.store.migrate import head_revision

    assert _run(["--version"]) == 0
    (line,) = capsys.readouterr().out.splitlines()
    assert line.startswith(f"elbridge {version('elicensing-bridge')} (CERTEX certificates 1.0")
    assert line.endswith(f"ledger schema {head_revision()})")


def test_global_options_may_come_before_or_after_the_command(home, capsys):
    other = Path(home["home"]) / "other"
    for argv in (
        ["--home", str(other), "-q", "config", "show", "--json"],
        ["config", "show", "--json", "-q", "--home", str(other)],
        ["config", "--home", str(other), "show", "--json"],
    ):
        assert _run(argv) == 0
        shown = {row["name"]: row for row in json.loads(capsys.readouterr().out)["settings"]}
        assert shown["home"]["value"] == str(other) and shown["home"]["source"] == "command line"


def test_every_command_is_in_the_cli_page():
    page = (PROJECT_ROOT / "docs" / "cli.md").read_text(encoding="utf-8").splitlines()
    missing = [
        command
        for command in leaf_commands()
        if not any(
            f"elbridge {command.split()[0]}" in line and command.split()[-1] in line
            for line in page
        )
    ]
    assert missing == [], "describe them in docs/cli.md"


@pytest.mark.parametrize(
    ("flags", "shown", "hidden"),
    [
        ([], ["warning"], ["info", "debug"]),
        (["-v"], ["warning", "info"], ["debug"]),
        (["-vv"], ["warning", "info", "debug"], []),
        (["-q"], [], ["warning", "info", "debug"]),
    ],
)
def test_v_and_q_set_what_the_log_shows(flags, shown, hidden, home, capsys):
    import logging

    from bridge.entrypoints import cli

    log = logging.getLogger("bridge.test_cli_conventions")

    def speak(args) -> int:  # a command that logs a line at each level
        for level in ("warning", "info", "debug"):
            getattr(log, level)(f"a {level} line")
        return Exit.OK

    parser = cli.build_parser()
    args = parser.parse_args(["config", "show", *flags, "--home", home["home"]])
    args.func = speak
    verbosity = int(global_value(args, "verbose") or 0)
    with logging_for_the_command(verbosity, bool(global_value(args, "quiet"))):
        assert run_command(args) == Exit.OK
    log.warning("after the command")  # the process's logging is its own again
    err = capsys.readouterr().err
    assert [level for level in shown if f"a {level} line" in err] == shown
    assert [level for level in hidden if f"a {level} line" in err] == []
    if flags in ([], ["-q"]):
        assert all(line.startswith("elbridge: ") for line in err.splitlines())
    assert "after the command" not in err

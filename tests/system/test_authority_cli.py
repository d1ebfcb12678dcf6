"""The authority's commands through the real `elbridge` entry point on a real SQLite ledger:
`manual write-off|correct|reverse` and `reconcile --history|--refusals|--alerts`."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import insert

from bridge.adapters.store.db import make_engine
from bridge.adapters.store.schema import refusal
from bridge.entrypoints.cli import main
from bridge.entrypoints.exit_codes import Exit
from tests.integration.test_manual import NOW, NUMBER, OFFICER, customs_write_off, seed


@pytest.fixture
def ledger(tmp_path: Path):
    """A ledger file with the German individual licence in it; yields its URL."""
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    engine = make_engine(url)
    seed(engine)
    yield url, engine
    engine.dispose()


def elbridge(url: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "bridge.entrypoints.cli", "--database-url", url, *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def run(capsys, url: str, *args: str) -> tuple[int, str, str]:
    code = main(["--database-url", url, *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_an_authority_writes_off_reverses_and_reads_the_history_from_the_command_line(ledger):
    url, _ = ledger
    done = elbridge(
        url,
        "manual",
        "write-off",
        "--licence",
        NUMBER,
        "--line",
        "2",
        "--quantity",
        "1500",
        "--unit",
        "GRM",
        "--value",
        "4470.06",
        "--currency",
        "EUR",
        "--reason",
        "contingency: paper declaration DE-2026-78",
        "--actor",
        OFFICER,
    )
    assert done.returncode == 0, done.stderr
    first = done.stdout.splitlines()[0]
    assert first.startswith("movement 1: manual_write_off of 1.5 KGM and 4470.06 EUR")
    assert "(declared 1500 GRM)" in first and OFFICER in first
    assert "1 licences, 1 lines, 1 with write-offs, 0 over-used" in done.stdout
    shown = elbridge(url, "reconcile", "--licence", NUMBER, "--json")
    (line,) = [row for row in json.loads(shown.stdout)["lines"] if row["line_number"] == 2]
    assert (line["authorised_quantity"], line["written_off_quantity"]) == ("12.5", "1.5")
    assert line["remaining_quantity"] == "11.0"

    again = [
        "manual",
        "reverse",
        "--movement",
        "1",
        "--reason",
        "customs sent the declaration after all",
        "--actor",
        "Jonas Krüger (BAFA)",
    ]
    undone = elbridge(url, *again)
    assert undone.returncode == 0, undone.stderr
    assert undone.stdout.startswith("movement 2: reversal of -1.5 KGM")
    twice = elbridge(url, *again)
    assert twice.returncode == Exit.REFUSED  # the rules say no: not a usage error
    (line,) = twice.stderr.splitlines()
    assert line.startswith("elbridge manual reverse: reversal of movement 1 refused")
    assert "Traceback" not in twice.stderr
    assert "was reversed already by movement 2" in twice.stderr

    history = elbridge(url, "reconcile", "--licence", NUMBER, "--history", "--format", "json")
    assert history.returncode == 0, history.stderr
    movements = json.loads(history.stdout)["movements"]
    assert [(m["kind"], m["actor"], m["used_quantity"]) for m in movements] == [
        ("manual_write_off", OFFICER, "1.5"),
        ("reversal", "Jonas Krüger (BAFA)", "0"),
    ]
    assert movements[0]["reason"] == "contingency: paper declaration DE-2026-78"


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"--reason": ""}, "a reason is mandatory"),
        ({"--actor": " "}, "the person's identity is mandatory"),
        ({"--unit": "KGM", "--line": "1"}, "KGM (mass) does not convert to NAR (items)"),
        ({"--quantity": "121", "--line": "1", "--unit": "NAR"}, "remaining on licence"),
    ],
)
def test_a_refused_manual_write_off_says_why_and_writes_nothing(ledger, capsys, changes, message):
    url, _ = ledger
    options = {
        "--licence": NUMBER,
        "--line": "2",
        "--quantity": "1",
        "--unit": "KGM",
        "--reason": "audit",
        "--actor": OFFICER,
    } | changes
    code, out, err = run(capsys, url, "manual", "write-off", *sum(options.items(), ()))
    assert code == Exit.REFUSED and out == ""
    (line,) = err.splitlines()  # one line: the command, what was refused and why
    assert line.startswith("elbridge manual write-off: ") and message in line
    code, out, _ = run(capsys, url, "reconcile", "--licence", NUMBER, "--history")
    assert code == 0 and "0 movements" in out


def test_forced_over_use_prints_the_alert_and_the_over_used_balance(ledger, capsys):
    url, engine = ledger
    customs_write_off(engine, 1, "120")
    arguments = ["manual", "write-off", "--licence", NUMBER, "--line", "1", "--quantity", "2"]
    arguments += ["--unit", "C62", "--reason", "approved: letter 2026-213-21", "--actor", OFFICER]
    code, out, err = run(capsys, url, *arguments, "--force")
    assert code == Exit.OK  # done as asked: the alert is the authority's to read
    assert "alert raised: manual-over-use" in out
    assert "1 over-used: DE-EA-2026-004711/1" in out
    assert "warning: alert raised for the authority: manual-over-use" in err

    code, out, _ = run(capsys, url, "reconcile", "--alerts", "--format", "csv")
    assert code == Exit.OK  # a report
    (alert,) = list(csv.DictReader(io.StringIO(out)))
    assert (alert["kind"], alert["licence_number"], alert["line_number"]) == (
        "manual-over-use",
        NUMBER,
        "1",
    )
    assert "letter 2026-213-21" in alert["message"]

    code, out, _ = run(capsys, url, "reconcile", "--licence", NUMBER, "--history")
    assert code == Exit.OK
    assert out.splitlines()[-1] == f"licence {NUMBER}: 2 movements on 1 line(s)"


def test_a_correction_either_way_from_the_command_line(ledger, capsys):
    url, engine = ledger
    customs_write_off(engine, 2, "4")
    base = ["manual", "correct", "--licence", NUMBER, "--line", "2", "--unit", "KGM"]
    who = ["--reason", "audit 2026-14", "--actor", OFFICER]
    code, out, err = run(capsys, url, *base, "--quantity", "0.5", *who)
    assert code == 0, err
    code, out, err = run(capsys, url, *base, "--quantity=-1.25", *who)
    assert code == 0, err
    assert out.startswith("movement 3: correction of -1.25 KGM")
    code, out, _ = run(capsys, url, "reconcile", "--licence", NUMBER, "--format", "json")
    (line,) = [r for r in json.loads(out)["lines"] if r["line_number"] == 2]
    assert line["written_off_quantity"] == "3.25"


def test_refusals_are_listed_from_the_command_line(ledger, capsys):
    url, engine = ledger
    code, out, _ = run(capsys, url, "reconcile", "--refusals")
    assert code == 0 and out.strip().endswith("0 refusal(s)")
    with engine.begin() as conn:
        conn.execute(
            insert(refusal).values(
                mrn="26DE000000000471A2",
                goods_item=2,
                document_code="X060",
                document_ref=NUMBER,
                licence_number=NUMBER,
                line_number=1,
                code="over-use",
                reason="5 NAR more exceeds the 2 NAR remaining (nothing written off)",
                message_id="m-2",
                at=NOW,
            )
        )
    code, out, _ = run(capsys, url, "reconcile", "--refusals", "--licence", NUMBER)
    assert code == Exit.OK
    assert "26DE000000000471A2" in out and "over-use" in out
    assert "5 NAR more exceeds the 2 NAR remaining" in out
    code, out, _ = run(capsys, url, "reconcile", "--refusals", "--licence", "DE-EA-2026-000001")
    assert code == 0 and "0 refusal(s) for licence DE-EA-2026-000001" in out


def test_the_history_needs_a_licence_the_ledger_knows(ledger, capsys):
    url, _ = ledger
    code, _, err = run(capsys, url, "reconcile", "--history")
    assert code == Exit.USAGE and "--history shows one licence" in err
    code, _, err = run(capsys, url, "reconcile", "--history", "--licence", "XX-1")
    assert code == Exit.REFUSED and "licence XX-1 is not in the ledger" in err
    with pytest.raises(SystemExit):
        main(["--database-url", url, "reconcile", "--history", "--alerts"])
    capsys.readouterr()


@pytest.mark.parametrize(
    "command", [["manual"], ["manual", "write-off"], ["manual", "correct"], ["manual", "reverse"]]
)
def test_the_manual_commands_explain_themselves(command, capsys):
    with pytest.raises(SystemExit) as exited:
        main([*command, "--help"])
    out = capsys.readouterr().out
    assert exited.value.code == 0 and out.startswith("usage: elbridge manual")
    if len(command) == 2:
        assert "--reason" in out and "--actor" in out and "--force" in out

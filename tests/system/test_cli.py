import subprocess
import sys

import pytest

COMMANDS = [
    [],
    ["ingest"],
    ["sync"],
    ["consume"],
    ["reconcile"],
    ["customs-sim"],
    ["customs-sim", "serve"],
    ["customs-sim", "publish"],
    ["demo"],
    ["manual", "write-off"],
    ["manual", "correct"],
    ["manual", "reverse"],
    ["licence", "suspend"],
    ["licence", "reinstate"],
    ["licence", "revoke"],
    ["licence", "annul"],
    ["licence", "expire-due"],
    ["licence", "events"],
    ["query-service", "serve"],
]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "elbridge")
def test_every_command_explains_itself(command):
    done = subprocess.run(
        [sys.executable, "-m", "bridge.entrypoints.cli", *command, "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "usage: elbridge" in done.stdout
    assert len(done.stdout.splitlines()) > 3


def test_reconcile_on_an_empty_ledger_prints_an_empty_table(tmp_path):
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "bridge.entrypoints.cli",
            "--home",
            str(tmp_path),
            "reconcile",
            "--format",
            "csv",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("licence_number,line_number,")
    assert (tmp_path / "ledger.db").is_file()

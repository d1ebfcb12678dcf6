"""`elbridge console user add|list|remove` and `elbridge console serve`'s refusals: passwords
from a file or standard input (never the command line), one-line errors, exit statuses."""

from __future__ import annotations

import io
import json

import pytest

from bridge.entrypoints.cli import main
from bridge.entrypoints.console.auth import UserRegistry, read_users


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.delenv("ELBRIDGE_CONSOLE_USERS_FILE", raising=False)
    return tmp_path / "home"


def test_users_are_added_from_a_password_file_or_standard_input(
    home, tmp_path, monkeypatch, capsys
):
    secret = tmp_path / "olga.pw"
    secret.write_text("correct horse battery\n")
    assert (
        main(
            [
                "--home",
                str(home),
                "console",
                "user",
                "add",
                "olga",
                "--role",
                "officer",
                "--full-name",
                "Olga Brandt",
                "--password-file",
                str(secret),
            ]
        )
        == 0
    )
    monkeypatch.setattr("sys.stdin", io.StringIO("staple for the auditor\n"))
    assert main(["console", "user", "add", "arne", "--role", "auditor", "--home", str(home)]) == 0
    out = capsys.readouterr().out
    assert "console user olga (officer) added" in out and "arne (auditor)" in out
    path = home / "console" / "users.toml"
    registry = UserRegistry(path)
    assert registry.authenticate("olga", "correct horse battery")[0].actor == "Olga Brandt (olga)"
    assert registry.authenticate("arne", "staple for the auditor")[0].role == "auditor"
    assert "correct horse battery" not in path.read_text()

    assert main(["--home", str(home), "--json", "console", "user", "list"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [(u["name"], u["role"]) for u in listed["users"]] == [
        ("arne", "auditor"),
        ("olga", "officer"),
    ]
    assert main(["--home", str(home), "console", "user", "remove", "arne"]) == 0
    assert sorted(read_users(path)) == ["olga"]


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["console", "user", "remove", "nobody"], "no user 'nobody'"),
        (
            [
                "console",
                "user",
                "add",
                "x",
                "--role",
                "officer",
                "--password-file",
                "/nonexistent/pw",
            ],
            "password-file /nonexistent/pw",
        ),
        (
            ["console", "serve", "--port", "0", "--client-ca", "/nonexistent/ca.pem"],
            "give --tls-cert and --tls-key too",
        ),
    ],
    ids=["unknown-user", "unreadable-password-file", "client-ca-without-https"],
)
def test_a_wrong_command_is_one_line_and_exit_status_2(home, capsys, argv, says):
    assert main(["--home", str(home), *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert says in err and "\n" not in err and "Traceback" not in err


def test_a_short_password_from_standard_input_is_refused(home, monkeypatch, capsys):
    monkeypatch.setattr("sys.stdin", io.StringIO("short\n"))
    assert main(["--home", str(home), "console", "user", "add", "olga", "--role", "officer"]) == 2
    assert "at least 10 characters" in capsys.readouterr().err
    assert not (home / "console" / "users.toml").exists()

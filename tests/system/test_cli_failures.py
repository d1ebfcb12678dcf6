"""`elbridge` where it used to fail badly, as a user runs it (a real process): `consume` with no
broker, `sync` with customs answering 503, an officer's `--unit kg`, `config show` with a
settings file under the environment, a progress bar only on a terminal."""

from __future__ import annotations

import json
import os
import pty
import select
import shutil
import socket
import subprocess
import sys
import time

import pytest

from bridge.core.paths import MAPPINGS_DIR
from bridge.entrypoints.customs_sim.process import start_simulator
from bridge.entrypoints.exit_codes import Exit

ELBRIDGE = [sys.executable, "-m", "bridge.entrypoints.cli"]
SAMPLE = MAPPINGS_DIR / "samples" / "elicensing_export_LV_2026-11-27.xml"


def _environment(**settings: str) -> dict[str, str]:
    env = {name: value for name, value in os.environ.items() if not name.startswith("ELBRIDGE_")}
    env.update({f"ELBRIDGE_{name.upper()}": value for name, value in settings.items()})
    return env


def elbridge(*argv: str, env: dict[str, str] | None = None, timeout: float = 180):
    return subprocess.run(
        [*ELBRIDGE, *argv],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env=env or _environment(),
    )


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_consume_without_a_broker_is_one_line_naming_the_broker(tmp_path):
    port = _closed_port()
    done = elbridge("consume", "--idle", "1", "--home", str(tmp_path), env=_environment(
        mqtt_port=str(port)
    ))  # fmt: skip
    assert done.returncode == Exit.FAILURE
    assert "Traceback" not in done.stderr
    (line,) = done.stderr.splitlines()
    assert line == (
        f"elbridge consume: MQTT broker 127.0.0.1:{port}: not reachable"
        " ([Errno 111] Connection refused)"
    )
    assert done.stdout == ""


def test_sync_with_customs_down_warns_while_it_retries_and_exits_partly_done(tmp_path):
    home = str(tmp_path / "home")
    ingested = elbridge("ingest", str(SAMPLE), "--home", home, "--json")
    assert ingested.returncode in (Exit.OK, Exit.PARTIAL), ingested.stderr
    certificates = sum(
        report["new"] for report in json.loads(ingested.stdout)["files"]
    )  # one certificate per new licence
    assert certificates >= 2
    with start_simulator(tmp_path / "customs", rate=1.0, kinds=["http503"]) as customs:
        env = _environment(soap_url=customs.url, soap_senders="1")
        down = elbridge("sync", "--retry-seconds", "3", "--home", home, "--json", env=env)
        assert down.returncode == Exit.PARTIAL, down.stderr
        report = json.loads(down.stdout)
        assert report["certify"]["certified"] == certificates
        assert report["deliver"]["delivered"] == 0
        assert report["deliver"]["still_pending"] == certificates  # kept for the next run
        warnings = down.stderr.splitlines()
        assert "Traceback" not in down.stderr
        # Warnings only, each one line: the command's own, and the log's (a development
        # signing key in use, say).
        assert all(line.startswith("elbridge") and ": warning: " in line for line in warnings)
        assert any("customs did not take a message, retrying:" in line for line in warnings)
        assert any("wait for customs; next try in" in line for line in warnings)
        assert warnings[-1].endswith(
            f"certificates left undelivered: 0 failed, {certificates} still pending"
        )
        assert customs.received() == []

        customs.set_faults()  # customs are back
        back = elbridge("sync", "--retry-seconds", "30", "--home", home, env=env)
        assert back.returncode == Exit.OK, back.stderr
        assert len(customs.received()) == certificates  # nothing lost
        assert "elbridge sync:" not in back.stderr  # nothing to warn of


def test_an_officer_types_kg_and_the_ledger_counts_the_line_unit(tmp_path):
    home = str(tmp_path)
    assert elbridge("ingest", str(SAMPLE), "--home", home).returncode in (Exit.OK, Exit.PARTIAL)
    lines = json.loads(elbridge("reconcile", "--json", "--home", home).stdout)["lines"]
    line = next(row for row in lines if row["unit"] == "KGM")

    def write_off(quantity: str, unit: str, *extra: str):
        return elbridge(
            "manual", "write-off", "--licence", line["licence_number"],
            "--line", str(line["line_number"]), "--quantity", quantity, "--unit", unit,
            "--reason", "paper declaration", "--actor", "K. Weber", "--home", home, *extra,
        )  # fmt: skip

    done = write_off("250", "g", "--json")
    assert done.returncode == Exit.OK, done.stderr
    movement = json.loads(done.stdout)["movement"]
    assert (movement["quantity"], movement["declared_quantity"]) == ("0.25", "250")
    assert movement["declared_unit"] == "GRM"

    over = write_off("1000000", "kg")
    assert over.returncode == Exit.REFUSED  # the rules said no: not a usage error
    (said,) = over.stderr.splitlines()
    assert said.startswith("elbridge manual write-off: ")
    assert "refused" in said and "nothing written off" in said

    unknown = write_off("1", "stone")
    assert unknown.returncode == Exit.USAGE
    (said,) = unknown.stderr.splitlines()
    assert "unknown unit 'stone'" in said and "kg=KGM" in said  # the accepted ones named


def test_config_show_tells_each_value_and_where_it_came_from_with_secrets_masked(tmp_path):
    secret = tmp_path / "soap-password"
    secret.write_text("s3cret-in-a-file\n")
    settings = tmp_path / "elbridge.toml"
    settings.write_text(
        'mqtt_host = "broker.from-file.example"\nmqtt_port = 8883\nsender_id = "FROM-FILE"\n'
        f'soap_password_file = "{secret}"\n'
    )
    env = _environment(
        mqtt_port="1884",
        mqtt_password="env-pa55word",
        database_url="postgresql://bridge:db-pa55word@db.example/ledger",
        settings_file=str(settings),
    )
    done = elbridge("config", "show", "--json", env=env)
    assert done.returncode == Exit.OK, done.stderr
    shown = {row["name"]: row for row in json.loads(done.stdout)["settings"]}
    assert (shown["mqtt_host"]["value"], shown["mqtt_host"]["source"]) == (
        "broker.from-file.example",
        f"settings file {settings}",
    )
    assert (shown["mqtt_port"]["value"], shown["mqtt_port"]["source"]) == (
        "1884",
        "ELBRIDGE_MQTT_PORT",
    )
    assert shown["sender_id"]["value"] == "FROM-FILE"
    assert (shown["soap_timeout"]["value"], shown["soap_timeout"]["source"]) == ("10.0", "default")
    assert shown["mqtt_password"]["value"] == "********" and shown["mqtt_password"]["secret"]
    assert shown["soap_password"]["value"] == "********"
    assert shown["database_url"]["value"].endswith("@db.example/ledger")
    for secret_text in ("env-pa55word", "db-pa55word", "s3cret-in-a-file"):
        assert secret_text not in done.stdout + done.stderr

    flagged = elbridge("config", "show", "--json", "--settings", str(settings), env=_environment())
    rows = {row["name"]: row for row in json.loads(flagged.stdout)["settings"]}
    assert rows["mqtt_port"]["value"] == "8883"  # no environment: the file's

    table = elbridge("config", "show", "--changed", env={**env, "COLUMNS": "100"})
    assert table.returncode == Exit.OK
    assert all(len(line) <= 100 for line in table.stdout.splitlines())
    assert "broker.from-file.example" in table.stdout and "env-pa55word" not in table.stdout


def _run_on_a_terminal(argv: list[str], env: dict[str, str], seconds: float = 120) -> str:
    """What a terminal shows of standard error while `argv` runs (standard output apart)."""
    leader, follower = pty.openpty()
    process = subprocess.Popen(
        argv, stdout=subprocess.DEVNULL, stderr=follower, stdin=subprocess.DEVNULL, env=env
    )
    os.close(follower)
    shown = b""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        ready, _, _ = select.select([leader], [], [], 0.5)
        if ready:
            try:
                chunk = os.read(leader, 65536)
            except OSError:
                break
            if not chunk:
                break
            shown += chunk
        elif process.poll() is not None:
            break
    process.wait(timeout=30)
    os.close(leader)
    return shown.decode("utf-8", "replace")


@pytest.mark.skipif(not hasattr(pty, "openpty"), reason="needs a pseudo-terminal")
def test_ingest_shows_progress_on_a_terminal_only_and_not_with_q(tmp_path):
    big = tmp_path / SAMPLE.name
    shutil.copyfile(SAMPLE, big)
    env = _environment(home=str(tmp_path / "home"))
    env["COLUMNS"] = "100"
    shown = _run_on_a_terminal([*ELBRIDGE, "ingest", str(big)], env)
    assert "ingest " + big.name in shown  # the bar's description, drawn on the terminal
    quiet = _run_on_a_terminal([*ELBRIDGE, "ingest", str(big), "-q"], env)
    assert "ingest " + big.name not in quiet
    piped = elbridge("ingest", str(big), env=env)
    assert "ingest " + big.name not in piped.stderr  # not a terminal: no bar

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bridge.core.envelope import mrn_from_lrn
from tests.conftest import WCO_SAMPLES

AMENDMENTS = WCO_SAMPLES / "amendments"
ELBRIDGE = [sys.executable, "-m", "bridge.entrypoints.cli"]

COMMANDS = [
    [],
    ["ingest"],
    ["sync"],
    ["consume"],
    ["reconcile"],
    ["customs-sim"],
    ["customs-sim", "serve"],
    ["customs-sim", "publish"],
    ["quarantine"],
    ["quarantine", "list"],
    ["quarantine", "show"],
    ["quarantine", "replay"],
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
    ["query-service", "audit"],
    ["audit"],
    ["audit", "verify"],
    ["audit", "head"],
    ["db"],
    ["db", "upgrade"],
    ["db", "current"],
    ["db", "history"],
    ["db", "grant"],
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


# `elbridge customs-sim publish`: files as they are, --check first ---------------------------


@pytest.fixture
def customs_topic(mosquitto, tmp_path):
    """A fresh topic on a real broker: (the CLI's environment for it, the bridge's subscriber
    already listening)."""
    import uuid

    from bridge.services import mqtt_endpoints
    from bridge.services.config import Settings, settings_env

    tag = uuid.uuid4().hex[:8]
    settings = Settings(
        home=tmp_path,
        mqtt_host=mosquitto.host,
        mqtt_port=mosquitto.port,
        mqtt_client_id=f"elbridge-cli-{tag}",
        mqtt_topic=f"test/{tag}/declarations",
    )
    env = dict(os.environ)
    env.update(settings_env(settings, ("mqtt_host", "mqtt_port", "mqtt_topic")))
    listener = mqtt_endpoints.subscriber(settings).start()
    try:
        yield env, listener
    finally:
        listener.close()


def _publish(env, home, *argv):
    return subprocess.run(
        [*ELBRIDGE, "--home", str(home), "customs-sim", "publish", *map(str, argv)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=env,
    )


def _arrived(listener, count: int) -> list[dict]:
    messages = []
    while len(messages) < count:
        batch = listener.take(100, 0.2, 10.0)
        assert batch, f"{len(messages)} of {count} messages arrived"
        listener.ack(batch)
        messages += batch
    assert not listener.take(100, 0.1, 0.5), "more messages arrived than were sent"
    return [json.loads(m.payload) for m in messages]


def test_publish_sends_a_file_the_bridge_cannot_read_as_it_is(customs_topic, tmp_path):
    env, listener = customs_topic
    sample = (WCO_SAMPLES / "TT_EX010a.xml").read_text(encoding="utf-8")
    broken = tmp_path / "broken.xml"
    broken.write_text(sample.replace("</Declaration>", ""), encoding="utf-8")

    done = _publish(env, tmp_path, broken)
    print(done.stdout, done.stderr)
    assert done.returncode == 0, done.stderr
    (sent,) = _arrived(listener, 1)
    assert sent["payload"] == broken.read_text(encoding="utf-8")  # as it is
    assert "event" not in sent  # nothing could say which: none is claimed
    assert sent["mrn"] == mrn_from_lrn("broken.xml", year=_year(sent), country="EU")
    assert "no event: none given and no FunctionCode could be read" in done.stdout


def test_publish_infers_event_and_counts_versions_per_mrn(customs_topic, tmp_path):
    env, listener = customs_topic
    amendment = AMENDMENTS / "TT_Add_Item_Scenario_Step2_Amendment.xml"  # FunctionCode 13, COR
    original = AMENDMENTS / "TT_Add_Item_Scenario_Step1_Declaration.xml"  # FunctionCode 9
    cancellation = WCO_SAMPLES / "TT_EX010a_Cancellation.xml"  # 13, INV

    done = _publish(env, tmp_path, amendment, original, cancellation)
    print(done.stdout)
    assert done.returncode == 0, done.stderr
    first = _arrived(listener, 3)
    assert [(m["event"], m["declaration_version"], m["mrn"]) for m in first] == [
        ("amended", 2, "23GB6W3GLSX9Z5JAR4"),
        ("released", 1, mrn_from_lrn(_lrn(original), year=_year(first[1]), country="GB")),
        ("invalidated", 2, "24GBDIRIGZ7QLCPAA8"),
    ]
    assert "event amended: from FunctionCode 13, TypeCode COR" in done.stdout
    assert (WCO_SAMPLES / "TT_EX010a_Cancellation.xml").read_text() == first[2]["payload"]

    # Sent again in a later run: the same version and message id (a redelivery); --version
    # and --event still win when given.
    again = _publish(env, tmp_path, amendment)
    assert again.returncode == 0, again.stderr
    (resent,) = _arrived(listener, 1)
    assert (resent["message_id"], resent["declaration_version"]) == (
        "23GB6W3GLSX9Z5JAR4-amended-v2",
        2,
    )
    assert "(sent before)" in again.stdout
    other_mrn = "26GB" + "A" * 14
    forced = _publish(
        env,
        tmp_path,
        amendment,
        "--event",
        "released",
        "--version",
        "7",
        "--mrn",
        "26GB" + "A" * 14,
    )
    assert forced.returncode == 0, forced.stderr
    (wrong,) = _arrived(listener, 1)
    assert (wrong["event"], wrong["declaration_version"], wrong["message_id"]) == (
        "released",
        7,
        f"{other_mrn}-released-v7",
    )
    assert "event released: given (the declaration says amended)" in forced.stdout


def test_publish_check_refuses_to_send_what_would_be_quarantined(customs_topic, tmp_path):
    env, listener = customs_topic
    broken = tmp_path / "broken.xml"
    broken.write_text("<Declaration>not closed", encoding="utf-8")

    refused = _publish(env, tmp_path, WCO_SAMPLES / "TT_EX010a.xml", broken, "--check")
    print(refused.stdout)
    assert refused.returncode == 3  # refused: the bridge would quarantine one
    assert "broken.xml: would be quarantined:" in refused.stdout
    assert "not well-formed" in refused.stdout
    assert "nothing sent: the bridge would quarantine 1 of 2" in refused.stdout
    assert not listener.take(10, 0.1, 1.0)  # not even the good one

    checked = _publish(env, tmp_path, WCO_SAMPLES / "TT_EX010a.xml", "--check")
    print(checked.stdout)
    assert checked.returncode == 0, checked.stderr
    assert "readable: released v1 of MRN" in checked.stdout
    assert "9104 GBSIEE2E350001-0001" in checked.stdout  # the licence it writes off
    (sent,) = _arrived(listener, 1)
    assert sent["event"] == "released"


def _year(envelope: dict) -> int:
    return int(envelope["event_time"][:4])


def _lrn(path: Path) -> str:
    from bridge.core.declaration_header import read_header

    return read_header(path.read_bytes(), max_bytes=10**7).lrn

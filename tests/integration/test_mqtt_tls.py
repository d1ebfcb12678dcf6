"""The MQTT link secured, against a real mosquitto locked down as deployed (deploy/mosquitto/:
TLS only, logins from a password file, ACLs), with certificates from a CA made for the test.

`elbridge consume` (the real CLI process) takes what a customs user published over TLS, writes
it off and answers, on MQTT 5 and 3.1.1. Each user can do its part only. Every refusal (the
broker's certificate from another CA or for another host, a client certificate missing, expired
or from another CA, a wrong password) is a configuration error of one line naming the broker,
told at once, with nothing written and no password shown."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path

import pytest
from sqlalchemy import func, select

from bridge.adapters.mqtt.client import BrokerRefused, DeclarationSubscriber, unique_client_id
from bridge.adapters.store.schema import movement, processed_message
from bridge.core.envelope import mrn_from_lrn, parse_result
from bridge.services import mqtt_endpoints
from bridge.services.config import Settings, mqtt_options, settings_env
from bridge.services.consumer import consume
from bridge.services.customs_events import envelope_for_declaration_file, publish_events
from tests.fixtures_mqtt import (
    BRIDGE_USER,
    CUSTOMS_USER,
    RELEASED_AT,
    store_licences,
    tt_ex010a_licence,
)

PROJECT = Path(__file__).resolve().parents[2]
EVENTS = "customs/declarations/events"
RESULTS = "customs/declarations/results"


def _run(settings: Settings, *argv: str, module: str = "bridge.entrypoints.cli", env=None):
    """A bridge command as its own process, its settings from ELBRIDGE_* variables only."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("ELBRIDGE_")}
    environ.update(settings_env(settings))
    environ.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", module, *argv],
        cwd=PROJECT,
        env=environ,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _event(wco_samples: Path, **kwargs) -> bytes:
    return envelope_for_declaration_file(
        wco_samples / "TT_EX010a.xml", event="released", event_time=RELEASED_AT, **kwargs
    )


def _processed(engine) -> int:
    with engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(processed_message)).scalar_one()


def _listener(settings: Settings, topic: str) -> DeclarationSubscriber:
    """A subscriber of `settings`' user on `topic`, with a client id of its own."""
    return mqtt_endpoints.subscriber(
        replace(settings, mqtt_shared_group=""),
        client_id=unique_client_id(settings.mqtt_username or "anonymous"),
        topic=topic,
    ).start()


def _everything_delivered(listener: DeclarationSubscriber) -> list[bytes]:
    """What the broker delivered to `listener` up to now. Closing waits for the broker to answer
    a request sent after every delivery it had queued for this connection, and the broker
    queues a message for every subscriber before it acknowledges the publisher."""
    listener.close()
    delivered = []
    while not listener.inbox.empty():
        delivered.append(listener.inbox.get_nowait().payload)
    return delivered


def _one_line(completed: subprocess.CompletedProcess) -> str:
    """The one line the command said why it stopped (the consumer process also logs)."""
    assert "Traceback" not in completed.stderr, completed.stderr
    lines = [
        line
        for line in completed.stderr.strip().splitlines()
        if line.startswith(("elbridge consume: ", "consumer: "))
    ]
    assert len(lines) == 1, completed.stderr
    return lines[0]


# ------------------------------------------------------------------------- the bridge at work


@pytest.mark.parametrize(
    ("protocol", "shared_group"),
    [("5", "elbridge-writeoff"), ("3.1.1", "")],
    ids=["mqtt5-shared-subscription", "mqtt3.1.1"],
)
def test_elbridge_consume_writes_off_what_customs_published_over_tls_and_answers(
    locked_mosquitto, ledger_url, engine, wco_samples, protocol, shared_group
):
    bridge = locked_mosquitto.settings_for(
        BRIDGE_USER, database_url=ledger_url, mqtt_protocol=protocol, mqtt_shared_group=shared_group
    )
    customs = replace(locked_mosquitto.customs, mqtt_protocol=protocol)
    store_licences(engine, [tt_ex010a_licence()])
    opened = _run(bridge, "consume", "--open-session")
    assert opened.returncode == 0, opened.stderr
    results = _listener(customs, RESULTS)
    event = _event(wco_samples)
    assert publish_events(customs, [event]) == 1

    consumed = _run(bridge, "consume", "--idle", "1")

    assert consumed.returncode == 0, consumed.stderr
    assert "messages=1, applied=1" in consumed.stdout
    assert "results=1" in consumed.stdout
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(movement)).scalar_one() == 1
    (answer,) = [parse_result(payload) for payload in _everything_delivered(results)]
    assert answer.in_reply_to == json.loads(event)["message_id"]
    assert answer.outcome == "applied"
    password = locked_mosquitto.passwords[BRIDGE_USER]
    shown = opened.stdout + opened.stderr + consumed.stdout + consumed.stderr
    assert password not in shown
    assert password not in locked_mosquitto.broker.log_path.read_text()


def test_each_user_can_do_its_part_only(locked_mosquitto):
    bridge, customs = locked_mosquitto.bridge, locked_mosquitto.customs
    bridge_reading_events = _listener(bridge, EVENTS)
    customs_reading_events = _listener(customs, EVENTS)  # subscribed, but given nothing
    customs_reading_results = _listener(customs, RESULTS)

    # MQTT 5 tells the publisher: its PUBACK says "Not authorized", and nothing is delivered.
    with pytest.raises(ConnectionError, match="refused 1 messages"):
        publish_events(customs, [b"a result forged by customs"], topic=RESULTS)
    with pytest.raises(ConnectionError, match="refused 1 messages"):
        publish_events(bridge, [b"an event forged by the bridge"], topic=EVENTS)
    with pytest.raises(ConnectionError, match="refused 1 messages"):
        publish_events(customs, [b"anywhere else"], topic="customs/declarations/other")
    assert publish_events(customs, [b"an event"], topic=EVENTS) == 1
    assert publish_events(bridge, [b"a result"], topic=RESULTS) == 1

    assert _everything_delivered(bridge_reading_events) == [b"an event"]
    assert _everything_delivered(customs_reading_results) == [b"a result"]
    assert _everything_delivered(customs_reading_events) == []


def test_the_bridge_cannot_read_results_nor_anything_else(locked_mosquitto):
    bridge, customs = locked_mosquitto.bridge, locked_mosquitto.customs
    bridge_reading_results = _listener(bridge, RESULTS)
    bridge_reading_all = _listener(bridge, "#")
    customs_reading_results = _listener(customs, RESULTS)
    assert publish_events(bridge, [b"a result"], topic=RESULTS) == 1
    assert _everything_delivered(customs_reading_results) == [b"a result"]
    assert _everything_delivered(bridge_reading_results) == []
    assert _everything_delivered(bridge_reading_all) == []


# ----------------------------------------------------------------------------------- refusals


def test_a_broker_certificate_from_another_ca_stops_elbridge_consume_at_once(
    locked_mosquitto, other_ca, ledger_url, engine, wco_samples
):
    bridge = locked_mosquitto.settings_for(BRIDGE_USER, database_url=ledger_url)
    store_licences(engine, [tt_ex010a_licence()])
    mqtt_endpoints.open_session(bridge)
    assert publish_events(locked_mosquitto.customs, [_event(wco_samples)]) == 1

    refused = _run(replace(bridge, mqtt_ca_file=str(other_ca.ca_file)), "consume", "--idle", "1")

    assert refused.returncode == 2
    line = _one_line(refused)
    assert f"MQTT broker 127.0.0.1:{locked_mosquitto.broker.port}: TLS failed" in line
    assert "the broker's certificate was refused" in line
    assert str(other_ca.ca_file) in line
    assert _processed(engine) == 0
    # Fixed, the event that waited in the session is written off.
    fixed = _run(bridge, "consume", "--idle", "1")
    assert fixed.returncode == 0, fixed.stderr
    assert "messages=1, applied=1" in fixed.stdout


@pytest.mark.parametrize(
    ("server", "reason"),
    [
        ("for another host", "IP address mismatch"),
        ("expired", "certificate has expired"),
    ],
)
def test_a_broker_certificate_for_another_host_or_expired_is_refused(
    locked_mosquitto_factory, tls_ca, server, reason
):
    if server == "expired":
        certificate = tls_ca.expired("127.0.0.1")
    else:
        certificate = tls_ca.issue("mqtt.elsewhere.test", common_name="mqtt.elsewhere.test")
    locked = locked_mosquitto_factory(server=certificate)
    with pytest.raises(BrokerRefused) as refused:
        DeclarationSubscriber(mqtt_options(locked.bridge)).start()
    message = str(refused.value)
    assert message.startswith(f"MQTT broker 127.0.0.1:{locked.broker.port}: TLS failed:")
    assert "the broker's certificate was refused" in message
    assert reason in message


def test_a_client_without_tls_is_told_the_listener_wants_it(locked_mosquitto):
    plain = replace(locked_mosquitto.bridge, mqtt_ca_file="")
    with pytest.raises(BrokerRefused, match="is it a TLS listener"):
        DeclarationSubscriber(mqtt_options(plain)).start()


@pytest.mark.parametrize(
    ("certificate", "reason"),
    [
        ("none", "the broker requires a client certificate and none was given"),
        ("expired", "the broker refused the client certificate"),
        ("other CA", "the broker refused the client certificate"),
    ],
)
def test_a_broker_that_requires_client_certificates_refuses_a_bad_one(
    locked_mosquitto_factory, tls_ca, other_ca, certificate, reason
):
    locked = locked_mosquitto_factory(require_certificate=True)
    pem = {"none": None, "expired": tls_ca.expired("elbridge"), "other CA": other_ca.client("x")}
    chosen = pem[certificate]
    settings = replace(
        locked.bridge,
        mqtt_cert_file=str(chosen.cert) if chosen else "",
        mqtt_key_file=str(chosen.key) if chosen else "",
    )
    with pytest.raises(BrokerRefused) as refused:
        DeclarationSubscriber(mqtt_options(settings)).start()
    assert f"MQTT broker 127.0.0.1:{locked.broker.port}: TLS failed: {reason}" in str(refused.value)
    if certificate == "expired":
        assert str(refused.value).endswith("it has expired")


@pytest.mark.parametrize("certificate", ["none", "expired", "other CA"])
def test_the_refusal_is_named_even_when_the_brokers_reset_overtakes_its_alert(
    locked_mosquitto_factory, tls_ca, other_ca, certificate
):
    # paho's CONNECT follows the handshake at once, so the broker's close can be a reset that
    # discards the TLS 1.3 alert: the connection is then just "lost". The second handshake,
    # which sends nothing, must still read why.
    from bridge.adapters.mqtt.client import _tls_refusal

    locked = locked_mosquitto_factory(require_certificate=True)
    pem = {"none": None, "expired": tls_ca.expired("elbridge"), "other CA": other_ca.client("x")}
    chosen = pem[certificate]
    settings = replace(
        locked.bridge,
        mqtt_cert_file=str(chosen.cert) if chosen else "",
        mqtt_key_file=str(chosen.key) if chosen else "",
    )
    refusal = _tls_refusal(mqtt_options(settings))
    expected = {
        "none": "the broker requires a client certificate and none was given",
        "expired": f"the broker refused the client certificate {settings.mqtt_cert_file}: it has"
        " expired",
        "other CA": f"the broker refused the client certificate {settings.mqtt_cert_file}:",
    }[certificate]
    assert refusal is not None
    assert refusal.startswith(f"MQTT broker 127.0.0.1:{locked.broker.port}: TLS failed: {expected}")
    own = tls_ca.client("elbridge")
    accepted = replace(locked.bridge, mqtt_cert_file=str(own.cert), mqtt_key_file=str(own.key))
    assert _tls_refusal(mqtt_options(accepted), timeout=0.5) is None  # waits for a CONNECT


def test_a_broker_that_requires_client_certificates_takes_the_bridge_and_customs_with_theirs(
    locked_mosquitto_factory, tls_ca, wco_samples, tmp_path
):
    locked = locked_mosquitto_factory(require_certificate=True)
    own, theirs = tls_ca.client("elbridge"), tls_ca.client("customs")
    bridge = replace(locked.bridge, mqtt_cert_file=str(own.cert), mqtt_key_file=str(own.key))
    customs = replace(
        locked.customs, mqtt_cert_file=str(theirs.cert), mqtt_key_file=str(theirs.key)
    )
    events = _listener(bridge, EVENTS)
    assert publish_events(customs, [_event(wco_samples)]) == 1
    assert len(_everything_delivered(events)) == 1


@pytest.mark.parametrize("module", ["bridge.entrypoints.cli", "bridge.entrypoints.consumer"])
def test_a_wrong_password_is_refused_in_one_line_that_does_not_show_it(
    locked_mosquitto, ledger_url, engine, tmp_path, module
):
    wrong = "not-the-password-" + locked_mosquitto.passwords[CUSTOMS_USER]
    secret = tmp_path / "mqtt-password"
    secret.write_text(wrong + "\n", encoding="utf-8")
    bridge = locked_mosquitto.settings_for(BRIDGE_USER, database_url=ledger_url)
    argv = ["consume", "--idle", "1"] if module.endswith("cli") else ["--idle-seconds", "1"]

    refused = _run(
        replace(bridge, mqtt_password=None),  # the password comes from the file only
        *argv,
        module=module,
        env={"ELBRIDGE_MQTT_PASSWORD_FILE": str(secret)},
    )

    assert refused.returncode == 2
    line = _one_line(refused)
    assert f"MQTT broker 127.0.0.1:{locked_mosquitto.broker.port}: login refused" in line
    assert "user 'elbridge'" in line
    assert wrong not in refused.stdout + refused.stderr
    assert _processed(engine) == 0


def test_settings_that_cannot_work_are_refused_before_connecting(tmp_path):
    with pytest.raises(Exception, match="ELBRIDGE_MQTT_SHARED_GROUP='group' needs MQTT 5"):
        mqtt_options(Settings(mqtt_protocol="3.1.1", mqtt_shared_group="group"))
    with pytest.raises(Exception, match=r"ELBRIDGE_MQTT_PROTOCOL='4': use 5 or 3\.1\.1"):
        mqtt_options(Settings(mqtt_protocol="4"))
    with pytest.raises(Exception, match=r"ELBRIDGE_MQTT_CA_FILE is\s+not"):
        mqtt_options(Settings(mqtt_cert_file="client.crt", mqtt_key_file="client.key"))
    missing = tmp_path / "no-such-ca.pem"
    with pytest.raises(Exception, match=f"CA file {missing}: no such file"):
        DeclarationSubscriber(mqtt_options(Settings(mqtt_ca_file=str(missing))))


def test_a_consumer_over_tls_carries_on_after_the_broker_restarts(
    locked_mosquitto, ledger_url, engine, wco_samples
):
    bridge = locked_mosquitto.settings_for(BRIDGE_USER, database_url=ledger_url)
    customs = locked_mosquitto.customs
    store_licences(engine, [tt_ex010a_licence(quantity="1000")])
    mqtt_endpoints.open_session(bridge)
    stop = threading.Event()
    consumer = threading.Thread(target=consume, args=(bridge, engine), kwargs={"stop": stop})
    consumer.start()
    try:
        publish_events(
            customs, [_event(wco_samples, mrn=mrn_from_lrn("tls-1", year=2026, country="GB"))]
        )
        _wait_until(lambda: _processed(engine) == 1)
        locked_mosquitto.broker.restart()  # the consumer's network thread reconnects, over TLS
        publish_events(
            customs, [_event(wco_samples, mrn=mrn_from_lrn("tls-2", year=2026, country="GB"))]
        )
        _wait_until(lambda: _processed(engine) == 2)
    finally:
        stop.set()
        consumer.join(30)
    assert not consumer.is_alive()
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(movement)).scalar_one() == 2


def _wait_until(condition, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "not within 30 s"
        time.sleep(0.05)

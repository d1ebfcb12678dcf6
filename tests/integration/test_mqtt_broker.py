"""The mosquitto broker process and the MQTT adapters, against a real broker."""

from __future__ import annotations

import socket
import time

import pytest

from bridge.adapters.mqtt.broker import start_broker
from bridge.adapters.mqtt.client import DeclarationSubscriber
from bridge.services.config import mqtt_options
from bridge.services.customs_events import publish_events


def _listening(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def test_broker_starts_in_its_folder_and_stops(tmp_path):
    with start_broker(tmp_path / "broker") as broker:
        assert _listening(broker.host, broker.port)
        config = broker.config_path.read_text()
        assert f"listener {broker.port} 127.0.0.1" in config
        assert "persistence true" in config
        assert f"persistence_location {tmp_path / 'broker'}/" in config
        assert "max_queued_messages 1000000" in config
        process = broker.process
    assert process.poll() is not None  # gone, not only asked to go
    assert not _listening(broker.host, broker.port)
    assert "mosquitto version" in (tmp_path / "broker" / "mosquitto.log").read_text()


def _take(subscriber: DeclarationSubscriber, count: int, timeout: float = 10.0):
    got = []
    deadline = time.monotonic() + timeout
    while len(got) < count and time.monotonic() < deadline:
        got += subscriber.take(count - len(got), 0.05, 0.2)
    return got


def test_unacked_messages_come_again_and_survive_a_broker_restart(mqtt_settings, mosquitto):
    options = mqtt_options(mqtt_settings)  # the adapter's own options, from the settings
    DeclarationSubscriber(options).start().close()  # the session exists from now on
    payloads = [f"event {n}".encode() for n in range(5)]
    assert publish_events(mqtt_settings, payloads) == 5

    mosquitto.restart()  # queued messages of an offline session are persisted
    assert mosquitto.port == mqtt_settings.mqtt_port

    subscriber = DeclarationSubscriber(options).start()
    first = _take(subscriber, 5)
    subscriber.close()  # without acking
    assert [m.payload for m in first] == payloads

    subscriber = DeclarationSubscriber(options).start()
    again = _take(subscriber, 5)
    assert [m.payload for m in again] == payloads
    assert all(m.duplicate for m in again)  # the broker marks what it sends again
    assert subscriber.ack(again) == 5
    subscriber.close()

    with DeclarationSubscriber(options) as subscriber:
        assert subscriber.take(10, 0.05, 0.5) == []


def test_publishing_to_a_broker_that_is_not_there_fails_clearly(mqtt_settings, mosquitto):
    mosquitto.stop()
    with pytest.raises(OSError):
        publish_events(mqtt_settings, [b"x"], timeout=2)


def test_acks_sent_right_before_closing_are_not_lost(mqtt_settings):
    # With more messages in flight than taken, closing the socket resets the connection; the
    # acks must have reached the broker before that.
    settings = mqtt_settings.with_overrides(batch_size=50)  # 100 in flight
    options = mqtt_options(settings)
    DeclarationSubscriber(options).start().close()
    publish_events(settings, [bytes(20_000)] * 200)

    subscriber = DeclarationSubscriber(options).start()
    taken = _take(subscriber, 50)
    assert subscriber.ack(taken) == 50
    subscriber.close()

    with DeclarationSubscriber(options) as subscriber:
        rest = _take(subscriber, 150)
        assert subscriber.take(10, 0.05, 0.3) == []  # and not one more
        assert subscriber.ack(rest) == 150

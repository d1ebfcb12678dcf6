"""Moving declaration events through a real mosquitto for the benchmarks: a backlog published
into a consumer's persistent session before the clock starts, the bare consumer that is the
limit, the bridge's own consumer draining the same backlog, and the results it answers with."""

from __future__ import annotations

import json
import subprocess
import threading
import time
from collections.abc import Sequence
from typing import Any

import paho.mqtt.client as mqtt
from lxml import etree
from sqlalchemy import Engine

from bridge.services.config import Settings
from bridge.services.consumer import ConsumeReport, consume
from bridge.services.mqtt_endpoints import open_session
from bridge.services.mqtt_endpoints import publisher as Publisher
from bridge.testkit.mqtt_sessions import connect_persistent

# The bare consumer parses as hardened a parser as the bridge's: no entities, no network.
_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)


def publish_backlog(settings: Settings, envelopes: Sequence[bytes], topic: str) -> float:
    """Publish every envelope at QoS 1 (each PUBACK awaited); seconds it took."""
    started = time.perf_counter()
    with Publisher(settings).start() as publisher:
        for start in range(0, len(envelopes), 5000):
            publisher.publish(topic, envelopes[start : start + 5000], timeout=120)
    return time.perf_counter() - started


class BareConsumer:
    """The limit: a paho client (MQTT v5, persistent session, QoS 1, manual ack) that reads each
    message's JSON, parses the declaration in it with lxml and acks it; nothing else."""

    def __init__(self, settings: Settings, client_id: str, topic: str, receive_maximum: int):
        self.settings = settings
        self.topic = topic
        self.client_id = client_id
        self.receive_maximum = receive_maximum
        self.count = 0
        self.expected = 0
        self.done = threading.Event()
        self.subscribed = threading.Event()
        self.first: float | None = None
        self.client = self._client()

    def _client(self) -> mqtt.Client:
        client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=self.client_id,
            protocol=mqtt.MQTTv5,
            manual_ack=True,
        )
        client.on_connect = lambda c, *a: c.subscribe(self.topic, qos=1)
        client.on_subscribe = lambda *a: self.subscribed.set()
        client.on_message = self._on_message
        return client

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        if self.first is None:
            self.first = time.perf_counter()
        document = json.loads(message.payload)
        payload = document.get("payload")
        if payload:
            etree.fromstring(payload.encode("utf-8"), _PARSER)
        client.ack(message.mid, message.qos)
        self.count += 1
        if self.count >= self.expected:
            self.done.set()

    def _connect(self) -> None:
        connect_persistent(
            self.client,
            self.settings.mqtt_host,
            self.settings.mqtt_port,
            receive_maximum=self.receive_maximum,
        )

    def open_session(self) -> None:
        """Connect once so the broker keeps what is published for this client."""
        self.expected = 1 << 60
        self._connect()
        if not self.subscribed.wait(15):
            raise ConnectionError("the bare consumer got no subscription")
        self.client.disconnect()
        self.client.loop_stop()
        self.client = self._client()
        self.subscribed.clear()

    def drain(self, expected: int, timeout: float) -> float:
        """Consume `expected` messages from the session; seconds from connecting to the last
        ack."""
        self.expected = expected
        started = time.perf_counter()
        self._connect()
        if not self.done.wait(timeout):
            raise TimeoutError(f"the bare consumer took {self.count} of {expected} messages")
        elapsed = time.perf_counter() - started
        self.client.disconnect()
        self.client.loop_stop()
        return elapsed


def limit_rate(settings: Settings, envelopes: Sequence[bytes], *, timeout: float) -> dict:
    """Messages per second the bare consumer drains a backlog of `envelopes` at."""
    topic = settings.mqtt_topic + "/limit"
    bare = BareConsumer(
        settings, settings.mqtt_client_id + "-limit", topic, 2 * settings.batch_size
    )
    bare.open_session()
    published = publish_backlog(settings, envelopes, topic)
    seconds = bare.drain(len(envelopes), timeout)
    return {"rate": len(envelopes) / seconds, "seconds": seconds, "publish_seconds": published}


def bridge_rate(
    settings: Settings, engine: Engine, envelopes: Sequence[bytes], *, timeout: float
) -> tuple[dict, ConsumeReport]:
    """Messages per second the bridge's consumer (`bridge.services.consumer.consume`: every rule,
    durable commits, results published) drains the same backlog at."""
    open_session(settings)
    published = publish_backlog(settings, envelopes, settings.mqtt_topic)
    started = time.perf_counter()
    report = consume(settings, engine, max_messages=len(envelopes), max_seconds=timeout)
    seconds = time.perf_counter() - started
    if report.messages < len(envelopes):
        raise TimeoutError(f"the consumer took {report.messages} of {len(envelopes)} messages")
    return {
        "rate": len(envelopes) / seconds,
        "seconds": seconds,
        "publish_seconds": published,
    }, report


class ResultWatcher:
    """Subscribes to the result topic and notes when the first answer to each event arrives
    (by the message id it answers), whatever its outcome and however often it is answered."""

    def __init__(self, settings: Settings) -> None:
        self.arrived: dict[str, float] = {}
        self.subscribed = threading.Event()
        self.lock = threading.Lock()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        self.client.on_connect = lambda c, *a: c.subscribe(settings.mqtt_result_topic, qos=1)
        self.client.on_subscribe = lambda *a: self.subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect(settings.mqtt_host, settings.mqtt_port, keepalive=30)
        self.client.loop_start()
        if not self.subscribed.wait(15):
            raise ConnectionError("the result watcher got no subscription")

    @property
    def count(self) -> int:
        """Events answered so far."""
        return len(self.arrived)

    def _on_message(self, client, userdata, message) -> None:
        now = time.perf_counter()
        answered = json.loads(message.payload).get("in_reply_to")
        with self.lock:
            self.arrived.setdefault(answered, now)

    def wait_for(self, ids: Sequence[str], timeout: float) -> int:
        """Until each of `ids` is answered or `timeout` passes: how many are not."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                missing = sum(1 for i in ids if i not in self.arrived)
            if not missing:
                return 0
            time.sleep(0.05)
        return missing

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def group_rate(
    settings: Settings,
    envelopes: Sequence[bytes],
    consumers: Sequence[tuple[subprocess.Popen, Any]],
    *,
    timeout: float,
) -> dict:
    """Messages per second `consumers` (processes already connected, on one shared
    subscription to `settings.mqtt_topic`) take the events at, from the first publish until
    every event has been answered on the result topic."""
    counter = ResultWatcher(settings)
    try:
        started = time.perf_counter()
        published = publish_backlog(settings, envelopes, settings.mqtt_topic)
        deadline = time.monotonic() + timeout
        while counter.count < len(envelopes):
            exited = [child.returncode for child, _ in consumers if child.poll() is not None]
            if exited or time.monotonic() > deadline:
                raise TimeoutError(
                    f"{counter.count} of {len(envelopes)} events answered"
                    + (f"; consumers exited with {exited}" if exited else "")
                )
            time.sleep(0.01)
        seconds = time.perf_counter() - started
    finally:
        counter.close()
    return {"rate": len(envelopes) / seconds, "seconds": seconds, "publish_seconds": published}

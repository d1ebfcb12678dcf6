"""Publishing declaration events (the customs simulator's side, and tests): QoS 1, every
PUBACK awaited, never more in flight than the broker accepts."""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path

import paho.mqtt.client as mqtt

from bridge.config import Settings
from bridge.declaration import read_declaration
from bridge.envelope import EventKind, build_envelope, mrn_from_lrn
from bridge.mqtt.client import new_client, unique_client_id

WINDOW = 1000  # at most this many PUBLISH without PUBACK (less when the broker says so)


def publish_events(
    settings: Settings,
    envelopes: Iterable[bytes],
    *,
    topic: str | None = None,
    timeout: float = 60.0,
) -> int:
    """Publish each envelope at QoS 1 to `topic` (settings.mqtt_topic by default) and return
    once the broker has acknowledged every one (their count); raises on refusal or timeout."""
    topic = topic or settings.mqtt_topic
    client = new_client(unique_client_id(f"{settings.mqtt_client_id}-publisher"), settings=settings)
    client.max_inflight_messages_set(0)  # the window below does the flow control
    connected = threading.Event()
    state: dict[str, object] = {"window": WINDOW, "refused": None, "failed": []}

    def on_connect(client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            state["refused"] = str(reason_code)
        elif properties is not None and hasattr(properties, "ReceiveMaximum"):
            state["window"] = min(WINDOW, properties.ReceiveMaximum)
        connected.set()

    def on_publish(client, userdata, mid, reason_code, properties) -> None:
        if reason_code.is_failure:
            state["failed"].append((mid, str(reason_code)))

    client.on_connect = on_connect
    client.on_publish = on_publish
    client.connect(settings.mqtt_host, settings.mqtt_port, keepalive=30, clean_start=True)
    client.loop_start()
    try:
        if not connected.wait(timeout) or state["refused"]:
            raise ConnectionError(
                f"could not publish to {settings.mqtt_host}:{settings.mqtt_port}:"
                f" {state['refused'] or 'no answer'}"
            )
        window = int(state["window"])
        pending: deque[mqtt.MQTTMessageInfo] = deque()
        sent = 0
        for envelope in envelopes:
            while len(pending) >= window:
                _await(pending.popleft(), timeout)
            info = client.publish(topic, envelope, qos=1)
            if info.rc not in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN):
                raise ConnectionError(f"publish failed: {mqtt.error_string(info.rc)}")
            pending.append(info)
            sent += 1
        while pending:
            _await(pending.popleft(), timeout)
        if state["failed"]:
            raise ConnectionError(f"the broker refused {len(state['failed'])} messages")
        return sent
    finally:
        client.disconnect()
        client.loop_stop()


def _await(info: mqtt.MQTTMessageInfo, timeout: float) -> None:
    info.wait_for_publish(timeout)
    if not info.is_published():
        raise TimeoutError(f"no PUBACK for message {info.mid} within {timeout}s")


def envelope_for_declaration_file(
    path: Path,
    *,
    event: EventKind | str,
    mrn: str | None = None,
    version: int = 1,
    event_time: datetime,
    message_id: str | None = None,
    country: str | None = None,
) -> bytes:
    """An envelope carrying the WCO declaration in `path`.

    MRN: `mrn` when given, else the declaration's own ID, else one derived from its LRN
    (`mrn_from_lrn`: event year, customs country, a hash of the LRN), so that the same file
    always gets the same MRN. Message id: `message_id`, else `<mrn>-<event>-v<version>`, so
    publishing the same event twice is recognised as a redelivery."""
    data = Path(path).read_bytes()
    declaration = read_declaration(data, max_bytes=len(data) + 1, source=str(path))
    if mrn is None:
        mrn = declaration.mrn
    if mrn is None:
        where = country or declaration.country or "EU"
        mrn = mrn_from_lrn(declaration.lrn or Path(path).name, year=event_time.year, country=where)
    kind = EventKind(event)
    return build_envelope(
        message_id=message_id or f"{mrn}-{kind}-v{version}",
        mrn=mrn,
        event=kind,
        event_time=event_time,
        declaration_version=version,
        payload=data.decode("utf-8"),
        country=country,
    )

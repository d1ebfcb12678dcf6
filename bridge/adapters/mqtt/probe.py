"""Is the broker there, as the bridge reaches it? A real MQTT connection with the bridge's
options (address, TLS, login, protocol) under a client id of its own and a clean session, so
the consumer's persistent session is never touched; then, when the broker lets this login read
it, mosquitto's count of the messages it holds (`$SYS/broker/store/messages/count`).

Mosquitto has no per-session queue count: the store count covers every session's queued and
in-flight messages plus the retained ones (its own $SYS topics included), and is refreshed
every `sys_interval` (10 s by default). A broker, or an ACL, that does not give it leaves the
figure None."""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, replace

import paho.mqtt.client as mqtt

from bridge.adapters.mqtt.client import BrokerRefused, establish, new_client, unique_client_id
from bridge.adapters.mqtt.options import MqttOptions
from bridge.core.errors import ConfigError

STORE_COUNT_TOPIC = "$SYS/broker/store/messages/count"
# The broker sends a retained message right after its SUBACK; this is how long to wait for it.
SYS_WAIT = 0.5


@dataclass(frozen=True)
class BrokerProbe:
    """`up`: a connection was made and the login accepted; `reason`: why not (naming the broker);
    `seconds`: how long the check took; `stored_messages`: the broker's store count, or None."""

    up: bool
    reason: str
    seconds: float
    stored_messages: int | None = None


def probe_broker(options: MqttOptions, timeout: float) -> BrokerProbe:
    """Connect to the broker of `options` within `timeout` seconds and disconnect; never raises
    for a broker that is away, refuses TLS or the login (that is the answer)."""
    started = time.monotonic()
    deadline = started + timeout
    probe = replace(options, client_id=unique_client_id("elbridge-health"))
    try:
        client = new_client(probe.client_id, options=probe)
        establish(client, probe, deadline, wait_for_broker=False)
    except (BrokerRefused, ConfigError, ConnectionError) as error:
        return BrokerProbe(False, str(error), time.monotonic() - started)
    except OSError as error:  # name resolution and the like
        reason = f"MQTT broker {options.address}: not reachable ({error})"
        return BrokerProbe(False, reason, time.monotonic() - started)
    try:
        stored = _store_count(client, min(deadline, time.monotonic() + 2 * SYS_WAIT))
    finally:
        with contextlib.suppress(Exception):
            client.disconnect()
    return BrokerProbe(True, "", time.monotonic() - started, stored)


def _store_count(client: mqtt.Client, deadline: float) -> int | None:
    found: list[bytes] = []
    subscribed: list[float] = []

    def on_message(client, userdata, message) -> None:
        if message.topic == STORE_COUNT_TOPIC:
            found.append(message.payload)

    def on_subscribe(client, userdata, mid, reason_codes, properties) -> None:
        subscribed.append(time.monotonic())

    client.on_message = on_message
    client.on_subscribe = on_subscribe
    result, _ = client.subscribe(STORE_COUNT_TOPIC, qos=0)
    if result != mqtt.MQTT_ERR_SUCCESS:
        return None
    while not found and time.monotonic() < deadline:
        if subscribed and time.monotonic() > subscribed[0] + SYS_WAIT:
            break  # subscribed, and nothing came: not exposed to this login
        if client.loop(0.05) != mqtt.MQTT_ERR_SUCCESS:
            break
    try:
        return int(found[0]) if found else None
    except ValueError:
        return None

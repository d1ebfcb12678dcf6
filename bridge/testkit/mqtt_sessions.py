"""The customs side's MQTT clients in the benchmarks and the fault-injection suite: connected
with a persistent session, so that what the broker holds for them survives a reconnect."""

from __future__ import annotations

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

SESSION_EXPIRY = 3600  # seconds the broker keeps a session its client has left


def connect_persistent(
    client: mqtt.Client, host: str, port: int, *, receive_maximum: int | None = None
) -> None:
    """Connect `client` (MQTT v5) to `host`:`port` resuming its session (clean_start False,
    kept SESSION_EXPIRY seconds), with at most `receive_maximum` QoS 1 messages unacked when
    given, and start its network thread."""
    properties = Properties(PacketTypes.CONNECT)
    properties.SessionExpiryInterval = SESSION_EXPIRY
    if receive_maximum is not None:
        properties.ReceiveMaximum = receive_maximum
    client.connect(host, port, keepalive=30, clean_start=False, properties=properties)
    client.loop_start()

"""What the MQTT adapters need to reach the broker and hold a session: plain values, filled in by
the caller (bridge.services.config.mqtt_options maps the bridge's settings to them)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class MqttOptions:
    """The broker, the login, and the persistent session of a subscriber: its stable client id,
    topic, MQTT v5 shared group (empty: none) and session expiry; `batch_size` is how many
    messages the caller takes at a time (the receive window is two batches)."""

    host: str = "127.0.0.1"
    port: int = 1883
    username: str | None = None
    password: str | None = None
    client_id: str = "elbridge-writeoff"
    topic: str = "customs/declarations/events"
    shared_group: str = ""
    session_expiry: int = 7 * 24 * 3600
    batch_size: int = 500

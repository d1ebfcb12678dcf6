"""What the MQTT adapters need to reach the broker and hold a session: plain values, filled in by
the caller (bridge.services.config.mqtt_options maps the bridge's settings to them)."""

from __future__ import annotations

from dataclasses import dataclass, field

MQTT_V5 = "5"
MQTT_V311 = "3.1.1"
PROTOCOLS = (MQTT_V5, MQTT_V311)


@dataclass(frozen=True, slots=True)
class MqttOptions:
    """The broker, the login, and the persistent session of a subscriber: its stable client id,
    topic, MQTT v5 shared group (empty: none) and session expiry; `batch_size` is how many
    messages the caller takes at a time (the receive window is two batches).

    TLS is on when `ca_file` is given: the broker's certificate must chain to it and name
    `host`. `cert_file` and `key_file` are the client certificate for brokers that ask for one.
    `protocol` is "5" or "3.1.1" (no shared subscriptions, no session expiry: a 3.1.1 session
    is persistent until the broker drops it)."""

    host: str = "127.0.0.1"
    port: int = 1883
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    client_id: str = "elbridge-writeoff"
    topic: str = "customs/declarations/events"
    shared_group: str = ""
    session_expiry: int = 7 * 24 * 3600
    batch_size: int = 500
    protocol: str = MQTT_V5
    ca_file: str = ""
    cert_file: str = ""
    key_file: str = ""

    @property
    def tls(self) -> bool:
        return bool(self.ca_file)

    @property
    def v5(self) -> bool:
        return self.protocol == MQTT_V5

    @property
    def address(self) -> str:
        """host:port, as error messages name the broker."""
        return f"{self.host}:{self.port}"

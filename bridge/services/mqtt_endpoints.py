"""The bridge's MQTT endpoints on its settings (bridge.services.config.mqtt_options): the
declaration subscriber, publishers, a bare client, and the persistent session that must exist
before customs publish."""

from __future__ import annotations

from typing import TYPE_CHECKING

from bridge.adapters.mqtt import client as mqtt_client
from bridge.adapters.mqtt.client import DeclarationSubscriber
from bridge.adapters.mqtt.publisher import Publisher
from bridge.services.config import Settings, mqtt_options

if TYPE_CHECKING:
    import paho.mqtt.client as mqtt


def subscriber(
    settings: Settings, *, client_id: str | None = None, topic: str | None = None
) -> DeclarationSubscriber:
    """The declaration subscriber on `settings.mqtt_topic` (or `topic`) with the consumer's
    persistent session (`settings.mqtt_client_id`, or `client_id`); not started."""
    return DeclarationSubscriber(mqtt_options(settings), client_id=client_id, topic=topic)


def publisher(settings: Settings, *, client_id: str | None = None) -> Publisher:
    """A QoS 1 publisher to the settings' broker (a fresh client id unless given); not
    started."""
    return Publisher(mqtt_options(settings), client_id=client_id)


def new_client(
    client_id: str, *, manual_ack: bool = False, settings: Settings | None = None
) -> mqtt.Client:
    """A paho client with the settings' protocol, login and TLS (MQTT v5, no login and no TLS
    without settings)."""
    options = mqtt_options(settings) if settings is not None else None
    return mqtt_client.new_client(client_id, manual_ack=manual_ack, options=options)


def open_session(settings: Settings, timeout: float = 15.0) -> None:
    """Create (or renew) the bridge's persistent session and subscription, then disconnect.

    The broker keeps QoS 1 messages only for sessions that exist: run this once before
    customs start publishing, so that nothing sent while no consumer runs is lost."""
    mqtt_client.open_session(mqtt_options(settings), timeout)

"""Customs' side of the declaration stream, as the customs simulator, the demo and the tests play
it: an envelope around a WCO declaration file, and events published to the bridge's topic."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from pathlib import Path

from bridge.core.envelope import EventKind, envelope_for_declaration
from bridge.services.config import Settings
from bridge.services.mqtt_endpoints import publisher


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
    """An envelope carrying the WCO declaration in `path` (bridge.core.envelope's
    `envelope_for_declaration`: an MRN derived from the LRN, or from the file's name, when the
    declaration has none; message id `<mrn>-<event>-v<version>` unless given)."""
    data = Path(path).read_bytes()
    return envelope_for_declaration(
        data,
        source=str(path),
        name=Path(path).name,
        event=event,
        mrn=mrn,
        version=version,
        event_time=event_time,
        message_id=message_id,
        country=country,
    )


def publish_events(
    settings: Settings,
    envelopes: Iterable[bytes],
    *,
    topic: str | None = None,
    timeout: float = 60.0,
) -> int:
    """Publish each envelope at QoS 1 to `topic` (settings.mqtt_topic by default) and return
    once the broker has acknowledged every one (their count); raises on refusal or timeout."""
    with publisher(settings).start(timeout) as sender:
        return sender.publish(topic or settings.mqtt_topic, envelopes, timeout)

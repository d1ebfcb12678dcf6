"""Publishing bytes over MQTT at QoS 1, every PUBACK awaited, never more in flight than the
broker accepts: declaration events (the customs simulator's side, and tests) and the bridge's
result messages (the consumer keeps one `Publisher` open)."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterable

import paho.mqtt.client as mqtt

from bridge.adapters.mqtt.client import (
    connect_arguments,
    establish,
    new_client,
    unique_client_id,
)
from bridge.adapters.mqtt.options import MqttOptions

WINDOW = 1000  # at most this many PUBLISH without PUBACK (less when the broker says so)


class Publisher:
    """A QoS 1 publisher on a connection of its own: every PUBACK awaited, never more in
    flight than the broker accepts (its Receive Maximum). Long-lived (the consumer's result
    messages) or for one call (bridge.services.customs_events.publish_events). paho reconnects
    it when the link drops; a publication that gets no PUBACK in time raises, and the caller
    keeps what it sent."""

    def __init__(self, options: MqttOptions, *, client_id: str | None = None) -> None:
        self.options = options
        self.client = new_client(
            client_id or unique_client_id(f"{options.client_id}-publisher"),
            options=options,
        )
        self.client.max_inflight_messages_set(0)  # the window below does the flow control
        self.client.reconnect_delay_set(min_delay=1, max_delay=10)
        self.window = WINDOW
        self.failed: list[tuple[int, str]] = []
        self.client.on_connect = self._on_connect
        self.client.on_publish = self._on_publish

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:  # on a reconnect; paho tries again
            return
        if properties is not None and hasattr(properties, "ReceiveMaximum"):
            self.window = min(WINDOW, properties.ReceiveMaximum)

    def _on_publish(self, client, userdata, mid, reason_code, properties) -> None:
        if reason_code.is_failure:
            self.failed.append((mid, str(reason_code)))

    def start(self, timeout: float = 60.0) -> Publisher:
        """Connect (over TLS when the options give a CA); raises BrokerRefused when TLS fails
        or the broker refuses the login, ConnectionError when it is away (at once: the caller
        keeps what it would have sent) or does not answer in time."""
        options = self.options
        deadline = time.monotonic() + timeout
        arguments = connect_arguments(options, persistent=False)
        establish(self.client, options, deadline, wait_for_broker=False, **arguments)
        self.client.loop_start()
        return self

    def publish_nowait(self, topic: str, payload: bytes) -> mqtt.MQTTMessageInfo:
        """Hand one QoS 1 message to the client without waiting for its PUBACK (the caller
        watches `published(info)` and keeps fewer than `window` in flight). Raises
        ConnectionError while the link is down: the caller keeps the message and sends it
        again later."""
        info = self.client.publish(topic, payload, qos=1)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            raise ConnectionError(f"publish failed: {mqtt.error_string(info.rc)}")
        return info

    def publish(self, topic: str, payloads: Iterable[bytes], timeout: float = 60.0) -> int:
        """Publish each payload at QoS 1 to `topic`, in order, and return once the broker has
        acknowledged every one (their count); raises on refusal or timeout."""
        self.failed.clear()
        pending: deque[mqtt.MQTTMessageInfo] = deque()
        sent = 0
        for payload in payloads:
            while len(pending) >= self.window:
                _await(pending.popleft(), timeout)
            info = self.client.publish(topic, payload, qos=1)
            if info.rc not in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN):
                raise ConnectionError(f"publish failed: {mqtt.error_string(info.rc)}")
            pending.append(info)
            sent += 1
        while pending:
            _await(pending.popleft(), timeout)
        if self.failed:
            raise ConnectionError(f"the broker refused {len(self.failed)} messages")
        return sent

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def __enter__(self) -> Publisher:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _await(info: mqtt.MQTTMessageInfo, timeout: float) -> None:
    info.wait_for_publish(timeout)
    if not info.is_published():
        raise TimeoutError(f"no PUBACK for message {info.mid} within {timeout}s")

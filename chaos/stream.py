"""Customs' side of the stream: the generated declaration events published at QoS 1, at least
once, across broker restarts, never far ahead of what the ledger has recorded."""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable

import paho.mqtt.client as mqtt

from bridge.adapters.mqtt.client import unique_client_id
from bridge.services.config import Settings
from bridge.services.mqtt_endpoints import new_client
from bridge.testkit.mqtt_sessions import connect_persistent
from bridge.testkit.streams import SynthEvent
from chaos.oracle import Oracle

WINDOW = 500  # messages without PUBACK at most
PUBACK_TIMEOUT = 120.0  # a restart takes seconds; this long without a PUBACK is a failure


class StreamPublisher(threading.Thread):
    """Publishes `events` to settings.mqtt_topic at `rate` messages a second and feeds each to
    `oracle` as it goes, so the oracle holds exactly what was sent. Waits while the messages
    published but not yet recorded (`recorded()`) would exceed `backlog`. paho keeps what has
    no PUBACK and sends it again when it reconnects after a broker restart (at least once: the
    ledger must see a resend as a redelivery)."""

    def __init__(
        self,
        settings: Settings,
        events: Iterable[SynthEvent],
        oracle: Oracle,
        *,
        rate: float,
        backlog: int,
        recorded: Callable[[], int],
    ) -> None:
        super().__init__(name="chaos-publisher", daemon=True)
        self.settings = settings
        self.events = events
        self.oracle = oracle
        self.rate = rate
        self.backlog = backlog
        self.recorded = recorded
        self.published = 0
        self.expected = 0  # what the ledger must have recorded once all published so far is
        self.error: BaseException | None = None
        self.finished = threading.Event()
        self._halt = threading.Event()
        self.client = new_client(unique_client_id("chaos-customs"), settings=settings)
        self.client.max_inflight_messages_set(0)  # the window below does the flow control
        self.client.reconnect_delay_set(min_delay=0.2, max_delay=2)
        self.connected = threading.Event()
        self.client.on_connect = lambda *args: self.connected.set()
        # PUBACKs by packet id. A message handed over while the broker was away reports a
        # failed `rc` for good, yet paho sends it again on reconnect: only its PUBACK tells.
        self.acked: set[int] = set()
        self._acked_lock = threading.Lock()
        self.client.on_publish = self._on_publish

    def _on_publish(self, client, userdata, mid, reason_code, properties) -> None:
        with self._acked_lock:
            self.acked.add(mid)

    def run(self) -> None:
        try:
            self.client.connect(self.settings.mqtt_host, self.settings.mqtt_port, keepalive=30)
            self.client.loop_start()
            if not self.connected.wait(30):
                raise ConnectionError("the customs publisher could not connect")
            self._publish_all()
        except BaseException as error:  # reported by the run, which then stops
            self.error = error
        finally:
            self.finished.set()

    def _publish_all(self) -> None:
        in_flight: deque[tuple[int, float]] = deque()
        topic = self.settings.mqtt_topic
        started = time.monotonic()
        for index, event in enumerate(self.events):
            pause = started + index / self.rate - time.monotonic()
            if pause > 0 and self._halt.wait(pause):
                return
            self.oracle.add(event)
            self.expected = self.oracle.expected_processed
            while self.expected - self.recorded() > self.backlog:
                if self._halt.wait(0.05):
                    return
            while len(in_flight) >= WINDOW:
                self._settle(in_flight, wait=True)
            info = self.client.publish(topic, event.envelope, qos=1)
            if info.rc not in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN):
                raise ConnectionError(f"publish failed: {mqtt.error_string(info.rc)}")
            in_flight.append((info.mid, time.monotonic()))
            self.published += 1
            self._settle(in_flight, wait=False)
        while in_flight:
            if self._halt.is_set():
                return
            self._settle(in_flight, wait=True)

    def _settle(self, in_flight: deque, *, wait: bool) -> None:
        while in_flight:
            mid, sent = in_flight[0]
            with self._acked_lock:
                acked = mid in self.acked
                self.acked.discard(mid)  # paho may give the packet id to a later message
            if acked:
                in_flight.popleft()
                continue
            if time.monotonic() - sent > PUBACK_TIMEOUT:
                raise TimeoutError(f"no PUBACK for message {mid} in {PUBACK_TIMEOUT:.0f} s")
            if not wait:
                return
            time.sleep(0.005)

    def stop(self) -> None:
        self._halt.set()
        self.join(30)
        self.client.disconnect()
        self.client.loop_stop()


class ResultListener:
    """Customs' side of the results: a persistent MQTT session on settings.mqtt_result_topic
    (so results sent while it reconnects after a broker restart wait for it), noting which
    message each result answers."""

    def __init__(self, settings: Settings) -> None:
        self.answered: set[str] = set()
        self.results = 0
        self.lock = threading.Lock()
        self.subscribed = threading.Event()
        self.client = new_client(unique_client_id("chaos-customs-results"), settings=settings)
        self.client.reconnect_delay_set(min_delay=0.2, max_delay=2)
        topic = settings.mqtt_result_topic
        self.client.on_connect = lambda client, *args: client.subscribe(topic, qos=1)
        self.client.on_subscribe = lambda *args: self.subscribed.set()
        self.client.on_message = self._on_message
        self.settings = settings

    def start(self) -> ResultListener:
        connect_persistent(self.client, self.settings.mqtt_host, self.settings.mqtt_port)
        if not self.subscribed.wait(30):
            raise ConnectionError("the customs result listener got no subscription")
        return self

    def _on_message(self, client, userdata, message) -> None:
        answered = json.loads(message.payload).get("in_reply_to")
        with self.lock:
            self.results += 1
            if isinstance(answered, str):
                self.answered.add(answered)

    def missing(self, message_ids: set[str]) -> set[str]:
        with self.lock:
            return message_ids - self.answered

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

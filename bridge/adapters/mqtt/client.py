"""The declaration subscriber: a paho-mqtt 2.x client on a persistent MQTT v5 session.

It moves bytes and decides nothing. The network thread only queues what arrives; the caller
takes messages in batches and acks them itself (manual ack) once they are safely stored, in
arrival order. Unacked messages stay in the broker's session and come again on reconnect."""

from __future__ import annotations

import logging
import queue
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from types import TracebackType

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from bridge.adapters.mqtt.options import MqttOptions

log = logging.getLogger(__name__)

MAX_RECEIVE = 65535  # the MQTT v5 ceiling of Receive Maximum


@dataclass(frozen=True, slots=True)
class Received:
    topic: str
    payload: bytes
    mid: int
    qos: int
    connection: int  # which connection delivered it: a packet id means nothing on another
    duplicate: bool  # the broker says it may have been delivered before


def new_client(
    client_id: str, *, manual_ack: bool = False, options: MqttOptions | None = None
) -> mqtt.Client:
    """A paho client for MQTT v5 with the callback API version 2 and the options' login."""
    client = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2,
        client_id=client_id,
        protocol=mqtt.MQTTv5,
        manual_ack=manual_ack,
    )
    if options is not None and options.username:
        client.username_pw_set(options.username, options.password)
    return client


class DeclarationSubscriber:
    """Subscribes `options.topic` at QoS 1 with the stable client id `options.client_id`,
    clean_start=False and SessionExpiryInterval `options.session_expiry`, so that what is not
    acked survives a crash. With `options.shared_group` the subscription is shared
    ($share/<group>/<topic>): each consumer of the group has its own client id and session,
    and each event goes to one."""

    def __init__(
        self, options: MqttOptions, *, client_id: str | None = None, topic: str | None = None
    ) -> None:
        self.options = options
        self.topic = topic or options.topic
        # With a shared group the broker gives each event to one of the group's subscribers.
        group = options.shared_group
        self.subscription = f"$share/{group}/{self.topic}" if group else self.topic
        self.client_id = client_id or options.client_id
        self.inbox: queue.SimpleQueue[Received] = queue.SimpleQueue()
        self.subscribed = threading.Event()
        self.disconnected = threading.Event()
        self.barrier = threading.Event()
        self.refused: str | None = None
        self.connection = 0
        self._lock = threading.Lock()
        # The network thread waits here while the inbox holds a whole window (see _on_message).
        self.window = max(1, min(MAX_RECEIVE, 2 * options.batch_size))
        self._room = threading.Condition()
        self._closing = False
        self.client = new_client(self.client_id, manual_ack=True, options=options)
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = self._on_message
        self.client.on_disconnect = self._on_disconnect
        self.client.on_unsubscribe = self._on_unsubscribe
        self.client.reconnect_delay_set(min_delay=1, max_delay=10)

    # network thread -------------------------------------------------------------------------

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            self.refused = f"broker refused the connection: {reason_code}"
            log.error(self.refused)
            return
        with self._lock:
            self.connection += 1
        log.info("connected (session present: %s)", flags.session_present)
        # The session keeps the subscription, but subscribing again costs nothing and covers
        # a session the broker has expired.
        client.subscribe(self.subscription, qos=1)

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties) -> None:
        if any(code.is_failure for code in reason_codes):
            self.refused = f"broker refused the subscription to {self.subscription}: {reason_codes}"
            log.error(self.refused)
            return
        self.subscribed.set()

    def _on_message(self, client, userdata, message) -> None:
        # The broker should send no more unacked messages than the Receive Maximum asked for
        # (`window`), but mosquitto 2.0 sends more once acks come back, up to the whole
        # session: hold the network thread (so TCP holds the rest in the broker) until the
        # consumer has taken some, instead of queueing them all in memory. Only while
        # subscribed: a session's messages may come before the SUBACK that start() waits for.
        with self._room:
            while (
                self.inbox.qsize() >= self.window and self.subscribed.is_set() and not self._closing
            ):
                self._room.wait(1.0)
        self.inbox.put(
            Received(
                message.topic,
                message.payload,
                message.mid,
                message.qos,
                self.connection,
                bool(message.dup),
            )
        )

    def _on_unsubscribe(self, client, userdata, mid, reason_codes, properties) -> None:
        self.barrier.set()

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        self.subscribed.clear()
        self.disconnected.set()
        if reason_code.is_failure:
            log.warning("disconnected from the broker: %s (reconnecting)", reason_code)

    # caller ---------------------------------------------------------------------------------

    def start(self, timeout: float = 15.0) -> DeclarationSubscriber:
        properties = Properties(PacketTypes.CONNECT)
        properties.SessionExpiryInterval = self.options.session_expiry
        # Acks come a batch at a time: allow two batches in flight so the next one is arriving
        # while the current one is stored.
        properties.ReceiveMaximum = max(1, min(MAX_RECEIVE, 2 * self.options.batch_size))
        # Connected by the network thread, which tries again while the broker is away (say,
        # restarting) until the timeout below: a consumer started then waits, it does not die.
        self.client.connect_async(
            self.options.host,
            self.options.port,
            keepalive=30,
            clean_start=False,
            properties=properties,
        )
        self.client.loop_start()
        deadline = time.monotonic() + timeout
        while not self.subscribed.wait(0.05):
            if self.refused or time.monotonic() > deadline:
                self.close()
                raise ConnectionError(
                    self.refused
                    or f"no subscription to {self.subscription} on"
                    f" {self.options.host}:{self.options.port} within {timeout}s"
                )
        return self

    def take(self, limit: int, batch_wait: float, first_wait: float) -> list[Received]:
        """Up to `limit` messages: waits at most `first_wait` seconds for the first, then
        gathers more until `limit` or until `batch_wait` seconds after the first."""
        try:
            first = self.inbox.get(timeout=max(0.0, first_wait))
        except queue.Empty:
            return []
        batch = [first]
        deadline = time.monotonic() + batch_wait
        while len(batch) < limit:
            try:
                batch.append(self.inbox.get_nowait())
                continue
            except queue.Empty:
                pass
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            try:
                batch.append(self.inbox.get(timeout=remaining))
            except queue.Empty:
                break
        with self._room:
            self._room.notify_all()  # room in the inbox again
        return batch

    def ack(self, messages: Sequence[Received]) -> int:
        """Ack `messages` in the order given. Messages of an earlier connection are skipped:
        the broker sends them again on this one. Returns how many were acked."""
        acked = 0
        with self._lock:  # no reconnect in between: a packet id belongs to one connection
            current = self.connection
            for message in messages:
                if message.qos > 0 and message.connection == current:
                    self.client.ack(message.mid, message.qos)
                    acked += 1
        return acked

    def close(self, timeout: float = 10.0) -> None:
        """Disconnect once the broker has taken every ack sent before.

        Closing a socket that still holds unread messages makes TCP reset the connection, and
        a reset can throw away acks the broker had not read yet. So first a round trip the
        broker answers only after reading everything before it (an UNSUBSCRIBE of a topic
        nobody uses), then DISCONNECT, then the network thread stops."""
        with self._room:  # the network thread must not stay held: it reads the answers
            self._closing = True
            self._room.notify_all()
        try:
            if self.subscribed.is_set():
                self.barrier.clear()
                result, _ = self.client.unsubscribe(f"elbridge/{self.client_id}/ack-barrier")
                if result == mqtt.MQTT_ERR_SUCCESS:
                    self.barrier.wait(timeout)
            self.disconnected.clear()
            if self.client.disconnect() == mqtt.MQTT_ERR_SUCCESS:
                self.disconnected.wait(timeout)
        finally:
            self.client.loop_stop()

    def __enter__(self) -> DeclarationSubscriber:
        return self.start()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.close()


def unique_client_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def open_session(options: MqttOptions, timeout: float = 15.0) -> None:
    """Create (or renew) the bridge's persistent session and subscription, then disconnect.

    The broker keeps QoS 1 messages only for sessions that exist: run this once before
    customs start publishing, so that nothing sent while no consumer runs is lost."""
    DeclarationSubscriber(options).start(timeout).close()

"""The declaration subscriber: a paho-mqtt 2.x client on a persistent session (MQTT v5, or
3.1.1 with clean_session False), over TLS when the options give a CA.

It moves bytes and decides nothing. The network thread only queues what arrives; the caller
takes messages in batches and acks them itself (manual ack) once they are safely stored, in
arrival order. Unacked messages stay in the broker's session and come again on reconnect.

The first connection is made in the caller's thread (`establish`), so that what cannot work as
configured (a broker certificate not trusted or naming another host, a client certificate
refused, a login refused) is told at once, as a BrokerRefused naming the broker and the
reason, and is not retried like a broker that is away."""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import re
import socket
import ssl
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from bridge.adapters.mqtt.options import MQTT_V5, MQTT_V311, PROTOCOLS, MqttOptions
from bridge.core.errors import ConfigError

log = logging.getLogger(__name__)

MAX_RECEIVE = 65535  # the MQTT v5 ceiling of Receive Maximum
KEEPALIVE = 30
# A connection the broker closes before it answers CONNECT, this many times in a row, is a
# refusal (of the client certificate, or of a client without TLS on a TLS listener), not a broker
# that is away: one that is away refuses the TCP connection instead.
CLOSED_AFTER_HANDSHAKE = 3


class BrokerRefused(ConfigError):
    """The broker cannot be used as configured: TLS failed (its certificate not trusted, expired
    or naming another host, our client certificate missing or refused) or it refused the login
    or the subscription. Trying again does not help; the message names the broker and why."""


@dataclass(frozen=True, slots=True)
class Received:
    topic: str
    payload: bytes
    mid: int
    qos: int
    connection: int  # which connection delivered it: a packet id means nothing on another
    duplicate: bool  # the broker says it may have been delivered before


def new_client(
    client_id: str,
    *,
    manual_ack: bool = False,
    options: MqttOptions | None = None,
    persistent: bool = False,
) -> mqtt.Client:
    """A paho client with the callback API version 2 speaking the options' protocol (MQTT v5
    without options), with their login and, when they give a CA, TLS with the broker's
    certificate and host name checked. `persistent`: a 3.1.1 client keeps its session
    (clean_session False); a v5 client says so when it connects (`connect_arguments`)."""
    protocol = options.protocol if options is not None else MQTT_V5
    if protocol == MQTT_V5:
        client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=mqtt.MQTTv5,
            manual_ack=manual_ack,
        )
    elif protocol == MQTT_V311:
        client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=mqtt.MQTTv311,
            clean_session=not persistent,
            manual_ack=manual_ack,
        )
    else:
        raise ConfigError(f"MQTT protocol {protocol!r}: use one of {', '.join(PROTOCOLS)}")
    if options is not None:
        if options.username:
            client.username_pw_set(options.username, options.password)
        if options.tls:
            use_tls(client, options)
    return client


def use_tls(client: mqtt.Client, options: MqttOptions) -> None:
    """TLS on `client`: the broker's certificate must chain to `options.ca_file` and name the
    host connected to; the client certificate and key when given. A file that cannot be read
    or is not what it should be is a ConfigError naming it."""
    files = (
        ("CA file", options.ca_file),
        ("client certificate", options.cert_file),
        ("client key", options.key_file),
    )
    for what, path in files:
        if path and not os.access(path, os.R_OK):
            reason = "no such file" if not os.path.exists(path) else "not readable"
            raise ConfigError(f"MQTT broker {options.address}: {what} {path}: {reason}")
    if options.key_file and not options.cert_file:
        raise ConfigError(f"MQTT broker {options.address}: a client key without a certificate")
    try:
        client.tls_set(
            ca_certs=options.ca_file,
            certfile=options.cert_file or None,
            keyfile=options.key_file or None,
            cert_reqs=ssl.CERT_REQUIRED,
        )
    except ssl.SSLError as error:
        raise ConfigError(
            f"MQTT broker {options.address}: the TLS files cannot be used"
            f" ({', '.join(f'{what} {path}' for what, path in files if path)}): {_reason(error)}"
        ) from None
    client.tls_insecure_set(False)  # check the host name (tls_set does; say so all the same)


def connect_arguments(
    options: MqttOptions, *, persistent: bool, receive_maximum: int | None = None
) -> dict[str, Any]:
    """What `connect` takes besides the address: for MQTT v5 clean_start and the CONNECT
    properties (the session kept `options.session_expiry` seconds when `persistent`, the receive
    window); nothing for 3.1.1, whose session is chosen when the client is made."""
    if not options.v5:
        return {}
    properties = Properties(PacketTypes.CONNECT)
    if persistent:
        properties.SessionExpiryInterval = options.session_expiry
    if receive_maximum is not None:
        properties.ReceiveMaximum = receive_maximum
    return {"clean_start": not persistent, "properties": properties}


def establish(
    client: mqtt.Client,
    options: MqttOptions,
    deadline: float,
    *,
    wait_for_broker: bool = True,
    **arguments: Any,
) -> None:
    """Connect `client` in the caller's thread and wait for the broker's CONNACK (the client's
    on_connect is called as usual); its network thread is not started.

    While the broker is away (the TCP connection refused or unreachable) it is tried again
    until `deadline` (time.monotonic()), then ConnectionError; at once without
    `wait_for_broker`. A TLS failure, a connection the broker keeps closing before it answers,
    and a refused login raise BrokerRefused at once: those need the configuration fixed, not
    time."""
    errors: list[str] = []
    answer: list[Any] = []
    on_connect = client.on_connect

    def note_error(client, userdata, level, text) -> None:
        if level == mqtt.MQTT_LOG_ERR:
            errors.append(text)

    def note_answer(client, userdata, flags, reason_code, properties) -> None:
        answer.append(reason_code)
        if on_connect is not None and not reason_code.is_failure:
            on_connect(client, userdata, flags, reason_code, properties)

    on_disconnect = client.on_disconnect  # a connection lost here is reported by the raise
    client.on_log, client.on_connect, client.on_disconnect = note_error, note_answer, None
    closed = 0
    delay = 0.1
    try:
        while True:
            errors.clear()
            try:
                client.connect(options.host, options.port, keepalive=KEEPALIVE, **arguments)
            except ssl.SSLError as error:  # the handshake: certificates, host name, not TLS
                raise BrokerRefused(tls_failure(options, error)) from None
            except OSError as error:
                if not wait_for_broker:
                    raise ConnectionError(
                        f"MQTT broker {options.address}: not reachable ({error})"
                    ) from None
                _wait_or_fail(options, deadline, delay, f"not reachable ({error})")
                delay = min(2 * delay, 1.0)
                continue
            while not answer:
                if client.loop(0.1) != mqtt.MQTT_ERR_SUCCESS:
                    break
                if time.monotonic() > deadline:
                    raise ConnectionError(
                        f"MQTT broker {options.address}: no answer to CONNECT in time"
                    )
            if answer:
                break
            # Connected, then closed before the CONNACK: a TLS alert after the handshake (TLS
            # 1.3 tells the client its certificate was refused only then), or a broker that
            # drops the connection without a word.
            reason = next((text for text in reversed(errors) if "SSL" in text), None)
            if reason is not None:
                raise BrokerRefused(tls_failure(options, reason))
            if options.tls and (refusal := _tls_refusal(options)) is not None:
                raise BrokerRefused(refusal)
            closed += 1
            if closed >= CLOSED_AFTER_HANDSHAKE:
                why = errors[-1] if errors else "no reason given"
                raise BrokerRefused(
                    f"MQTT broker {options.address}: closed the connection before answering the"
                    f" login, {closed} times ({why}); "
                    + (
                        "it may require a client certificate or refuse this one"
                        if options.tls
                        else "is it a TLS listener? (TLS is off without a CA file)"
                    )
                )
            _wait_or_fail(options, deadline, delay, "closed the connection")
            delay = min(2 * delay, 1.0)
    except BaseException:
        client.on_log = None
        with contextlib.suppress(Exception):  # nothing to close, mostly
            client.disconnect()
        raise
    finally:
        client.on_log, client.on_connect, client.on_disconnect = None, on_connect, on_disconnect
    refused = answer[0]
    if refused.is_failure:
        client.disconnect()
        who = f"user {options.username!r}" if options.username else "no username given"
        raise BrokerRefused(f"MQTT broker {options.address}: login refused ({who}): {refused}")


def tls_failure(options: MqttOptions, error: ssl.SSLError | str) -> str:
    """One line naming the broker and why TLS failed, from an ssl error or paho's log text."""
    reason = _reason(error)
    code = (error.reason if isinstance(error, ssl.SSLError) else _ssl_code(error)) or ""
    if isinstance(error, ssl.SSLCertVerificationError):
        why = f"the broker's certificate was refused ({reason}; CA file {options.ca_file})"
    elif "CERTIFICATE_REQUIRED" in code:
        why = "the broker requires a client certificate and none was given"
    elif "CERTIFICATE_EXPIRED" in code:
        why = f"the broker refused the client certificate {options.cert_file}: it has expired"
    elif any(word in code for word in ("UNKNOWN_CA", "BAD_CERTIFICATE", "CERTIFICATE_UNKNOWN")):
        why = f"the broker refused the client certificate {options.cert_file or '(none)'}: {reason}"
    elif any(word in code for word in ("WRONG_VERSION_NUMBER", "EOF", "RECORD_LAYER")):
        why = f"no TLS answer: is this port a TLS listener? ({reason})"
    else:
        why = reason
    return f"MQTT broker {options.address}: TLS failed: {why}"


def _tls_refusal(options: MqttOptions, timeout: float = 2.0) -> str | None:
    """Why the broker closed a TLS connection before the login, if TLS was why: the CONNECT
    paho sends straight after the handshake makes the broker's close a reset, which can
    overtake the TLS 1.3 alert refusing the client certificate. A second handshake that sends
    nothing after it receives the alert intact; None when it does not come (a broker that
    just drops connections)."""
    context = ssl.create_default_context(cafile=options.ca_file)
    try:
        if options.cert_file:
            context.load_cert_chain(options.cert_file, options.key_file or None)
        with (
            socket.create_connection((options.host, options.port), timeout=timeout) as raw,
            context.wrap_socket(raw, server_hostname=options.host) as tls,
        ):
            tls.recv(1)
    except ssl.SSLError as error:
        return tls_failure(options, error)
    except OSError:
        return None
    return None


def _reason(error: ssl.SSLError | str) -> str:
    if isinstance(error, ssl.SSLCertVerificationError) and error.verify_message:
        return error.verify_message
    text = str(error)
    text = re.sub(r"^failed to receive on socket: ", "", text)
    text = re.sub(r"^\[SSL: [A-Z0-9_]+\] ", "", text)
    return re.sub(r" \(_ssl\.c:\d+\)$", "", text)


def _ssl_code(text: str) -> str | None:
    found = re.search(r"\[SSL: ([A-Z0-9_]+)\]", text)
    return found.group(1) if found else None


def _wait_or_fail(options: MqttOptions, deadline: float, delay: float, why: str) -> None:
    if time.monotonic() + delay > deadline:
        raise ConnectionError(f"MQTT broker {options.address}: {why}")
    time.sleep(delay)


class DeclarationSubscriber:
    """Subscribes `options.topic` at QoS 1 with the stable client id `options.client_id` on a
    persistent session (MQTT v5: clean_start=False and SessionExpiryInterval
    `options.session_expiry`; 3.1.1: clean_session=False), so that what is not acked survives
    a crash. With `options.shared_group` (MQTT v5 only) the subscription is shared
    ($share/<group>/<topic>): each consumer of the group has its own client id and session,
    and each event goes to one."""

    def __init__(
        self, options: MqttOptions, *, client_id: str | None = None, topic: str | None = None
    ) -> None:
        self.options = options
        self.topic = topic or options.topic
        # With a shared group the broker gives each event to one of the group's subscribers.
        group = options.shared_group
        if group and not options.v5:
            raise ConfigError(
                f"shared subscription group {group!r}: shared subscriptions need MQTT 5,"
                f" not {options.protocol}"
            )
        self.subscription = f"$share/{group}/{self.topic}" if group else self.topic
        self.client_id = client_id or options.client_id
        self.inbox: queue.SimpleQueue[Received] = queue.SimpleQueue()
        self.subscribed = threading.Event()
        self.disconnected = threading.Event()
        self.barrier = threading.Event()
        self.refused: str | None = None
        self.connection = 0
        self._lock = threading.Lock()
        # The network thread waits here while the inbox holds a whole window (see _on_message):
        # one batch waiting beside the one being stored. A local broker refills a taken batch
        # far faster than the consumer stores one, and each batch more held here would cost
        # the consumer's memory a batch of payloads (W6, docs/performance.md).
        self.window = max(1, min(MAX_RECEIVE, options.batch_size))
        self._room = threading.Condition()
        self._closing = False
        self.client = new_client(self.client_id, manual_ack=True, options=options, persistent=True)
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = self._on_message
        self.client.on_disconnect = self._on_disconnect
        self.client.on_unsubscribe = self._on_unsubscribe
        self.client.reconnect_delay_set(min_delay=1, max_delay=10)

    # network thread -------------------------------------------------------------------------

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:  # on a reconnect (`establish` checks the first answer)
            self.refused = f"MQTT broker {self.options.address} refused the login: {reason_code}"
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
            self.refused = (
                f"MQTT broker {self.options.address} refused the subscription to"
                f" {self.subscription}: {', '.join(str(code) for code in reason_codes)}"
            )
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
        """Connect, subscribe, and return once the broker confirmed the subscription. A broker
        that is away (say, restarting) is waited for until `timeout`, then ConnectionError; a
        refusal (TLS, login, subscription) raises BrokerRefused at once."""
        deadline = time.monotonic() + timeout
        # Acks come a batch at a time: allow two batches in flight so the next one is arriving
        # while the current one is stored.
        window = max(1, min(MAX_RECEIVE, 2 * self.options.batch_size))
        arguments = connect_arguments(self.options, persistent=True, receive_maximum=window)
        establish(self.client, self.options, deadline, **arguments)
        # From here the network thread reconnects by itself while the broker is away.
        self.client.loop_start()
        while not self.subscribed.wait(0.05):
            if self.refused or time.monotonic() > deadline:
                self.close()
                if self.refused:
                    raise BrokerRefused(self.refused)
                raise ConnectionError(
                    f"no subscription to {self.subscription} on"
                    f" {self.options.address} within {timeout}s"
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

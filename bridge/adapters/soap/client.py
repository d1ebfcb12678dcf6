"""The bridge's client for the customs certificate service (zeep over requests).

It translates and moves bytes; it decides nothing. Every failure becomes a DeliveryError whose
`transient` flag says whether sending the same message again later may help:

- transient: connection refused, no answer within the timeout, connection dropped, HTTP 5xx
  (and 408, 429), a SOAP fault marked Transient=true (or a Server fault without the mark);
- permanent: a SOAP Client fault (or any fault marked Transient=false), any other HTTP error,
  an answer that is not the acknowledgement the contract promises.

The answer must arrive whole within the endpoint's `timeout` (counted from the request, not per
socket read: a server trickling a byte at a time is cut off; the timeout is per certificate, so
a SubmitCertificates request of n certificates has n times as long, its receiver checking each)
and may not exceed MAX_ANSWER_BYTES (refused as it arrives, permanent: the same call would get
the same answer).

Over https:// the server's certificate and host name are checked against the endpoint's CA
bundle, and the client presents its certificate when it has one (mutual TLS); see
bridge.adapters.soap.tls. A TLS failure is neither transient nor permanent: it raises TlsFailure
(a ConfigError), since no message can go out until the configuration is mended. A connection the
server closes at the handshake without an answer is tried once more first, to tell a server that
refuses the client from one that went down.

The WSDL is the project's own contract (schemas/, read from disk, never fetched), bound to the
endpoint's `url`; one zeep client is built on first use and reused, since building it costs far
more than a call. It is the 1.5 WSDL: the 1.0 operations as they were, and SubmitCertificates
(`submit_certificates`: several certificates per request, an outcome for each), which a
receiver on 1.0 answers UNKNOWN_OPERATION (the client then stops trying it, `batching`)."""

from __future__ import annotations

import contextlib
import heapq
import itertools
import socket
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import requests
import urllib3
from lxml import etree
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from zeep import Client, Transport
from zeep import Settings as ZeepSettings
from zeep import exceptions as zeep_errors
from zeep.wsse import utils as wsse_utils
from zeep.wsse.username import UsernameToken

from bridge.adapters.soap import BATCH_WSDL_FILE, MESSAGES_NAMESPACE, SERVICE_NAMESPACE
from bridge.adapters.soap.tls import (
    ClientTls,
    TlsAdapter,
    TlsFailure,
    closed_at_handshake,
    tls_failure,
)
from bridge.core.certificate import MAX_CERTIFICATE_BYTES, MAX_STATUS_BYTES
from bridge.core.errors import DeliveryError, XmlRefused
from bridge.core.paths import SCHEMAS_DIR
from bridge.core.xmlsafe import parse_xml

BINDING = f"{{{SERVICE_NAMESPACE}}}CertexBinding"
_TRANSIENT_HTTP = frozenset({408, 429})
# An acknowledgement or a fault is well under a kilobyte; this leaves room for any detail.
MAX_ANSWER_BYTES = 1024 * 1024
_READ_SIZE = 64 * 1024


@dataclass(frozen=True, slots=True)
class CustomsEndpoint:
    """Where and as whom the client talks to customs: the service `url`, the `timeout` (seconds)
    an exchange of one certificate may take in all (n times that for a batch of n), the
    WS-Security UsernameToken (none without `username`), the Sender id the messages carry, and
    over https:// the CA bundle the server's certificate is checked against (`ca_file`, empty:
    certifi's public CAs) and the client certificate and key for mutual TLS (`cert_file`,
    `key_file`)."""

    url: str
    timeout: float = 10.0
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    sender_id: str = "ELBRIDGE"
    ca_file: str = ""
    cert_file: str = ""
    key_file: str = ""

    @property
    def tls(self) -> ClientTls:
        return ClientTls(self.ca_file, self.cert_file, self.key_file, settings="ELBRIDGE_SOAP")


@dataclass(frozen=True, slots=True)
class Acknowledgement:
    """Customs' answer to a delivered certificate."""

    message_id: str
    status: str  # ACCEPTED, or DUPLICATE when this message id was stored before
    receipt_id: str
    received_at: datetime


# ------------------------------------------------------------------------ the HTTP transport


class _Exchange:
    """One call's watch: the socket it runs on, shut down when the deadline passes, which ends
    whatever read is waiting on it."""

    __slots__ = ("connected", "done", "expired", "lock", "sock", "status")

    def __init__(self) -> None:
        self.sock: socket.socket | None = None
        self.expired = False
        self.done = False  # the call ended: its deadline no longer matters
        self.status: int | None = None  # the answer's HTTP status, once its headers came
        self.connected = False  # the call opened a new connection (and made its handshake)
        self.lock = threading.Lock()

    def attach(self, sock: socket.socket | None) -> None:
        # The socket itself, not its connection: http.client lets go of the connection's
        # socket once the answer says Connection: close, and the answer reads on.
        with self.lock:
            self.sock = sock
            if self.expired:
                _cut(sock)

    def expire(self) -> None:
        with self.lock:
            self.expired = True
            _cut(self.sock)


def _cut(sock: socket.socket | None) -> None:
    if sock is not None:
        with contextlib.suppress(OSError):  # already closed
            sock.shutdown(socket.SHUT_RDWR)


class _Watchdog:
    """One thread that expires the exchanges whose deadline has passed, for every call of the
    process: starting a timer thread per call cost more than the call's own Python work once
    several senders ran at once (each Thread.start waits for the new thread to run)."""

    def __init__(self) -> None:
        self._due: list[tuple[float, int, _Exchange]] = []  # a heap by deadline
        self._count = itertools.count()
        self._changed = threading.Condition()
        self._thread: threading.Thread | None = None

    def watch(self, exchange: _Exchange, seconds: float) -> None:
        with self._changed:
            heapq.heappush(self._due, (time.monotonic() + seconds, next(self._count), exchange))
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="soap-deadlines", daemon=True
                )
                self._thread.start()
            self._changed.notify()

    def _run(self) -> None:
        with self._changed:
            while True:
                now = time.monotonic()
                while self._due and (self._due[0][0] <= now or self._due[0][2].done):
                    _deadline, _n, exchange = heapq.heappop(self._due)
                    if not exchange.done:
                        exchange.expire()
                wait = self._due[0][0] - now if self._due else None
                self._changed.wait(wait)


_watchdog = _Watchdog()
_calls = threading.local()  # the exchange of the call this thread is making


def _attach(connection: HTTPConnection) -> None:
    exchange = getattr(_calls, "exchange", None)
    if exchange is not None:
        exchange.attach(connection.sock)


class _Watched:
    """Tells the current call which connection (and socket) it runs on: a new one once it is
    connected, a reused one when the request starts."""

    def connect(self) -> None:
        exchange = getattr(_calls, "exchange", None)
        if exchange is not None:
            exchange.connected = True
        super().connect()  # type: ignore[misc]
        _attach(self)  # type: ignore[arg-type]

    def request(self, *args, **kwargs):
        _attach(self)  # type: ignore[arg-type]
        return super().request(*args, **kwargs)  # type: ignore[misc]


class _WatchedHTTPConnection(_Watched, HTTPConnection):
    pass


class _WatchedHTTPSConnection(_Watched, HTTPSConnection):
    pass


class _WatchedHTTPPool(HTTPConnectionPool):
    ConnectionCls = _WatchedHTTPConnection


class _WatchedHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _WatchedHTTPSConnection


_WATCHED_POOLS = {"http": _WatchedHTTPPool, "https": _WatchedHTTPSPool}


class _WatchedAdapter(TlsAdapter):
    def init_poolmanager(self, *args, **kwargs) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = _WATCHED_POOLS

    def proxy_manager_for(self, *args, **kwargs):
        manager = super().proxy_manager_for(*args, **kwargs)
        manager.pool_classes_by_scheme = _WATCHED_POOLS
        return manager


_BROKEN = (requests.exceptions.RequestException, urllib3.exceptions.HTTPError, OSError)


class _ClosedAtHandshake(requests.exceptions.ConnectionError):
    """The server closed a connection this call opened, at or right after its TLS handshake,
    before any answer: a server refusing the client, or one going down (tried again to tell)."""


class _BoundedTransport(Transport):
    """zeep's transport with a deadline on the whole exchange and a cap on the answer's size.
    It moves bytes and reports how the exchange failed; what to do about it is the client's."""

    def __init__(
        self, timeout: float, tls: ClientTls, max_answer_bytes: int = MAX_ANSWER_BYTES
    ) -> None:
        session = requests.Session()
        adapter = _WatchedAdapter(tls)
        session.mount("http://", adapter)
        session.mount("https://", adapter)
        super().__init__(timeout=timeout, operation_timeout=timeout, session=session)
        self.max_answer_bytes = max_answer_bytes
        self.tls = tls
        # Set by the client for a second try after the server closed a fresh connection at
        # the handshake: seeing that again means it refuses this client.
        self.closed_counts = False

    def post(self, address, message, headers):
        exchange = _Exchange()
        _calls.exchange = exchange
        _calls.status = None
        deadline = self.deadline()
        _watchdog.watch(exchange, deadline)
        try:
            response = self.session.post(
                address, data=message, headers=headers, timeout=deadline, stream=True
            )
            exchange.status = response.status_code
            try:
                body = self._read(response, address)
                response._content = body
                response._content_consumed = True  # the connection may serve the next call
            finally:
                response.close()
        except _BROKEN as error:
            if exchange.expired:
                raise _no_answer(address, deadline) from None
            at_handshake = exchange.connected and exchange.status is None
            failure = tls_failure(
                error, address, self.tls, closed_counts=self.closed_counts and at_handshake
            )
            if failure is not None:
                raise failure from None
            if at_handshake and address.lower().startswith("https:") and closed_at_handshake(error):
                raise _ClosedAtHandshake(str(error)) from None
            raise
        finally:
            exchange.done = True
            _calls.exchange = None
        _calls.status = exchange.status
        return response

    def deadline(self) -> float:
        """The seconds the exchange this thread is making may take: the call's own (a batch
        of certificates, `_calls.deadline`) or the endpoint's timeout."""
        return getattr(_calls, "deadline", None) or self.operation_timeout

    def _read(self, response: requests.Response, address: str) -> bytes:
        declared = response.headers.get("Content-Length", "").strip()
        if declared.isdigit() and int(declared) > self.max_answer_bytes:
            raise _too_large(address, f"it announces {declared} bytes")
        parts: list[bytes] = []
        size = 0
        while True:
            try:
                chunk = response.raw.read1(_READ_SIZE, decode_content=True)
            except urllib3.exceptions.ReadTimeoutError:
                raise _no_answer(address, self.deadline()) from None
            except urllib3.exceptions.HTTPError as error:  # a short body, a broken chunk
                if _calls.exchange is not None and _calls.exchange.expired:
                    raise _no_answer(address, self.deadline()) from None
                raise DeliveryError(
                    f"HTTP exchange with {address} broke off: {error}",
                    transient=True,
                    code="http-broken",
                ) from None
            if not chunk:
                break
            size += len(chunk)
            if size > self.max_answer_bytes:
                raise _too_large(address, f"more than {self.max_answer_bytes} bytes arrived")
            parts.append(chunk)
        exchange = _calls.exchange
        if exchange is not None and exchange.expired:  # cut short: what came is not all of it
            raise _no_answer(address, self.deadline())
        return b"".join(parts)


def _no_answer(url: str, timeout: float) -> DeliveryError:
    return DeliveryError(f"no answer from {url} within {timeout} s", transient=True, code="timeout")


def _too_large(url: str, how: str) -> DeliveryError:
    return DeliveryError(
        f"the answer from {url} is not a valid acknowledgement: it is too large ({how}; at most"
        f" {MAX_ANSWER_BYTES} bytes are read)",
        transient=False,
        code="invalid-response",
    )


class _UsernameTokenWithTimestamp:
    """WS-Security header: a UsernameToken (password digest, nonce, created) and a wsu:Timestamp
    (Created, Expires), both fresh for every message. One object, since zeep verifies answers
    only through a single wsse plugin."""

    def __init__(
        self, username: str, password: str, lifetime: timedelta = timedelta(minutes=5)
    ) -> None:
        self.token = UsernameToken(username, password, use_digest=True, zulu_timestamp=True)
        self.lifetime = lifetime

    def apply(self, envelope: etree._Element, headers: dict) -> tuple[etree._Element, dict]:
        envelope, headers = self.token.apply(envelope, headers)
        security = wsse_utils.get_security_header(envelope)
        created = datetime.now(UTC).replace(microsecond=0)
        timestamp = wsse_utils.WSU.Timestamp(
            wsse_utils.WSU.Created(created.isoformat().replace("+00:00", "Z")),
            wsse_utils.WSU.Expires((created + self.lifetime).isoformat().replace("+00:00", "Z")),
        )
        timestamp.set(wsse_utils.ID_ATTR, wsse_utils.get_unique_id())
        security.append(timestamp)
        return envelope, headers

    def verify(self, envelope: etree._Element) -> etree._Element:
        return envelope


class CustomsClient:
    """Submits certificates and their status updates to the customs single window at
    `endpoint.url`. One client per thread: the zeep client and its HTTP session are reused
    between calls, not shared."""

    def __init__(self, endpoint: CustomsEndpoint) -> None:
        endpoint.tls.check(endpoint.url)  # a wrong TLS file stops the process here, at start
        self.endpoint = endpoint
        self._service = None
        self._transport: _BoundedTransport | None = None
        self._lock = threading.Lock()
        # Whether SubmitCertificates (contract 1.5) may be tried: False once the receiver
        # answered that it does not know it.
        self.batching = True

    def _proxy(self):
        # Built on first use, never at import: loading the WSDL and schemas takes tens of ms.
        # The 1.5 WSDL: its 1.0 operations are the 1.0 WSDL's, and it adds SubmitCertificates.
        with self._lock:
            if self._service is None:
                endpoint = self.endpoint
                transport = _BoundedTransport(endpoint.timeout, endpoint.tls)
                wsse = None
                if endpoint.username:
                    wsse = _UsernameTokenWithTimestamp(endpoint.username, endpoint.password or "")
                client = Client(
                    str(SCHEMAS_DIR / BATCH_WSDL_FILE),
                    transport=transport,
                    wsse=wsse,
                    settings=ZeepSettings(strict=True, forbid_dtd=True, forbid_entities=True),
                )
                self._service = client.create_service(BINDING, endpoint.url)
                self._transport = transport
            return self._service

    def submit_certificate(
        self, message_id: str, certificate_xml: bytes, sent_at: datetime
    ) -> Acknowledgement:
        """Deliver one certificate under `message_id` (the idempotency key) and return customs'
        acknowledgement. The certificate travels as the element built, unchanged.

        Raises DeliveryError, transient or permanent (see the module docstring)."""
        return self._send(
            "SubmitCertificate",
            message_id,
            certificate_xml,
            sent_at,
            what="the certificate",
            max_bytes=MAX_CERTIFICATE_BYTES,
            invalid_code="invalid-certificate",
        )

    def update_certificate_status(
        self, message_id: str, status_xml: bytes, sent_at: datetime
    ) -> Acknowledgement:
        """Deliver one CertificateStatus update (contract 1.1) under `message_id` and return
        customs' acknowledgement; the document travels as built. Raises DeliveryError like
        `submit_certificate` (UNKNOWN_CERTIFICATE, while customs do not hold the version yet,
        is transient)."""
        return self._send(
            "UpdateCertificateStatus",
            message_id,
            status_xml,
            sent_at,
            what="the status update",
            max_bytes=MAX_STATUS_BYTES,
            invalid_code="invalid-status-update",
        )

    def _send(
        self,
        operation: str,
        message_id: str,
        document_xml: bytes,
        sent_at: datetime,
        *,
        what: str,
        max_bytes: int,
        invalid_code: str,
    ) -> Acknowledgement:
        if sent_at.tzinfo is None:
            raise ValueError("sent_at must carry its time zone")
        url = self.endpoint.url
        try:
            document = parse_xml(document_xml, max_bytes=max_bytes, what=what)
        except XmlRefused as refused:
            raise DeliveryError(str(refused), transient=False, code=invalid_code) from None
        reply = self._invoke(
            operation,
            MessageId=message_id,
            SentAt=sent_at.astimezone(UTC),
            Sender=self.endpoint.sender_id,
            _value_1=document,
        )
        return _acknowledgement(message_id, reply, url)

    def submit_certificates(
        self, certificates: Sequence[tuple[str, bytes]], sent_at: datetime
    ) -> list[Acknowledgement | DeliveryError]:
        """Deliver several certificates, each (message id, certificate) as `submit_certificate`
        would deliver it alone, in one SubmitCertificates request (contract 1.5): customs'
        acknowledgement of each, or the DeliveryError that refuses it (as the fault a
        SubmitCertificate of it would get; a certificate that cannot be read is refused here
        and not sent), in the order given.

        Raises DeliveryError when the request fails as a whole (transient or permanent, as for
        one certificate; nothing of it was stored unless customs stored it before the answer
        was lost, and a resend under the same message ids is then DUPLICATE) and TlsFailure
        like `submit_certificate`. A receiver that does not know the operation (it speaks only
        1.0) answers UNKNOWN_OPERATION: raised as a permanent DeliveryError, after which
        `batching` is False and the sender sends one certificate per call."""
        if sent_at.tzinfo is None:
            raise ValueError("sent_at must carry its time zone")
        results: list[Acknowledgement | DeliveryError | None] = []
        submissions = []
        for message_id, certificate_xml in certificates:
            try:
                document = parse_xml(
                    certificate_xml, max_bytes=MAX_CERTIFICATE_BYTES, what="the certificate"
                )
            except XmlRefused as refused:
                results.append(
                    DeliveryError(str(refused), transient=False, code="invalid-certificate")
                )
                continue
            results.append(None)
            submissions.append({"MessageId": message_id, "_value_1": document})
        if submissions:
            try:
                reply = self._invoke(
                    "SubmitCertificates",
                    deadline=self.endpoint.timeout * len(submissions),
                    SentAt=sent_at.astimezone(UTC),
                    Sender=self.endpoint.sender_id,
                    Submission=submissions,
                )
            except DeliveryError as error:
                if error.code == "fault-unknown_operation":
                    self.batching = False
                raise
            answers = iter(
                _outcomes(reply, [s["MessageId"] for s in submissions], self.endpoint.url)
            )
            results = [next(answers) if result is None else result for result in results]
        return results  # type: ignore[return-value]  # every None was replaced

    def _invoke(self, operation: str, deadline: float | None = None, **values):
        """The operation's reply, every failure of the exchange as a DeliveryError (or
        TlsFailure); the exchange may take `deadline` seconds (default: the endpoint's
        timeout)."""
        url = self.endpoint.url
        service = self._proxy()
        deadline = deadline or self.endpoint.timeout
        _calls.deadline = deadline
        try:
            return self._call(getattr(service, operation), **values)
        except TlsFailure:
            raise
        except requests.exceptions.Timeout:
            raise _no_answer(url, deadline) from None
        except requests.exceptions.ConnectionError as error:
            if _is_read_timeout(error):  # requests wraps a timeout within the body this way
                raise _no_answer(url, deadline) from None
            raise _connection_error(url, error) from None
        except requests.exceptions.RequestException as error:
            raise DeliveryError(
                f"HTTP exchange with {url} broke off: {error}", transient=True, code="http-broken"
            ) from None
        except zeep_errors.Fault as fault:
            raise _fault_error(fault, url, getattr(_calls, "status", None)) from None
        except zeep_errors.TransportError as error:
            status = error.status_code or 0
            if 200 <= status < 300:
                raise DeliveryError(
                    f"the answer from {url} (HTTP {status}) is not a SOAP message",
                    transient=False,
                    code="invalid-response",
                ) from None
            raise DeliveryError(
                f"HTTP {status} from {url}",
                transient=status >= 500 or status in _TRANSIENT_HTTP,
                code=f"http-{status}",
            ) from None
        except (zeep_errors.Error, etree.LxmlError) as error:
            raise DeliveryError(
                f"the answer from {url} is not a valid acknowledgement: {error}",
                transient=False,
                code="invalid-response",
            ) from None
        except (IndexError, KeyError, TypeError, AttributeError) as error:
            # zeep reading an answer of the wrong shape (an empty or missing Body) fails with
            # builtin errors rather than its own.
            raise DeliveryError(
                f"the answer from {url} is not a valid acknowledgement: zeep cannot read it"
                f" ({type(error).__name__}: {error})",
                transient=False,
                code="invalid-response",
            ) from None
        finally:
            _calls.deadline = None

    def _call(self, operation, **values):
        """The call; once more when the server closed its new connection at the handshake. A
        second such close raises TlsFailure (the server refuses this client); anything else
        the second time is the call's outcome. Resending is safe: customs deduplicate by
        MessageId."""
        try:
            return operation(**values)
        except _ClosedAtHandshake:
            pass
        transport = self._transport
        assert transport is not None  # built with the service
        transport.closed_counts = True
        try:
            return operation(**values)
        finally:
            transport.closed_counts = False


def _is_read_timeout(error: requests.exceptions.ConnectionError) -> bool:
    cause = error.args[0] if error.args else None
    return isinstance(cause, urllib3.exceptions.ReadTimeoutError)


def _connection_error(url: str, error: requests.exceptions.ConnectionError) -> DeliveryError:
    text = str(error)
    if "refused" in text.lower() or "NewConnectionError" in text:
        return DeliveryError(
            f"connection to {url} refused (nothing listening?)",
            transient=True,
            code="connection-refused",
        )
    return DeliveryError(
        f"connection to {url} dropped before an answer arrived: {text[:200]}",
        transient=True,
        code="connection-dropped",
    )


def _fault_error(fault: zeep_errors.Fault, url: str, status: int | None) -> DeliveryError:
    detail = fault.detail
    if detail is not None and not isinstance(detail, etree._Element):
        # zeep's word for an HTTP error whose body is XML but no SOAP fault (an XHTML error
        # page): the raw body as detail. The HTTP status is what it says.
        if status is None or 200 <= status < 300:
            return DeliveryError(
                f"the answer from {url} is not a SOAP message (XML, but no envelope or fault)",
                transient=False,
                code="invalid-response",
            )
        return DeliveryError(
            f"HTTP {status} from {url} (an XML page, not a SOAP fault)",
            transient=status >= 500 or status in _TRANSIENT_HTTP,
            code=f"http-{status}",
        )
    faultcode = (fault.code or "").rsplit(":", 1)[-1]
    certex = None
    if detail is not None:
        certex = detail.find(f"{{{MESSAGES_NAMESPACE}}}CertexFault")
    if certex is not None:
        code = certex.findtext(f"{{{MESSAGES_NAMESPACE}}}Code") or "UNKNOWN"
        reason = certex.findtext(f"{{{MESSAGES_NAMESPACE}}}Reason") or fault.message or ""
        flag = (certex.findtext(f"{{{MESSAGES_NAMESPACE}}}Transient") or "").strip()
        transient = flag in ("true", "1") if flag else faultcode == "Server"
        return DeliveryError(
            f"customs answered {faultcode} fault {code}: {reason}",
            transient=transient,
            code=f"fault-{code.lower()}",
        )
    # A fault without our detail: the sender's mistake (Client) or the server's trouble.
    return DeliveryError(
        f"customs answered {faultcode or 'a'} fault: {fault.message}",
        transient=faultcode == "Server",
        code=f"fault-{faultcode.lower() or 'unknown'}",
    )


def _outcomes(reply, message_ids: list[str], url: str) -> list[Acknowledgement | DeliveryError]:
    """The SubmitCertificatesResponse's outcomes, one for each of `message_ids` in order: an
    Acknowledgement, or the DeliveryError its Refusal means (as `_fault_error` reads a fault).
    An answer of another shape refuses the whole request (permanent, invalid-response)."""
    outcomes = list(reply or [])
    if len(outcomes) != len(message_ids):
        raise DeliveryError(
            f"the answer from {url} is not a valid acknowledgement: it holds {len(outcomes)}"
            f" outcomes for {len(message_ids)} certificates",
            transient=False,
            code="invalid-response",
        )
    found: list[Acknowledgement | DeliveryError] = []
    for message_id, outcome in zip(message_ids, outcomes, strict=True):
        refusal = getattr(outcome, "Refusal", None)
        answered = getattr(outcome, "MessageId", None)
        if refusal is None or answered != message_id:
            found.append(
                _acknowledgement(
                    message_id,
                    _Acknowledged(answered, getattr(outcome, "Acknowledgement", None)),
                    url,
                )
            )
            continue
        code = refusal.Code or "UNKNOWN"
        found.append(
            DeliveryError(
                f"customs answered Client fault {code}: {refusal.Reason or ''}",
                transient=bool(refusal.Transient),
                code=f"fault-{code.lower()}",
            )
        )
    return found


class _Acknowledged:
    """An Outcome's Acknowledgement read as a SubmitCertificateResponse (for _acknowledgement)."""

    def __init__(self, message_id, acknowledgement) -> None:
        self.MessageId = message_id
        self.Status = getattr(acknowledgement, "Status", None)
        self.ReceiptId = getattr(acknowledgement, "ReceiptId", None)
        self.ReceivedAt = getattr(acknowledgement, "ReceivedAt", None)


def _acknowledgement(message_id: str, reply, url: str) -> Acknowledgement:
    def refuse(why: str) -> DeliveryError:
        return DeliveryError(
            f"the answer from {url} is not a valid acknowledgement: {why}",
            transient=False,
            code="invalid-response",
        )

    if reply is None:
        raise refuse("it is empty")
    answered = getattr(reply, "MessageId", None)
    if answered != message_id:
        raise refuse(f"it acknowledges message {answered!r}, not {message_id!r}")
    status = getattr(reply, "Status", None)
    if status not in ("ACCEPTED", "DUPLICATE"):
        raise refuse(f"unknown status {status!r}")
    received_at = getattr(reply, "ReceivedAt", None)
    if not isinstance(received_at, datetime) or received_at.tzinfo is None:
        raise refuse(f"ReceivedAt {received_at!r} is not a date and time with its zone")
    return Acknowledgement(message_id, status, reply.ReceiptId, received_at.astimezone(UTC))

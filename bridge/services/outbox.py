"""Certificates out: queue one for every new licence version, then deliver the queue to customs
together with the status updates `bridge.services.licence_status` queues.

`certify_pending` builds and validates every certificate and writes it to the outbox before
anything is sent; an invalid certificate is kept as failed with its reasons and never sent.
`deliver_pending` sends what is due, a licence's messages one after the other (several licences
at once when given several clients), and commits the rows' new statuses in groups soon after
their calls: a transient failure waits in the outbox with backoff, a permanent one fails at
once. Message ids are derived from (licence, version), so a resend is the same message and
customs answer it DUPLICATE instead of storing it twice; that is also what makes group commits
safe (a crash before one sends its calls again).

A sender that raises ConfigError (a TLS or certificate failure: the server's certificate not
trusted, our client certificate refused...) stops the whole run with DeliveryStopped: that call
is no attempt, the message and all after it stay pending with their attempts untouched, and the
first run after the configuration is mended sends them."""

from __future__ import annotations

import contextlib
import json
import queue
import random
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import Engine

from bridge.adapters.signing import CertificateSigner
from bridge.adapters.soap import client as soap
from bridge.adapters.store import outbox as store
from bridge.adapters.store.db import utcnow
from bridge.core.certificate import build_certificate, certificate_problems
from bridge.core.errors import ConfigError, DeliveryError, Problem, Rejected, reasons
from bridge.core.model import licence_from_dict
from bridge.core.retry import delay_before
from bridge.services.config import Settings, load_settings
from bridge.services.signing import certificate_signer

CERTIFICATE = "certificate"
STATUS = "status"  # a CertificateStatus update (UpdateCertificateStatus)
_MESSAGE_IDS = uuid.uuid5(uuid.NAMESPACE_URL, "urn:elicensing-bridge:outbox")
COMMIT_EVERY = 100  # outcomes per transaction, at most
COMMIT_SECONDS = 1.0  # the oldest outcome waits no longer for its commit
_WINDOW_PER_SENDER = 4  # licences queued per sending thread
_DOCUMENT_PAGE = 200  # documents read per query


def message_id_for(licence_number: str, version: int, kind: str = CERTIFICATE) -> str:
    """The message id of one licence version's message of `kind`: always the same for the
    same three, so a resend carries the id customs already know."""
    return str(uuid.uuid5(_MESSAGE_IDS, f"{kind}\x1f{licence_number}\x1f{version}"))


def status_message_id(licence_number: str, version: int, status: str, sequence: int) -> str:
    """The message id of the `sequence`-th status change of a licence (to `status`, at
    `version`): the same four always give the same id, so a resend is recognised."""
    key = f"{licence_number}\x1f{version}\x1f{status}\x1f{sequence}"
    return str(uuid.uuid5(_MESSAGE_IDS, f"{STATUS}\x1f{key}"))


class CertificateSender(Protocol):
    """What delivery needs from the SOAP adapter (bridge.adapters.soap.client.CustomsClient)."""

    def submit_certificate(
        self, message_id: str, certificate_xml: bytes, sent_at: datetime
    ) -> Any: ...

    def update_certificate_status(
        self, message_id: str, status_xml: bytes, sent_at: datetime
    ) -> Any: ...


def customs_endpoint(settings: Settings) -> soap.CustomsEndpoint:
    """The customs certificate service as `settings` name it (soap_url, soap_timeout,
    soap_username and soap_password, sender_id; over https soap_ca_file, soap_cert_file and
    soap_key_file)."""
    return soap.CustomsEndpoint(
        url=settings.soap_url,
        timeout=settings.soap_timeout,
        username=settings.soap_username,
        password=settings.soap_password,
        sender_id=settings.sender_id,
        ca_file=settings.soap_ca_file,
        cert_file=settings.soap_cert_file,
        key_file=settings.soap_key_file,
    )


class CustomsClient(soap.CustomsClient):
    """The SOAP client for the customs single window `settings` describe, carrying the attempts
    the outbox gives each message there (settings.soap_max_attempts). One per sending thread.
    Raises ConfigError at once when a TLS file is missing, unreadable or does not fit."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(customs_endpoint(settings))
        self.max_attempts = settings.soap_max_attempts


class DeliveryStopped(ConfigError):
    """Delivery stopped because the link to customs is misconfigured (`cause`, naming the host
    and the reason); `report` is what the run did before, its `still_pending` messages keeping
    their attempts for the first run after the configuration is mended."""

    def __init__(self, cause: ConfigError, report: DeliveryReport) -> None:
        super().__init__(
            f"{cause}; delivery stopped: {report.still_pending} message(s) stay pending, their"
            " attempts untouched, and go out on the first run after this is fixed"
        )
        self.cause = cause
        self.report = report


@dataclass(frozen=True)
class CertifyReport:
    """`certified`: certificates queued for delivery; `invalid`: certificates that break the
    contract, stored as failed; `problems`: (licence, version, reasons) for each of those."""

    certified: int = 0
    invalid: int = 0
    problems: list[tuple[str, int, str]] = field(default_factory=list)


@dataclass(frozen=True)
class DeliveryReport:
    """What one delivery run did. `delivered`: accepted now; `duplicate`: customs already had
    it (also delivered); `retried`: transient failures rescheduled; `failed`: given up on;
    `still_pending`: rows left for a later run; `failures`: (licence, version, reason)."""

    delivered: int = 0
    duplicate: int = 0
    retried: int = 0
    failed: int = 0
    still_pending: int = 0
    failures: list[tuple[str, int, str]] = field(default_factory=list)


def certify_pending(
    engine: Engine, *, now: datetime, signer: CertificateSigner | None = None
) -> CertifyReport:
    """Build, validate, sign and queue a certificate for every licence version without one. All
    rows are written in one transaction, before any sending. Two runs at once queue each
    certificate once; each reports the ones it wrote. `signer` (default: the settings', see
    bridge.services.signing) signs each valid certificate once, here: a resend carries the
    same signed bytes."""
    with engine.connect() as conn:
        candidates = store.uncertified_versions(conn, CERTIFICATE)
    if candidates and signer is None:
        signer = certificate_signer(load_settings())
    messages = []
    invalid: list[tuple[str, int, str]] = []
    for number, version, document in candidates:
        source = f"licence {number} v{version}"
        xml = b""
        try:
            xml = build_certificate(licence_from_dict(json.loads(document)))
            problems = certificate_problems(xml, source=source)
            if not problems and signer is not None:
                xml = signer.sign(xml)
        except Rejected as refused:
            problems = list(refused.problems)
        except (KeyError, TypeError, ValueError) as error:
            problems = [
                Problem(
                    f"the ledger's copy of the licence cannot be read: {error!r}",
                    "",
                    source,
                    None,
                    "unreadable",
                )
            ]
        status = store.FAILED if problems else store.PENDING
        why = reasons(problems) if problems else None
        if why:
            invalid.append((number, version, why))
        messages.append(
            store.NewMessage(
                message_id_for(number, version),
                CERTIFICATE,
                number,
                version,
                xml.decode("utf-8"),
                status,
                why,
            )
        )
    with engine.begin() as conn:
        # A run at the same time may have queued some of them meanwhile: those are its own.
        written = store.add_new_messages(conn, messages, now=now)
    invalid = [row for row in invalid if message_id_for(row[0], row[1]) in written]
    return CertifyReport(len(written) - len(invalid), len(invalid), invalid)


def deliver_pending(
    engine: Engine,
    client: CertificateSender | Sequence[CertificateSender],
    *,
    now_fn: Callable[[], datetime] = utcnow,
    sleep: Callable[[float], None] = time.sleep,
    max_attempts: int | None = None,
    retry_within_run_seconds: float = 10.0,
    backoff_base: float = 0.5,
    backoff_cap: float = 300.0,
    jitter: Callable[[], float] = random.random,
    commit_every: int = COMMIT_EVERY,
) -> DeliveryReport:
    """Send every due pending message (certificates and status updates), and record each
    outcome soon after its call.

    A licence's messages go out in order: by version, each version's certificate before its
    status updates, the updates in the order they were made; while one waits for a retry, the
    later ones wait too. A status update waits until customs have acknowledged the certificate
    of its version, and fails with the reason when that certificate failed. A transient failure
    is rescheduled with exponential backoff and retried within this run while
    `retry_within_run_seconds` allow, else left for the next run; after `max_attempts` attempts
    (default: the first client's `max_attempts`, see CustomsClient, else the settings'
    soap_max_attempts) it fails with its last reason. A
    permanent failure fails at once: sending it unchanged cannot help. A ConfigError from a
    client (TLS: see bridge.adapters.soap.tls) is no attempt: the run stops, records what it
    did, and raises DeliveryStopped.

    Given several clients (each used by one thread only), as many licences are sent at once,
    each licence's messages still one after the other in order. Outcomes are committed up to
    `commit_every` calls (or COMMIT_SECONDS) to a transaction, and always before waiting for a
    retry and before returning: a crash in between sends those messages again under the same
    message ids, which customs answer DUPLICATE (delivered all the same)."""
    clients = [client] if not isinstance(client, Sequence) else list(client)
    if not clients:
        raise ValueError("deliver_pending needs at least one client")
    if max_attempts is None:
        max_attempts = getattr(clients[0], "max_attempts", None)
    if max_attempts is None:
        max_attempts = load_settings().soap_max_attempts

    def backoff(attempts_made: int) -> float:
        return delay_before(attempts_made + 1, base=backoff_base, cap=backoff_cap, jitter=jitter())

    run_ends = now_fn() + timedelta(seconds=retry_within_run_seconds)
    recorder = _Recorder(engine, commit_every)
    sender = _Sender(max_attempts, now_fn, backoff)
    try:
        with _senders(clients) as run:
            while True:
                now = now_fn()
                with engine.connect() as conn:
                    pending = in_sending_order(store.pending_messages(conn))
                    certificates = store.certificate_states(conn, _versions_with_status(pending))
                chains: dict[str, list[store.PendingMessage]] = {}
                for row in pending:
                    chains.setdefault(row.licence_number, []).append(row)
                run(
                    [_Chain(rows, certificates, now) for rows in chains.values()],
                    sender,
                    recorder,
                )
                recorder.flush()  # before reading what is due next, and before any wait
                if sender.stopped is not None:
                    break
                next_due = _next_due(engine)
                if next_due is None or next_due > run_ends:
                    break
                wait = (next_due - now_fn()).total_seconds()
                if wait > 0:
                    sleep(wait)
    finally:
        recorder.flush()

    with engine.connect() as conn:
        still_pending = store.count_by_status(conn)[store.PENDING]
    report = DeliveryReport(
        still_pending=still_pending, failures=recorder.failures, **recorder.counts
    )
    if sender.stopped is not None:
        raise DeliveryStopped(sender.stopped, report) from sender.stopped
    return report


@dataclass
class _Chain:
    """One licence's pending messages in sending order, and what is known of its versions'
    certificates (its own keys of the run's shared map: no other chain touches them)."""

    rows: list[store.PendingMessage]
    certificates: dict[tuple[str, int], str]
    now: datetime
    documents: dict[int, str] = field(default_factory=dict)


class _Sender:
    """Sends one licence's messages in order, stopping at the first that cannot go now, and
    every licence once a client says its configuration is wrong (`stopped`)."""

    def __init__(self, max_attempts: int, now_fn, backoff) -> None:
        self.max_attempts = max_attempts
        self.now_fn = now_fn
        self.backoff = backoff
        self.stopped: ConfigError | None = None  # the first, when several threads hit it

    def chain(self, client: CertificateSender, chain: _Chain) -> list[tuple[Any, store.Outcome]]:
        try:
            return self._chain(client, chain)
        finally:
            chain.documents = {}  # sent or not, not needed again in this pass

    def _chain(self, client: CertificateSender, chain: _Chain) -> list[tuple[Any, store.Outcome]]:
        outcomes = []
        for row in chain.rows:
            if row.kind == STATUS:
                certificate = chain.certificates.get((row.licence_number, row.licence_version))
                if certificate == store.FAILED:
                    outcomes.append((row, _orphan_status(row, self.now_fn())))
                    continue
                if certificate != store.DELIVERED:
                    break
            if row.next_attempt_at > chain.now or self.stopped is not None:
                break
            try:
                outcome = self.send(client, row, chain.documents[row.id])
            except ConfigError as error:
                # No attempt: nothing is recorded for this message, and no other goes out.
                if self.stopped is None:
                    self.stopped = error
                break
            outcomes.append((row, outcome))
            if row.kind == CERTIFICATE:
                chain.certificates[(row.licence_number, row.licence_version)] = outcome.status
            if outcome.status == store.PENDING:
                break
        return outcomes

    def send(
        self, client: CertificateSender, row: store.PendingMessage, document: str
    ) -> store.Outcome:
        """One call and its outcome: delivered, failed, or pending (to retry)."""
        attempts = row.attempts + 1
        call = client.update_certificate_status if row.kind == STATUS else client.submit_certificate
        try:
            acknowledgement = call(row.message_id, document.encode("utf-8"), self.now_fn())
        except DeliveryError as error:
            at = self.now_fn()
            if error.transient and attempts < self.max_attempts:
                return store.Outcome(
                    row.id,
                    store.PENDING,
                    attempts,
                    at,
                    reason=error.reason,
                    next_attempt_at=at + timedelta(seconds=self.backoff(attempts)),
                )
            reason = error.reason
            if error.transient:
                reason = f"gave up after {attempts} attempts; last: {reason}"
            return store.Outcome(row.id, store.FAILED, attempts, at, reason=reason)
        return store.Outcome(
            row.id,
            store.DELIVERED,
            attempts,
            self.now_fn(),
            acknowledgement=acknowledgement.status,
            receipt_id=acknowledgement.receipt_id,
        )


def _orphan_status(row: store.PendingMessage, at: datetime) -> store.Outcome:
    reason = (
        f"the certificate of licence {row.licence_number} version {row.licence_version} failed,"
        " so customs cannot hold a status of that version; the next version's certificate"
        " carries the status in force"
    )
    return store.Outcome(row.id, store.FAILED, row.attempts, at, reason=reason)


class _Recorder:
    """Outcomes on their way to the outbox: counted at once, committed in groups."""

    def __init__(self, engine: Engine, every: int) -> None:
        self.engine = engine
        self.every = max(1, every)
        self.waiting: list[store.Outcome] = []
        self.oldest = 0.0
        self.counts = {"delivered": 0, "duplicate": 0, "retried": 0, "failed": 0}
        self.failures: list[tuple[str, int, str]] = []

    def add(self, row: store.PendingMessage, outcome: store.Outcome) -> None:
        if outcome.status == store.DELIVERED:
            self.counts["duplicate" if outcome.acknowledgement == "DUPLICATE" else "delivered"] += 1
        elif outcome.status == store.FAILED:
            self.counts["failed"] += 1
            self.failures.append((row.licence_number, row.licence_version, outcome.reason or ""))
        else:
            self.counts["retried"] += 1
        if not self.waiting:
            self.oldest = time.monotonic()
        self.waiting.append(outcome)
        if len(self.waiting) >= self.every or time.monotonic() - self.oldest >= COMMIT_SECONDS:
            self.flush()

    def flush(self) -> None:
        if not self.waiting:
            return
        with self.engine.begin() as conn:
            store.record_outcomes(conn, self.waiting)
        self.waiting = []


@contextlib.contextmanager
def _senders(clients: list[CertificateSender]):
    """A function that sends a run's chains and records their outcomes in chain order: in this
    thread with one client, else on one thread per client, a window of chains in flight."""
    if len(clients) == 1:

        def inline(chains: list[_Chain], sender: _Sender, recorder: _Recorder) -> None:
            for page in _pages(chains):
                _read_documents(recorder.engine, page)
                for chain in page:
                    for row, outcome in sender.chain(clients[0], chain):
                        recorder.add(row, outcome)

        yield inline
        return

    idle: queue.SimpleQueue[CertificateSender] = queue.SimpleQueue()
    for each in clients:
        idle.put(each)

    def on_a_client(sender: _Sender, chain: _Chain) -> list:
        client = idle.get()
        try:
            return sender.chain(client, chain)
        finally:
            idle.put(client)

    with ThreadPoolExecutor(len(clients), thread_name_prefix="outbox-sender") as pool:

        def threaded(chains: list[_Chain], sender: _Sender, recorder: _Recorder) -> None:
            in_flight: deque[Future] = deque()
            try:
                for page in _pages(chains):
                    _read_documents(recorder.engine, page)
                    for chain in page:
                        in_flight.append(pool.submit(on_a_client, sender, chain))
                        while len(in_flight) > _WINDOW_PER_SENDER * len(clients):
                            for row, outcome in in_flight.popleft().result():
                                recorder.add(row, outcome)
                while in_flight:
                    for row, outcome in in_flight.popleft().result():
                        recorder.add(row, outcome)
            finally:
                for future in in_flight:
                    future.cancel()

        yield threaded


def _pages(chains: list[_Chain]) -> Iterator[list[_Chain]]:
    page: list[_Chain] = []
    rows = 0
    for chain in chains:
        page.append(chain)
        rows += len(chain.rows)
        if rows >= _DOCUMENT_PAGE:
            yield page
            page, rows = [], 0
    if page:
        yield page


def _read_documents(engine: Engine, page: list[_Chain]) -> None:
    """The documents of the page's messages, in one query, handed to their chains."""
    with engine.connect() as conn:
        documents = store.message_documents(conn, [row.id for c in page for row in c.rows])
    for chain in page:
        chain.documents = {row.id: documents[row.id] for row in chain.rows}


_KIND_ORDER = {CERTIFICATE: 0, STATUS: 1}


def in_sending_order(pending: list[store.PendingMessage]) -> list[store.PendingMessage]:
    """Pending messages in the order they must reach customs: licence by licence (the licence
    queued first leads), by version, the certificate of a version before its status updates,
    and messages of one kind in the order they were queued."""
    first_queued: dict[str, int] = {}
    for row in pending:
        first_queued.setdefault(row.licence_number, row.id)
    return sorted(
        pending,
        key=lambda row: (
            first_queued[row.licence_number],
            row.licence_version,
            _KIND_ORDER.get(row.kind, 2),
            row.id,
        ),
    )


def _versions_with_status(pending: list[store.PendingMessage]) -> set[tuple[str, int]]:
    return {(row.licence_number, row.licence_version) for row in pending if row.kind == STATUS}


def _next_due(engine: Engine) -> datetime | None:
    """When the earliest licence can next send: only a licence's first message in sending order
    counts, since its later ones wait for it; a status update whose certificate customs do not
    have yet is not due at all."""
    with engine.connect() as conn:
        pending = in_sending_order(store.pending_messages(conn))
        certificates = store.certificate_states(conn, _versions_with_status(pending))
    heads: dict[str, store.PendingMessage] = {}
    for row in pending:
        heads.setdefault(row.licence_number, row)
    due = [
        row.next_attempt_at
        for row in heads.values()
        if row.kind != STATUS
        or certificates.get((row.licence_number, row.licence_version)) == store.DELIVERED
    ]
    return min(due, default=None)


def outbox_summary(engine: Engine) -> dict[str, int]:
    """How many outbox rows are pending, delivered and failed."""
    with engine.connect() as conn:
        return store.count_by_status(conn)

"""How `bridge.services.outbox.deliver_pending` sends: one licence's messages in order
(`Sender`), on one thread or several (`senders`), transient failures retried within the retry
budget (`RetryPolicy`), outcomes committed in groups (`Recorder`). Only the outbox service uses
this module; its promises are deliver_pending's.

With clients that take several certificates per call (contract 1.5, SubmitCertificates: a
client with `batching` true and a `batch_size` above 1), licences whose only due message is
one certificate go out together, up to `batch_size` (and _BATCH_BYTES) per call, each
certificate's outcome its own. A batch refused as a whole for good (a receiver that speaks
only 1.0, a request too large) is sent again one certificate per call, so that each gets its
own verdict; one failing as a whole transiently is retried like each of its certificates."""

from __future__ import annotations

import contextlib
import math
import queue
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import Engine

from bridge.adapters.store import outbox as store
from bridge.core.errors import ConfigError, DeliveryError
from bridge.core.retry import retry_at

CERTIFICATE = store.CERTIFICATE
STATUS = store.STATUS
COMMIT_SECONDS = 1.0  # the oldest outcome waits no longer for its commit
_WINDOW_PER_SENDER = 4  # licences queued per sending thread
_DOCUMENT_PAGE = 200  # documents read per query
# At most this much certificate XML per SubmitCertificates request (a receiver's request limit
# is commonly a few MiB); a larger certificate goes alone.
_BATCH_BYTES = 1024 * 1024
_MIN_BATCH = 8  # fewer certificates per call than this: one call each (see _work)


class CertificateSender(Protocol):
    """What delivery needs from the SOAP adapter (bridge.adapters.soap.client.CustomsClient)."""

    def submit_certificate(
        self, message_id: str, certificate_xml: bytes, sent_at: datetime
    ) -> Any: ...

    def update_certificate_status(
        self, message_id: str, status_xml: bytes, sent_at: datetime
    ) -> Any: ...


@dataclass
class Chain:
    """One licence's pending messages in sending order, and what is known of its versions'
    certificates (its own keys of the run's shared map: no other chain touches them)."""

    rows: list[store.PendingMessage]
    certificates: dict[tuple[str, int], str]
    now: datetime
    documents: dict[int, str] = field(default_factory=dict)


@dataclass(frozen=True)
class RetryPolicy:
    """How transient failures are retried: for `budget` from the first, waits from `base`
    seconds doubling up to `cap`, placed by `jitter` (bridge.core.retry)."""

    budget: timedelta
    base: float
    cap: float
    jitter: Callable[[], float]

    def after_failure(
        self, row: store.PendingMessage, attempts: int, at: datetime, reason: str
    ) -> store.Outcome:
        """The outcome of a transient failure at `at`: pending until the next attempt, or
        failed once the budget is spent."""
        first = row.first_failed_at or at
        again = retry_at(
            first_failure=first,
            failed_at=at,
            attempts=attempts,
            budget=self.budget,
            base=self.base,
            cap=self.cap,
            jitter=self.jitter(),
        )
        if again is not None:
            return store.Outcome(
                row.id,
                store.PENDING,
                attempts,
                at,
                reason=reason,
                next_attempt_at=again,
                first_failed_at=first,
            )
        why = (
            f"gave up after {span_text(at - first)} of transient failures ({attempts}"
            f" attempts since {first:%Y-%m-%d %H:%M} UTC; the retry budget is"
            f" {span_text(self.budget)},"
            f" ELBRIDGE_SOAP_RETRY_BUDGET_HOURS); last: {reason}"
        )
        return store.Outcome(
            row.id,
            store.FAILED,
            attempts,
            at,
            reason=why,
            failure=store.BUDGET,
            first_failed_at=first,
        )


def span_text(span: timedelta) -> str:
    """A duration as people read it: "45 s", "12 min", "2 h 05 min", "3 d 4 h"."""
    seconds = max(0, int(span.total_seconds()))
    if seconds < 60:
        return f"{seconds} s"
    minutes = seconds // 60
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {minutes:02d} min" if minutes else f"{hours} h"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h" if hours else f"{days} d"


class Sender:
    """Sends one licence's messages in order, stopping at the first that cannot go now, and
    every licence once a client says its configuration is wrong (`stopped`)."""

    def __init__(self, policy: RetryPolicy, now_fn: Callable[[], datetime]) -> None:
        self.policy = policy
        self.now_fn = now_fn
        self.stopped: ConfigError | None = None  # the first, when several threads hit it

    def chain(self, client: CertificateSender, chain: Chain) -> list[tuple[Any, store.Outcome]]:
        try:
            return self._chain(client, chain)
        finally:
            chain.documents = {}  # sent or not, not needed again in this pass

    def _chain(self, client: CertificateSender, chain: Chain) -> list[tuple[Any, store.Outcome]]:
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

    def work(self, client: CertificateSender, item: Chain | list[Chain]) -> list:
        """A chain (`chain`) or a batch of one-certificate chains (`batch`)."""
        if isinstance(item, Chain):
            return self.chain(client, item)
        return self.batch(client, item)

    def batch(self, client: Any, chains: list[Chain]) -> list[tuple[Any, store.Outcome]]:
        """The certificates of `chains` (each one due certificate) in one SubmitCertificates
        call, each with its own outcome; one call per chain when the client no longer batches
        or the batch was refused as a whole for good."""
        try:
            if self.stopped is not None or not getattr(client, "batching", False):
                return [pair for chain in chains for pair in self.chain(client, chain)]
            rows = [chain.rows[0] for chain in chains]
            items = [
                (row.message_id, chain.documents[row.id].encode("utf-8"))
                for row, chain in zip(rows, chains, strict=True)
            ]
            try:
                results = client.submit_certificates(items, self.now_fn())
            except ConfigError as error:
                # No attempt: nothing is recorded for these messages, and no other goes out.
                if self.stopped is None:
                    self.stopped = error
                return []
            except DeliveryError as error:
                if not error.transient:
                    # Refused as a whole (not the certificates' fault, or not known to this
                    # receiver): each certificate alone gets its own verdict.
                    return [pair for chain in chains for pair in self.chain(client, chain)]
                results = [error] * len(rows)
            outcomes = [
                (row, self._outcome(row, result)) for row, result in zip(rows, results, strict=True)
            ]
            for chain, (row, outcome) in zip(chains, outcomes, strict=True):
                chain.certificates[(row.licence_number, row.licence_version)] = outcome.status
            return outcomes
        finally:
            for chain in chains:
                chain.documents = {}

    def send(
        self, client: CertificateSender, row: store.PendingMessage, document: str
    ) -> store.Outcome:
        """One call and its outcome: delivered, failed, or pending (to retry)."""
        call = client.update_certificate_status if row.kind == STATUS else client.submit_certificate
        try:
            acknowledgement = call(row.message_id, document.encode("utf-8"), self.now_fn())
        except DeliveryError as error:
            return self._outcome(row, error)
        return self._outcome(row, acknowledgement)

    def _outcome(self, row: store.PendingMessage, result: Any) -> store.Outcome:
        """The outcome of one attempt whose result is customs' acknowledgement or the
        DeliveryError that refused it."""
        attempts = row.attempts + 1
        if isinstance(result, DeliveryError):
            error = result
            at = self.now_fn()
            if error.transient:
                return self.policy.after_failure(row, attempts, at, error.reason)
            # Customs refuse it: the same message would be refused again, so it waits for a
            # person (or the licence's next version), not for a retry.
            return store.Outcome(
                row.id,
                store.FAILED,
                attempts,
                at,
                reason=error.reason,
                failure=store.REFUSED,
                first_failed_at=row.first_failed_at or at,
            )
        return store.Outcome(
            row.id,
            store.DELIVERED,
            attempts,
            self.now_fn(),
            acknowledgement=result.status,
            receipt_id=result.receipt_id,
        )


def _orphan_status(row: store.PendingMessage, at: datetime) -> store.Outcome:
    reason = (
        f"the certificate of licence {row.licence_number} version {row.licence_version} failed,"
        " so customs cannot hold a status of that version: `elbridge outbox retry --licence"
        f" {row.licence_number}` sends both again, else the next version's certificate carries"
        " the status in force"
    )
    return store.Outcome(
        row.id, store.FAILED, row.attempts, at, reason=reason, failure=store.ORPHAN
    )


class Recorder:
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
def senders(clients: list[CertificateSender]):
    """A function that sends a run's chains and records their outcomes in chain order: in this
    thread with one client, else on one thread per client, a window of chains (or batches of
    one-certificate chains, see the module's docstring) in flight."""
    size = _batch_size(clients[0])
    if len(clients) == 1:

        def inline(chains: list[Chain], sender: Sender, recorder: Recorder) -> None:
            for page in _pages(chains, size * _WINDOW_PER_SENDER):
                _read_documents(recorder.engine, page)
                for item in _work(page, size, _WINDOW_PER_SENDER):
                    for row, outcome in sender.work(clients[0], item):
                        recorder.add(row, outcome)

        yield inline
        return

    idle: queue.SimpleQueue[CertificateSender] = queue.SimpleQueue()
    for each in clients:
        idle.put(each)

    def on_a_client(sender: Sender, item: Chain | list[Chain]) -> list:
        client = idle.get()
        try:
            return sender.work(client, item)
        finally:
            idle.put(client)

    lanes = _WINDOW_PER_SENDER * len(clients)  # calls in flight at most
    with ThreadPoolExecutor(len(clients), thread_name_prefix="outbox-sender") as pool:

        def threaded(chains: list[Chain], sender: Sender, recorder: Recorder) -> None:
            in_flight: deque[Future] = deque()
            try:
                for page in _pages(chains, size * lanes):
                    _read_documents(recorder.engine, page)
                    for item in _work(page, size, lanes):
                        in_flight.append(pool.submit(on_a_client, sender, item))
                        while len(in_flight) > lanes:
                            for row, outcome in in_flight.popleft().result():
                                recorder.add(row, outcome)
                while in_flight:
                    for row, outcome in in_flight.popleft().result():
                        recorder.add(row, outcome)
            finally:
                for future in in_flight:
                    future.cancel()

        yield threaded


def _batch_size(client: Any) -> int:
    """Certificates per call the client takes (1: one per call)."""
    if not getattr(client, "batching", False):
        return 1
    return max(1, int(getattr(client, "batch_size", 1)))


def _batchable(chain: Chain) -> bool:
    """Whether the chain is one certificate, due now: it may travel in a batch."""
    if len(chain.rows) != 1:
        return False
    row = chain.rows[0]
    return row.kind == CERTIFICATE and row.next_attempt_at <= chain.now


def _work(page: list[Chain], size: int, lanes: int) -> Iterator[Chain | list[Chain]]:
    """The page's chains as they go out: a chain alone, or batches of one-certificate chains,
    up to `size` (and _BATCH_BYTES of certificates) each, but split so that each of `lanes`
    calls in flight gets a batch: a backlog goes in several calls at once, rather than one
    call while the other senders wait. When that leaves fewer than _MIN_BATCH certificates per
    call, every chain goes alone: the senders are not the bound then, and a certificate's call
    is its own (one fault, one certificate)."""
    if size <= 1:
        yield from page
        return
    batchable = sum(1 for chain in page if _batchable(chain))
    size = min(size, math.ceil(batchable / max(1, lanes)))
    if size < _MIN_BATCH:
        yield from page
        return
    batch: list[Chain] = []
    held = 0
    for chain in page:
        document = len(chain.documents[chain.rows[0].id]) if _batchable(chain) else None
        if document is None or document > _BATCH_BYTES:
            yield chain
            continue
        if batch and (len(batch) >= size or held + document > _BATCH_BYTES):
            yield batch if len(batch) > 1 else batch[0]
            batch, held = [], 0
        batch.append(chain)
        held += document
    if batch:
        yield batch if len(batch) > 1 else batch[0]


def _pages(chains: list[Chain], rows_at_least: int = 1) -> Iterator[list[Chain]]:
    page: list[Chain] = []
    rows = 0
    for chain in chains:
        page.append(chain)
        rows += len(chain.rows)
        if rows >= max(_DOCUMENT_PAGE, rows_at_least):
            yield page
            page, rows = [], 0
    if page:
        yield page


def _read_documents(engine: Engine, page: list[Chain]) -> None:
    """The documents of the page's messages, in one query, handed to their chains."""
    with engine.connect() as conn:
        documents = store.message_documents(conn, [row.id for c in page for row in c.rows])
    for chain in page:
        chain.documents = {row.id: documents[row.id] for row in chain.rows}

"""The write-off service: declaration events from MQTT into the ledger, exactly once, and a
result message back to customs for each.

Wiring only. Messages are taken in batches (settings.batch_size, or whatever came within
settings.batch_wait_ms); each is read (bridge.core.envelope); the readable ones are applied
(bridge.services.declarations: the rules' decision written, the licence status changes made)
and the unreadable ones quarantined, all in ONE transaction that also stores each event's
result message; after the commit, and only then, every message of the batch is acked in arrival
order and the results are published at QoS 1 on settings.mqtt_result_topic. A crash before the
ack means a redelivery, which the ledger recognises (and answers with the stored result again);
a crash or a broker away before the results are published leaves them pending in the ledger,
and they go out on the next start or retry. While the database is unavailable nothing is acked
and the batch is retried. The process: bridge.entrypoints.consumer."""

from __future__ import annotations

import contextlib
import gc
import logging
import signal
import threading
import time
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING

from sqlalchemy import Connection, Engine
from sqlalchemy.exc import DBAPIError, OperationalError

from bridge.adapters.mqtt.client import Received
from bridge.adapters.mqtt.publisher import Publisher
from bridge.adapters.store.db import make_engine, run_transaction, utcnow
from bridge.adapters.store.ledger import (
    PendingResult,
    Unreadable,
    mark_results_published,
    pending_results,
)
from bridge.core.envelope import DeclarationEvent, envelope_hints, read_event
from bridge.core.errors import Problem, Rejected
from bridge.core.ledger_state import Outcome
from bridge.core.writeoff.batch import unreadable_licence_documents
from bridge.services import mqtt_endpoints
from bridge.services.config import Settings
from bridge.services.declarations import (
    BatchResult,
    apply_declarations,
    combine,
    national_table,
    quarantine_messages,
)

if TYPE_CHECKING:
    from paho.mqtt.client import MQTTMessageInfo

log = logging.getLogger(__name__)

POLL_SECONDS = 0.25  # how often the loop looks at stop, idle and time limits
MAX_RETRY_DELAY = 30.0
RESULT_TIMEOUT = 10.0  # seconds a result may wait for its PUBACK before it is sent again
GC_YOUNG = 20_000  # allocations between collections of the youngest generation, while consuming


@dataclass
class ConsumeReport:
    messages: int = 0
    applied: int = 0
    ignored: int = 0
    refused: int = 0
    quarantined: int = 0
    duplicates: int = 0
    stale: int = 0
    held: int = 0
    batches: int = 0
    retries: int = 0  # batch attempts that failed on the database and were retried
    results: int = 0  # result messages the broker acknowledged
    result_failures: int = 0  # publications of results that failed (kept, sent again later)
    status_changes: int = 0  # licences exhausted, or valid again
    seconds: float = 0.0

    def __str__(self) -> str:
        counts = ", ".join(f"{f.name}={getattr(self, f.name)}" for f in fields(self)[:-1])
        return f"{counts}, seconds={self.seconds:.2f}"

    def add(self, result: BatchResult, quarantined: int, quarantine_duplicates: int) -> None:
        self.batches += 1
        self.status_changes += len(result.status_changes)
        self.applied += result.count(Outcome.APPLIED)
        self.ignored += result.count(Outcome.IGNORED)
        self.refused += result.count(Outcome.REFUSED)
        self.duplicates += result.count(Outcome.DUPLICATE) + quarantine_duplicates
        self.stale += result.count(Outcome.STALE)
        self.held += result.count(Outcome.HELD)
        self.quarantined += quarantined


def consume(
    settings: Settings,
    engine: Engine,
    *,
    idle_seconds: float | None = None,
    max_seconds: float | None = None,
    max_messages: int | None = None,
    stop: threading.Event | None = None,
) -> ConsumeReport:
    """Consume declaration events until no message came for `idle_seconds` (the session is
    drained), `max_seconds` passed, `max_messages` were taken, or `stop` is set (SIGTERM and
    Ctrl-C set it too, in the main thread). Always finishes the batch in hand first."""
    stop = stop or threading.Event()
    report = ConsumeReport()
    started = time.monotonic()
    last_message = started
    with (
        _stop_on_signals(stop),
        _collector_for_batches(),
        mqtt_endpoints.subscriber(settings) as declarations,
        mqtt_endpoints.publisher(
            settings, client_id=f"{settings.mqtt_client_id}-results"
        ).start() as answers,
    ):
        results = ResultRelay(settings, engine, answers, report)
        results.flush()  # what a crash or an absent broker left unpublished
        while not stop.is_set():
            now = time.monotonic()
            waits = [POLL_SECONDS]
            if max_seconds is not None:
                waits.append(started + max_seconds - now)
            if idle_seconds is not None:
                waits.append(last_message + idle_seconds - now)
            if min(waits) <= 0:
                break
            limit = settings.batch_size
            if max_messages is not None:
                limit = min(limit, max_messages - report.messages)
                if limit <= 0:
                    break
            batch = declarations.take(limit, settings.batch_wait_ms / 1000, min(waits))
            if not batch:
                results.retry_when_due()
                continue
            published = results.acknowledged()
            stored = store_batch(settings, engine, batch, stop, report, published=published)
            if stored is None:
                break  # stopped while the database was away: nothing acked, all comes again
            results.marked(published)
            declarations.ack(batch)
            report.messages += len(batch)
            results.publish(stored.results)
            last_message = time.monotonic()  # idle counts from here, not from the batch's start
        results.close()
    report.seconds = time.monotonic() - started
    log.info("consume: %s", report)
    return report


def read_batch(
    settings: Settings, batch: Sequence[Received]
) -> tuple[list[tuple[Received, DeclarationEvent]], list[Unreadable]]:
    """Each message read, or set aside with every reason it cannot be."""
    readable: list[tuple[Received, DeclarationEvent]] = []
    unreadable: list[Unreadable] = []
    for message in batch:
        try:
            event = read_event(message.payload, max_bytes=settings.max_message_bytes)
        except Rejected as rejected:
            hints = envelope_hints(message.payload, max_bytes=settings.max_message_bytes)
            unreadable.append(
                Unreadable(
                    message.topic,
                    message.payload,
                    hints.message_id,
                    tuple(rejected.problems),
                    mrn=hints.mrn,
                    event=hints.event,
                )
            )
            continue
        # A document the deployment's national table makes a licence, unreadable.
        national = national_table(settings.national_document_codes)
        if problems := unreadable_licence_documents(event, national):
            unreadable.append(
                Unreadable(
                    message.topic,
                    message.payload,
                    event.message_id,
                    tuple(problems),
                    mrn=event.mrn,
                    event=str(event.kind),
                )
            )
        else:
            readable.append((message, event))
    return readable, unreadable


def store_batch(
    settings: Settings,
    engine: Engine,
    batch: Sequence[Received],
    stop: threading.Event,
    report: ConsumeReport,
    *,
    published: Sequence[str] = (),
) -> BatchResult | None:
    """Apply and quarantine one batch in one transaction, retrying while the database is
    unavailable; None when `stop` was set before it could be stored. The transaction also
    marks `published` (result keys the broker acknowledged since the last batch).

    Should the batch fail for any other reason (a message the rules cannot cope with), its
    messages are applied one by one and the failing ones quarantined with the error, so that
    one message can neither block nor lose the others."""
    readable, unreadable = read_batch(settings, batch)
    delay = 0.5
    while True:
        try:
            try:
                result, stored, again = _store_together(
                    settings, engine, readable, unreadable, published
                )
            except Exception as error:
                if _outage(error):
                    raise
                log.exception("batch failed; applying its %d messages one by one", len(batch))
                result, stored, again = _store_one_by_one(
                    settings, engine, readable, unreadable, published
                )
        except Exception as error:
            if not _outage(error):
                raise
            report.retries += 1
            log.warning("ledger unavailable (%s); batch not acked, retry in %.1fs", error, delay)
            if stop.wait(delay):
                return None
            delay = min(delay * 2, MAX_RETRY_DELAY)
            continue
        report.add(result, stored, again)
        return result


def _store_together(
    settings: Settings,
    engine: Engine,
    readable: list[tuple[Received, DeclarationEvent]],
    unreadable: list[Unreadable],
    published: Sequence[str] = (),
) -> tuple[BatchResult, int, int]:
    """(result, messages quarantined now, quarantined ones seen before)."""

    def together(conn: Connection):
        now = utcnow()
        stored, quarantined = quarantine_messages(conn, unreadable, now) if unreadable else (0, [])
        events = [event for _, event in readable]
        result = apply_declarations(conn, events, now=now, settings=settings)
        #  Last, after the batch's locks (bridge.adapters.store.db): marking first would hold rows
        # that another consumer, answering a redelivery, may be waiting to set pending again while
        # it holds the licences this batch waits for. A result set pending again here stays so.
        again = {key for key, _ in (*quarantined, *result.results)}
        if published:
            mark_results_published(conn, [k for k in published if k not in again], now)
        return stored, quarantined, result

    # Another consumer's transaction won a conflict (bridge.adapters.store.db): run the batch again.
    stored, quarantined, result = run_transaction(engine, together)
    if quarantined:
        result = combine([BatchResult(results=tuple(quarantined)), result])
    return result, stored, len(unreadable) - stored


def _store_one_by_one(
    settings: Settings,
    engine: Engine,
    readable: list[tuple[Received, DeclarationEvent]],
    unreadable: list[Unreadable],
    published: Sequence[str] = (),
) -> tuple[BatchResult, int, int]:
    # Rare path: one transaction per message. A retry after an outage finds the ones already
    # done in processed_message, so they still count once.
    results = []
    failed = []
    if published:
        with engine.begin() as conn:
            mark_results_published(conn, published, utcnow())
    for message, event in readable:
        try:
            results.append(
                run_transaction(
                    engine,
                    lambda conn, event=event: apply_declarations(
                        conn, [event], now=utcnow(), settings=settings
                    ),
                )
            )
        except Exception as error:
            if _outage(error):
                raise
            log.exception("message %s could not be applied: quarantined", event.message_id)
            problem = Problem(
                f"the bridge could not apply this message: {error!r}",
                "",
                event.message_id,
                code="internal-error",
            )
            failed.append(
                Unreadable(
                    message.topic,
                    message.payload,
                    event.message_id,
                    (problem,),
                    mrn=event.mrn,
                    event=str(event.kind),
                )
            )
    quarantined = [*unreadable, *failed]
    stored, answers = (
        run_transaction(engine, lambda conn: quarantine_messages(conn, quarantined, utcnow()))
        if quarantined
        else (0, [])
    )
    return (
        combine([*results, BatchResult(results=tuple(answers))]),
        stored,
        len(quarantined) - stored,
    )


class ResultRelay:
    """The result messages between the ledger and the broker.

    After each commit the batch's results are handed to the broker without waiting for their
    PUBACKs (at most the publisher's window in flight), so publishing overlaps the next batch.
    The keys acknowledged meanwhile are marked published in the next batch's transaction
    (`acknowledged`, then `marked`), which costs no commit of its own; a crash before that sends
    them again on restart, with the same result ids. A publication that fails or gets no PUBACK
    within RESULT_TIMEOUT is retried from the ledger's pending results, with backoff, while the
    consumer runs and on its next start."""

    def __init__(
        self, settings: Settings, engine: Engine, publisher: Publisher, report: ConsumeReport
    ) -> None:
        self.settings = settings
        self.engine = engine
        self.publisher = publisher
        self.report = report
        self.in_flight: deque[tuple[str, MQTTMessageInfo, float]] = deque()
        self.unmarked: list[str] = []  # acknowledged by the broker, not yet marked published
        self.retry_at: float | None = None
        self.delay = 0.5

    def publish(self, results: Sequence[PendingResult]) -> None:
        """Publish a committed batch's results (or, after a failure, everything pending)."""
        if self.retry_at is not None:
            self.retry_when_due()
            return
        self._send(results)

    def acknowledged(self) -> list[str]:
        """The keys the broker acknowledged so far and not yet marked, for the next
        transaction to mark; `marked` once it committed."""
        self._settle_or_fail(wait=False)
        return list(self.unmarked)

    def marked(self, keys: Sequence[str]) -> None:
        del self.unmarked[: len(keys)]  # only ever appended to in between

    def retry_when_due(self) -> None:
        self._settle_or_fail(wait=False)
        if self.retry_at is not None and time.monotonic() >= self.retry_at:
            self.flush()

    def flush(self, limit: int = 1000) -> None:
        """Mark what was acknowledged, then publish every pending result, oldest first."""
        while True:
            if not self._settle_or_fail(wait=False):
                return
            try:
                with self.engine.begin() as conn:
                    if self.unmarked:
                        mark_results_published(conn, self.unmarked, utcnow())
                    pending = pending_results(conn, limit=limit)
            except Exception as error:
                if not _outage(error):
                    raise
                self._failed(error)  # the ledger away: the batches will wait for it too
                return
            self.unmarked.clear()
            if not self._send(pending):
                return
            self.retry_at = None
            self.delay = 0.5
            if len(pending) < limit:
                return
            if not self._settle_or_fail(wait=True):  # before the next page of pending results
                return

    def close(self) -> None:
        """Wait for what is in flight, then mark what the broker acknowledged (best effort:
        what is not marked is only sent again on the next start)."""
        self._settle_or_fail(wait=True)
        if not self.unmarked:
            return
        try:
            with self.engine.begin() as conn:
                mark_results_published(conn, self.unmarked, utcnow())
            self.unmarked.clear()
        except Exception as error:
            if not _outage(error):
                raise
            log.warning("published results not marked (%s): they will be sent again", error)

    def _send(self, results: Sequence[PendingResult]) -> bool:
        topic = self.settings.mqtt_result_topic
        try:
            for key, payload in results:
                while len(self.in_flight) >= self.publisher.window:
                    self._settle(wait=True, oldest_only=True)
                self.in_flight.append(
                    (key, self.publisher.publish_nowait(topic, payload), time.monotonic())
                )
        except (ConnectionError, TimeoutError) as error:
            self._failed(error)
            return False
        return self._settle_or_fail(wait=False)

    def _settle_or_fail(self, *, wait: bool) -> bool:
        try:
            self._settle(wait=wait)
        except (ConnectionError, TimeoutError) as error:
            self._failed(error)
            return False
        return True

    def _settle(self, *, wait: bool, oldest_only: bool = False) -> None:
        """Move what the broker acknowledged, in order, from in flight to `unmarked`; with
        `wait`, wait for the oldest (or all) first. Raises TimeoutError past RESULT_TIMEOUT."""
        while self.in_flight:
            key, info, sent = self.in_flight[0]
            try:
                published = info.is_published()
            except (RuntimeError, ValueError) as error:  # paho: it never went out
                raise ConnectionError(str(error)) from None
            if not published:
                overdue = time.monotonic() - sent > RESULT_TIMEOUT
                if overdue:
                    raise TimeoutError(f"no PUBACK for result {key} within {RESULT_TIMEOUT}s")
                if not wait:
                    return
                time.sleep(0.001)
                continue
            self.in_flight.popleft()
            self.unmarked.append(key)
            self.report.results += 1
            if oldest_only:
                return

    def _failed(self, error: BaseException) -> None:
        # What is in flight may still arrive; the ledger keeps all of it pending all the same.
        self.in_flight.clear()
        self.report.result_failures += 1
        self.retry_at = time.monotonic() + self.delay
        log.warning("results not published (%s); retry in %.1fs", error, self.delay)
        self.delay = min(self.delay * 2, MAX_RETRY_DELAY)


def engine_when_available(url: str) -> Engine:
    """The ledger's engine, once the database answers: a consumer (re)started while the ledger
    is away waits for it with backoff, as a running one does, instead of exiting."""
    delay = 0.5
    while True:
        try:
            return make_engine(url)
        except Exception as error:
            if not _outage(error):
                raise
            log.warning("ledger unavailable at start (%s); retry in %.1fs", error, delay)
            time.sleep(delay)
            delay = min(delay * 2, MAX_RETRY_DELAY)


def _outage(error: BaseException) -> bool:
    """The database is away or busy (retry later), as opposed to a statement that fails."""
    if isinstance(error, OperationalError):
        return True
    return isinstance(error, DBAPIError) and bool(error.connection_invalidated)


@contextlib.contextmanager
def _collector_for_batches() -> Iterator[None]:
    """While consuming: what is alive at the start (modules, caches, the caller's own data) is
    left out of the cyclic collector's passes (gc.freeze), and its youngest generation is
    collected every GC_YOUNG allocations instead of 700. A batch allocates hundreds of
    thousands of short-lived objects that reference counting frees; with the defaults the
    collector walks everything alive again and again (a fifth of the consumer's time on
    batches of 500 messages of 20 KB). Put back as it was when consumption ends."""
    threshold = gc.get_threshold()
    gc.freeze()
    gc.set_threshold(max(threshold[0], GC_YOUNG), *threshold[1:])
    try:
        yield
    finally:
        gc.set_threshold(*threshold)
        gc.unfreeze()


@contextlib.contextmanager
def _stop_on_signals(stop: threading.Event) -> Iterator[None]:
    """SIGTERM and SIGINT set `stop` (the current batch still finishes), main thread only."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame) -> None:
        log.info("signal %s: stopping after the current batch", signum)
        stop.set()

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)

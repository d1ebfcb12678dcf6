"""The write-off service: declaration events from MQTT into the ledger, exactly once.

Wiring only. Messages are taken in batches (settings.batch_size, or whatever came within
settings.batch_wait_ms); each is read (bridge.envelope); the readable ones are applied
(bridge.store.ledger) and the unreadable ones quarantined in ONE transaction; after the commit,
and only then, every message of the batch is acked in arrival order. A crash before the ack
means a redelivery, which the ledger recognises. While the database is unavailable nothing is
acked and the batch is retried."""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import signal
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, fields

from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError, OperationalError

from bridge.config import Settings, load_settings
from bridge.envelope import DeclarationEvent, read_event
from bridge.errors import Problem, Rejected
from bridge.mqtt.client import DeclarationSubscriber, Received
from bridge.store.db import make_engine, utcnow
from bridge.store.ledger import (
    BatchResult,
    Unreadable,
    apply_batch,
    combine,
    quarantine_messages,
)
from bridge.writeoff import Outcome

log = logging.getLogger(__name__)

POLL_SECONDS = 0.25  # how often the loop looks at stop, idle and time limits
MAX_RETRY_DELAY = 30.0


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
    seconds: float = 0.0

    def __str__(self) -> str:
        counts = ", ".join(f"{f.name}={getattr(self, f.name)}" for f in fields(self)[:-1])
        return f"{counts}, seconds={self.seconds:.2f}"

    def add(self, result: BatchResult, quarantined: int, quarantine_duplicates: int) -> None:
        self.batches += 1
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
    with _stop_on_signals(stop), DeclarationSubscriber(settings) as subscriber:
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
            batch = subscriber.take(limit, settings.batch_wait_ms / 1000, min(waits))
            if not batch:
                continue
            stored = store_batch(settings, engine, batch, stop, report)
            if stored is None:
                break  # stopped while the database was away: nothing acked, all comes again
            subscriber.ack(batch)
            report.messages += len(batch)
            last_message = time.monotonic()  # idle counts from here, not from the batch's start
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
            unreadable.append(
                Unreadable(
                    message.topic,
                    message.payload,
                    _message_id_hint(message.payload, settings.max_message_bytes),
                    tuple(rejected.problems),
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
) -> BatchResult | None:
    """Apply and quarantine one batch in one transaction, retrying while the database is
    unavailable; None when `stop` was set before it could be stored.

    Should the batch fail for any other reason (a message the rules cannot cope with), its
    messages are applied one by one and the failing ones quarantined with the error, so that
    one message can neither block nor lose the others."""
    readable, unreadable = read_batch(settings, batch)
    delay = 0.5
    while True:
        try:
            try:
                result, stored, again = _store_together(settings, engine, readable, unreadable)
            except Exception as error:
                if _outage(error):
                    raise
                log.exception("batch failed; applying its %d messages one by one", len(batch))
                result, stored, again = _store_one_by_one(settings, engine, readable, unreadable)
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
) -> tuple[BatchResult, int, int]:
    """(result, messages quarantined now, quarantined ones seen before)."""
    with engine.begin() as conn:
        now = utcnow()
        stored = quarantine_messages(conn, unreadable, now) if unreadable else 0
        result = apply_batch(conn, [event for _, event in readable], now=now, settings=settings)
    return result, stored, len(unreadable) - stored


def _store_one_by_one(
    settings: Settings,
    engine: Engine,
    readable: list[tuple[Received, DeclarationEvent]],
    unreadable: list[Unreadable],
) -> tuple[BatchResult, int, int]:
    # Rare path: one transaction per message. A retry after an outage finds the ones already
    # done in processed_message, so they still count once.
    results = []
    failed = []
    for message, event in readable:
        try:
            with engine.begin() as conn:
                results.append(apply_batch(conn, [event], now=utcnow(), settings=settings))
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
            failed.append(Unreadable(message.topic, message.payload, event.message_id, (problem,)))
    quarantined = [*unreadable, *failed]
    with engine.begin() as conn:
        stored = quarantine_messages(conn, quarantined, utcnow()) if quarantined else 0
    return combine(results), stored, len(quarantined) - stored


def _outage(error: BaseException) -> bool:
    """The database is away or busy (retry later), as opposed to a statement that fails."""
    if isinstance(error, OperationalError):
        return True
    return isinstance(error, DBAPIError) and bool(error.connection_invalidated)


def _message_id_hint(payload: bytes, max_bytes: int) -> str | None:
    # For the quarantine record only: the id the sender meant, when one can be read.
    if len(payload) > max_bytes:
        return None
    try:
        document = json.loads(payload)
    except (ValueError, RecursionError):
        return None
    if isinstance(document, dict) and isinstance(document.get("message_id"), str):
        return document["message_id"][:200]
    return None


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


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m bridge.consumer`: consume with settings from ELBRIDGE_* variables."""
    parser = argparse.ArgumentParser(prog="python -m bridge.consumer", description=__doc__)
    parser.add_argument("--idle-seconds", type=float, default=None)
    parser.add_argument("--max-seconds", type=float, default=None)
    parser.add_argument("--max-messages", type=int, default=None)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    settings = load_settings()
    engine = make_engine(settings.ledger_url)
    try:
        report = consume(
            settings,
            engine,
            idle_seconds=args.idle_seconds,
            max_seconds=args.max_seconds,
            max_messages=args.max_messages,
        )
    finally:
        engine.dispose()
    print(f"consume: {report}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

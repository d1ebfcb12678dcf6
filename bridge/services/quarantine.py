"""The operator's quarantine: list and show the messages the bridge could not read, and replay
them through the rules of the day once the cause is fixed (a rule corrected, a national code
table or a limit set right, a licence or a release that arrived since).

A replay takes the live path, nothing of its own: each message is read as the consumer reads
it (bridge.services.consumer.read_batch) and applied as the consumer applies it
(bridge.services.declarations.apply_declarations), in one transaction per message
(bridge.adapters.store.db.run_transaction) that also records the outcome on the quarantine row.
So it happens exactly once: the row is locked first and one already settled is left alone, and
a message whose id the ledger processed meanwhile (customs sent it again, corrected) is answered
`duplicate` by the rules themselves. A message still unreadable stays quarantined, with the
reasons of the day recorded beside the first ones.

The replayed messages' results are stored pending in processed_message in the same transaction,
as a live batch's are, then published to the result topic after the commit and marked published.
When the broker cannot be reached they stay pending, and the consumer's result relay sends them
on its next start (bridge.services.consumer.ResultRelay.flush)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TypeVar

from sqlalchemy import Connection, Engine
from sqlalchemy.exc import DBAPIError

from bridge.adapters.mqtt.client import Received
from bridge.adapters.store import ledger
from bridge.adapters.store.db import run_transaction, utcnow
from bridge.adapters.store.ledger import PendingResult, quarantine_key
from bridge.core.envelope import parse_result
from bridge.core.errors import Problem, Rejected
from bridge.core.ledger_state import Outcome, Record
from bridge.core.quarantine import QUARANTINED, QuarantinedMessage, Replayed
from bridge.core.quarantine_view import (
    PREVIEW_CHARS,
    EnvelopeView,
    list_record,
    message_record,
    read_envelope_members,
)
from bridge.services import mqtt_endpoints
from bridge.services.config import Settings
from bridge.services.consumer import read_batch
from bridge.services.declarations import apply_declarations

log = logging.getLogger(__name__)

T = TypeVar("T")
PUBLISH_TIMEOUT = 10.0  # seconds for the broker to answer, and for each PUBACK


@dataclass(frozen=True)
class Selection:
    """Which quarantined messages: `ids`, or all of them; received from `since` (inclusive)
    until `until` (exclusive); of one MRN (the envelope's, else the declaration's ID)."""

    ids: tuple[int, ...] | None = None
    since: datetime | None = None
    until: datetime | None = None
    mrn: str | None = None


@dataclass
class ReplayReport:
    replayed: list[Replayed] = field(default_factory=list)
    published: int = 0  # result messages the broker acknowledged
    pending: int = 0  # result messages left for the consumer's relay
    dry_run: bool = False

    def count(self, outcome: str) -> int:
        return sum(1 for r in self.replayed if r.outcome == outcome and not r.already)

    @property
    def still_quarantined(self) -> int:
        return sum(1 for r in self.replayed if r.still_quarantined)

    @property
    def already(self) -> int:
        return sum(1 for r in self.replayed if r.already)

    def describe(self) -> str:
        done = [r for r in self.replayed if not r.already and not r.still_quarantined]
        outcomes: dict[str, int] = {}
        for r in done:
            outcomes[r.outcome] = outcomes.get(r.outcome, 0) + 1
        parts = [f"{len(self.replayed)} message(s)"]
        parts += [f"{name} {count}" for name, count in sorted(outcomes.items())]
        parts.append(f"still quarantined {self.still_quarantined}")
        parts.append(f"replayed before {self.already}")
        if self.dry_run:
            return "dry run (nothing kept): " + ", ".join(parts)
        parts.append(f"results published {self.published}, pending {self.pending}")
        return "replay: " + ", ".join(parts)


def list_quarantined(
    engine: Engine, selection: Selection = Selection(), *, open_only: bool = False
) -> list[dict]:
    """The quarantined messages `selection` names, in arrival order, as rows of the list."""
    return [
        list_record(message, view)
        for message, view in _select(engine, selection, open_only=open_only)
    ]


def show_quarantined(
    engine: Engine, quarantine_id: int, *, preview_chars: int = PREVIEW_CHARS
) -> tuple[dict, bytes] | None:
    """Everything about one quarantined message, and its bytes; None when there is none."""
    with engine.connect() as conn:
        found = ledger.quarantined_messages(conn, ids=[quarantine_id])
    if not found:
        return None
    (message,) = found
    view = _view(message)
    record = message_record(
        message, view, key=quarantine_key(message.payload), preview_chars=preview_chars
    )
    return record, message.payload


def replay(
    engine: Engine,
    settings: Settings,
    selection: Selection,
    *,
    publish: bool = True,
    dry_run: bool = False,
    now: Callable[[], datetime] = utcnow,
    actor: str | None = None,
) -> ReplayReport:
    """Replay the quarantined messages `selection` names, oldest first, each in its own
    transaction (see the module's docstring). With `dry_run` each transaction is rolled back
    instead of committed: the report says what a replay would do now, and nothing changes.
    Without `publish` the results are left pending for the consumer's relay. `actor`: who
    asks for the replay, recorded on each message replayed."""
    report = ReplayReport(dry_run=dry_run)
    chosen = [message.id for message, _ in _select(engine, selection, open_only=False)]
    results: list[PendingResult] = []
    for quarantine_id in chosen:
        replayed, answers = _replay_one(engine, settings, quarantine_id, now(), dry_run, actor)
        report.replayed.append(replayed)
        results.extend(answers)
    if results and not dry_run:
        if publish:
            report.published = _publish(engine, settings, results)
        report.pending = len(results) - report.published
    return report


def _replay_one(
    engine: Engine,
    settings: Settings,
    quarantine_id: int,
    now: datetime,
    dry_run: bool,
    actor: str | None = None,
) -> tuple[Replayed, list[PendingResult]]:
    def work(conn: Connection) -> tuple[Replayed, list[PendingResult]]:
        message = ledger.lock_quarantined(conn, quarantine_id)
        if message is None:  # gone meanwhile (deleted by hand): nothing to do
            return Replayed(quarantine_id, "missing", already=True), []
        if message.settled:
            return _already(message), []
        readable, unreadable = read_batch(settings, [_received(message)])
        if unreadable:
            (still,) = unreadable
            ledger.record_replay(
                conn,
                quarantine_id,
                now=now,
                outcome=QUARANTINED,
                problems=still.problems,
                replayed_by=actor,
            )
            return _still_quarantined(message, still.problems), []
        ((_, event),) = readable
        result = apply_declarations(conn, [event], now=now, settings=settings)
        own = next(
            o
            for o in result.outcomes
            if o.message_id == event.message_id and o.record is not Record.UPDATE
        )
        answers = dict(result.results)
        result_id = _result_id(answers.get(event.message_id))
        outcome = str(own.outcome)
        ledger.record_replay(
            conn,
            quarantine_id,
            now=now,
            outcome=outcome,
            result_id=result_id,
            problems=_detail_problems(own.detail, event.message_id)
            if own.outcome is Outcome.QUARANTINED
            else (),
            replayed_by=actor,
        )
        replayed = Replayed(
            quarantine_id,
            outcome,
            message_id=event.message_id,
            mrn=event.mrn,
            event=str(event.kind),
            detail=own.detail,
            result_id=result_id,
        )
        return replayed, list(result.results)

    try:
        if dry_run:
            return _rolled_back(engine, work)
        return run_transaction(engine, work)
    except DBAPIError:
        raise  # the database: nothing was recorded, the operator sees why and runs it again
    except Exception as error:
        # The rules choke on it (as the consumer's one-by-one path quarantines such a message):
        # it stays quarantined, with the error as the reason of the day.
        log.exception("quarantined message %s could not be applied", quarantine_id)
        problem = Problem(
            f"the bridge could not apply this message: {error!r}", code="internal-error"
        )

        def still(conn: Connection) -> Replayed:
            message = ledger.lock_quarantined(conn, quarantine_id)
            if message is None or message.settled:
                return _already(message) if message else Replayed(quarantine_id, "missing")
            ledger.record_replay(
                conn,
                quarantine_id,
                now=now,
                outcome=QUARANTINED,
                problems=[problem],
                replayed_by=actor,
            )
            return _still_quarantined(message, (problem,))

        return (_rolled_back(engine, still) if dry_run else run_transaction(engine, still)), []


def _select(
    engine: Engine, selection: Selection, *, open_only: bool
) -> list[tuple[QuarantinedMessage, EnvelopeView]]:
    with engine.connect() as conn:
        messages = ledger.quarantined_messages(
            conn,
            ids=selection.ids,
            since=selection.since,
            until=selection.until,
            open_only=open_only,
        )
    chosen = []
    for message in messages:
        view = _view(message)
        if selection.mrn is None or view.best_mrn == selection.mrn:
            chosen.append((message, view))
    return chosen


def _view(message: QuarantinedMessage) -> EnvelopeView:
    # Shown whatever today's limit (a message over it is the one an operator needs to see): it
    # is in the ledger already, and reading what it says costs in proportion to its size.
    return read_envelope_members(message.payload, max_bytes=len(message.payload))


def _received(message: QuarantinedMessage) -> Received:
    # As the broker would hand it over: the consumer's reading takes topic and bytes only.
    return Received(message.topic or "", message.payload, 0, 1, 0, False)


def _already(message: QuarantinedMessage) -> Replayed:
    view = _view(message)
    return Replayed(
        message.id,
        message.replay_outcome or QUARANTINED,
        message_id=view.message_id or message.message_id,
        mrn=view.best_mrn,
        event=view.event,
        result_id=message.replay_result_id,
        already=True,
    )


def _still_quarantined(message: QuarantinedMessage, problems: Sequence[Problem]) -> Replayed:
    view = _view(message)
    return Replayed(
        message.id,
        QUARANTINED,
        message_id=view.message_id or message.message_id,
        mrn=view.best_mrn,
        event=view.event,
        problems=tuple(problems),
    )


def _detail_problems(detail: str, message_id: str) -> tuple[Problem, ...]:
    return (Problem(detail or "quarantined by the rules", source=message_id, code="quarantined"),)


def _result_id(result: bytes | None) -> str | None:
    if result is None:
        return None
    try:
        return parse_result(result).message_id
    except Rejected:
        return None


def _rolled_back(engine: Engine, work: Callable[[Connection], T]) -> T:
    with engine.connect() as conn:
        transaction = conn.begin()
        try:
            return work(conn)
        finally:
            transaction.rollback()


def _publish(engine: Engine, settings: Settings, results: Sequence[PendingResult]) -> int:
    """Publish the committed results to the result topic and mark them published; on any
    failure of the broker they stay pending (0 returned) for the consumer's relay."""
    try:
        publisher = mqtt_endpoints.publisher(
            settings, client_id=f"{settings.mqtt_client_id}-replay"
        )
        with publisher.start(PUBLISH_TIMEOUT) as sender:
            sender.publish(
                settings.mqtt_result_topic, [payload for _, payload in results], PUBLISH_TIMEOUT
            )
    except (OSError, TimeoutError, RuntimeError, ValueError) as error:  # paho's, the socket's
        log.warning("replayed results not published (%s): left pending for the relay", error)
        return 0
    with engine.begin() as conn:
        ledger.mark_results_published(conn, [key for key, _ in results], utcnow())
    return len(results)

"""Certificates out: queue one for every new licence version, then deliver the queue to customs
together with the status updates `bridge.licence_status` queues.

`certify_pending` builds and validates every certificate and writes it to the outbox before
anything is sent; an invalid certificate is kept as failed with its reasons and never sent.
`deliver_pending` sends what is due, one row at a time, committing each row's new status right
after its call: a transient failure waits in the outbox with backoff, a permanent one fails at
once. Message ids are derived from (licence, version), so a resend is the same message and
customs answer it DUPLICATE instead of storing it twice."""

from __future__ import annotations

import json
import random
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import Engine

from bridge.certificate import build_certificate, certificate_problems
from bridge.config import load_settings
from bridge.errors import DeliveryError, Problem, Rejected, reasons
from bridge.model import licence_from_dict
from bridge.retry import delay_before
from bridge.store import outbox as store
from bridge.store.db import utcnow

CERTIFICATE = "certificate"
STATUS = "status"  # a CertificateStatus update (UpdateCertificateStatus)
_MESSAGE_IDS = uuid.uuid5(uuid.NAMESPACE_URL, "urn:elicensing-bridge:outbox")


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
    """What delivery needs from the SOAP adapter (bridge.soap.client.CustomsClient)."""

    def submit_certificate(
        self, message_id: str, certificate_xml: bytes, sent_at: datetime
    ) -> Any: ...

    def update_certificate_status(
        self, message_id: str, status_xml: bytes, sent_at: datetime
    ) -> Any: ...


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


def certify_pending(engine: Engine, *, now: datetime) -> CertifyReport:
    """Build, validate and queue a certificate for every licence version without one. All rows
    are written in one transaction, before any sending. Two runs at once queue each certificate
    once; each reports the ones it wrote."""
    with engine.connect() as conn:
        candidates = store.uncertified_versions(conn, CERTIFICATE)
    messages = []
    invalid: list[tuple[str, int, str]] = []
    for number, version, document in candidates:
        source = f"licence {number} v{version}"
        xml = b""
        try:
            xml = build_certificate(licence_from_dict(json.loads(document)))
            problems = certificate_problems(xml, source=source)
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
    client: CertificateSender,
    *,
    now_fn: Callable[[], datetime] = utcnow,
    sleep: Callable[[float], None] = time.sleep,
    max_attempts: int | None = None,
    retry_within_run_seconds: float = 10.0,
    backoff_base: float = 0.5,
    backoff_cap: float = 300.0,
    jitter: Callable[[], float] = random.random,
) -> DeliveryReport:
    """Send every due pending message (certificates and status updates), and record each
    outcome at once.

    A licence's messages go out in order: by version, each version's certificate before its
    status updates, the updates in the order they were made; while one waits for a retry, the
    later ones wait too. A status update waits until customs have acknowledged the certificate
    of its version, and fails with the reason when that certificate failed. A transient failure
    is rescheduled with exponential backoff and retried within this run while
    `retry_within_run_seconds` allow, else left for the next run; after `max_attempts` attempts
    (default: the client's settings.soap_max_attempts) it fails with its last reason. A
    permanent failure fails at once: sending it unchanged cannot help."""
    if max_attempts is None:
        settings = getattr(client, "settings", None) or load_settings()
        max_attempts = settings.soap_max_attempts

    def backoff(attempts_made: int) -> float:
        return delay_before(attempts_made + 1, base=backoff_base, cap=backoff_cap, jitter=jitter())

    run_ends = now_fn() + timedelta(seconds=retry_within_run_seconds)
    counts = {"delivered": 0, "duplicate": 0, "retried": 0, "failed": 0}
    failures: list[tuple[str, int, str]] = []

    while True:
        now = now_fn()
        with engine.connect() as conn:
            pending = in_sending_order(store.pending_messages(conn))
            certificates = store.certificate_states(conn, _versions_with_status(pending))
        waiting: set[str] = set()  # licences whose next message cannot go now
        for row in pending:
            if row.licence_number in waiting:
                continue
            if row.kind == STATUS:
                certificate = certificates.get((row.licence_number, row.licence_version))
                if certificate == store.FAILED:
                    _fail_orphan_status(engine, row, counts, failures, now_fn())
                    continue
                if certificate != store.DELIVERED:
                    waiting.add(row.licence_number)
                    continue
            if row.next_attempt_at > now:
                waiting.add(row.licence_number)
                continue
            outcome = _deliver(engine, client, row, counts, failures, max_attempts, now_fn, backoff)
            if row.kind == CERTIFICATE:
                certificates[(row.licence_number, row.licence_version)] = outcome
            if outcome == store.PENDING:
                waiting.add(row.licence_number)

        next_due = _next_due(engine)
        if next_due is None or next_due > run_ends:
            break
        wait = (next_due - now_fn()).total_seconds()
        if wait > 0:
            sleep(wait)

    with engine.connect() as conn:
        still_pending = store.count_by_status(conn)[store.PENDING]
    return DeliveryReport(still_pending=still_pending, failures=failures, **counts)


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


def _fail_orphan_status(
    engine: Engine,
    row: store.PendingMessage,
    counts: dict[str, int],
    failures: list[tuple[str, int, str]],
    at: datetime,
) -> None:
    reason = (
        f"the certificate of licence {row.licence_number} version {row.licence_version} failed,"
        " so customs cannot hold a status of that version; the next version's certificate"
        " carries the status in force"
    )
    with engine.begin() as conn:
        store.mark_failed(conn, row.id, attempts=row.attempts, reason=reason, at=at)
    counts["failed"] += 1
    failures.append((row.licence_number, row.licence_version, reason))


def _deliver(
    engine: Engine,
    client: CertificateSender,
    row: store.PendingMessage,
    counts: dict[str, int],
    failures: list[tuple[str, int, str]],
    max_attempts: int,
    now_fn: Callable[[], datetime],
    backoff: Callable[[int], float],
) -> str:
    """Send one row and record the outcome: delivered, failed, or pending (to retry)."""
    with engine.connect() as conn:
        document = store.message_document(conn, row.id)
    attempts = row.attempts + 1
    send = client.update_certificate_status if row.kind == STATUS else client.submit_certificate
    try:
        acknowledgement = send(row.message_id, document.encode("utf-8"), now_fn())
    except DeliveryError as error:
        at = now_fn()
        with engine.begin() as conn:
            if error.transient and attempts < max_attempts:
                store.reschedule(
                    conn,
                    row.id,
                    attempts=attempts,
                    reason=error.reason,
                    at=at,
                    next_attempt_at=at + timedelta(seconds=backoff(attempts)),
                )
                counts["retried"] += 1
                return store.PENDING
            reason = error.reason
            if error.transient:
                reason = f"gave up after {attempts} attempts; last: {reason}"
            store.mark_failed(conn, row.id, attempts=attempts, reason=reason, at=at)
        counts["failed"] += 1
        failures.append((row.licence_number, row.licence_version, reason))
        return store.FAILED
    with engine.begin() as conn:
        store.mark_delivered(
            conn,
            row.id,
            attempts=attempts,
            acknowledgement=acknowledgement.status,
            receipt_id=acknowledgement.receipt_id,
            at=now_fn(),
        )
    counts["duplicate" if acknowledgement.status == "DUPLICATE" else "delivered"] += 1
    return store.DELIVERED


def outbox_summary(engine: Engine) -> dict[str, int]:
    """How many outbox rows are pending, delivered and failed."""
    with engine.connect() as conn:
        return store.count_by_status(conn)

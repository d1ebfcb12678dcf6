"""Certificates out: queue one for every new licence version, then deliver the queue to customs
together with the status updates `bridge.services.licence_status` queues.

`certify_pending` builds and validates every certificate and writes it to the outbox before
anything is sent; an invalid certificate is kept as failed with its reasons and never sent.
`deliver_pending` sends what is due, a licence's messages one after the other (several licences
at once when given several clients), and commits the rows' new statuses in groups soon after
their calls. A transient failure (customs down, HTTP 503, no answer in time, connection refused)
waits in the outbox with backoff capped at ELBRIDGE_SOAP_BACKOFF_CAP_SECONDS, and is tried again
until ELBRIDGE_SOAP_RETRY_BUDGET_HOURS have passed since its first failure: an outage shorter
than that loses nothing and fails nothing. A permanent one (customs refuse the message) fails at
once, and stays failed until a person sends it again (`retry_certificates`, `elbridge outbox
retry`) or the licence's next version is certified. Message ids are derived from (licence,
version), so a resend is the same message and customs answer it DUPLICATE instead of storing it
twice; that is also what makes group commits safe (a crash before one sends its calls again).

`outbox_listing`, `undelivered` and `retry_certificates` are what operators see and do: the
CLI (`elbridge outbox list|retry`), the console, the Airflow DAG's red signal and /metrics.

A sender that raises ConfigError (a TLS or certificate failure: the server's certificate not
trusted, our client certificate refused...) stops the whole run with DeliveryStopped: that call
is no attempt, the message and all after it stay pending with their attempts untouched, and the
first run after the configuration is mended sends them."""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine

from bridge.adapters.signing import CertificateSigner
from bridge.adapters.soap import client as soap
from bridge.adapters.store import outbox as store
from bridge.adapters.store.db import utcnow
from bridge.core.certificate import build_certificate, certificate_problems
from bridge.core.errors import ConfigError, Problem, Rejected, reasons
from bridge.core.model import licence_from_dict
from bridge.services.config import Settings, load_settings
from bridge.services.message_ids import (  # noqa: F401 - part of the outbox's API
    message_id_for,
    status_message_id,
)
from bridge.services.outbox_sending import (
    CertificateSender,
    Chain,
    Recorder,
    RetryPolicy,
    Sender,
    senders,
)
from bridge.services.signing import certificate_signer

CERTIFICATE = store.CERTIFICATE
STATUS = store.STATUS  # a CertificateStatus update (UpdateCertificateStatus)
COMMIT_EVERY = 100  # outcomes per transaction, at most

log = logging.getLogger(__name__)


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


def retry_budget_of(settings: Settings) -> timedelta:
    """How long transient failures of one message are retried (soap_retry_budget_hours); a
    ConfigError naming the variable for a value outside 0 to 100 years."""
    hours = settings.soap_retry_budget_hours
    if not 0 <= hours < 100 * 365 * 24:  # also false for NaN
        raise ConfigError(
            f"ELBRIDGE_SOAP_RETRY_BUDGET_HOURS={hours!r}: the hours a certificate is retried"
            " while customs cannot take it must be a number from 0 (give up at the first"
            " transient failure) to 876000 (100 years)"
        )
    return timedelta(hours=hours)


def backoff_cap_of(settings: Settings) -> float:
    """The longest wait between two attempts, in seconds (soap_backoff_cap_seconds); a
    ConfigError naming the variable for a value outside (0, one week)."""
    cap = settings.soap_backoff_cap_seconds
    if not 0 < cap < 7 * 24 * 3600:  # also false for NaN
        raise ConfigError(
            f"ELBRIDGE_SOAP_BACKOFF_CAP_SECONDS={cap!r}: the longest wait between two attempts"
            " must be a number of seconds above 0 and below a week"
        )
    return float(cap)


class CustomsClient(soap.CustomsClient):
    """The SOAP client for the customs single window `settings` describe, carrying how the
    outbox retries messages there (`retry_budget`, `backoff_cap`: soap_retry_budget_hours and
    soap_backoff_cap_seconds) and how many certificates go in one SubmitCertificates call
    (`batch_size`: soap_batch_size; 1: one SubmitCertificate per certificate). One per sending
    thread. Raises ConfigError at once when a TLS file is missing, unreadable or does not fit,
    or the retry or batch settings are meaningless."""

    def __init__(self, settings: Settings) -> None:
        self.retry_budget = retry_budget_of(settings)
        self.backoff_cap = backoff_cap_of(settings)
        self.batch_size = batch_size_of(settings)
        super().__init__(customs_endpoint(settings))
        self.batching = self.batch_size > 1


def batch_size_of(settings: Settings) -> int:
    """Certificates per SubmitCertificates call (soap_batch_size); a ConfigError naming the
    variable for a value outside 1 to 1000 (the contract's bound)."""
    size = settings.soap_batch_size
    if isinstance(size, bool) or not isinstance(size, int) or not 1 <= size <= 1000:
        raise ConfigError(
            f"ELBRIDGE_SOAP_BATCH_SIZE={size!r}: the certificates sent per SubmitCertificates"
            " call must be a whole number from 1 (one call per certificate) to 1000"
        )
    return size


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
    it (also delivered); `retried`: transient failures rescheduled (within the retry budget);
    `failed`: refused by customs, or the retry budget spent; `still_pending`: rows left for a
    later run; `failures`: (licence, version, reason)."""

    delivered: int = 0
    duplicate: int = 0
    retried: int = 0
    failed: int = 0
    still_pending: int = 0
    failures: list[tuple[str, int, str]] = field(default_factory=list)


def certify_pending(
    engine: Engine,
    *,
    now: datetime,
    signer: CertificateSigner | None = None,
    progress: Callable[[int, int | None], None] | None = None,
) -> CertifyReport:
    """Build, validate, sign and queue a certificate for every licence version without one. All
    rows are written in one transaction, before any sending. Two runs at once queue each
    certificate once; each reports the ones it wrote. `signer` (default: the settings', see
    bridge.services.signing) signs each valid certificate once, here: a resend carries the
    same signed bytes. `progress`, when given, is told (built so far, to build)."""
    with engine.connect() as conn:
        candidates = store.uncertified_versions(conn, CERTIFICATE)
    if candidates and signer is None:
        signer = certificate_signer(load_settings())
    messages = []
    invalid: list[tuple[str, int, str]] = []
    for built, (number, version, document) in enumerate(candidates):
        if progress is not None:
            progress(built, len(candidates))
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
                store.INVALID if problems else None,
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
    retry_budget: timedelta | None = None,
    retry_within_run_seconds: float = 10.0,
    backoff_base: float = 0.5,
    backoff_cap: float | None = None,
    jitter: Callable[[], float] = random.random,
    commit_every: int = COMMIT_EVERY,
) -> DeliveryReport:
    """Send every due pending message (certificates and status updates), and record each
    outcome soon after its call.

    A licence's messages go out in order: by version, each version's certificate before its
    status updates, the updates in the order they were made; while one waits for a retry, the
    later ones wait too. A status update waits until customs have acknowledged the certificate
    of its version, and fails with the reason when that certificate failed. A transient failure
    is rescheduled with exponential backoff (from `backoff_base` seconds, doubling, at most
    `backoff_cap`) and retried within this run while `retry_within_run_seconds` allow, else
    left for the next run; once `retry_budget` has passed since the message's first failure it
    fails, naming how long, how many attempts and the last reason. `retry_budget` and
    `backoff_cap` default to the first client's (see CustomsClient), else the settings'. A
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
    if retry_budget is None:
        retry_budget = getattr(clients[0], "retry_budget", None)
    if backoff_cap is None:
        backoff_cap = getattr(clients[0], "backoff_cap", None)
    if retry_budget is None or backoff_cap is None:
        settings = load_settings()
        if retry_budget is None:
            retry_budget = retry_budget_of(settings)
        if backoff_cap is None:
            backoff_cap = backoff_cap_of(settings)
    policy = RetryPolicy(retry_budget, backoff_base, backoff_cap, jitter)

    run_ends = now_fn() + timedelta(seconds=retry_within_run_seconds)
    recorder = Recorder(engine, commit_every)
    sender = Sender(policy, now_fn)
    try:
        with senders(clients) as run:
            while True:
                now = now_fn()
                with engine.connect() as conn:
                    pending = in_sending_order(store.pending_messages(conn))
                    certificates = store.certificate_states(conn, _versions_with_status(pending))
                chains: dict[str, list[store.PendingMessage]] = {}
                for row in pending:
                    chains.setdefault(row.licence_number, []).append(row)
                run(
                    [Chain(rows, certificates, now) for rows in chains.values()],
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


# What operators see and do -------------------------------------------------------------------


def _shown(row: dict, now: datetime) -> dict[str, Any]:
    """An outbox row as operators see it (no document): which message, its state, and times."""
    queued_at = row["retried_at"] or row["created_at"]
    return {
        "id": row["id"],
        "kind": row["kind"],
        "licence": row["licence_number"],
        "version": row["licence_version"],
        "status": row["status"],
        "failure": row["failure"],
        "attempts": row["attempts"],
        "created_at": row["created_at"],
        "queued_at": queued_at,
        "first_failed_at": row["first_failed_at"],
        "last_attempt_at": row["last_attempt_at"],
        "next_attempt_at": row["next_attempt_at"] if row["status"] == store.PENDING else None,
        "delivered_at": row["delivered_at"],
        "last_error": row["last_error"],
        "acknowledgement": row["acknowledgement"],
        "receipt_id": row["receipt_id"],
        "retried_at": row["retried_at"],
        "retried_by": row["retried_by"],
        "message_id": row["message_id"],
        "age_seconds": max(0, int((now - queued_at).total_seconds())),
    }


def outbox_listing(
    engine: Engine,
    *,
    status: str | None = None,
    licence: str | None = None,
    limit: int | None = None,
    now: datetime | None = None,
) -> list[dict[str, Any]]:
    """The outbox's messages (certificates and status updates), newest first, as dicts: `id`,
    `kind` (certificate | status), `licence`, `version`, `status` (pending | delivered |
    failed), `failure` (with failed: refused | budget | invalid | orphan), `attempts` (of the
    current series), `created_at`, `queued_at` (created, or last sent again), `first_failed_at`
    (of the current series), `last_attempt_at`, `next_attempt_at` (pending only),
    `delivered_at`, `last_error`, `acknowledgement`, `receipt_id`, `retried_at`,
    `retried_by`, `message_id`, `age_seconds` (since queued_at, at `now`, default the clock);
    times are aware UTC datetimes. Only `status`'s, only `licence`'s, at most `limit`, as
    asked. Rejected (code "usage") for an unknown status or a limit below 1."""
    problems = []
    if status is not None and status not in store.STATUSES:
        problems.append(
            Problem(f"unknown status; one of {', '.join(store.STATUSES)}", "status", "", status)
        )
    if limit is not None and limit < 1:
        problems.append(Problem("the limit must be 1 or more", "limit", "", str(limit)))
    if problems:
        raise Rejected([replace(p, code="usage") for p in problems], "outbox listing refused")
    now = now or utcnow()
    with engine.connect() as conn:
        rows = store.listed_rows(conn, status=status, licence_number=licence, limit=limit)
    return [_shown(row, now) for row in rows]


def undelivered(engine: Engine, *, now: datetime, older_than: timedelta) -> list[dict[str, Any]]:
    """The messages customs do not have and should: every failed one, and every pending one
    queued (or last sent again) more than `older_than` before `now`; oldest first. A failed one
    is left out once customs hold a later version's certificate of its licence (superseded).
    Dicts as `outbox_listing`'s, plus `since` (= queued_at: since when it waits)."""
    with engine.connect() as conn:
        rows = store.undelivered_rows(conn, queued_before=now - older_than)
        held = store.delivered_certificate_versions(conn, {r["licence_number"] for r in rows})
    found = []
    for row in rows:
        if row["status"] == store.FAILED and row["licence_version"] < held.get(
            row["licence_number"], 0
        ):
            continue
        shown = _shown(row, now)
        shown["since"] = shown["queued_at"]
        found.append(shown)
    found.sort(key=lambda shown: (shown["since"], shown["id"]))
    return found


@dataclass(frozen=True)
class RetryReport:
    """What `retry_failed` did: `requeued`, the messages pending again (dicts with id, kind,
    licence, version, and the failure and last_error they had); `skipped`, those asked for but
    left as they are (the same keys, `status`, and `why`)."""

    requeued: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[dict[str, Any]] = field(default_factory=list)


def retry_failed(
    engine: Engine,
    *,
    ids: Sequence[int] | None = None,
    licence: str | None = None,
    all_failed: bool = False,
    actor: str,
    now: datetime,
) -> RetryReport:
    """Send failed messages again: those with these `ids`, or the failed ones of `licence`, or
    every failed one (`all_failed`); exactly one of the three. Each becomes pending, due at
    `now`, a new attempt series with the whole retry budget, recorded with who (`actor`) and
    when (`now`) on the row and in the log.

    Left as they are, with the reason: a message not failed; a certificate that was never
    valid (sending it cannot help; the licence's next version is certified anew); one whose
    licence customs hold a later version of (sending it would put an older version over it); a
    status update whose certificate stays failed (retry the licence: both go).

    Rejected (code "usage", nothing done) when not exactly one of the three is given, `actor`
    is empty, an id is not in the outbox, or `licence` has no message in it."""
    chosen = [ids is not None, licence is not None, all_failed]
    if sum(chosen) != 1:
        raise Rejected(
            [Problem("name the messages by id, or a licence, or all failed ones", code="usage")],
            "nothing to retry",
        )
    if not actor or not actor.strip():
        raise Rejected([Problem("who sends them again must be named", "actor", code="usage")])
    report = RetryReport()
    with engine.begin() as conn:
        unknown = []
        if ids is not None:
            rows = store.listed_rows(conn, row_ids=ids)
            found = {row["id"] for row in rows}
            unknown = [
                Problem("no such message in the outbox", "id", "", str(i), code="usage")
                for i in sorted(set(ids) - found)
            ]
        else:
            rows = store.listed_rows(conn, status=store.FAILED, licence_number=licence)
            if (
                licence is not None
                and not rows
                and not store.listed_rows(conn, licence_number=licence, limit=1)
            ):
                why = "the outbox holds no message of this licence"
                unknown = [Problem(why, "licence", "", licence, code="usage")]
        if unknown:
            raise Rejected(unknown, "nothing sent again")
        rows.sort(key=lambda row: row["id"])
        held = store.delivered_certificate_versions(conn, {r["licence_number"] for r in rows})
        requeued_certificates = {
            (r["licence_number"], r["licence_version"])
            for r in rows
            if r["kind"] == CERTIFICATE and _why_not(r, held, set()) is None
        }
        certificates = store.certificate_states(
            conn, {(r["licence_number"], r["licence_version"]) for r in rows}
        )
        chosen_rows = []
        for row in rows:
            why = _why_not(row, held, requeued_certificates, certificates)
            if why is None:
                chosen_rows.append(row)
            else:
                report.skipped.append({**_named(row), "status": row["status"], "why": why})
        done = set(store.requeue(conn, [row["id"] for row in chosen_rows], actor=actor, at=now))
    for row in chosen_rows:
        if row["id"] not in done:  # changed meanwhile by another process
            report.skipped.append(
                {**_named(row), "status": "changed", "why": "no longer failed: changed meanwhile"}
            )
            continue
        report.requeued.append(_named(row))
        log.info(
            "outbox message %s (%s of licence %s version %s) sent again by %s at %s; it had"
            " failed (%s): %s",
            row["id"],
            row["kind"],
            row["licence_number"],
            row["licence_version"],
            actor,
            now.isoformat(timespec="seconds"),
            row["failure"] or "failed",
            " ".join(str(row["last_error"] or "").split())[:300],
        )
    return report


def retry_certificates(
    engine: Engine,
    *,
    ids: Sequence[int] | None = None,
    licence: str | None = None,
    all_failed: bool = False,
    actor: str,
    now: datetime,
) -> int:
    """`retry_failed`, returning only how many messages are pending again."""
    report = retry_failed(
        engine, ids=ids, licence=licence, all_failed=all_failed, actor=actor, now=now
    )
    return len(report.requeued)


def _named(row: dict) -> dict[str, Any]:
    return {
        "id": row["id"],
        "kind": row["kind"],
        "licence": row["licence_number"],
        "version": row["licence_version"],
        "failure": row["failure"],
        "last_error": row["last_error"],
    }


def _why_not(
    row: dict,
    held: dict[str, int],
    requeued_certificates: set[tuple[str, int]],
    certificates: dict[tuple[str, int], str] | None = None,
) -> str | None:
    """Why this row is not sent again, or None when it is."""
    if row["status"] == store.PENDING:
        return "pending already: it goes out with the next delivery run"
    if row["status"] == store.DELIVERED:
        return "delivered already: customs acknowledged it"
    if row["failure"] == store.INVALID:
        return (
            "never sent: the certificate built from this licence version breaks the contract"
            " (see its last error); the licence's next version gets a new certificate"
        )
    newer = held.get(row["licence_number"], 0)
    if row["licence_version"] < newer:
        return (
            f"superseded: customs hold version {newer} of the licence; sending version"
            f" {row['licence_version']} now would put an older version over it"
        )
    if row["kind"] == STATUS and certificates is not None:
        key = (row["licence_number"], row["licence_version"])
        if certificates.get(key) == store.FAILED and key not in requeued_certificates:
            return (
                f"its certificate (version {row['licence_version']}) stays failed: retry the"
                f" licence (`elbridge outbox retry --licence {row['licence_number']}`) to send"
                " both"
            )
    return None

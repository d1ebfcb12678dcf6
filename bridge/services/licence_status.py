"""A licence's status changes in the ledger, told to customs: suspend, reinstate, revoke, annul
(by the authority), expire (at the end of validity), exhausted and valid again (by the write-off
rules), and what a new version from the national records does to the status in force.

Every change writes three things together: the licence's status, a `licence_event` row (from,
to, reason, actor, when, at which version) and an outbox row holding the CertificateStatus
update for customs, which `bridge.services.outbox` delivers after the certificate of that
version. The rules are in `bridge.core.lifecycle`.

The authority's actions and the expiry run (`apply_authority_action`, `expire_due`) take the
ledger's engine and own their transaction (bridge.adapters.store.db.run_transaction: a refusal
writes nothing, a conflict with a concurrent writer runs it again from fresh reads). The other
functions are steps of another use case (a customs batch, a manual act, an ingest) and run in
that use case's transaction."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal

from sqlalchemy import Connection, Engine

from bridge.adapters.store import licence_events as store
from bridge.adapters.store import outbox as outbox_store
from bridge.adapters.store.alerts import raise_alert
from bridge.adapters.store.db import lock_licences, run_transaction
from bridge.adapters.store.licences import load_licences
from bridge.adapters.store.reconciliation import reconciliation_rows
from bridge.core.certificate import StatusUpdate, build_status_update, status_update_problems
from bridge.core.errors import Problem
from bridge.core.lifecycle import (
    BRIDGE_ACTOR,
    EXPIRED,
    FINAL,
    NATIONAL_RECORDS_ACTOR,
    AuthorityAction,
    StatusChangeRefused,
    ceiling_shortfalls,
    check_transition,
    figure,
    status_after_action,
    status_for_new_version,
)
from bridge.core.model import Licence, LicenceStatus
from bridge.core.writeoff.checks import used_up
from bridge.services.message_ids import status_message_id

MAX_REASON_CHARACTERS = 10_000  # what the CertificateStatus contract carries


def _required(number: str, name: str, text: str) -> list[Problem]:
    if not isinstance(text, str) or not text.strip():
        return [
            Problem(f"a {name} is required", name, f"licence {number}", None, f"{name}-missing")
        ]
    if name == "reason" and len(text) > MAX_REASON_CHARACTERS:
        return [
            Problem(
                f"the reason is {len(text)} characters; at most {MAX_REASON_CHARACTERS} fit",
                name,
                f"licence {number}",
                None,
                "reason-too-long",
            )
        ]
    return []


def _unknown(number: str) -> StatusChangeRefused:
    return StatusChangeRefused(
        [
            Problem(
                f"the ledger knows no licence {number}",
                "number",
                f"licence {number}",
                number,
                "licence-unknown",
            )
        ],
        summary=f"status of licence {number} not changed",
    )


def change_status(
    conn: Connection,
    number: str,
    new_status: LicenceStatus,
    *,
    reason: str,
    actor: str,
    now: datetime,
) -> bool:
    """Give licence `number` the status `new_status`, in the caller's transaction: the
    licence's status, a licence_event row and the status update for customs in the outbox
    (message id from licence, version, status and the change's sequence number, so a resend
    is the same message). Returns False, changing nothing, when the licence already has that
    status.

    Raises StatusChangeRefused (a Rejected) with a code and reason: `licence-unknown`,
    `status-final`, `transition-not-allowed`, `reason-missing`, `actor-missing`,
    `reason-too-long`, or `concurrent-change` when another transaction changed the status
    meanwhile; nothing is written then."""
    new_status = LicenceStatus(new_status)
    problems = _required(number, "reason", reason) + _required(number, "actor", actor)
    if problems:
        raise StatusChangeRefused(problems, summary=f"status of licence {number} not changed")
    if now.tzinfo is None:
        raise ValueError("now must carry its time zone")
    # The writers' lock (bridge.adapters.store.db): a customs batch or manual act on this licence
    # commits first, and this change reads the status and sequence they left.
    lock_licences(conn, [number])
    header = store.licence_header(conn, number)
    if header is None:
        raise _unknown(number)
    if header.status == new_status:
        return False
    check_transition(number, header.status, new_status)
    _record(conn, header, new_status, reason=reason, actor=actor, now=now)
    return True


def _record(
    conn: Connection,
    header: store.LicenceHeader,
    new_status: LicenceStatus,
    *,
    reason: str,
    actor: str,
    now: datetime,
    from_status: LicenceStatus | None = None,
) -> None:
    """Write an allowed change: the status (compare and set against `header.status`), the
    licence_event (from `from_status`, default the header's) and the status update for
    customs in the outbox."""
    number = header.number
    sequence = store.event_count(conn, number) + 1
    update = StatusUpdate(number, header.version, sequence, new_status, reason, now)
    document = build_status_update(update)
    problems = status_update_problems(document, source=f"status update of licence {number}")
    if problems:  # e.g. a reference the contract cannot carry: refuse before writing anything
        raise StatusChangeRefused(problems, summary=f"status of licence {number} not changed")
    if not store.set_status(conn, number, expected=header.status, new=new_status, now=now):
        raise StatusChangeRefused(
            [
                Problem(
                    f"the status of licence {number} changed while this change was being made;"
                    " read it again and retry",
                    "status",
                    f"licence {number}",
                    new_status.value,
                    "concurrent-change",
                )
            ],
            summary=f"status of licence {number} not changed",
        )
    store.add_event(
        conn,
        number,
        version=header.version,
        from_status=from_status or header.status,
        to_status=new_status,
        reason=reason,
        actor=actor,
        at=now,
    )
    outbox_store.add_messages(
        conn,
        [
            outbox_store.NewMessage(
                status_message_id(number, header.version, new_status.value, sequence),
                outbox_store.STATUS,
                number,
                header.version,
                document.decode("utf-8"),
                outbox_store.PENDING,
            )
        ],
        now=now,
    )


def apply_authority_action(
    engine: Engine,
    number: str,
    action: AuthorityAction,
    *,
    reason: str,
    actor: str,
    now: datetime,
) -> LicenceStatus:
    """An authority suspends, reinstates, revokes or annuls licence `number` (reason and the
    person's identity mandatory), in a transaction of its own; returns the new status. Raises
    StatusChangeRefused, writing nothing, when the action does not apply
    (`action-not-allowed`, `status-final`, `licence-unknown`...)."""
    problems = _required(number, "reason", reason) + _required(number, "actor", actor)
    if problems:
        raise StatusChangeRefused(problems, summary=f"licence {number}: {action} refused")
    return run_transaction(
        engine,
        lambda conn: _apply_action(conn, number, action, reason=reason, actor=actor, now=now),
    )


def _apply_action(
    conn: Connection,
    number: str,
    action: AuthorityAction,
    *,
    reason: str,
    actor: str,
    now: datetime,
) -> LicenceStatus:
    """In the action's transaction: the status it leads to, from the status as it stands under
    the licence's lock, recorded."""
    lock_licences(conn, [number])
    header = store.licence_header(conn, number)
    if header is None:
        raise _unknown(number)
    target = status_after_action(number, header.status, action)
    change_status(conn, number, target, reason=reason, actor=actor, now=now)
    return target


def expire_due(engine: Engine, today: date, now: datetime) -> list[str]:
    """Expire every licence whose validity ended before `today` (valid_to < today) and that is
    not already revoked, annulled or expired, in one transaction of its own; customs are told
    through status updates. Returns the numbers expired, in order."""
    return run_transaction(engine, lambda conn: _expire_due(conn, today, now))


def _expire_due(conn: Connection, today: date, now: datetime) -> list[str]:
    expired = []
    for number in store.licences_past_validity(conn, today, skip=FINAL):
        header = store.licence_header(conn, number)
        reason = f"validity ended on {header.valid_to.isoformat()}"
        if change_status(conn, number, EXPIRED, reason=reason, actor=BRIDGE_ACTOR, now=now):
            expired.append(number)
    return expired


def follow_usage(
    conn: Connection, number: str, *, reason: str, now: datetime
) -> LicenceStatus | None:
    """After a movement on licence `number` outside the customs batches (a manual write-off,
    correction or reversal): `exhausted` when a valid licence has every line with a ceiling
    used up (an `exhausted` alert for the authority), `valid` again when an exhausted one has
    room again; customs are told as for every status change. Returns the new status, or None
    when the status stays (any other status is the authority's and is left alone)."""
    licence = load_licences(conn, [number]).get(number)
    if licence is None or licence.status not in (LicenceStatus.VALID, LicenceStatus.EXHAUSTED):
        return None
    full = used_up(licence, _line_totals(conn, number))
    if full == (licence.status is LicenceStatus.EXHAUSTED):
        return None
    target = LicenceStatus.EXHAUSTED if full else LicenceStatus.VALID
    why = f"every line with a ceiling is used up: {reason}" if full else f"room again: {reason}"
    if not change_status(conn, number, target, reason=why, actor=BRIDGE_ACTOR, now=now):
        return None
    if full:
        raise_alert(
            conn,
            "exhausted",
            f"licence {number} is exhausted: {why}",
            now=now,
            licence_number=number,
        )
    return target


def _line_totals(conn: Connection, number: str) -> dict[tuple[str, int], tuple[Decimal, Decimal]]:
    """What is written off each current line of the licence, from the one balance query."""
    return {
        (row.licence_number, row.line_number): (row.written_off_quantity, row.written_off_value)
        for row in reconciliation_rows(conn, number)
    }


def status_held_before(conn: Connection, number: str, version: int) -> LicenceStatus | None:
    """The status licence `number` had before `version` was stored: the last status change
    recorded, else what the previous version said; None for a first version."""
    last = store.last_event_status(conn, number)
    if last is not None:
        return last
    return store.status_of_version_before(conn, number, version)


def on_first_version(conn: Connection, stored: Licence, *, now: datetime) -> LicenceStatus:
    """What a licence new to the ledger does beyond its certificate, in the caller's (ingest's)
    transaction; returns the status in force.

    A licence whose last valid day has passed before it reached the bridge is expired at once:
    stored as the national records issued it (that version is what customs get certified), its
    status in the ledger `expired` with a licence_event saying why, and a status update to
    `expired` in the outbox right after its certificate (delivered only once customs
    acknowledged the certificate). It is sent rather than withheld so that customs know the
    licence: a declaration quoting it is refused as expired, not as unknown, and goods released
    before its end date whose events come late are written off against it
    (docs/contingency.md). A suspended, revoked or annulled record keeps its status."""
    if not (
        stored.valid_to is not None
        and stored.valid_to < now.date()
        and stored.status in (LicenceStatus.VALID, LicenceStatus.EXHAUSTED)
    ):
        return stored.status
    header = store.licence_header(conn, stored.number)
    if header is None:
        return stored.status
    reason = (
        f"validity ended on {stored.valid_to.isoformat()}, before the licence reached the"
        f" bridge (the national records say {stored.status})"
    )
    _record(conn, header, EXPIRED, reason=reason, actor=BRIDGE_ACTOR, now=now)
    return EXPIRED


def on_new_version(conn: Connection, stored: Licence, *, now: datetime) -> LicenceStatus:
    """What a new version of a licence from the national records does beyond its certificate,
    in the caller's (ingest's) transaction; returns the status in force.

    The status follows `bridge.core.lifecycle.status_for_new_version`: when it is not the one the
    version says, the licence keeps it and customs get a status update for the new version
    right after its certificate; every status change is in licence_event. Usage carries over
    (movements belong to licence lines), and a ceiling now below what is already used is
    accepted but raised to the authority (`flag_ceilings_below_usage`), as is a line the version
    drops that has usage (`flag_dropped_lines`): that usage stays on the line, in reconciliation
    and history."""
    number = stored.number
    held = status_held_before(conn, number, stored.version)
    totals = _line_totals(conn, number)
    validity_over = stored.valid_to is not None and stored.valid_to < now.date()
    status, why = status_for_new_version(
        held or stored.status,
        stored.status,
        validity_over=validity_over,
        used_up=used_up(stored, totals),
    )
    header = store.licence_header(conn, number)
    if header is not None and held is not None:
        if status != stored.status:
            reason = f"new version {stored.version} says {stored.status}, but {why}"
            _record(
                conn,
                header,
                status,
                reason=reason,
                actor=BRIDGE_ACTOR,
                now=now,
                from_status=held,
            )
            if status is LicenceStatus.EXHAUSTED and held is not LicenceStatus.EXHAUSTED:
                raise_alert(
                    conn,
                    "exhausted",
                    f"licence {number} is exhausted: {reason}",
                    now=now,
                    licence_number=number,
                )
        elif status != held:
            store.add_event(
                conn,
                number,
                version=stored.version,
                from_status=held,
                to_status=status,
                reason=f"new version {stored.version} from the national records",
                actor=NATIONAL_RECORDS_ACTOR,
                at=now,
            )
    flag_ceilings_below_usage(conn, stored, now=now)
    flag_dropped_lines(conn, stored, now=now)
    return status


def flag_dropped_lines(conn: Connection, licence: Licence, *, now: datetime) -> list[int]:
    """Raise a `line-dropped-with-usage` alert for every line that `licence` (a new version)
    no longer has and that has movements: the version is accepted, what was written off on the
    line stays on it (reconciliation shows it as dropped), and nothing more can be written off
    it. Returns the line numbers flagged."""
    flagged = []
    for row in reconciliation_rows(conn, licence.number):
        if row.dropped_in_version != licence.version:
            continue
        flagged.append(row.line_number)
        used = " and ".join(
            f"{figure(amount)} {what}"
            for amount, what, counted in (
                (row.written_off_quantity, row.unit, row.unit is not None),
                (row.written_off_value, row.currency, row.currency is not None),
            )
            if counted or amount
        )
        raise_alert(
            conn,
            "line-dropped-with-usage",
            f"licence {licence.number} v{licence.version} drops line {row.line_number}"
            f" ({row.control_list_entry}), on which {used or 'nothing'} is written off in"
            f" {row.movements} movement(s): the usage stays on the dropped line; nothing more"
            " can be written off it",
            now=now,
            licence_number=licence.number,
            line_number=row.line_number,
            details={
                "version": licence.version,
                "control_list_entry": row.control_list_entry,
                "written_off_quantity": figure(row.written_off_quantity),
                "unit": row.unit,
                "written_off_value": figure(row.written_off_value),
                "currency": row.currency,
                "movements": row.movements,
            },
        )
    return flagged


def flag_ceilings_below_usage(conn: Connection, licence: Licence, *, now: datetime) -> list[int]:
    """Raise a `ceiling-below-usage` alert for every line of `licence` whose quantity or value
    ceiling is now below what is already written off on it (the version is accepted all the
    same: what was exported stays exported). Returns the line numbers flagged."""
    flagged = []
    for row in reconciliation_rows(conn, licence.number):
        below = ceiling_shortfalls(row)
        if not below:
            continue
        flagged.append(row.line_number)
        raise_alert(
            conn,
            "ceiling-below-usage",
            f"licence {licence.number} v{licence.version} line {row.line_number}: "
            + "; ".join(below),
            now=now,
            licence_number=licence.number,
            line_number=row.line_number,
            details={
                "version": licence.version,
                "authorised_quantity": figure(row.authorised_quantity),
                "written_off_quantity": figure(row.written_off_quantity),
                "unit": row.unit,
                "authorised_value": figure(row.authorised_value),
                "written_off_value": figure(row.written_off_value),
                "currency": row.currency,
            },
        )
    return flagged

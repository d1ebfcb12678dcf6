"""What a licensing authority does and reads in the ledger: write off, correct or reverse by
hand (manual quantity management), and a licence's movement history, refusals and alerts.

Service functions for the CLI, the DAGs and any UI. Each takes a connection inside the caller's
transaction (`with engine.begin() as conn:`), so a refused act writes nothing: the rules live in
bridge.core.manual, the SQL in bridge.adapters.store; this module only wires them."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection

from bridge.adapters.store import history
from bridge.adapters.store.alerts import raise_alert
from bridge.adapters.store.licences import load_licences
from bridge.adapters.store.manual import lock_licence, record_manual_movement
from bridge.adapters.store.reconciliation import reconciliation_rows
from bridge.core.errors import Problem, Rejected
from bridge.core.history import HistoryRow
from bridge.core.manual import (
    ManualKind,
    ManualMovement,
    ManualRequest,
    decide_manual,
    decide_reversal,
)
from bridge.core.model import Licence, LicenceStatus
from bridge.core.reconcile import ReconciliationRow
from bridge.services.licence_status import follow_usage

MANUAL_OVER_USE = "manual-over-use"  # alert kind: a forced manual movement beyond a ceiling
MANUAL_OVERRIDE = "manual-override"  # alert kind: a forced write-off on a licence not valid


@dataclass(frozen=True, slots=True)
class ManualResult:
    """A manual act as recorded: its movement, the line's balance after it, the alerts it
    raised (kinds)."""

    movement_id: int
    movement: ManualMovement
    line: ReconciliationRow | None  # None when the line is no longer in the current version
    alerts: tuple[str, ...] = ()
    status: LicenceStatus | None = None  # the licence's new status when this act changed it

    def describe(self) -> str:
        m = self.movement
        declared = (
            f" (declared {m.declared_quantity:f} {m.declared_unit})"
            if m.declared_quantity is not None
            else ""
        )
        unit = self.line.unit if self.line and self.line.unit else ""
        currency = self.line.currency if self.line and self.line.currency else ""
        text = (
            f"movement {self.movement_id}: {m.kind} of {m.quantity:f} {unit}".rstrip()
            + (f" and {m.value:f} {currency}" if m.value else "")
            + f"{declared} on licence {m.licence_number} line {m.line_number}"
            f" by {m.actor}: {m.reason}"
        )
        for kind in self.alerts:
            text += f"\nalert raised: {kind}"
        if self.status is not None:
            text += (
                f"\nlicence {m.licence_number} is now {self.status}; customs get the status"
                " update on the next sync"
            )
        return text


def manual_write_off(
    conn: Connection,
    licence_number: str,
    line_number: int,
    quantity: Decimal,
    unit: str,
    *,
    value: Decimal | None = None,
    currency: str | None = None,
    reason: str,
    actor: str,
    now: datetime,
    reference: str | None = None,
    force: bool = False,
) -> ManualResult:
    """Write off `quantity` (in `unit`, converted exactly into the line's unit) and `value` by
    hand. Refused (Rejected, nothing written) beyond the remaining balance of a ceiling line
    unless `force`d, which records the movement and raises a `manual-over-use` alert."""
    return _manual(
        conn,
        ManualKind.WRITE_OFF,
        licence_number,
        line_number,
        quantity,
        unit,
        value=value,
        currency=currency,
        reason=reason,
        actor=actor,
        now=now,
        reference=reference,
        force=force,
    )


def correct(
    conn: Connection,
    licence_number: str,
    line_number: int,
    quantity: Decimal,
    unit: str,
    *,
    value: Decimal | None = None,
    currency: str | None = None,
    reason: str,
    actor: str,
    now: datetime,
    reference: str | None = None,
    force: bool = False,
) -> ManualResult:
    """A signed adjustment of what a line has written off (e.g. a customs error found in an
    audit): positive writes off more, negative gives back; never below nothing written off,
    beyond a ceiling only when `force`d (then a `manual-over-use` alert)."""
    return _manual(
        conn,
        ManualKind.CORRECTION,
        licence_number,
        line_number,
        quantity,
        unit,
        value=value,
        currency=currency,
        reason=reason,
        actor=actor,
        now=now,
        reference=reference,
        force=force,
    )


def reverse_movement(
    conn: Connection,
    movement_id: int,
    *,
    reason: str,
    actor: str,
    now: datetime,
    force: bool = False,
) -> ManualResult:
    """Undo one earlier manual write-off or correction by appending its opposite, once: a
    second reversal of the same movement is refused, as is a reversal of a customs movement
    (corrected instead) or of a reversal."""
    original = history.movement_by_id(conn, movement_id)
    if original is not None:
        lock_licence(conn, original.licence_number)
    licence = _licence(conn, original.licence_number) if original else None
    decided = decide_reversal(
        movement_id,
        original,
        reversed_by=history.reversal_of(conn, movement_id),
        licence=licence,
        written_off=(
            history.line_written_off(conn, original.licence_number, original.line_number)
            if original
            else (Decimal(0), Decimal(0))
        ),
        reason=reason,
        actor=actor,
        force=force,
    )
    return _record(conn, decided, now)


def licence_history(conn: Connection, licence_number: str) -> list[HistoryRow]:
    """The licence's movements in time order, each with its line's running balance. Raises
    Rejected when the ledger knows neither the licence nor any movement of it."""
    licence, rows = history.licence_history(conn, licence_number)
    if licence is None and not rows:
        raise Rejected(
            [Problem(f"licence {licence_number} is not in the ledger", code="licence-unknown")],
            summary=f"no history for licence {licence_number}",
        )
    return rows


def list_refusals(conn: Connection, licence_number: str | None = None) -> list[dict[str, Any]]:
    """Refused write-offs (all, or one licence's), newest first, with code and reason."""
    return history.refusals_for(conn, licence_number)


def list_alerts(conn: Connection, licence_number: str | None = None) -> list[dict[str, Any]]:
    """Alerts for the authority (all, or one licence's), newest first."""
    return history.alerts_for(conn, licence_number)


def _manual(
    conn: Connection,
    kind: ManualKind,
    licence_number: str,
    line_number: int,
    quantity: Decimal,
    unit: str,
    *,
    value: Decimal | None,
    currency: str | None,
    reason: str,
    actor: str,
    now: datetime,
    reference: str | None,
    force: bool,
) -> ManualResult:
    """A manual write-off or correction: the request checked for exact numbers, decided by
    bridge.core.manual on the licence as it stands under its lock, and recorded."""
    request = ManualRequest(
        kind,
        licence_number,
        line_number,
        _exact(quantity, "quantity"),
        unit,
        reason,
        actor,
        value=None if value is None else _exact(value, "value"),
        currency=currency,
        reference=reference,
        force=force,
    )
    lock_licence(conn, licence_number)
    licence = _licence(conn, licence_number)
    written_off = history.line_written_off(conn, licence_number, line_number)
    return _record(conn, decide_manual(request, licence, written_off), now)


def _record(conn: Connection, decided: ManualMovement, now: datetime) -> ManualResult:
    movement_id = record_manual_movement(conn, decided, now=now)
    alerts = []
    details = {
        "movement_id": movement_id,
        "kind": str(decided.kind),
        "quantity": decided.quantity,
        "value": decided.value,
        "actor": decided.actor,
        "reason": decided.reason,
    }
    if decided.forced_over_use:
        raise_alert(
            conn,
            MANUAL_OVER_USE,
            f"{decided.kind} by {decided.actor} forced beyond the ceiling: "
            + "; ".join(decided.forced_over_use)
            + f". Reason given: {decided.reason}",
            now=now,
            licence_number=decided.licence_number,
            line_number=decided.line_number,
            mrn=decided.mrn,
            details=details,
        )
        alerts.append(MANUAL_OVER_USE)
    if decided.forced_status:
        raise_alert(
            conn,
            MANUAL_OVERRIDE,
            f"{decided.kind} by {decided.actor} forced although {decided.forced_status}."
            f" Reason given: {decided.reason}",
            now=now,
            licence_number=decided.licence_number,
            line_number=decided.line_number,
            details=details,
        )
        alerts.append(MANUAL_OVERRIDE)
    # Used up by hand is exhausted as by customs; given back by hand is valid again. Customs
    # are told through the status update this writes to the outbox.
    status = follow_usage(
        conn,
        decided.licence_number,
        reason=f"{decided.kind} movement {movement_id} by {decided.actor}: {decided.reason}",
        now=now,
    )
    if status is LicenceStatus.EXHAUSTED:
        alerts.append("exhausted")
    line = next(
        (
            row
            for row in reconciliation_rows(conn, decided.licence_number)
            if row.line_number == decided.line_number
        ),
        None,
    )
    return ManualResult(movement_id, decided, line, tuple(alerts), status)


def _licence(conn: Connection, number: str) -> Licence | None:
    return load_licences(conn, [number]).get(number)


def _exact(amount: Any, what: str) -> Decimal:
    # Quantities and money are exact: a float has already lost digits, so it is refused.
    if isinstance(amount, Decimal):
        return amount
    if isinstance(amount, int | str) and not isinstance(amount, bool):
        try:
            return Decimal(amount)
        except ArithmeticError:
            pass
    raise Rejected(
        [Problem(f"the {what} must be an exact decimal number", path=what, value=repr(amount))],
        summary=f"{what} refused",
    )

"""What a licensing authority does and reads in the ledger: write off, correct or reverse by
hand (manual quantity management), and a licence's movement history, refusals and alerts.

Service functions for the CLI, the DAGs and any UI. Each act takes the ledger's engine and owns
its transaction (bridge.adapters.store.db.run_transaction): a refused act (Rejected) writes
nothing, and one the database aborted over a conflict with a concurrent writer (a customs batch,
another act) runs again from fresh reads. Every act reads the same way: lock the licence, load
what the rules need through the store, ask the rules (bridge.core.manual), append the movement
they decided, raise the alerts they name, follow the licence's status
(bridge.services.licence_status) and read the line's balance. The views read in one
connection of their own."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, Engine

from bridge.adapters.store import history
from bridge.adapters.store.alerts import raise_alert
from bridge.adapters.store.db import run_transaction
from bridge.adapters.store.licences import lines_of_every_version, load_licences
from bridge.adapters.store.manual import lock_licence, record_manual_movement
from bridge.adapters.store.reconciliation import reconciliation_rows
from bridge.core.errors import Problem, Rejected
from bridge.core.history import HistoryRow, running_balances
from bridge.core.manual import ManualRequest, decide_manual, decide_reversal, forced_alerts
from bridge.core.model import Licence, LicenceStatus
from bridge.core.movements import ManualKind, ManualMovement
from bridge.core.reconcile import ReconciliationRow
from bridge.core.units import from_alias
from bridge.services.licence_status import follow_usage


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
    engine: Engine,
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
        engine,
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
    engine: Engine,
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
        engine,
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
    engine: Engine,
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
    return run_transaction(
        engine,
        lambda conn: _apply_reversal(
            conn, movement_id, reason=reason, actor=actor, now=now, force=force
        ),
    )


def licence_history(engine: Engine, licence_number: str) -> list[HistoryRow]:
    """The licence's movements in time order, each with its line's running balance. Raises
    Rejected when the ledger knows neither the licence nor any movement of it."""
    with engine.connect() as conn:
        licence = _licence(conn, licence_number)
        movements = history.movements_of(conn, licence_number)
        every = lines_of_every_version(conn, licence_number) if licence else {}
    if licence is None and not movements:
        raise Rejected(
            [Problem(f"licence {licence_number} is not in the ledger", code="licence-unknown")],
            summary=f"no history for licence {licence_number}",
        )
    # A line a later version dropped keeps its movements, counted in the unit and currency of
    # the last version that had it, with no ceiling left (as reconciliation shows it).
    lines = {n: replace(line, quantity=None, value=None) for n, line in every.items()}
    lines.update((line.line_number, line) for line in (licence.ledger_lines if licence else ()))
    return running_balances(movements, lines)


def list_refusals(engine: Engine, licence_number: str | None = None) -> list[dict[str, Any]]:
    """Refused write-offs (all, or one licence's), newest first, with code and reason."""
    with engine.connect() as conn:
        return history.refusals_for(conn, licence_number)


def list_alerts(engine: Engine, licence_number: str | None = None) -> list[dict[str, Any]]:
    """Alerts for the authority (all, or one licence's), newest first."""
    with engine.connect() as conn:
        return history.alerts_for(conn, licence_number)


def over_used_lines(engine: Engine, licence_number: str) -> list[ReconciliationRow]:
    """The licence's lines written off beyond their ceiling (by force or by customs)."""
    with engine.connect() as conn:
        return [row for row in reconciliation_rows(conn, licence_number) if row.over_used]


def _manual(
    engine: Engine,
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
    """A manual write-off or correction: the request checked for exact numbers before any
    transaction, then decided and recorded in one (`_apply_manual`)."""
    request = ManualRequest(
        kind,
        licence_number,
        line_number,
        _exact(quantity, "quantity"),
        from_alias(unit),  # `kg` typed by an officer is KGM
        reason,
        actor,
        value=None if value is None else _exact(value, "value"),
        currency=currency,
        reference=reference,
        force=force,
    )
    return run_transaction(engine, lambda conn: _apply_manual(conn, request, now))


def _apply_manual(conn: Connection, request: ManualRequest, now: datetime) -> ManualResult:
    """In the act's transaction: a write-off or correction decided by bridge.core.manual on the
    licence as it stands under its lock, recorded, and the licence's status followed."""
    lock_licence(conn, request.licence_number)
    licence = _licence(conn, request.licence_number)
    written_off = history.line_written_off(conn, request.licence_number, request.line_number)
    decided = decide_manual(request, licence, written_off)
    movement_id = record_manual_movement(conn, decided, now=now)
    alerts = _raise_alerts(conn, decided, movement_id, now)
    status = _follow_status(conn, decided, movement_id, now)
    return _result(conn, decided, movement_id, alerts, status)


def _apply_reversal(
    conn: Connection, movement_id: int, *, reason: str, actor: str, now: datetime, force: bool
) -> ManualResult:
    """In the act's transaction: the reversal decided by bridge.core.manual on the original
    movement and its licence as they stand under the licence's lock, recorded, and the
    licence's status followed."""
    original = history.movement_by_id(conn, movement_id)  # movements are never edited
    licence, reversed_by, written_off = None, None, (Decimal(0), Decimal(0))
    if original is not None:
        lock_licence(conn, original.licence_number)
        licence = _licence(conn, original.licence_number)
        reversed_by = history.reversal_of(conn, movement_id)
        written_off = history.line_written_off(conn, original.licence_number, original.line_number)
    decided = decide_reversal(
        movement_id,
        original,
        reversed_by=reversed_by,
        licence=licence,
        written_off=written_off,
        reason=reason,
        actor=actor,
        force=force,
    )
    reversal_id = record_manual_movement(conn, decided, now=now)
    alerts = _raise_alerts(conn, decided, reversal_id, now)
    status = _follow_status(conn, decided, reversal_id, now)
    return _result(conn, decided, reversal_id, alerts, status)


def _raise_alerts(
    conn: Connection, decided: ManualMovement, movement_id: int, now: datetime
) -> list[str]:
    """Raise the alerts the rules name for the recorded movement; returns their kinds."""
    details = {
        "movement_id": movement_id,
        "kind": str(decided.kind),
        "quantity": decided.quantity,
        "value": decided.value,
        "actor": decided.actor,
        "reason": decided.reason,
    }
    alerts = forced_alerts(decided)
    for alert in alerts:
        raise_alert(
            conn,
            alert.kind,
            alert.message,
            now=now,
            licence_number=decided.licence_number,
            line_number=decided.line_number,
            mrn=decided.mrn,
            details=details,
        )
    return [alert.kind for alert in alerts]


def _follow_status(
    conn: Connection, decided: ManualMovement, movement_id: int, now: datetime
) -> LicenceStatus | None:
    # Used up by hand is exhausted as by customs; given back by hand is valid again. Customs
    # are told through the status update this writes to the outbox.
    return follow_usage(
        conn,
        decided.licence_number,
        reason=f"{decided.kind} movement {movement_id} by {decided.actor}: {decided.reason}",
        now=now,
    )


def _result(
    conn: Connection,
    decided: ManualMovement,
    movement_id: int,
    alerts: list[str],
    status: LicenceStatus | None,
) -> ManualResult:
    """The act as recorded, with the line's balance after it."""
    rows = reconciliation_rows(conn, decided.licence_number)
    line = next((row for row in rows if row.line_number == decided.line_number), None)
    kinds = alerts + (["exhausted"] if status is LicenceStatus.EXHAUSTED else [])
    return ManualResult(movement_id, decided, line, tuple(kinds), status)


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

"""Ledger movements as plain data: a movement row as the ledger keeps it, and the movement a
manual act appends. No rules here: the store reads and writes these, the rules
(bridge.core.manual) decide them and bridge.core.history renders them."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from enum import StrEnum

# A reversal made by hand names the movement it undoes in its message id: the mark makes
# "reversed once only" a question the ledger can answer.
REVERSAL_MARK = "reversal-of:"


def reversal_mark(movement_id: int) -> str:
    """The message id of the reversal of movement `movement_id`."""
    return f"{REVERSAL_MARK}{movement_id}"


@dataclass(frozen=True, slots=True)
class RecordedMovement:
    """One movement row as the ledger keeps it: signed quantity in the line's unit, signed
    value in the line's currency, what was declared, who moved it, when and why."""

    id: int
    licence_number: str
    line_number: int
    kind: str
    quantity: Decimal
    value: Decimal
    declared_quantity: Decimal | None
    declared_unit: str | None
    mrn: str | None
    goods_item: int | None
    document_code: str | None
    document_ref: str | None
    message_id: str | None
    actor: str
    reason: str | None
    at: datetime
    contingency: bool = False  # recorded after the goods left unchecked (docs/contingency.md)

    @property
    def reverses(self) -> int | None:
        """The id of the movement this one reverses by hand, if it is such a reversal."""
        if self.message_id and self.message_id.startswith(REVERSAL_MARK):
            tail = self.message_id[len(REVERSAL_MARK) :]
            return int(tail) if tail.isdigit() else None
        return None


class ManualKind(StrEnum):
    WRITE_OFF = "manual_write_off"
    CORRECTION = "correction"
    REVERSAL = "reversal"


@dataclass(frozen=True, slots=True)
class ManualMovement:
    """The movement a manual act appends, in the line's unit and currency."""

    licence_number: str
    line_number: int
    kind: ManualKind
    quantity: Decimal
    value: Decimal
    declared_quantity: Decimal | None
    declared_unit: str | None
    actor: str
    reason: str
    mrn: str | None = None
    goods_item: int | None = None
    document_code: str | None = None
    document_ref: str | None = None
    message_id: str | None = None
    # What `force` let through, each as a reason: ceilings exceeded, a licence not valid.
    forced_over_use: tuple[str, ...] = ()
    forced_status: str | None = None

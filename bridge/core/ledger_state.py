"""The ledger's plain data: what a write-off moves, what it keeps per key, what it refuses, what it
tells the authority, and the rows the store reads and writes for declarations and processed
messages. No rules here (bridge.core.writeoff decides); the store may import this module."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from enum import StrEnum
from typing import Any

from bridge.core.model import LicenceStatus

LEDGER_DECIMALS = Decimal("0.000001")  # the ledger keeps six decimals (schema.Micro)
# Micro holds up to about 9.2e12; one write-off stays far enough below for line sums to fit.
LEDGER_LIMIT = Decimal(10) ** 12
ZERO = Decimal(0)
STATUS_ACTOR = "bridge"  # who changes a licence's status when its lines are used up or freed again

Key = tuple[str, int, str, str]  # (mrn, goods item, document code, document reference)
LineKey = tuple[str, int]  # (licence number, line number)
Totals = tuple[Decimal, Decimal]  # (quantity, value) written off on a line so far
Finding = tuple[str, str]  # (machine-readable code, human reason)


class Outcome(StrEnum):
    APPLIED = "applied"  # every write-off of the message was applied
    IGNORED = "ignored"  # nothing in it concerns a dual-use licence, or the MRN is invalidated
    REFUSED = "refused"  # at least one write-off was refused (see refusal); others applied
    STALE = "stale"  # an older or equal declaration version than the ledger holds
    DUPLICATE = "duplicate"  # this message (or this MRN and version) was processed before
    HELD = "held"  # an amendment that came before its release: kept until the release
    QUARANTINED = "quarantined"  # unreadable: stored with its reasons (see quarantine)


class MovementKind(StrEnum):
    WRITE_OFF = "write_off"
    RECORD = "record"  # usage of a general authorisation: recorded, no ceiling to decrement
    ADJUSTMENT = "adjustment"
    REVERSAL = "reversal"
    MANUAL = "manual"


class Record(StrEnum):
    """What the ledger does with a message outcome in processed_message."""

    INSERT = "insert"
    UPDATE = "update"  # a held amendment applied (or dropped) now
    NONE = "none"  # the message id is already recorded


@dataclass(frozen=True, slots=True)
class Usage:
    """What one key writes off now, in the licence line's unit and currency."""

    licence_number: str
    line_number: int
    quantity: Decimal
    value: Decimal
    declaration_version: int
    event: str

    @property
    def line_key(self) -> LineKey:
        return (self.licence_number, self.line_number)


@dataclass(frozen=True, slots=True)
class Movement:
    licence_number: str
    line_number: int
    kind: MovementKind
    quantity: Decimal  # signed, in the line's unit
    value: Decimal  # signed, in the line's currency
    mrn: str
    goods_item: int
    document_code: str
    document_ref: str
    message_id: str
    reason: str
    declared_quantity: Decimal | None = None
    declared_unit: str | None = None
    # Recorded after the goods left without the bridge's check (docs/contingency.md).
    contingency: bool = False


@dataclass(frozen=True, slots=True)
class Refusal:
    mrn: str
    goods_item: int
    document_code: str
    document_ref: str
    licence_number: str | None
    line_number: int | None
    code: str
    reason: str
    message_id: str


@dataclass(frozen=True, slots=True)
class Alert:
    """Something the licensing authority must look at (over-use, CN/CLE warning, exhausted)."""

    kind: str
    message: str
    licence_number: str | None = None
    line_number: int | None = None
    mrn: str | None = None
    details: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class StatusChange:
    """A licence status the rules changed (exhausted when used up, valid again when freed)."""

    licence_number: str
    from_status: LicenceStatus
    to_status: LicenceStatus
    reason: str
    actor: str = STATUS_ACTOR


@dataclass(frozen=True, slots=True)
class StoredDeclaration:
    """A declaration's row as the ledger keeps it: held amendments as the messages received
    (`held_messages`, by version), the declaration acted on as its JSON
    (bridge.core.acted_on.to_json)."""

    mrn: str
    version: int = 0
    event: str | None = None
    invalidated: bool = False
    message_id: str | None = None
    held_messages: tuple[bytes, ...] = ()
    held_version: int | None = None  # the newest held amendment's version
    acted_on: str | None = None


@dataclass(frozen=True, slots=True)
class ProcessedMessage:
    """A message's outcome as processed_message keeps it, with the result message answering it
    (kept pending until published). `update`: the row exists (a held amendment, decided now)."""

    message_id: str
    mrn: str | None
    event: str | None
    outcome: str
    result: bytes | None
    update: bool = False

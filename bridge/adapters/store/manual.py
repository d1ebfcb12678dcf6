"""Manual movements in the ledger: append a decided movement (bridge.core.movements.ManualMovement),
and serialise manual acts on one licence. Rows are only ever added, never edited or deleted
(docs/ledger-audit.md)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Connection, insert

from bridge.adapters.store.chain import CHAIN_COLUMNS, linked
from bridge.adapters.store.db import lock_licences
from bridge.adapters.store.schema import movement
from bridge.core.ledger_chain import MOVEMENT, MOVEMENT_FIELDS, as_utc
from bridge.core.movements import ManualMovement


def lock_licence(conn: Connection, licence_number: str) -> None:
    """Hold the licence until the caller's transaction ends, so that manual acts on one licence
    (and the customs batches that write to it) take turns and each sees the totals the one
    before it committed: the same lock a customs batch takes
    (bridge.adapters.store.db.lock_licences)."""
    lock_licences(conn, [licence_number])


def record_manual_movement(conn: Connection, manual: ManualMovement, *, now: datetime) -> int:
    """Append the movement, a link in its licence's hash chain (the caller holds the licence's
    lock), and return its id."""
    fields = (
        manual.licence_number,
        manual.line_number,
        str(manual.kind),
        manual.quantity,
        manual.value,
        manual.declared_quantity,
        manual.declared_unit,
        manual.mrn,
        manual.goods_item,
        manual.document_code,
        manual.document_ref,
        manual.message_id,
        manual.actor,
        manual.reason,
        as_utc(now),
        None,  # contingency: customs write-offs only
    )
    (row,) = linked(conn, MOVEMENT, [fields])
    result = conn.execute(
        insert(movement).values(dict(zip((*MOVEMENT_FIELDS, *CHAIN_COLUMNS), row, strict=True)))
    )
    return int(result.inserted_primary_key[0])

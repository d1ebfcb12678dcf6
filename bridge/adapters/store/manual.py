"""Manual movements in the ledger: append a decided movement (bridge.core.movements.ManualMovement),
and serialise manual acts on one licence. Rows are only ever added, never edited or deleted."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Connection, insert

from bridge.adapters.store.db import lock_licences
from bridge.adapters.store.schema import movement
from bridge.core.movements import ManualMovement


def lock_licence(conn: Connection, licence_number: str) -> None:
    """Hold the licence until the caller's transaction ends, so that manual acts on one licence
    (and the customs batches that write to it) take turns and each sees the totals the one
    before it committed: the same lock a customs batch takes
    (bridge.adapters.store.db.lock_licences)."""
    lock_licences(conn, [licence_number])


def record_manual_movement(conn: Connection, manual: ManualMovement, *, now: datetime) -> int:
    """Append the movement and return its id."""
    result = conn.execute(
        insert(movement).values(
            licence_number=manual.licence_number,
            line_number=manual.line_number,
            kind=str(manual.kind),
            quantity=manual.quantity,
            value=manual.value,
            declared_quantity=manual.declared_quantity,
            declared_unit=manual.declared_unit,
            mrn=manual.mrn,
            goods_item=manual.goods_item,
            document_code=manual.document_code,
            document_ref=manual.document_ref,
            message_id=manual.message_id,
            actor=manual.actor,
            reason=manual.reason,
            at=now,
        )
    )
    return int(result.inserted_primary_key[0])

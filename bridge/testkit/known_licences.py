"""Licences put into a ledger as a test or a benchmark needs them before it starts: stored as
ingest stores them (bridge.adapters.store.licences.save_licence) and, unless told otherwise,
known to customs (a delivered certificate in the outbox), which write-offs require."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import Connection

from bridge.adapters.store.licences import SaveOutcome, save_licence
from bridge.adapters.store.outbox import DELIVERED, NewMessage, add_messages
from bridge.core.model import Licence


def store_known_licences(
    conn: Connection,
    licences: Iterable[Licence],
    *,
    now: datetime,
    source: str,
    known_to_customs: bool = True,
) -> int:
    """Store `licences` (as from `source`, at `now`); unless `known_to_customs` is False, add
    for each new version stored a certificate customs acknowledged. Returns how many licences
    were stored."""
    delivered = []
    count = 0
    for licence in licences:
        outcome, stored = save_licence(
            conn, licence, source=source, now=now, explicit_version=False
        )
        count += 1
        if known_to_customs and outcome in (SaveOutcome.NEW, SaveOutcome.NEW_VERSION):
            delivered.append(
                NewMessage(
                    f"{source}-certificate-{stored.number}-v{stored.version}",
                    "certificate",
                    stored.number,
                    stored.version,
                    f"<certificate delivered before the {source}/>",
                    DELIVERED,
                )
            )
    if delivered:
        add_messages(conn, delivered, now=now)
    return count

"""What the console's operations pages show: national records rejected at ingest (per file,
every reason), the quarantine and the outbox, each as a table of bridge.core.console_tables.
Replaying and retrying are bridge.services.quarantine's and bridge.services.outbox's."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Engine

from bridge.adapters.store.rejects import StoredReject, list_rejects
from bridge.core.console_tables import (
    OUTBOX,
    QUARANTINE,
    REJECTS,
    pick,
    reject_records,
    split_source,
)
from bridge.core.quarantine import QUARANTINED
from bridge.core.tables import Table
from bridge.services.outbox import outbox_listing
from bridge.services.quarantine import Selection, list_quarantined

QUARANTINE_STATES = ("open", "replayed", "all")


@dataclass(frozen=True)
class RejectedRecord:
    """One rejected record: as stored (its text as read, for the authority to fix) and the
    table of its reasons."""

    stored: StoredReject
    reasons: Table


@dataclass(frozen=True)
class RejectedFile:
    """One national file's rejected records, in the file's order."""

    file: str
    records: list[RejectedRecord]


@dataclass(frozen=True)
class Rejected:
    files: list[RejectedFile]
    file_names: list[str]  # every file with rejects (for the filter)
    mappings: list[str]

    @property
    def records(self) -> int:
        return sum(len(f.records) for f in self.files)

    def table(self) -> Table:
        """Every reason of every record shown, one table."""
        return REJECTS.table(
            row for f in self.files for record in f.records for row in record.reasons.rows
        )


def rejected_records(engine: Engine, *, file: str = "", mapping: str = "") -> Rejected:
    """The rejected national records of `file` and `mapping` (empty: any), newest file first
    (by its latest reject), each record with every reason."""
    with engine.connect() as conn:
        stored = list_rejects(conn)
    file_names = sorted({split_source(r.source)[0] for r in stored})
    mappings = sorted({r.format for r in stored})
    chosen = [
        r
        for r in stored
        if (not file or split_source(r.source)[0] == file) and (not mapping or r.format == mapping)
    ]
    by_file: dict[str, list[StoredReject]] = {}
    for record in chosen:
        by_file.setdefault(split_source(record.source)[0], []).append(record)
    files = [
        RejectedFile(name, [RejectedRecord(r, REJECTS.table(reject_records([r]))) for r in records])
        for name, records in sorted(
            by_file.items(), key=lambda item: max(r.at for r in item[1]), reverse=True
        )
    ]
    return Rejected(files, file_names, mappings)


def quarantine_table(
    engine: Engine,
    *,
    state: str = "open",
    mrn: str = "",
    since: datetime | None = None,
    until: datetime | None = None,
) -> Table:
    """The quarantined messages received in the range (of one MRN when given), in arrival
    order: `open` those still quarantined, `replayed` those a replay settled, or `all`."""
    if state not in QUARANTINE_STATES:
        raise ValueError(f"state {state!r}: choose {', '.join(QUARANTINE_STATES)}")
    selection = Selection(since=since, until=until, mrn=mrn.strip() or None)
    records = list_quarantined(engine, selection, open_only=state == "open")
    if state == "replayed":
        records = [r for r in records if not str(r["state"]).startswith(QUARANTINED)]
    return QUARANTINE.table(pick(records, QUARANTINE))


def outbox_table(
    engine: Engine,
    *,
    status: str = "",
    licence: str = "",
    limit: int = 500,
    now: datetime | None = None,
) -> Table:
    """The outbox's messages, newest first, of `status` and `licence` when given, at most
    `limit` (bridge.services.outbox.outbox_listing)."""
    rows: list[dict[str, Any]] = outbox_listing(
        engine, status=status or None, licence=licence.strip() or None, limit=limit, now=now
    )
    return OUTBOX.table(pick(rows, OUTBOX))

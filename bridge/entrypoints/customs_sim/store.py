"""The customs side's own record of what it received (its SQLite file, not the bridge's
ledger): certificates and status updates, each stored once per MessageId."""

from __future__ import annotations

import sqlite3
import threading
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bridge.adapters.soap.http_server import SoapFault
from bridge.core.certificate import StatusUpdate


def _new_receipt() -> tuple[str, str]:
    """A new receipt id and the time of receipt."""
    return f"CSW-{uuid.uuid4().hex[:20].upper()}", datetime.now(UTC).isoformat(
        timespec="milliseconds"
    )


@dataclass(frozen=True)
class Receipt:
    status: str  # ACCEPTED | DUPLICATE
    receipt_id: str
    received_at: str


class ReceivedStore:
    """The customs side's own record of certificates received (not the bridge's ledger)."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS received_certificate ("
            " message_id TEXT PRIMARY KEY,"
            " reference TEXT NOT NULL,"
            " version INTEGER NOT NULL,"
            " document TEXT NOT NULL,"
            " sender TEXT NOT NULL,"
            " sent_at TEXT NOT NULL,"
            " received_at TEXT NOT NULL,"
            " receipt_id TEXT NOT NULL UNIQUE)"
        )
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS received_status ("
            " message_id TEXT PRIMARY KEY,"
            " reference TEXT NOT NULL,"
            " version INTEGER NOT NULL,"
            " sequence INTEGER NOT NULL,"
            " status TEXT NOT NULL,"
            " reason TEXT NOT NULL,"
            " effective_at TEXT NOT NULL,"
            " document TEXT NOT NULL,"
            " sender TEXT NOT NULL,"
            " sent_at TEXT NOT NULL,"
            " received_at TEXT NOT NULL,"
            " receipt_id TEXT NOT NULL UNIQUE)"
        )

    def record(
        self,
        message_id: str,
        reference: str,
        version: int,
        document: str,
        sender: str,
        sent_at: str,
    ) -> Receipt:
        """Store a certificate once per message id; a resend gets the first receipt."""
        with self._lock:
            return self._record(message_id, reference, version, document, sender, sent_at)

    def record_many(
        self, certificates: list[tuple[str, str, int, str]], sender: str, sent_at: str
    ) -> list[Receipt | SoapFault]:
        """Store certificates (message id, reference, version, document) as `record` stores
        each, in one transaction: a Receipt for each, or the SoapFault that refuses it
        (MESSAGE_ID_REUSED), in the order given; a message id given twice is a DUPLICATE the
        second time."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                outcomes: list[Receipt | SoapFault] = []
                for message_id, reference, version, document in certificates:
                    try:
                        outcomes.append(
                            self._record(message_id, reference, version, document, sender, sent_at)
                        )
                    except SoapFault as refused:
                        outcomes.append(refused)
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
            return outcomes

    def _record(
        self,
        message_id: str,
        reference: str,
        version: int,
        document: str,
        sender: str,
        sent_at: str,
    ) -> Receipt:
        # The caller holds the lock.
        earlier = self._earlier("received_certificate", message_id, document, "certificate")
        if earlier is not None:
            return earlier
        receipt_id, received_at = _new_receipt()
        self._db.execute(
            "INSERT INTO received_certificate VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                message_id,
                reference,
                version,
                document,
                sender,
                sent_at,
                received_at,
                receipt_id,
            ),
        )
        return Receipt("ACCEPTED", receipt_id, received_at)

    def record_status(
        self, message_id: str, update: StatusUpdate, document: str, sender: str, sent_at: str
    ) -> Receipt:
        """Store a status update once per message id (a resend gets the first receipt); one
        for a certificate version not held is refused as UNKNOWN_CERTIFICATE (transient: the
        certificate may still be on its way)."""
        with self._lock:
            earlier = self._earlier("received_status", message_id, document, "status update")
            if earlier is not None:
                return earlier
            held = self._db.execute(
                "SELECT 1 FROM received_certificate WHERE reference = ? AND version = ?",
                (update.reference, update.version),
            ).fetchone()
            if held is None:
                raise SoapFault(
                    "Client",
                    "UNKNOWN_CERTIFICATE",
                    f"no certificate {update.reference} version {update.version} is held; send"
                    " its certificate first, then this update again",
                    transient=True,
                )
            receipt_id, received_at = _new_receipt()
            self._db.execute(
                "INSERT INTO received_status VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    message_id,
                    update.reference,
                    update.version,
                    update.sequence,
                    update.status.value,
                    update.reason,
                    update.effective_at.isoformat(),
                    document,
                    sender,
                    sent_at,
                    received_at,
                    receipt_id,
                ),
            )
            return Receipt("ACCEPTED", receipt_id, received_at)

    def _earlier(self, table: str, message_id: str, document: str, what: str) -> Receipt | None:
        """The receipt already given for `message_id` in `table` (a resend: DUPLICATE), None
        when it is new; MESSAGE_ID_REUSED when that id came with a different document. The
        caller holds the lock."""
        row = self._db.execute(
            f"SELECT document, receipt_id, received_at FROM {table} WHERE message_id = ?",
            (message_id,),
        ).fetchone()
        if row is None:
            return None
        if row[0] != document:
            raise SoapFault.client(
                "MESSAGE_ID_REUSED",
                f"message {message_id} was already received with a different {what}"
                f" (receipt {row[1]}); a new {what} needs a new MessageId",
            )
        return Receipt("DUPLICATE", row[1], row[2])

    def statuses(self) -> list[dict[str, Any]]:
        """Every status update stored, in the order received."""
        with self._lock:
            cursor = self._db.execute(
                "SELECT message_id, reference, version, sequence, status, reason, effective_at,"
                " document, sender, sent_at, received_at, receipt_id FROM received_status"
                " ORDER BY rowid"
            )
            names = [column[0] for column in cursor.description]
            return [dict(zip(names, row, strict=True)) for row in cursor]

    def received(self) -> list[dict[str, Any]]:
        with self._lock:
            cursor = self._db.execute(
                "SELECT message_id, reference, version, document, sender, sent_at, received_at,"
                " receipt_id FROM received_certificate ORDER BY received_at, rowid"
            )
            names = [column[0] for column in cursor.description]
            return [dict(zip(names, row, strict=True)) for row in cursor]

    def close(self) -> None:
        with self._lock:
            self._db.close()

"""Licences and their versions in the ledger."""

from __future__ import annotations

import hashlib
import json
import threading
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import replace
from datetime import datetime
from enum import StrEnum

from sqlalchemy import Connection, delete, insert, select, update

from bridge.adapters.store.schema import licence, licence_line, licence_version
from bridge.core.model import (
    Licence,
    LicenceLine,
    LicenceStatus,
    licence_from_dict,
    licence_to_dict,
)


class SaveOutcome(StrEnum):
    NEW = "new"  # first version of this licence
    NEW_VERSION = "new_version"  # the licence changed: a new version for customs
    UNCHANGED = "unchanged"  # the same content again: nothing to do
    STALE = "stale"  # an older version than the ledger holds: ignored


def content_hash(licence_obj: Licence) -> str:
    """A hash of what the licence says, ignoring its version number."""
    document = licence_to_dict(licence_obj)
    document.pop("version")
    return hashlib.sha256(json.dumps(document, sort_keys=True).encode()).hexdigest()


def save_licence(
    conn: Connection, incoming: Licence, *, source: str, now: datetime, explicit_version: bool
) -> tuple[SaveOutcome, Licence]:
    """Store `incoming` as the licence's current version when it says something new.

    With `explicit_version` the record's own version number is kept (an older one is STALE);
    otherwise a changed licence gets the next version number. Returns the outcome and the
    licence as stored (with its version)."""
    digest = content_hash(incoming)
    current = conn.execute(
        select(licence.c.current_version).where(licence.c.number == incoming.number)
    ).scalar_one_or_none()
    if current is None:
        stored = incoming if explicit_version else replace(incoming, version=1)
        _write(conn, stored, digest, source, now, first=True)
        return SaveOutcome.NEW, stored
    current_hash = conn.execute(
        select(licence_version.c.content_hash).where(
            licence_version.c.number == incoming.number, licence_version.c.version == current
        )
    ).scalar_one()
    if explicit_version and incoming.version < current:
        return SaveOutcome.STALE, incoming
    if current_hash == digest:
        return SaveOutcome.UNCHANGED, replace(incoming, version=current)
    version = incoming.version if explicit_version and incoming.version > current else current + 1
    stored = replace(incoming, version=version)
    _write(conn, stored, digest, source, now, first=False)
    return SaveOutcome.NEW_VERSION, stored


def _write(
    conn: Connection, stored: Licence, digest: str, source: str, now: datetime, *, first: bool
) -> None:
    header = {
        "current_version": stored.version,
        "type": stored.type.value,
        "status": stored.status.value,
        "issuing_member_state": stored.issuing_member_state,
        "issuing_authority": stored.issuing_authority,
        "holder_name": stored.holder_name,
        "holder_eori": stored.holder_eori,
        "valid_from": stored.valid_from,
        "valid_to": stored.valid_to,
        "general_authorisation": stored.general_authorisation,
        "updated_at": now,
    }
    if first:
        conn.execute(insert(licence).values(number=stored.number, **header))
    else:
        conn.execute(update(licence).where(licence.c.number == stored.number).values(**header))
    conn.execute(
        insert(licence_version).values(
            number=stored.number,
            version=stored.version,
            content_hash=digest,
            document=json.dumps(licence_to_dict(stored), sort_keys=True),
            source=source[:500],
            ingested_at=now,
        )
    )
    conn.execute(delete(licence_line).where(licence_line.c.number == stored.number))
    conn.execute(
        insert(licence_line),
        [
            {
                "number": stored.number,
                "line_number": line.line_number,
                "control_list_entry": _column_text(line.control_list_entry, 40),
                "cn_code": line.cn_code,
                "description": line.description,
                "quantity": line.quantity,
                "unit": line.unit,
                "value": line.value,
                "currency": line.currency,
                "destinations": " ".join(line.destinations),
            }
            for line in stored.ledger_lines
        ],
    )


def _column_text(text: str, limit: int) -> str:
    # An open licence's line 0 names its whole scope, which may be longer than the column:
    # the version document keeps it whole, reconciliation shows where it was cut.
    return text if len(text) <= limit else text[: limit - 1] + "…"


def load_licences(conn: Connection, numbers: Iterable[str]) -> dict[str, Licence]:
    """The current version of each licence asked for that the ledger knows."""
    wanted = sorted(set(numbers))
    if not wanted:
        return {}
    rows = conn.execute(
        select(licence_version.c.document, licence.c.status)
        .join(
            licence,
            (licence.c.number == licence_version.c.number)
            & (licence.c.current_version == licence_version.c.version),
        )
        .where(licence.c.number.in_(wanted))
    )
    found = {}
    for document, status in rows:
        stored = _licence_of(document)
        if stored.status.value != status:  # status changes (suspend...) live on the header
            stored = replace(stored, status=LicenceStatus(status))
        found[stored.number] = stored
    return found


class _ReadLicences:
    """Version documents already read, least recently used first, keyed on the SHA-256 of the
    document's text: the same text is the same licence, so a licence changed in any way (a new
    version, an edit around the bridge, another ledger in the same process) is a new key and is
    never served stale. Bounded by the text read in (`budget` characters): a licence object
    takes about 2.5 bytes per character of its document (measured: 3.1 KB for the testkit's
    1.2 KB documents, digest key included), so the default keeps it near 12 MB."""

    def __init__(self, budget: int) -> None:
        self.budget = budget
        self._held: OrderedDict[bytes, tuple[Licence, int]] = OrderedDict()
        self._chars = 0
        self._lock = threading.Lock()  # the consumer reads and stores on different threads

    def __call__(self, document: str) -> Licence:
        key = hashlib.sha256(document.encode()).digest()
        with self._lock:
            held = self._held.get(key)
            if held is not None:
                self._held.move_to_end(key)
                return held[0]
        read = licence_from_dict(json.loads(document))
        with self._lock:
            if key not in self._held:
                self._held[key] = (read, len(document))
                self._chars += len(document)
                while self._chars > self.budget and len(self._held) > 1:
                    _, (_, chars) = self._held.popitem(last=False)
                    self._chars -= chars
        return read

    def __len__(self) -> int:
        return len(self._held)


# A write-off batch asks for the licences it quotes again and again, and reading a document
# costs more than the query: the cache holds the working set of a ledger of several thousand
# licences (W1 full quotes 5,000: over 10,000 of its events a 2,048-entry cache read 55% of the
# documents asked for, one holding all 5,000 41%, each licence's first read only). The budget
# keeps about 4,000 of them: the consumer's memory has a ceiling too (W6: under 150 MB).
_licence_of = _ReadLicences(budget=5_000_000)


def load_licence_version(conn: Connection, number: str, version: int) -> Licence | None:
    document = conn.execute(
        select(licence_version.c.document).where(
            licence_version.c.number == number, licence_version.c.version == version
        )
    ).scalar_one_or_none()
    return None if document is None else licence_from_dict(json.loads(document))


def last_versions_of_lines(
    conn: Connection, keys: Iterable[tuple[str, int]]
) -> dict[tuple[str, int], tuple[int, LicenceLine]]:
    """For each (licence, line number) a version no longer has: (the first version without
    it after the last one with it, the line as that last version had it). Keys of lines no
    version had are left out."""
    wanted: dict[str, set[int]] = {}
    for number, line_number in keys:
        wanted.setdefault(number, set()).add(line_number)
    if not wanted:
        return {}
    rows = conn.execute(
        select(licence_version.c.number, licence_version.c.version, licence_version.c.document)
        .where(licence_version.c.number.in_(sorted(wanted)))
        .order_by(licence_version.c.number, licence_version.c.version)
    )
    last: dict[tuple[str, int], LicenceLine] = {}
    dropped: dict[tuple[str, int], int] = {}
    for number, version, document in rows:
        stored = _licence_of(document)
        for line_number in wanted[number]:
            line = stored.line(line_number)
            key = (number, line_number)
            if line is not None:
                last[key] = line
                dropped.pop(key, None)
            elif key in last and key not in dropped:
                dropped[key] = version
    return {key: (dropped[key], line) for key, line in last.items() if key in dropped}


def lines_of_every_version(conn: Connection, number: str) -> dict[int, LicenceLine]:
    """Every line any version of the licence had, each as the latest version having it said
    (the current version's lines as they are, a dropped line as its last version had it)."""
    rows = conn.execute(
        select(licence_version.c.document)
        .where(licence_version.c.number == number)
        .order_by(licence_version.c.version)
    )
    lines: dict[int, LicenceLine] = {}
    for (document,) in rows:
        for line in _licence_of(document).ledger_lines:
            lines[line.line_number] = line
    return lines

"""Filling a ledger fast for W5: licences, lines, delivered certificates and a history of
customs write-offs (movements with their usage keys, declarations and processed messages),
written straight through the database driver (SQLite executemany in one transaction with the
secondary indexes dropped and rebuilt; PostgreSQL COPY), never through the consumer. The
shape of every row is the ledger's own (bridge/adapters/store/schema.py): quantities in
millionths."""

from __future__ import annotations

import csv
import io
import json
import random
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from itertools import islice

from sqlalchemy import Engine
from sqlalchemy.engine import make_url

from bridge.adapters.store.licences import content_hash
from bridge.adapters.store.line_totals import drop_line_total_triggers, install_line_totals
from bridge.adapters.store.schema import metadata
from bridge.core.model import Licence, licence_to_dict

AT = "2026-01-15 06:00:00.000000"
CHUNK = 50_000
MICRO = 1_000_000


def _micro(value) -> int | None:
    return None if value is None else int(value.scaleb(6))


def licence_rows(licences: Sequence[Licence]) -> dict[str, Iterator[tuple]]:
    """Rows for licence, licence_version, licence_line and outbox (a delivered certificate)."""

    def headers():
        for x in licences:
            yield (
                x.number,
                x.version,
                x.type.value,
                x.status.value,
                x.issuing_member_state,
                x.issuing_authority,
                x.holder_name,
                x.holder_eori,
                x.valid_from.isoformat(),
                x.valid_to.isoformat() if x.valid_to else None,
                x.general_authorisation,
                AT,
            )

    def versions():
        for x in licences:
            document = json.dumps(licence_to_dict(x), sort_keys=True)
            yield (x.number, x.version, content_hash(x), document, "bench-bulk", AT)

    def lines():
        for x in licences:
            for n in x.lines:
                yield (
                    x.number,
                    n.line_number,
                    n.control_list_entry,
                    n.cn_code,
                    n.description,
                    _micro(n.quantity),
                    n.unit,
                    _micro(n.value),
                    n.currency,
                    " ".join(n.destinations),
                )

    def certificates():
        for index, x in enumerate(licences):
            yield (
                f"bulk-{index:012d}",
                "certificate",
                x.number,
                x.version,
                "<certificate delivered before the benchmark/>",
                "delivered",
                1,
                AT,
                None,
                "ACCEPTED",
                "BULK",
                AT,
                AT,
                AT,
            )

    return {
        "licence": headers(),
        "licence_version": versions(),
        "licence_line": lines(),
        "outbox": certificates(),
    }


COLUMNS = {
    "licence": (
        "number",
        "current_version",
        "type",
        "status",
        "issuing_member_state",
        "issuing_authority",
        "holder_name",
        "holder_eori",
        "valid_from",
        "valid_to",
        "general_authorisation",
        "updated_at",
    ),
    "licence_version": ("number", "version", "content_hash", "document", "source", "ingested_at"),
    "licence_line": (
        "number",
        "line_number",
        "control_list_entry",
        "cn_code",
        "description",
        "quantity",
        "unit",
        "value",
        "currency",
        "destinations",
    ),
    "outbox": (
        "message_id",
        "kind",
        "licence_number",
        "licence_version",
        "document",
        "status",
        "attempts",
        "next_attempt_at",
        "last_error",
        "acknowledgement",
        "receipt_id",
        "last_attempt_at",
        "created_at",
        "delivered_at",
    ),
    "movement": (
        "licence_number",
        "line_number",
        "kind",
        "quantity",
        "value",
        "declared_quantity",
        "declared_unit",
        "mrn",
        "goods_item",
        "document_code",
        "document_ref",
        "message_id",
        "actor",
        "reason",
        "at",
    ),
    "usage": (
        "mrn",
        "goods_item",
        "document_code",
        "document_ref",
        "licence_number",
        "line_number",
        "quantity",
        "value",
        "declaration_version",
        "event",
        "updated_at",
    ),
    "declaration": ("mrn", "version", "event", "invalidated", "message_id", "updated_at"),
    "processed_message": ("message_id", "mrn", "event", "outcome", "received_at"),
}

PER_DECLARATION = 5  # movements (write-off keys) of one historical declaration


def history_rows(
    licences: Sequence[Licence], movements: int, *, seed: int
) -> dict[str, Iterator[tuple]]:
    """`movements` historical write-offs of one unit (and 100.00 of value where the line counts
    value) spread at random over every line, five per declaration, each declaration released,
    applied and answered: rows for movement, usage, declaration and processed_message."""
    lines = [(x, line) for x in licences for line in x.lines]
    rng = random.Random(seed)
    declarations = movements // PER_DECLARATION
    picks = [rng.randrange(len(lines)) for _ in range(declarations * PER_DECLARATION)]

    def keyed() -> Iterator[tuple]:
        for d in range(declarations):
            mrn = f"25PF{d:014d}"
            for k in range(PER_DECLARATION):
                x, line = lines[picks[d * PER_DECLARATION + k]]
                code = {"individual": "X060", "global": "X070"}.get(x.type.value, "X002")
                quantity = MICRO if line.unit else 0
                value = 100 * MICRO if line.value is not None else 0
                yield mrn, k + 1, code, x, line, quantity, value

    def movement_rows():
        for mrn, item, code, x, line, quantity, value in keyed():
            kind = "write_off" if x.type.has_ceiling else "record"
            yield (
                x.number,
                line.line_number,
                kind,
                quantity,
                value,
                quantity or None,
                line.unit if quantity else None,
                mrn,
                item,
                code,
                x.number,
                f"{mrn}-released-v1",
                "customs-declaration",
                "released v1",
                AT,
            )

    def usage_rows():
        for mrn, item, code, x, line, quantity, value in keyed():
            yield (
                mrn,
                item,
                code,
                x.number,
                x.number,
                line.line_number,
                quantity,
                value,
                1,
                "released",
                AT,
            )

    def declaration_rows():
        for d in range(declarations):
            mrn = f"25PF{d:014d}"
            yield (mrn, 1, "released", 0, f"{mrn}-released-v1", AT)

    def processed_rows():
        for d in range(declarations):
            mrn = f"25PF{d:014d}"
            yield (f"{mrn}-released-v1", mrn, "released", "applied", AT)

    return {
        "movement": movement_rows(),
        "usage": usage_rows(),
        "declaration": declaration_rows(),
        "processed_message": processed_rows(),
    }


def _chunks(rows: Iterable[tuple], size: int = CHUNK) -> Iterator[list[tuple]]:
    iterator = iter(rows)
    while chunk := list(islice(iterator, size)):
        yield chunk


def _secondary_indexes(tables: Iterable[str]):
    return [index for name in tables for index in metadata.tables[name].indexes]


def load(engine: Engine, tables: dict[str, Iterator[tuple]]) -> dict[str, int]:
    """Write every table's rows; secondary indexes are dropped first and rebuilt after, and
    the triggers that keep line_total are taken off while movements load and put back after,
    with the totals back-filled (as on a ledger upgraded to them). Returns rows per table."""
    indexes = _secondary_indexes(tables)
    for index in indexes:
        index.drop(engine, checkfirst=True)
    with engine.begin() as conn:
        drop_line_total_triggers(conn)
    if engine.dialect.name == "sqlite":
        counts = _load_sqlite(engine, tables)
    else:
        counts = _load_postgresql(engine, tables)
    for index in indexes:
        index.create(engine)
    with engine.begin() as conn:
        install_line_totals(conn)
    if engine.dialect.name == "postgresql":
        with engine.connect() as conn:  # what autovacuum would do shortly after such a load
            conn.exec_driver_sql("ANALYZE")
            conn.commit()
    return counts


def _load_sqlite(engine: Engine, tables: dict[str, Iterator[tuple]]) -> dict[str, int]:
    path = make_url(str(engine.url)).database
    connection = sqlite3.connect(path, isolation_level=None)
    counts = {}
    try:
        connection.execute("PRAGMA synchronous=OFF")
        connection.execute("BEGIN")
        for name, rows in tables.items():
            columns = COLUMNS[name]
            statement = (
                f'INSERT INTO "{name}" ({", ".join(columns)})'
                f" VALUES ({', '.join('?' * len(columns))})"
            )
            counts[name] = 0
            for chunk in _chunks(rows):
                connection.executemany(statement, chunk)
                counts[name] += len(chunk)
        connection.execute("COMMIT")
    finally:
        connection.close()
    return counts


def _load_postgresql(engine: Engine, tables: dict[str, Iterator[tuple]]) -> dict[str, int]:
    raw = engine.raw_connection()
    counts = {}
    try:
        cursor = raw.cursor()
        cursor.execute("SET TIME ZONE 'UTC'")  # the rows' times are UTC
        for name, rows in tables.items():
            columns = COLUMNS[name]
            counts[name] = 0
            for chunk in _chunks(rows):
                buffer = io.StringIO()
                writer = csv.writer(buffer)
                for row in chunk:
                    writer.writerow([r"\N" if v is None else v for v in row])
                buffer.seek(0)
                statement = f'COPY "{name}" ({", ".join(columns)}) FROM STDIN'
                cursor.copy_expert(statement + " WITH (FORMAT csv, NULL '\\N')", buffer)
                counts[name] += len(chunk)
        raw.commit()
    finally:
        raw.close()
    return counts

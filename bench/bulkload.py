"""Filling a ledger fast for W5: licences, lines, delivered certificates and a history of
customs write-offs (movements with their usage keys, declarations and processed messages),
written in one transaction with the secondary indexes dropped and rebuilt, never through the
consumer: through the ledger's own bulk insert (bridge.adapters.store.bulk.insert_many) or, on
PostgreSQL, COPY. The rows are the ledger's own: values as the store binds them (Decimal
quantities, UTC times), the history tables in the column orders the ledger writes them in
(bridge.adapters.store.bulk)."""

from __future__ import annotations

import csv
import io
import json
import random
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from itertools import islice

from sqlalchemy import Engine, Table

from bridge.adapters.store.bulk import (
    DECLARATION_COLUMNS,
    MOVEMENT_COLUMNS,
    PROCESSED_COLUMNS,
    USAGE_COLUMNS,
    insert_many,
)
from bridge.adapters.store.licences import content_hash
from bridge.adapters.store.line_totals import drop_line_total_triggers, install_line_totals
from bridge.adapters.store.schema import metadata
from bridge.core.model import Licence, licence_to_dict

AT = datetime(2026, 1, 15, 6, 0, tzinfo=UTC)
CHUNK = 50_000
# One object each, so that the bulk insert converts each once (it remembers the last value).
ONE = Decimal(1)
HUNDRED = Decimal(100)
ZERO = Decimal(0)


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
                x.valid_from,
                x.valid_to,
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
                    n.quantity,
                    n.unit,
                    n.value,
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
    "movement": MOVEMENT_COLUMNS,
    "usage": USAGE_COLUMNS,
    "declaration": DECLARATION_COLUMNS,
    "processed_message": PROCESSED_COLUMNS,
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
                quantity = ONE if line.unit else ZERO
                value = HUNDRED if line.value is not None else ZERO
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
            yield (mrn, 1, "released", 0, f"{mrn}-released-v1", None, None, AT, None)

    def processed_rows():
        for d in range(declarations):
            mrn = f"25PF{d:014d}"
            yield (f"{mrn}-released-v1", mrn, "released", "applied", AT, None, None)

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
    counts = {}
    with engine.begin() as conn:
        for name, rows in tables.items():
            counts[name] = 0
            for chunk in _chunks(rows):
                insert_many(conn, metadata.tables[name], COLUMNS[name], chunk)
                counts[name] += len(chunk)
    return counts


def _load_postgresql(engine: Engine, tables: dict[str, Iterator[tuple]]) -> dict[str, int]:
    raw = engine.raw_connection()
    counts = {}
    try:
        cursor = raw.cursor()
        cursor.execute("SET TIME ZONE 'UTC'")  # the rows' times are UTC
        for name, rows in tables.items():
            columns = COLUMNS[name]
            stored = _stored_values(metadata.tables[name], columns, engine)
            counts[name] = 0
            for chunk in _chunks(rows):
                buffer = io.StringIO()
                writer = csv.writer(buffer)
                for row in chunk:
                    writer.writerow([r"\N" if v is None else v for v in stored(row)])
                buffer.seek(0)
                statement = f'COPY "{name}" ({", ".join(columns)}) FROM STDIN'
                cursor.copy_expert(statement + " WITH (FORMAT csv, NULL '\\N')", buffer)
                counts[name] += len(chunk)
        raw.commit()
    finally:
        raw.close()
    return counts


def _stored_values(table: Table, columns: Sequence[str], engine: Engine) -> Callable:
    """What COPY must be given for a row: each value as its column's type binds it (a Decimal
    as the Micro integer it is stored as)."""
    binders = [table.c[name].type.bind_processor(engine.dialect) for name in columns]
    return lambda row: [
        value if bind is None or value is None else bind(value)
        for bind, value in zip(binders, row, strict=True)
    ]

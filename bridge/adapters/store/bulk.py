"""Rows written in bulk: one executemany per table however many rows a batch holds, and the
row shapes (column orders) the ledger writes its movements, refusals, usage, declaration states
and processed messages in. The bench's bulk loader writes through the same function."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import Connection, Table, insert

_PAGE = 1000  # rows per multi-row INSERT on PostgreSQL

# The ledger writes movements with these, `contingency` and their links in the licence's hash
# chain (bridge.adapters.store.ledger.insert_movements, bridge.adapters.store.chain); rows written
# with these alone (the bench's loader) stay outside the chains until
# bridge.adapters.store.chain.link_unchained_rows links them.
MOVEMENT_COLUMNS = (
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
)
REFUSAL_COLUMNS = (
    "mrn",
    "goods_item",
    "document_code",
    "document_ref",
    "licence_number",
    "line_number",
    "code",
    "reason",
    "message_id",
    "at",
)
USAGE_COLUMNS = (
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
)
USAGE_UPDATE_KEYS = (
    "k_mrn",
    "k_goods_item",
    "k_document_code",
    "k_document_ref",
    *USAGE_COLUMNS[4:],
)
DECLARATION_COLUMNS = (
    "mrn",
    "version",
    "event",
    "invalidated",
    "message_id",
    "held_version",
    "held_message",
    "updated_at",
    "acted_on",
)
PROCESSED_COLUMNS = (
    "message_id",
    "mrn",
    "event",
    "outcome",
    "received_at",
    "result",
    "result_state",
)


def insert_many(conn: Connection, table: Table, names: Sequence[str], rows: list[tuple]) -> None:
    """INSERT `rows` (tuples in the order of `names`) in one executemany. The statement goes
    to the driver as is, each value through its column's own bind conversion (Micro, dates):
    the rows SQLAlchemy would write, at a fraction of its per-row cost on the hot path. On
    PostgreSQL the rows go as multi-row VALUES, a page of them per statement (psycopg2's
    executemany makes one round trip per row)."""
    if not rows:
        return
    dialect = conn.dialect
    if dialect.paramstyle not in ("qmark", "format", "pyformat"):
        conn.execute(insert(table), [dict(zip(names, row, strict=True)) for row in rows])
        return
    marker = "?" if dialect.paramstyle == "qmark" else "%s"
    quote = dialect.identifier_preparer.quote
    head = (
        f"INSERT INTO {dialect.identifier_preparer.format_table(table)}"
        f" ({', '.join(quote(name) for name in names)}) VALUES "
    )
    row_markers = f"({', '.join([marker] * len(names))})"
    converters = [
        (index, converter)
        for index, name in enumerate(names)
        if (converter := table.c[name].type.bind_processor(dialect)) is not None
    ]
    if converters:
        converted = []
        last: dict[int, tuple[object, object]] = {}  # a batch repeats values (its `now`)
        for row in rows:
            values = list(row)
            for index, converter in converters:
                value = values[index]
                if value is None:
                    continue
                seen = last.get(index)
                if seen is not None and seen[0] is value:
                    values[index] = seen[1]
                else:
                    values[index] = converter(value)
                    last[index] = (value, values[index])
            converted.append(tuple(values))
        rows = converted
    if dialect.name == "postgresql" and marker == "%s":
        for start in range(0, len(rows), _PAGE):
            page = rows[start : start + _PAGE]
            conn.exec_driver_sql(
                head + ", ".join([row_markers] * len(page)),
                tuple(value for row in page for value in row),
            )
        return
    conn.exec_driver_sql(head + row_markers, rows)

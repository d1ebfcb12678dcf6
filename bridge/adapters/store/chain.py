"""The hash chains of `movement` and `licence_event` in the ledger (bridge.core.ledger_chain,
docs/ledger-audit.md): the links of new rows, computed from each licence's chain head read once
per write (after the writer locked the licence: bridge.adapters.store.db.lock_licences, so that
no other writer extends the chain meanwhile; the unique index on (licence_number, chain_seq)
turns a writer that did not into a conflict, run again), the rows read back for verification,
and the links of rows from before the chains (the migration that added them)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence

from sqlalchemy import Connection, Table, and_, bindparam, func, select, update

from bridge.adapters.store.schema import licence, licence_event, movement
from bridge.core.ledger_chain import (
    CHAIN_FIELDS,
    LICENCE_EVENT,
    MOVEMENT,
    ChainRow,
    extend,
)

CHAIN_COLUMNS = ("chain_seq", "chain_prev", "chain_hash")
TABLES: dict[str, Table] = {MOVEMENT: movement, LICENCE_EVENT: licence_event}
_CHUNK = 500  # licence numbers per IN list
_PAGE = 5000  # rows per fetch when reading a whole table


def chain_heads(conn: Connection, chain: str, numbers: Iterable[str]) -> dict[str, tuple[int, str]]:
    """(sequence number, hash) of the newest link of each of these licences' chains in table
    `chain`; licences without one are absent. One statement, one index probe per licence
    however long its chain (the newest sequence number is the end of the unique index)."""
    table = TABLES[chain]
    newer = table.alias("newer")
    newest = (
        select(func.max(newer.c.chain_seq))
        .where(newer.c.licence_number == licence.c.number)
        .scalar_subquery()
    )
    ordered = sorted(set(numbers))
    heads: dict[str, tuple[int, str]] = {}
    held: set[str] = set()
    for start in range(0, len(ordered), _CHUNK):
        query = (
            select(licence.c.number, table.c.chain_seq, table.c.chain_hash)
            .select_from(
                licence.outerjoin(
                    table,
                    and_(table.c.licence_number == licence.c.number, table.c.chain_seq == newest),
                )
            )
            .where(licence.c.number.in_(ordered[start : start + _CHUNK]))
        )
        for number, seq, link in conn.execute(query):
            held.add(number)
            if seq is not None:
                heads[number] = (seq, link)
    # A number the licence table does not hold (rows written around the bridge): asked of the
    # chained table itself.
    missing = [number for number in ordered if number not in held]
    for start in range(0, len(missing), _CHUNK):
        heads.update(_heads_of_any(conn, table, missing[start : start + _CHUNK]))
    return heads


def linked(conn: Connection, chain: str, rows: Sequence[Sequence[object]]) -> list[tuple]:
    """`rows` (business fields in the chain's order, bridge.core.ledger_chain.CHAIN_FIELDS)
    with their chain columns appended (CHAIN_COLUMNS), in order: what to insert. Call it once
    per batch, after locking the licences, and insert the rows in the same transaction."""
    if not rows:
        return []
    heads = chain_heads(conn, chain, {str(row[0]) for row in rows})
    links = extend(chain, heads, rows)
    return [(*row, link.seq, link.prev, link.hash) for row, link in zip(rows, links, strict=True)]


def _columns(table: Table, chain: str):
    return [
        table.c.id,
        table.c.chain_seq,
        table.c.chain_prev,
        table.c.chain_hash,
        *(table.c[name] for name in CHAIN_FIELDS[chain]),
    ]


def _row(values: Sequence) -> ChainRow:
    return ChainRow(values[0], values[4], values[1], values[2], values[3], tuple(values[4:]))


def chained_rows(conn: Connection, chain: str) -> Iterator[list[ChainRow]]:
    """Each licence's chained rows of table `chain`, as one list per licence in sequence order
    (ties by id), licences in number order; read in pages, so a large ledger streams."""
    table = TABLES[chain]
    query = (
        select(*_columns(table, chain))
        .where(table.c.chain_seq.is_not(None))
        .order_by(table.c.licence_number, table.c.chain_seq, table.c.id)
        .execution_options(yield_per=_PAGE)
    )
    current: list[ChainRow] = []
    for values in conn.execute(query):
        row = _row(values)
        if current and current[0].licence_number != row.licence_number:
            yield current
            current = []
        current.append(row)
    if current:
        yield current


def unchained_rows(conn: Connection, chain: str) -> list[ChainRow]:
    """Rows of table `chain` that carry no chain columns, in id order."""
    table = TABLES[chain]
    query = select(*_columns(table, chain)).where(table.c.chain_seq.is_(None)).order_by(table.c.id)
    return [_row(values) for values in conn.execute(query)]


def all_heads(conn: Connection) -> dict[str, dict[str, tuple[int, str]]]:
    """Every chain's head: chain -> licence -> (sequence number, hash)."""
    heads: dict[str, dict[str, tuple[int, str]]] = {}
    for chain, table in TABLES.items():
        newest = (
            select(table.c.licence_number, func.max(table.c.chain_seq).label("seq"))
            .where(table.c.chain_seq.is_not(None))
            .group_by(table.c.licence_number)
            .subquery()
        )
        query = select(table.c.licence_number, table.c.chain_seq, table.c.chain_hash).join(
            newest,
            and_(
                table.c.licence_number == newest.c.licence_number,
                table.c.chain_seq == newest.c.seq,
            ),
        )
        heads[chain] = {number: (seq, link) for number, seq, link in conn.execute(query)}
    return heads


def link_at(conn: Connection, chain: str, number: str, seq: int) -> str | None:
    """The hash of link `seq` of licence `number`'s chain in table `chain`, if it is there."""
    table = TABLES[chain]
    return conn.execute(
        select(table.c.chain_hash).where(table.c.licence_number == number, table.c.chain_seq == seq)
    ).scalar_one_or_none()


def link_unchained_rows(conn: Connection, chain: str) -> int:
    """Give every row of table `chain` without chain columns its link, each licence's in id
    order after its chain's head: for rows written before the chains existed (the migration
    that added them) or loaded around the bridge (a bulk load). A few hundred licences at a
    time, so a large ledger does not have to fit in memory. Needs UPDATE on the table (the
    owner's role). Returns the rows linked."""
    table = TABLES[chain]
    numbers = [
        number
        for (number,) in conn.execute(
            select(table.c.licence_number)
            .where(table.c.chain_seq.is_(None))
            .distinct()
            .order_by(table.c.licence_number)
        )
    ]
    statement = (
        update(table)
        .where(table.c.id == bindparam("row_id"))
        .values(chain_seq=bindparam("seq"), chain_prev=bindparam("prev"), chain_hash=bindparam("h"))
    )
    linked_rows = 0
    for start in range(0, len(numbers), _CHUNK):
        chunk = numbers[start : start + _CHUNK]
        rows = [
            _row(values)
            for values in conn.execute(
                select(*_columns(table, chain))
                .where(table.c.chain_seq.is_(None), table.c.licence_number.in_(chunk))
                .order_by(table.c.licence_number, table.c.id)
            )
        ]
        links = extend(chain, _heads_of_any(conn, table, chunk), [row.fields for row in rows])
        conn.execute(
            statement,
            [
                {"row_id": row.id, "seq": link.seq, "prev": link.prev, "h": link.hash}
                for row, link in zip(rows, links, strict=True)
            ],
        )
        linked_rows += len(rows)
    return linked_rows


def _heads_of_any(conn: Connection, table: Table, numbers: list[str]) -> dict[str, tuple]:
    # As chain_heads, but for licence numbers the licence table may not hold.
    newest = (
        select(table.c.licence_number, func.max(table.c.chain_seq).label("seq"))
        .where(table.c.licence_number.in_(numbers), table.c.chain_seq.is_not(None))
        .group_by(table.c.licence_number)
        .subquery()
    )
    query = select(table.c.licence_number, table.c.chain_seq, table.c.chain_hash).join(
        newest,
        and_(table.c.licence_number == newest.c.licence_number, table.c.chain_seq == newest.c.seq),
    )
    return {number: (seq, link) for number, seq, link in conn.execute(query)}

"""The ledger's hash chains (docs/ledger-audit.md): every movement and every licence event is a
link in its licence's chain, one chain per table and licence. A link's hash is SHA-256 over a
canonical serialisation of the row's business fields, its sequence number in the chain and the
hash of the link before it, so that a row edited, deleted or inserted out of turn shows.

Plain data and functions: the store writes the links (bridge.adapters.store.chain) and reads
them back for `check_chain`."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal

FORMAT = 1  # the serialisation below; a new one gets a new number and goes into every hash
GENESIS = "0" * 64  # the previous hash of a chain's first link
AMOUNT_DECIMALS = 6  # amounts are hashed as integer millionths, exactly as the ledger keeps them

MOVEMENT = "movement"
LICENCE_EVENT = "licence_event"

# The business fields of each chained table, in the order they are hashed.
MOVEMENT_FIELDS = (
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
    "contingency",
)
LICENCE_EVENT_FIELDS = (
    "licence_number",
    "version",
    "from_status",
    "to_status",
    "reason",
    "actor",
    "at",
)
CHAIN_FIELDS = {MOVEMENT: MOVEMENT_FIELDS, LICENCE_EVENT: LICENCE_EVENT_FIELDS}
_AMOUNTS = frozenset({"quantity", "value", "declared_quantity"})


def as_utc(moment: datetime) -> datetime:
    """`moment` in UTC; a naive one is taken as UTC already (SQLite drops the zone)."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _canonical(name: str, value: object) -> object:
    if value is None:
        return None
    if name in _AMOUNTS:
        scaled = Decimal(value).scaleb(AMOUNT_DECIMALS)  # type: ignore[arg-type]
        if scaled != scaled.to_integral_value():
            raise ValueError(f"{name} {value} has more than {AMOUNT_DECIMALS} decimals")
        return int(scaled)
    if isinstance(value, datetime):
        return as_utc(value).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int | str):
        return value
    raise TypeError(f"{name}: a {type(value).__name__} has no canonical form in the ledger chain")


def link_hash(chain: str, seq: int, prev: str, fields: Sequence[object]) -> str:
    """The hash of link `seq` of a chain of table `chain`: SHA-256 (hex) of the JSON array
    [FORMAT, chain, seq, prev, field...] with the fields in the table's order (CHAIN_FIELDS)
    and canonical values: amounts as integer millionths, times as UTC ISO 8601 with
    microseconds and a Z, text as is (UTF-8), no spaces between items."""
    text = _movement_text(seq, prev, fields) if chain == MOVEMENT else None
    if text is None:
        text = serialised(chain, seq, prev, fields)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def serialised(chain: str, seq: int, prev: str, fields: Sequence[object]) -> str:
    """The text `link_hash` hashes, built from the canonical value of each field in turn: the
    definition, for any row (and the one that refuses a value without a canonical form)."""
    names = CHAIN_FIELDS[chain]
    if len(fields) != len(names):
        raise ValueError(f"a {chain} link has {len(names)} fields, not {len(fields)}")
    payload = [FORMAT, chain, seq, prev, *(map(_canonical, names, fields))]
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":"))


# The movement writer hashes thousands of rows per batch, all of the same few types: their
# text is put together directly (json.dumps builds an encoder per call and `_canonical` asks
# each value what it is). Anything else goes to `serialised`; the two must agree byte for byte
# (tests/unit/test_ledger_chain_fast.py), since the chain of rows written before must verify.
_quote = json.encoder.encode_basestring  # what json.dumps escapes text with, ensure_ascii off
_MOVEMENT_HEAD = f"[{FORMAT},{_quote(MOVEMENT)},"
_last_moment: tuple[datetime | None, str] = (None, "")  # a batch's rows share one `at`


def _text_piece(value: object) -> str | None:
    if type(value) is str:
        return _quote(value)
    return "null" if value is None else None


def _int_piece(value: object) -> str | None:
    if type(value) is int:
        return int.__repr__(value)
    return "null" if value is None else None


def _amount_piece(value: object) -> str | None:
    if type(value) is Decimal and value.is_finite():
        scaled = value.scaleb(AMOUNT_DECIMALS)
        if scaled == scaled.to_integral_value():
            return int.__repr__(int(scaled))
        return None  # too many decimals: `serialised` refuses it in its words
    return "null" if value is None else None


def _moment_piece(value: object) -> str | None:
    global _last_moment
    if type(value) is not datetime:
        return "null" if value is None else None
    moment, text = _last_moment
    if value is not moment:  # datetimes are immutable: the same object, the same text
        text = '"' + as_utc(value).strftime("%Y-%m-%dT%H:%M:%S.%fZ") + '"'
        _last_moment = (value, text)
    return text


_MOVEMENT_PIECES = (
    _text_piece,  # licence_number
    _int_piece,  # line_number
    _text_piece,  # kind
    _amount_piece,  # quantity
    _amount_piece,  # value
    _amount_piece,  # declared_quantity
    _text_piece,  # declared_unit
    _text_piece,  # mrn
    _int_piece,  # goods_item
    _text_piece,  # document_code
    _text_piece,  # document_ref
    _text_piece,  # message_id
    _text_piece,  # actor
    _text_piece,  # reason
    _moment_piece,  # at
    _int_piece,  # contingency
)
assert len(_MOVEMENT_PIECES) == len(MOVEMENT_FIELDS)


def _movement_text(seq: int, prev: str, fields: Sequence[object]) -> str | None:
    """`serialised(MOVEMENT, seq, prev, fields)` for a row of the types the ledger writes (text,
    int, Decimal, datetime, None where allowed), or None for any other row."""
    if len(fields) != len(_MOVEMENT_PIECES) or type(seq) is not int or type(prev) is not str:
        return None
    pieces = [piece(value) for piece, value in zip(_MOVEMENT_PIECES, fields, strict=True)]
    if None in pieces:
        return None
    return _MOVEMENT_HEAD + int.__repr__(seq) + "," + _quote(prev) + "," + ",".join(pieces) + "]"


@dataclass(frozen=True, slots=True)
class Link:
    """What a new row adds to its chain: (sequence number, previous hash, hash)."""

    seq: int
    prev: str
    hash: str


def extend(chain: str, heads: dict[str, tuple[int, str]], rows: Iterable[Sequence[object]]):
    """A Link for each of `rows` (business fields in the table's order, licence number first),
    in order, each licence's after the head in `heads` (licence -> (seq, hash); absent: an
    empty chain) and after the rows before it; `heads` is moved on to the new links."""
    links = []
    for fields in rows:
        number = str(fields[0])
        seq, prev = heads.get(number, (0, GENESIS))
        link = Link(seq + 1, prev, link_hash(chain, seq + 1, prev, fields))
        heads[number] = (link.seq, link.hash)
        links.append(link)
    return links


@dataclass(frozen=True, slots=True)
class ChainRow:
    """A chained row as stored: its id, chain columns (None where the row has none) and
    business fields in the table's order."""

    id: int
    licence_number: str
    seq: int | None
    prev: str | None
    hash: str | None
    fields: tuple


@dataclass(frozen=True, slots=True)
class ChainBreak:
    """The first thing wrong in one chain: which row, and what."""

    chain: str
    row_id: int | None
    licence_number: str
    seq: int | None
    problem: str

    def __str__(self) -> str:
        where = f"row {self.row_id}" if self.row_id is not None else "chain"
        seq = f", sequence {self.seq}" if self.seq is not None else ""
        return f"{self.chain} {where} (licence {self.licence_number}{seq}): {self.problem}"


def check_chain(chain: str, rows: Iterable[ChainRow]) -> ChainBreak | None:
    """The first break in one licence's chain (its chained rows in sequence order, ties by
    id), or None when every link holds: each row's hash matches its content, sequence numbers
    run 1, 2, 3... without a gap or a repeat, and each row's previous hash is the hash of the
    row before it."""
    expected, prev_hash, prev_id = 1, GENESIS, None
    for row in rows:
        assert row.seq is not None, "unchained rows are checked apart"

        def broken(problem: str, row: ChainRow = row) -> ChainBreak:
            return ChainBreak(chain, row.id, row.licence_number, row.seq, problem)

        if row.hash != link_hash(chain, row.seq, row.prev or "", row.fields):
            return broken("hash does not match its content (edited)")
        if row.seq > expected:
            missing = (
                f"sequence {expected} missing"
                if row.seq == expected + 1
                else f"sequences {expected} to {row.seq - 1} missing"
            )
            return broken(f"{missing} (deleted)")
        if row.seq < expected:
            return broken(f"sequence {row.seq} comes twice (inserted out of turn)")
        if row.prev != prev_hash:
            before = "the chain's start" if prev_id is None else f"row {prev_id}"
            return broken(
                f"previous hash does not match {before} (inserted out of turn, or {before}"
                " rewritten with a new hash)"
            )
        expected, prev_hash, prev_id = row.seq + 1, row.hash, row.id
    return None


def unchained(chain: str, row: ChainRow) -> ChainBreak:
    """A row without its chain columns: written around the bridge's writers."""
    return ChainBreak(
        chain,
        row.id,
        row.licence_number,
        None,
        "not in its chain: no sequence number or hash (inserted around the bridge)",
    )


def heads_digest(heads: dict[str, dict[str, tuple[int, str]]]) -> str:
    """One SHA-256 over every chain head (chain -> licence -> (seq, hash)), canonical JSON:
    the value to anchor outside the ledger."""
    text = json.dumps(
        {chain: {n: list(h) for n, h in sorted(of.items())} for chain, of in sorted(heads.items())},
        separators=(",", ":"),
        sort_keys=True,
    )
    return hashlib.sha256(text.encode("utf-8")).hexdigest()

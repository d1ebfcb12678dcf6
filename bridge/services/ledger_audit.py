"""The ledger's audit (docs/ledger-audit.md): every hash chain checked link by link, the line
totals checked against the movements, the chain heads taken for anchoring outside the ledger and
checked against such an anchor later. Read-only, in one snapshot of the ledger."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from sqlalchemy import Connection, Engine, func, select

from bridge.adapters.store import chain as store
from bridge.adapters.store.line_totals import line_drift
from bridge.adapters.store.schema import line_total
from bridge.core.errors import BridgeError
from bridge.core.ledger_chain import CHAIN_FIELDS, ChainBreak, check_chain, heads_digest, unchained

ANCHOR_FORMAT = 1


class AnchorError(BridgeError, ValueError):
    """An anchor file that cannot be read as one `elbridge audit head` wrote."""


@dataclass
class ChainCount:
    rows: int = 0
    chains: int = 0


@dataclass
class AuditReport:
    """What `verify_ledger` found: rows and chains checked per table, the first break of each
    broken chain (and every row outside its chain), lines whose totals disagree with their
    movements, anchored links no longer in the ledger."""

    counts: dict[str, ChainCount] = field(default_factory=dict)
    breaks: list[ChainBreak] = field(default_factory=list)
    drift: list[str] = field(default_factory=list)
    anchor: list[str] = field(default_factory=list)
    lines: int = 0

    @property
    def intact(self) -> bool:
        return not (self.breaks or self.drift or self.anchor)

    def problems(self) -> list[str]:
        return [str(b) for b in self.breaks] + self.drift + self.anchor


@contextmanager
def _snapshot(engine: Engine) -> Iterator[Connection]:
    """A read-only transaction that sees one state of the ledger while writers go on."""
    if engine.dialect.name == "postgresql":
        repeatable = engine.execution_options(isolation_level="REPEATABLE READ")
        with repeatable.connect() as conn, conn.begin():
            conn.exec_driver_sql("SET TRANSACTION READ ONLY")
            yield conn
        return
    with engine.connect() as conn:
        if engine.dialect.name == "sqlite":
            conn.exec_driver_sql("BEGIN")  # a WAL read transaction: one snapshot until it ends
        try:
            yield conn
        finally:
            conn.rollback()


def verify_ledger(engine: Engine, *, anchor: dict | None = None) -> AuditReport:
    """Check every chain of every chained table, the line totals, and `anchor` (as
    `read_anchor` gives it) if given."""
    report = AuditReport()
    with _snapshot(engine) as conn:
        for chain in CHAIN_FIELDS:
            count = report.counts.setdefault(chain, ChainCount())
            for rows in store.chained_rows(conn, chain):
                count.chains += 1
                count.rows += len(rows)
                broken = check_chain(chain, rows)
                if broken is not None:
                    report.breaks.append(broken)
            for row in store.unchained_rows(conn, chain):
                count.rows += 1
                report.breaks.append(unchained(chain, row))
        for number, line, kept, summed in line_drift(conn):
            report.drift.append(
                f"line_total of licence {number} line {line}: {_sums(kept)}, but its movements"
                f" sum to {_sums(summed)} (line_total edited)"
            )
        report.lines = _line_count(conn)
        if anchor is not None:
            report.anchor = _anchor_problems(conn, anchor)
    return report


def _sums(values: tuple) -> str:
    quantity, value, movements = values
    if movements == 0 and quantity is None:
        return "no row"
    return f"quantity {quantity}, value {value}, {movements} movements"


def _line_count(conn: Connection) -> int:
    return conn.execute(select(func.count()).select_from(line_total)).scalar_one()


def chain_heads(engine: Engine, *, now: datetime) -> dict:
    """Every chain's head and one digest over them all: what `elbridge audit head` writes, to be
    kept (or its digest published) outside the ledger's reach."""
    with _snapshot(engine) as conn:
        heads = store.all_heads(conn)
    return {
        "format": ANCHOR_FORMAT,
        "taken_at": now.isoformat(),
        "digest": heads_digest(heads),
        "chains": {
            chain: {number: [seq, link] for number, (seq, link) in sorted(of.items())}
            for chain, of in sorted(heads.items())
        },
    }


def read_anchor(path: Path) -> dict:
    """An anchor file as `chain_heads` wrote it, its digest checked against its heads."""
    try:
        anchor = json.loads(path.read_text(encoding="utf-8"))
        heads = {
            chain: {str(number): (int(seq), str(link)) for number, (seq, link) in of.items()}
            for chain, of in anchor["chains"].items()
        }
        digest = anchor["digest"]
    except OSError as error:
        raise AnchorError(f"{path}: cannot read the anchor ({error.strerror})") from None
    except (ValueError, KeyError, TypeError, AttributeError) as error:
        raise AnchorError(
            f"{path}: not an anchor written by `elbridge audit head` ({error!r})"
        ) from None
    unknown = set(heads) - set(CHAIN_FIELDS)
    if unknown:
        raise AnchorError(f"{path}: unknown chains {sorted(unknown)}")
    if heads_digest(heads) != digest:
        raise AnchorError(
            f"{path}: its heads do not give its digest {digest}: the file was altered"
        )
    return {"digest": digest, "heads": heads}


def _anchor_problems(conn: Connection, anchor: dict) -> list[str]:
    problems = []
    for chain, of in sorted(anchor["heads"].items()):
        for number, (seq, link) in sorted(of.items()):
            found = store.link_at(conn, chain, number, seq)
            if found is None:
                problems.append(
                    f"{chain} (licence {number}): link {seq}, anchored, is gone (deleted or the"
                    " chain truncated since the anchor)"
                )
            elif found != link:
                problems.append(
                    f"{chain} (licence {number}): link {seq} differs from the anchored hash"
                    " (the chain was rewritten since the anchor)"
                )
    return problems

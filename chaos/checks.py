"""After the run: the ledger, the customs simulator's store and the broker against the oracle.

The ledger is read with plain SQL, table by table, as it lies on disk (amounts are integer
millionths); the bridge's own reconciliation view is compared too, since it is what an
authority reads. Each check says what it compared and, when it fails, the first differences."""

from __future__ import annotations

import sqlite3
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, text

from bridge.adapters.store.reconciliation import reconciliation_rows
from bridge.services.config import Settings
from bridge.services.mqtt_endpoints import subscriber as DeclarationSubscriber
from chaos.oracle import ZERO, Oracle
from chaos.stream import ResultListener

SHOWN = 5  # differences shown per failed check


@dataclass
class Check:
    name: str
    passed: bool
    detail: str
    figures: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "passed": self.passed, "detail": self.detail} | {
            "figures": self.figures
        }


def _micro(value: int | None) -> Decimal:
    return ZERO if not value else Decimal(int(value)).scaleb(-6).normalize()


def _differences(items: Iterable[str]) -> str:
    items = list(items)
    shown = "; ".join(items[:SHOWN])
    more = f" (and {len(items) - SHOWN} more)" if len(items) > SHOWN else ""
    return f"{len(items)} differ: {shown}{more}"


def balances(engine: Engine, oracle: Oracle) -> Check:
    """Every licence line's written-off totals (summed from movements) and its balance (the
    bridge's reconciliation view) equal the oracle's; no ceiling is overdrawn."""
    with engine.connect() as conn:
        moved = {
            (number, line): (_micro(quantity), _micro(value))
            for number, line, quantity, value in conn.execute(
                text(
                    "SELECT licence_number, line_number, SUM(quantity), SUM(value)"
                    " FROM movement GROUP BY licence_number, line_number"
                )
            )
        }
        rows = reconciliation_rows(conn)
    expected_totals = oracle.line_totals()
    expected_left = oracle.balances()
    wrong = []
    for key in sorted(set(moved) | set(expected_totals)):
        got = moved.get(key, (ZERO, ZERO))
        want = expected_totals.get(key, (ZERO, ZERO))
        if got != want:
            wrong.append(f"{key[0]} line {key[1]}: movements {_pair(got)}, oracle {_pair(want)}")
    overdrawn = []
    seen = set()
    for row in rows:
        key = (row.licence_number, row.line_number)
        seen.add(key)
        if key not in expected_left:
            continue  # a licence the stream never quotes and the oracle was not told of
        left = (row.remaining_quantity, row.remaining_value)
        if left != expected_left[key]:
            wrong.append(
                f"{key[0]} line {key[1]}: balance {_pair(left)}, oracle {_pair(expected_left[key])}"
            )
        if row.over_used:
            overdrawn.append(f"{key[0]} line {key[1]}: {_pair(left)}")
    missing = sorted(set(expected_left) - seen)
    wrong += [f"{number} line {line}: not in the ledger" for number, line in missing]
    figures = {
        "lines": len(expected_left),
        "lines_written_off": sum(1 for q, v in expected_totals.values() if q or v),
        "overdrawn": len(overdrawn),
    }
    if wrong or overdrawn:
        return Check("balances", False, _differences(wrong + overdrawn), figures)
    detail = (
        f"{len(expected_left):,} licence lines ({figures['lines_written_off']:,} written off):"
        " movement totals and balances equal the oracle's, none overdrawn"
    )
    return Check("balances", True, detail, figures)


def _pair(amounts: tuple[Decimal | None, Decimal | None]) -> str:
    return "/".join("-" if a is None else format(a, "f") for a in amounts)


def write_offs_once(engine: Engine, oracle: Oracle) -> Check:
    """Per dual-use document of each declaration, its movements add up to what the oracle says
    it writes off in the end (nothing for invalidated declarations): nothing lost, nothing
    counted twice."""
    with engine.connect() as conn:
        moved = {
            (mrn, item, code, ref): (_micro(quantity), _micro(value))
            for mrn, item, code, ref, quantity, value in conn.execute(
                text(
                    "SELECT mrn, goods_item, document_code, document_ref, SUM(quantity),"
                    " SUM(value) FROM movement WHERE mrn IS NOT NULL"
                    " GROUP BY mrn, goods_item, document_code, document_ref"
                )
            )
        }
        kinds = dict(conn.execute(text("SELECT kind, count(*) FROM movement GROUP BY kind")).all())
    expected = oracle.document_write_offs()
    wrong = []
    lost = doubled = 0
    for key in sorted(set(moved) | set(expected)):
        got = moved.get(key, (ZERO, ZERO))
        want = expected.get(key, (ZERO, ZERO))
        if got != want:
            if got[0] > want[0] or got[1] > want[1]:
                doubled += 1
            else:
                lost += 1
            wrong.append(f"{key[0]} item {key[1]} {key[2]} {key[3]}: {_pair(got)} != {_pair(want)}")
    documents = set(moved) | set(expected)
    standing = sum(1 for q, v in expected.values() if q or v)
    figures = {
        "documents": len(documents),
        "documents_standing": standing,
        "movements_by_kind": kinds,
        "lost": lost,
        "counted_twice_or_more": doubled,
    }
    if wrong:
        return Check("write-offs once", False, _differences(wrong), figures)
    detail = (
        f"{len(documents):,} dual-use documents: {standing:,} write-offs stand, the rest were"
        f" taken back; each nets to the oracle's ({sum(kinds.values()):,} movements);"
        " 0 lost, 0 counted twice"
    )
    return Check("write-offs once", True, detail, figures)


def events_once(engine: Engine, oracle: Oracle) -> Check:
    """Every valid message recorded once with an outcome (processed_message), none refused or
    quarantined, every declaration that does not concern the bridge `ignored`; nothing
    recorded that was not sent."""
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT message_id, outcome FROM processed_message")).all()
    outcomes = Counter(outcome for _, outcome in rows)
    valid = {message_id: outcome for message_id, outcome in rows if outcome != "quarantined"}
    missing = oracle.valid_ids - set(valid)
    extra = set(valid) - oracle.valid_ids
    wrongly = {i: o for i, o in valid.items() if o in ("refused", "quarantined")}
    figures = {"recorded": len(rows), "valid_sent": len(oracle.valid_ids), "outcomes": outcomes}
    problems = [f"{i}: never recorded" for i in sorted(missing)]
    problems += [f"{i}: recorded but never sent" for i in sorted(extra)]
    problems += [f"{i}: {o}" for i, o in sorted(wrongly.items())]
    not_ignored = {
        i: valid.get(i) for i in oracle.irrelevant_ids if valid.get(i, "ignored") != "ignored"
    }
    problems += [
        f"{i}: {o}, not ignored (no dual-use document)" for i, o in sorted(not_ignored.items())
    ]
    figures["irrelevant"] = len(oracle.irrelevant_ids)
    figures["partial_amendments"] = Counter(valid.get(i) for i in oracle.partial_ids)
    if problems:
        return Check("events once", False, _differences(problems), figures)
    shown = ", ".join(f"{o} {n:,}" for o, n in sorted(outcomes.items()))
    detail = (
        f"{len(valid):,} valid messages each recorded once ({shown}); the"
        f" {len(oracle.irrelevant_ids):,} irrelevant declarations all ignored;"
        f" {len(oracle.partial_ids):,} partial amendments"
        f" ({', '.join(f'{o} {n}' for o, n in sorted(figures['partial_amendments'].items()))})"
    )
    return Check("events once", True, detail, figures)


def quarantine_exact(engine: Engine, oracle: Oracle) -> Check:
    """The quarantine holds exactly the unreadable messages sent, each once, byte for byte,
    each with its reason."""
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT payload, reason FROM quarantine")).all()
    held = Counter(bytes(payload) for payload, _ in rows)
    expected = set(oracle.bad_payloads)
    problems = [
        f"{oracle.bad_payloads[p]} message ({len(p)} bytes) not quarantined"
        for p in expected - set(held)
    ]
    problems += [
        f"a message that was not bad ({p[:60]!r}) quarantined" for p in set(held) - expected
    ]
    problems += [
        f"{oracle.bad_payloads.get(p, '?')} message stored {n} times"
        for p, n in held.items()
        if n > 1
    ]
    problems += ["a quarantined message without a reason" for _, reason in rows if not reason]
    kinds = Counter(oracle.bad_payloads.values())
    figures = {"quarantined": len(rows), "bad_sent": len(expected), "kinds": kinds}
    if problems:
        return Check("quarantine exact", False, _differences(problems), figures)
    shown = ", ".join(f"{k} {n}" for k, n in sorted(kinds.items()))
    detail = f"exactly the {len(expected)} bad messages, once each, with reasons ({shown})"
    return Check("quarantine exact", True, detail, figures)


def nothing_unacknowledged(settings: Settings, wait: float) -> Check:
    """A fresh connection on the consumer's persistent session gets nothing: every message
    was acknowledged after its commit."""
    subscriber = DeclarationSubscriber(settings).start()
    try:
        left = subscriber.take(1_000_000, wait, wait)
    finally:
        subscriber.close()  # unacked: whatever came stays in the session
    figures = {"waited_seconds": wait, "received": len(left)}
    if left:
        return Check(
            "nothing unacknowledged",
            False,
            f"{len(left)} messages still in the consumer's session after the run",
            figures,
        )
    detail = f"the consumer's session gave nothing in {wait:.0f} s on a fresh connection"
    return Check("nothing unacknowledged", True, detail, figures)


def results_published(engine: Engine, listener: ResultListener, oracle: Oracle) -> Check:
    """Customs received a result for every valid message, and the ledger holds none pending
    once the consumer has stopped."""
    with engine.connect() as conn:
        states = dict(
            conn.execute(
                text("SELECT result_state, count(*) FROM processed_message GROUP BY result_state")
            ).all()
        )
    pending = states.get("pending", 0)
    missing = listener.missing(oracle.valid_ids)
    figures = {
        "result_states": {str(k): v for k, v in states.items()},
        "results_received": listener.results,
        "messages_answered": len(listener.answered),
    }
    problems = [f"{m}: no result reached customs" for m in sorted(missing)]
    if pending:
        problems.append(f"{pending} results still pending in the ledger after the stop")
    if problems:
        return Check("results published", False, _differences(problems), figures)
    detail = (
        f"customs got a result for each of the {len(oracle.valid_ids):,} valid messages"
        f" ({listener.results:,} results received); none pending in the ledger"
    )
    return Check("results published", True, detail, figures)


def _customs_store(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"file:{path}?mode=ro", uri=True)


def certificates_once(engine: Engine, customs_store: Path) -> Check:
    """Every licence version's certificate is delivered (the outbox) and registered exactly
    once at customs (the simulator's own store), under the outbox's message id."""
    with engine.connect() as conn:
        versions = set(conn.execute(text("SELECT number, version FROM licence_version")).all())
        outbox = {
            message_id: (number, version, status)
            for message_id, number, version, status in conn.execute(
                text(
                    "SELECT message_id, licence_number, licence_version, status FROM outbox"
                    " WHERE kind = 'certificate'"
                )
            )
        }
    with _customs_store(customs_store) as store:
        received = store.execute(
            "SELECT message_id, reference, version FROM received_certificate"
        ).fetchall()
    per_version = Counter((reference, version) for _, reference, version in received)
    problems = [f"{n} v{v}: registered {c} times" for (n, v), c in per_version.items() if c > 1]
    problems += [f"{n} v{v}: never registered" for n, v in sorted(versions - set(per_version))]
    problems += [
        f"{n} v{v}: registered, not a ledger version" for n, v in set(per_version) - versions
    ]
    problems += [
        f"{n} v{v}: outbox {status}" for n, v, status in outbox.values() if status != "delivered"
    ]
    problems += [
        f"{reference} v{version}: message id {message_id} not the outbox's"
        for message_id, reference, version in received
        if outbox.get(message_id, (None, None))[:2] != (reference, version)
    ]
    figures = {"licence_versions": len(versions), "registered": len(received)}
    if problems:
        return Check("certificates once", False, _differences(problems), figures)
    detail = f"{len(versions):,} licence versions: each certificate delivered and registered once"
    return Check("certificates once", True, detail, figures)


def status_updates_once(engine: Engine, customs_store: Path) -> Check:
    """Every licence status update the bridge queued is delivered and registered once, and
    customs' latest status of each licence is the ledger's."""
    with engine.connect() as conn:
        outbox = dict(
            conn.execute(text("SELECT message_id, status FROM outbox WHERE kind = 'status'")).all()
        )
        ledger = dict(conn.execute(text("SELECT number, status FROM licence")).all())
    with _customs_store(customs_store) as store:
        rows = store.execute(
            "SELECT message_id, reference, sequence, status FROM received_status"
        ).fetchall()
    received = [row[0] for row in rows]
    latest: dict[str, tuple[int, str]] = {}
    for _, reference, sequence, status in rows:
        if sequence > latest.get(reference, (-1, ""))[0]:
            latest[reference] = (sequence, status)
    problems = [f"{m}: outbox {s}" for m, s in outbox.items() if s != "delivered"]
    problems += [f"{m}: registered {c} times" for m, c in Counter(received).items() if c > 1]
    problems += [f"{m}: delivered, not registered" for m in set(outbox) - set(received)]
    problems += [f"{m}: registered, not queued" for m in set(received) - set(outbox)]
    problems += [
        f"licence {n}: customs hold {status}, the ledger {ledger.get(n)}"
        for n, (_, status) in sorted(latest.items())
        if status.lower() != str(ledger.get(n)).lower()
    ]
    figures = {"queued": len(outbox), "registered": len(received), "licences": len(latest)}
    if problems:
        return Check("status updates once", False, _differences(problems), figures)
    detail = (
        f"{len(outbox)} status updates, each delivered and registered once; customs' latest"
        f" status of each of the {len(latest)} licences is the ledger's"
    )
    return Check("status updates once", True, detail, figures)


def licence_statuses(
    engine: Engine, oracle: Oracle, licences: Iterable[str], by_authority: dict[str, str]
) -> Check:
    """A licence ends exhausted exactly when the oracle has every line with a ceiling used up,
    with the status the authority gave it when it gave one, and valid otherwise."""
    wanted = set(licences)
    with engine.connect() as conn:
        statuses = {
            number: status
            for number, status in conn.execute(text("SELECT number, status FROM licence"))
            if number in wanted
        }
    used_up = oracle.used_up()
    expected = {n: by_authority.get(n, "exhausted" if n in used_up else "valid") for n in wanted}
    problems = [
        f"{number}: {status}, expected {expected[number]}"
        for number, status in sorted(statuses.items())
        if status != expected[number]
    ]
    problems += [f"{number}: not in the ledger" for number in sorted(wanted - set(statuses))]
    figures = {"licences": len(wanted), "statuses": Counter(statuses.values())}
    if problems:
        return Check("licence statuses", False, _differences(problems), figures)
    shown = ", ".join(f"{s} {n}" for s, n in sorted(figures["statuses"].items()))
    detail = f"{len(wanted):,} licences end as expected ({shown})"
    return Check("licence statuses", True, detail, figures)

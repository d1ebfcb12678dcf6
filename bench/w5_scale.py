"""W5 scale: write-offs and reconciliation on a big ledger.

Write-offs: the bridge's consumer drains the same backlog of declaration events into (a) an
empty ledger that holds only the licences the events quote, and (b) a ledger pre-filled with
many licence lines and a history of movements (with their usage keys, declarations and
processed messages), bulk-loaded through the driver (bench/bulkload.py). The ratio (b)/(a) says
what the ledger's size costs; target >= 0.9.

Reconciliation: `bridge.adapters.store.reconciliation.reconciliation_rows` over every line of the
pre-filled ledger (which reads each line's running total, `line_total`), against the bare SQL
that sums every movement per line, fetched through the driver with no conversion (the limit:
the same answer computed from the audit trail alone). Target: 5 s for 1,000,000 lines (scaled
to the lines loaded)."""

from __future__ import annotations

import time

from bench import bulkload
from bench.common import Result, Run, ratio, store_known_licences
from bench.mqttload import bridge_rate
from bridge.adapters.store.reconciliation import reconciliation_rows
from bridge.testkit.licences import licences as synthetic_licences
from bridge.testkit.streams import event_stream

SIZES = {
    "tiny": {"lines": 4_000, "movements": 40_000, "events": 200},
    "small": {"lines": 200_000, "movements": 2_000_000, "events": 3000},
    "full": {"lines": 1_000_000, "movements": 10_000_000, "events": 10000},
}
LINES_PER_LICENCE = 4
QUOTED = 2000  # licences the events quote (the first ones of the set)
TARGET_RATIO = 0.9
RECONCILE_SECONDS_PER_MILLION = 5
PER_DATABASE = True

BARE_RECONCILIATION = """
SELECT l.number, l.line_number, l.quantity, l.value, t.quantity, t.value, t.movements
FROM licence_line l
JOIN licence h ON h.number = l.number
LEFT JOIN (SELECT licence_number, line_number, sum(quantity) AS quantity,
                  sum(value) AS value, count(*) AS movements
           FROM movement GROUP BY licence_number, line_number) t
  ON t.licence_number = l.number AND t.line_number = l.line_number
ORDER BY l.number, l.line_number
"""


def run(run: Run, database: str) -> list[Result]:
    size = SIZES[run.size]
    n_licences = size["lines"] // LINES_PER_LICENCE
    run.log(f"W5 on {database}: generating {n_licences} licences")
    licences = list(
        synthetic_licences(
            n_licences, seed=51, scale=1000, lines_per_licence=LINES_PER_LICENCE, holders=100
        )
    )
    quoted = licences[:QUOTED]
    events = [
        e.envelope
        for e in event_stream(quoted, size["events"], seed=52, amendments=0.05, invalidations=0.02)
    ]
    broker = run.broker()
    timeout = 120 + size["events"] / 20

    url = run.ledger_url(database, "w5empty")
    engine = run.engine(url)
    store_known_licences(engine, quoted)
    run.log(f"W5 on {database}: write-offs into an empty ledger")
    empty, empty_report = bridge_rate(run.settings(broker, url), engine, events, timeout=timeout)
    engine.dispose()

    url = run.ledger_url(database, "w5full")
    engine = run.engine(url)
    run.log(f"W5 on {database}: bulk-loading {size['lines']} lines, {size['movements']} movements")
    started = time.perf_counter()
    tables = bulkload.licence_rows(licences)
    tables |= bulkload.history_rows(licences, size["movements"], seed=53)
    loaded = bulkload.load(engine, tables)
    load_seconds = time.perf_counter() - started
    run.log(f"W5 on {database}: loaded in {load_seconds:.0f} s: {loaded}")

    run.log(f"W5 on {database}: write-offs into the full ledger")
    full, full_report = bridge_rate(run.settings(broker, url), engine, events, timeout=timeout)

    run.log(f"W5 on {database}: reconciliation of {size['lines']} lines")
    with engine.connect() as conn:
        started = time.perf_counter()
        rows = reconciliation_rows(conn)
        reconcile_seconds = time.perf_counter() - started
        started = time.perf_counter()
        bare = conn.exec_driver_sql(BARE_RECONCILIATION).fetchall()
        bare_seconds = time.perf_counter() - started
    engine.dispose()
    if len(rows) != size["lines"] or len(bare) != size["lines"]:
        raise AssertionError(f"W5: reconciliation gave {len(rows)} rows, bare SQL {len(bare)}")

    share = ratio(full["rate"], empty["rate"])
    limit_seconds = RECONCILE_SECONDS_PER_MILLION * size["lines"] / 1_000_000
    reports = {
        "empty": {"applied": empty_report.applied, "refused": empty_report.refused},
        "full": {"applied": full_report.applied, "refused": full_report.refused},
    }
    return [
        Result(
            workload="W5 write-offs, full vs empty ledger",
            database=database,
            bridge=full["rate"],
            bridge_unit="msg/s (full)",
            limit=empty["rate"],
            limit_unit="msg/s (empty)",
            ratio=share,
            target=f"ratio >= {TARGET_RATIO}",
            met=share is not None and share >= TARGET_RATIO,
            seconds=full["seconds"] + empty["seconds"],
            note=f"{size['lines']:,} lines, {size['movements']:,} movements",
            details={
                "events": len(events),
                "loaded": loaded,
                "load_seconds": load_seconds,
                "reports": reports,
            },
        ),
        Result(
            workload="W5 reconciliation",
            database=database,
            bridge=reconcile_seconds,
            bridge_unit="s",
            limit=bare_seconds,
            limit_unit="s (bare SQL)",
            ratio=ratio(reconcile_seconds, bare_seconds),
            target=f"<= {limit_seconds:g} s ({size['lines']:,} lines)",
            met=reconcile_seconds <= limit_seconds,
            seconds=reconcile_seconds + bare_seconds,
            note=f"{size['lines']:,} lines, {size['movements']:,} movements",
            details={"rows": len(rows)},
        ),
    ]

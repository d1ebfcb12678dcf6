"""`python -m bench`: run the benchmark workloads, print the table, write JSON.

    python -m bench --size tiny|small|full [--only W1,W3] [--database sqlite|postgresql|both]
                    [--json out.json] [--workdir DIR]

Each workload measures the bridge and its limit in the same run (see bench/__init__.py)."""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import sys
import tempfile
import time
import traceback
from datetime import UTC, datetime
from pathlib import Path

from bench import WORKLOADS
from bench.common import DATABASES, SIZES, Result, Run, machine


def _format(value: float | None, unit: str = "") -> str:
    if value is None:
        return "-"
    if abs(value) >= 100:
        text = f"{value:,.0f}"
    elif abs(value) >= 10:
        text = f"{value:.1f}"
    else:
        text = f"{value:.2f}"
    return f"{text} {unit}".strip()


def table(results: list[Result]) -> str:
    head = ("workload", "database", "bridge", "limit", "ratio", "target", "met?")
    rows = [
        (
            r.workload,
            r.database,
            _format(r.bridge, r.bridge_unit),
            _format(r.limit, r.limit_unit),
            _format(r.ratio),
            r.target,
            "-" if r.met is None else ("yes" if r.met else "NO"),
        )
        for r in results
    ]
    widths = [max(len(str(x)) for x in column) for column in zip(head, *rows, strict=True)]
    lines = [" | ".join(h.ljust(w) for h, w in zip(head, widths, strict=True))]
    lines.append("-+-".join("-" * w for w in widths))
    lines += [" | ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)) for row in rows]
    return "\n".join(lines)


def _terminate(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    parser.add_argument("--size", choices=SIZES, default="tiny")
    parser.add_argument("--only", help="comma-separated workloads, e.g. W1,W3 (default: all)")
    parser.add_argument("--database", choices=(*DATABASES, "both"), default="both")
    parser.add_argument("--json", type=Path, help="write the results here as JSON")
    parser.add_argument("--workdir", type=Path, help="keep the run's files here")
    parser.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    args = parser.parse_args(argv)

    wanted = [w.strip().upper() for w in (args.only or ",".join(WORKLOADS)).split(",") if w]
    unknown = [w for w in wanted if w not in WORKLOADS]
    if unknown:
        parser.error(f"unknown workloads {unknown}; known: {', '.join(WORKLOADS)}")
    databases = DATABASES if args.database == "both" else (args.database,)

    # SIGTERM unwinds like Ctrl-C, so that everything the run started is stopped.
    signal.signal(signal.SIGTERM, _terminate)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="elbridge-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    machine_at_start = machine()
    results: list[Result] = []
    failures: list[dict[str, str]] = []
    try:
        with Run(args.size, workdir, verbose=not args.quiet) as run:
            for name in wanted:
                module = WORKLOADS[name]
                for database in databases if module.PER_DATABASE else ("-",):
                    run.log(f"{name} ({args.size}, {database})")
                    try:
                        with run.workload():
                            results += module.run(run, database)
                    except Exception as error:  # the others still run; the failure is reported
                        traceback.print_exc()
                        failures.append(
                            {"workload": name, "database": database, "error": repr(error)}
                        )
    finally:
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)
    elapsed = time.perf_counter() - started

    print(f"\nelbridge benchmark, size {args.size}, {elapsed:.0f} s\n")
    print(table(results))
    for failure in failures:
        print(f"\nFAILED {failure['workload']} ({failure['database']}): {failure['error']}")
    if args.json:
        document = {
            "size": args.size,
            "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "seconds": elapsed,
            "machine": machine_at_start,
            "load_average_at_end": machine()["load_average"],
            "command": " ".join(["python -m bench", *(argv if argv is not None else sys.argv[1:])]),
            "results": [r.as_dict() for r in results],
            "failures": failures,
        }
        args.json.write_text(json.dumps(document, indent=1, default=str) + "\n", encoding="utf-8")
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())

"""`python -m chaos`: one fault-injection run; prints the table of checks, writes JSON.

    python -m chaos --size tiny|small|full [--database sqlite|postgresql] [--seed N]
                    [--json out.json] [--workdir DIR] [--quiet]

Exit status 0 when every check passed, 1 when one failed, 2 when the run itself broke."""

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

from chaos.checks import Check
from chaos.run import ChaosRun
from chaos.sizes import SIZES

DATABASES = ("sqlite", "postgresql")


def table(results: list[Check]) -> str:
    head = ("check", "result", "detail")
    rows = [(c.name, "pass" if c.passed else "FAIL", c.detail) for c in results]
    widths = [max(len(row[i]) for row in (head, *rows)) for i in range(2)]
    lines = [f"{head[0].ljust(widths[0])} | {head[1].ljust(widths[1])} | {head[2]}"]
    lines.append(f"{'-' * widths[0]}-+-{'-' * widths[1]}-+-{'-' * 40}")
    lines += [f"{n.ljust(widths[0])} | {r.ljust(widths[1])} | {d}" for n, r, d in rows]
    return "\n".join(lines)


def _terminate(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)  # unwinds, so that everything the run started is stopped


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m chaos", description=__doc__.split("\n")[0])
    parser.add_argument("--size", choices=tuple(SIZES), default="tiny")
    parser.add_argument("--database", choices=DATABASES, default="sqlite")
    parser.add_argument("--seed", type=int, default=20261128)
    parser.add_argument("--json", type=Path, help="write the checks and figures here")
    parser.add_argument("--workdir", type=Path, help="keep the run's files (logs...) here")
    parser.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    args = parser.parse_args(argv)

    def say(message: str) -> None:
        if not args.quiet:
            print(f"  [{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)

    signal.signal(signal.SIGTERM, _terminate)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="elbridge-chaos-"))
    workdir.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    outcome: dict = {"checks": [], "figures": {}, "timeline": []}
    error = None
    try:
        outcome = ChaosRun(SIZES[args.size], args.database, args.seed, workdir, say).execute()
    except Exception as failure:  # reported in the JSON and by the exit status
        traceback.print_exc()
        error = repr(failure)
    finally:
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)
    seconds = time.monotonic() - started
    results: list[Check] = outcome["checks"]
    passed = error is None and bool(results) and all(c.passed for c in results)

    print(f"\nelbridge fault injection, size {args.size}, {args.database}, seed {args.seed},"
          f" {seconds:.0f} s\n")  # fmt: skip
    print(table(results))
    if error:
        print(f"\nthe run broke: {error}")
    print(f"\n{'ALL CHECKS PASSED' if passed else 'FAILED'}")
    if args.json:
        document = {
            "size": args.size,
            "database": args.database,
            "seed": args.seed,
            "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "seconds": round(seconds, 1),
            "command": " ".join(["python -m chaos", *(argv if argv is not None else sys.argv[1:])]),
            "passed": passed,
            "error": error,
            "checks": [c.as_dict() for c in results],
            "figures": outcome["figures"],
            "timeline": outcome["timeline"],
        }
        args.json.write_text(json.dumps(document, indent=1, default=str) + "\n", encoding="utf-8")
    if error:
        return 2
    return 0 if passed else 1


if __name__ == "__main__":
    raise SystemExit(main())

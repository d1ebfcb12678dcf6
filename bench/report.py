"""`python -m bench.report RESULT.json`: a benchmark run's JSON as the Markdown table that
docs/performance.md shows."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from bench.__main__ import _format


def markdown(document: dict) -> str:
    lines = [
        "| workload | database | bridge | limit | ratio | target | met? | note |",
        "|---|---|---:|---:|---:|---|---|---|",
    ]
    for r in document["results"]:
        met = "-" if r["met"] is None else ("yes" if r["met"] else "**no**")
        lines.append(
            f"| {r['workload']} | {r['database']} | {_format(r['bridge'], r['bridge_unit'])}"
            f" | {_format(r['limit'], r['limit_unit'])} | {_format(r['ratio'])}"
            f" | {r['target']} | {met} | {r.get('note', '')} |"
        )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.report")
    parser.add_argument("result", type=Path)
    args = parser.parse_args()
    document = json.loads(args.result.read_text())
    start = document["machine"].get("load_average")
    end = document.get("load_average_at_end")
    load = ""
    if start and end:
        load = (
            f"; load average (1, 5, 15 min) at start {', '.join(f'{x:.2f}' for x in start)},"
            f" at end {', '.join(f'{x:.2f}' for x in end)}"
        )
    print(
        f"Size {document['size']}, {document['seconds']:.0f} s, {document['finished_at']}{load}.\n"
    )
    print(markdown(document))
    for failure in document.get("failures", []):
        print(f"\nFailed: {failure['workload']} ({failure['database']}): {failure['error']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

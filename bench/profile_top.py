"""`python -m bench.profile_top PROFILE.txt [--within FUNCTION] [--top N]`: the top entries of a
py-spy profile recorded with `--format raw` (collapsed stacks), by own time and by time
including callees, counting only the samples whose stack passes through FUNCTION (e.g.
`consume`, `deliver_pending`), so that one phase of a benchmark can be read apart.

    .venv/bin/py-spy record --format raw --rate 250 -o w1.txt -- \
        .venv/bin/python -m bench --size small --only W1 --database sqlite
    .venv/bin/python -m bench.profile_top w1.txt --within consume"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from pathlib import Path

_LINE = re.compile(r"^(?P<stack>.*) (?P<count>\d+)$")


def _name(frame: str) -> str:
    # py-spy writes "function (path/to/file.py:line)"; keep the function and the file's tail.
    match = re.match(r"(?P<fn>[^ ]+) \((?P<file>[^:]+)(?::\d+)?\)", frame)
    if not match:
        return frame
    path = match.group("file")
    for marker in ("site-packages/", "/main/", "lib/python3.11/"):
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    return f"{match.group('fn')} ({path})"


def summarise(text: str, within: str | None) -> tuple[int, Counter, Counter]:
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in text.splitlines():
        match = _LINE.match(line.strip())
        if not match:
            continue
        frames = [f for f in match.group("stack").split(";") if f]
        if within is not None:
            found = [i for i, f in enumerate(frames) if f.split(" ", 1)[0] == within]
            if not found:
                continue
            frames = frames[found[0] :]
        count = int(match.group("count"))
        total += count
        names = [_name(f) for f in frames]
        own[names[-1]] += count
        for name in set(names):
            inclusive[name] += count
    return total, own, inclusive


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.profile_top")
    parser.add_argument("profile", type=Path)
    parser.add_argument("--within", help="only samples whose stack passes this function")
    parser.add_argument("--top", type=int, default=15)
    args = parser.parse_args()
    total, own, inclusive = summarise(args.profile.read_text(errors="replace"), args.within)
    print(f"{total} samples" + (f" within {args.within}" if args.within else ""))
    for title, table in (("own time", own), ("including callees", inclusive)):
        print(f"\n{title}:")
        for name, count in table.most_common(args.top):
            print(f"  {100 * count / max(1, total):5.1f}%  {name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

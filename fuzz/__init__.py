"""Coverage-guided fuzz targets (atheris) for the bridge's readers of outside bytes.

- `fuzz.declaration_reader`: MQTT declaration events and WCO DEC-DMS payloads
  (bridge.core.envelope.parse_envelope / read_event, bridge.core.declaration.read_declaration), and
  the write-off rules on whatever reads.
- `fuzz.national_mapper`: national licence files through the three mappings of mappings/*.yaml
  (bridge.core.mapping.translate), and the certificate of every record that is accepted.

Run them with `bash scripts/fuzz.sh [seconds per target]`; docs/reliability.md ("Fuzzing")
says what counts as a finding and records the last long run. Seed corpora are written at run
time (from the shared WCO samples and mappings/samples) into build/fuzz/, never into the tree."""

from __future__ import annotations

import faulthandler
import os
import re
import subprocess
import sys
from collections.abc import Callable, Iterable
from pathlib import Path

PROJECT = Path(__file__).resolve().parent.parent
SHARED_SAMPLES = PROJECT.parent / "shared" / "fixtures" / "wco-dec-dms" / "samples"


def declaration_samples() -> Path:
    """The folder of the real WCO DEC-DMS sample declarations (third-party test data)."""
    return Path(os.environ.get("ELBRIDGE_DECLARATION_SAMPLES", SHARED_SAMPLES))


class Known:
    """Findings already reported, each pinned by a strict xfail test: `tolerated(kind, detail)`
    prints a known one once on stderr and says True, so that a run goes on looking for new
    ones. ELBRIDGE_FUZZ_STRICT=1 tolerates none. Remove an entry once its bug is fixed."""

    def __init__(self, known: dict[str, str]) -> None:
        self.known = known
        self.strict = os.environ.get("ELBRIDGE_FUZZ_STRICT") == "1"
        self.seen: set[str] = set()
        _KNOWN.append(self)

    def tolerated(self, kind: str, detail: str) -> bool:
        if self.strict or kind not in self.known:
            return False
        if kind not in self.seen:
            self.seen.add(kind)
            print(f"known finding {kind}: {self.known[kind]}\n  {detail}", file=sys.stderr)
        return True


_KNOWN: list[Known] = []


def signature(error: BaseException) -> str:
    """An exception as `Type@module.function` of the innermost bridge frame it came through."""
    where = "?"
    trace = error.__traceback__
    while trace is not None:
        module = trace.tb_frame.f_globals.get("__name__", "")
        if module.startswith("bridge"):
            where = f"{module}.{trace.tb_frame.f_code.co_name}"
        trace = trace.tb_next
    return f"{type(error).__name__}@{where}"


def write_seeds(folder: Path, seeds: Iterable[tuple[str, bytes]]) -> int:
    """Write each (name, bytes) seed into `folder`; returns how many."""
    folder.mkdir(parents=True, exist_ok=True)
    count = 0
    for name, data in seeds:
        (folder / name).write_bytes(data)
        count += 1
    return count


TRIAGE_SECONDS = 3


def dictionary_entry(token: bytes | str) -> str:
    """One libFuzzer dictionary line: the token quoted, with \\, " and non-printing bytes
    escaped as \\xNN."""
    data = token.encode("utf-8") if isinstance(token, str) else token
    body = "".join(
        chr(b) if 32 <= b < 127 and b not in (0x22, 0x5C) else f"\\x{b:02x}" for b in data
    )
    return f'"{body}"'


def triage(module: str, paths: Iterable[str]) -> list[str]:
    """One line per finding file: what it does now, replayed alone in a subprocess (a hang is
    cut after TRIAGE_SECONDS and located by faulthandler in the innermost bridge frame)."""
    lines = []
    for path in paths:
        try:
            done = subprocess.run(
                [sys.executable, "-m", module, "--triage-one", path],
                capture_output=True,
                text=True,
                timeout=TRIAGE_SECONDS + 30,
                cwd=PROJECT,
            )
            verdict = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else ""
            if not verdict:
                frames = re.findall(
                    r'File "([^"]*/bridge/[^"]*)", line (\d+) in (\w+)', done.stderr
                )
                where = frames[0] if frames else ("?", "?", "?")
                verdict = f"hangs in {Path(where[0]).relative_to(PROJECT)}:{where[1]} {where[2]}"
        except subprocess.TimeoutExpired:
            verdict = "hangs (not located)"
        lines.append(f"{Path(path).name}: {verdict}")
    return lines


def _triage_one(path: str, one_input: Callable[[bytes], None]) -> int:
    faulthandler.dump_traceback_later(TRIAGE_SECONDS, exit=True)
    try:
        one_input(Path(path).read_bytes())
    except Exception as error:
        print(f"{signature(error)}: {str(error)[:160]!r}")
        return 1
    finally:
        faulthandler.cancel_dump_traceback_later()
    known = sorted(kind for registry in _KNOWN for kind in registry.seen)
    print(f"known finding {', '.join(known)}" if known else "passes now (no longer a finding)")
    return 0


def run(
    argv: list[str],
    one_input: Callable[[bytes], None],
    seeds: Callable[[], Iterable[tuple[str, bytes]]],
) -> int:
    """`--write-seeds DIR` writes the seed corpus; `--triage FILE...` says what each finding
    does now; anything else is handed to libFuzzer (e.g. `-max_total_time=60 CORPUS_DIR`)."""
    if len(argv) >= 3 and argv[1] == "--triage-one":
        return _triage_one(argv[2], one_input)
    if len(argv) >= 2 and argv[1] == "--triage":
        module = sys.modules["__main__"].__spec__.name
        print("\n".join(triage(module, argv[2:])))
        return 0
    if len(argv) >= 2 and argv[1] == "--write-dict":
        if len(argv) != 3:
            print(f"usage: {argv[0]} --write-dict FILE", file=sys.stderr)
            return 2
        tokens = getattr(sys.modules["__main__"], "DICTIONARY", ())
        Path(argv[2]).write_text("".join(f"{dictionary_entry(t)}\n" for t in tokens))
        return 0
    if len(argv) >= 2 and argv[1] == "--write-seeds":
        if len(argv) != 3:
            print(f"usage: {argv[0]} --write-seeds DIR", file=sys.stderr)
            return 2
        count = write_seeds(Path(argv[2]), seeds())
        print(f"{count} seeds written to {argv[2]}")
        return 0
    import atheris

    atheris.Setup(argv, one_input)
    atheris.Fuzz()
    return 0  # pragma: no cover - atheris.Fuzz() exits the process

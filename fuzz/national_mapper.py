"""Fuzz target: the national licence mapper, bytes in.

Each input is read as a national file by each of the three mappings in mappings/ (the legacy
German CSV, the UK JSON API export, the EU e-licensing tool's XML; `--mapping NAME` narrows it
to one) through bridge.core.mapping.translate, and every record is walked as ingest does: its
problems, its text as read (for the rejects store). A record that is accepted must also give a
certificate the contract accepts (bridge.core.certificate.build_certificate + certificate_problems):
the validation promises that much.

Records with problems are the expected outcome. The one documented error is the file-level
UnreadableFile (a file that cannot be read at all). Any other exception, and an accepted record
without a valid certificate, is a finding.

Known findings (KNOWN, each with a strict xfail test and an entry in docs/reliability.md) are
reported once on stderr and counted, not raised, so that a run goes on looking for new ones;
ELBRIDGE_FUZZ_STRICT=1 raises them too. Remove an entry once its bug is fixed (none is open).

    python -m fuzz.national_mapper --write-seeds build/fuzz/national/corpus
    python -m fuzz.national_mapper -max_total_time=60 build/fuzz/national/corpus
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Iterator, Sequence

import atheris

with atheris.instrument_imports(include=["bridge"]):
    from bridge.core.certificate import build_certificate, certificate_problems
    from bridge.core.errors import Problem, Rejected
    from bridge.core.mapping import Mapping, UnreadableFile, parse_mapping, translate

from fuzz import PROJECT, Known, run, signature

MAPPINGS = PROJECT / "mappings"
SAMPLES = MAPPINGS / "samples"
# A file name each mapping claims (mapping name -> name given to translate).
FILE_NAMES = {
    "de-bafa-legacy": "bafa_ausfuhr_fuzz.csv",
    "gb-ecju-api": "ecju_licences_fuzz.json",
    "eu-elicensing-tool": "elicensing_export_fuzz.xml",
}


# Kinds of "accepted, but no valid certificate" that are known bugs, each pinned by a strict
# xfail test; a kind is a problem code, or schema:<element>:<facet> for the XSD's complaints.
# Empty: the four found so far (text XML cannot carry, general authorisations and licence
# numbers the schema refuses, an OverflowError out of the date converter) are fixed, and their
# inputs are cases of the hostile corpus.
KNOWN = Known({})
# What the ledger's integer columns hold (licence versions; PostgreSQL `integer`).
LEDGER_INTEGER = 2**31 - 1
# Tokens libFuzzer splices into inputs (scripts/fuzz.sh passes them with -dict).
DICTIONARY = (
    ";",
    '"',
    "\r\n",
    "31.02.2026",
    "2026-02-30",
    "1.250.000,00",
    "NaN",
    "Infinity",
    "1e400",
    "9223372036854775808",
    '"revision": ',
    '"lineNo": ',
    '"quantity": {"amount": ',
    "<!DOCTYPE",
    "<!ENTITY",
    'sequence="',
    'version="',
    "<elic:Quantity",
    "\\u0000",
    "\\ud800",
    "\x00",
    "\xff",
)
_FACET = re.compile(r"\[facet '([a-zA-Z]+)'\]")


class Finding(AssertionError):
    """An accepted record that the certificate contract refuses."""


def kind_of(problem: Problem) -> str:
    """The kind of one certificate problem, as KNOWN names it."""
    if problem.code != "schema":
        return problem.code
    element = problem.path.split(" (line", 1)[0].rsplit("/", 1)[-1].split("[", 1)[0]
    facet = _FACET.search(problem.reason)
    return f"schema:{element}:{facet.group(1) if facet else 'other'}"


def _known(source: str, problems: Sequence[Problem]) -> bool:
    """True when every problem is of a known kind."""
    kinds = {kind_of(problem) for problem in problems}
    detail = f"{source}: {'; '.join(str(p) for p in problems)}"
    if not kinds or KNOWN.strict or not kinds <= KNOWN.known.keys():
        return False
    return all(KNOWN.tolerated(kind, detail) for kind in sorted(kinds))


def _mappings() -> list[Mapping]:
    found = [
        parse_mapping(path.read_text(encoding="utf-8"), str(path), path.stem)
        for path in sorted(MAPPINGS.glob("*.yaml"))
    ]
    wanted = os.environ.get("ELBRIDGE_FUZZ_MAPPING")
    if wanted:
        found = [m for m in found if m.name == wanted]
        if not found:
            raise SystemExit(f"no mapping named {wanted!r} in {MAPPINGS}")
    missing = [m.name for m in found if m.name not in FILE_NAMES]
    if missing:
        raise SystemExit(f"no fuzz file name for mapping(s) {', '.join(missing)}")
    return found


MAPPING_LIST = _mappings()


def one_input(data: bytes) -> None:
    for mapping in MAPPING_LIST:
        try:
            _walk(mapping, data)
        except UnreadableFile:
            continue
        except Finding:
            raise
        except Exception as error:
            if not KNOWN.tolerated(signature(error), repr(error)[:300]):
                raise


def _walk(mapping: Mapping, data: bytes) -> None:
    """Every record of `data` read by `mapping`, as ingest reads them."""
    records = translate(mapping, data, FILE_NAMES[mapping.name])
    for record in records:
        if record.licence is None:
            if not record.problems:
                raise Finding(f"{record.source}: refused without a reason")
            record.text  # noqa: B018 - what ingest stores for a reject
            continue
        if not 1 <= record.licence.version <= LEDGER_INTEGER:
            raise Finding(
                f"{mapping.name} accepted {record.source} with version {record.licence.version},"
                " which the ledger cannot store"
            )
        try:
            certificate = build_certificate(record.licence)
        except Rejected as refused:
            if _known(record.source, refused.problems):
                continue
            raise
        problems = certificate_problems(certificate, source=record.source)
        if problems and not _known(record.source, problems):
            raise Finding(
                f"{mapping.name} accepted {record.source} but its certificate breaks the"
                f" contract: {'; '.join(str(p) for p in problems)}"
            )


def seeds() -> Iterator[tuple[str, bytes]]:
    """The sample export of each mapping (mappings/samples)."""
    for path in sorted(SAMPLES.iterdir()):
        if path.is_file():
            yield path.name, path.read_bytes()


if __name__ == "__main__":
    if "--mapping" in sys.argv:
        at = sys.argv.index("--mapping")
        os.environ["ELBRIDGE_FUZZ_MAPPING"] = sys.argv[at + 1]
        del sys.argv[at : at + 2]
        MAPPING_LIST = _mappings()
    raise SystemExit(run(sys.argv, one_input, seeds))

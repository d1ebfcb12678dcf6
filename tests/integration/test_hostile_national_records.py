"""Hostile and broken national licence records through bridge.services.ingest, in the three formats
of mappings/*.yaml (the legacy German Latin-1 CSV, the UK JSON API export, the EU e-licensing tool's
namespaced XML).

Record cases (impossible dates, comma/point confusion, NaN, unknown codes, missing fields,
duplicated line numbers, absurd sizes, wrong shapes...) sit in one file per format among valid
neighbours: each must be kept in the rejects store with its reason, and every neighbour must go
in. File cases (XXE to a file and a URL, bombs, DTDs, invalid encodings, malformed or truncated
files...) go through ingest_inbox: each is set aside in inbox/failed/ with its reason, and
nothing of it reaches the ledger. Bugs once found (text a certificate cannot carry, numbers past
the ledger's columns, NUL in what the rejects store keeps, a pattern that backtracked for
minutes, a quote never closed, members written twice) are cases like any other, and some have
tests of their own below."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import func, select

from bridge.adapters.store.rejects import list_rejects
from bridge.adapters.store.schema import licence as licence_table
from bridge.adapters.store.schema import reject
from bridge.core.mapping import mapping_for, translate
from bridge.services.ingest import ingest_file, ingest_inbox, load_mappings
from tests.hostile import Listener, run_fuzz_target
from tests.hostile.corpus import (
    FILE_NAMES,
    SECRET,
    NationalCase,
    corpus_size,
    csv_file,
    csv_record,
    national_case_file,
    national_file_cases,
    national_record_cases,
    unclosed_quote_file,
    valid_national_records,
)

FORMATS = ("csv", "json", "xml")
VALID_PER_FILE = 40


@pytest.fixture(scope="module")
def canary(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("canary") / "secret.txt"
    path.write_text(SECRET + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def listener():
    found = Listener()
    yield found
    found.stop()


def _record_problem(case: NationalCase, rejects) -> str | None:
    """Why `case` is not in `rejects` as it should be, or None."""
    found = [r for r in rejects if case.marker in r.record]
    if len(found) != 1:
        return f"{len(found)} rejects hold its marker {case.marker}"
    problems = found[0].problems
    if not any(
        case.reason in problem.reason and (case.path is None or case.path in problem.path)
        for problem in problems
    ):
        shown = "; ".join(f"{p.path}: {p.reason}" for p in problems)
        return f"no problem says {case.reason!r} at {case.path!r}: {shown[:400]}"
    return None


def _numbers(engine) -> set[str]:
    with engine.connect() as conn:
        return set(conn.execute(select(licence_table.c.number)).scalars())


@pytest.mark.parametrize("format_", FORMATS)
def test_hostile_records_are_rejected_and_their_neighbours_go_in(engine, tmp_path, format_):
    cases = [case for case in national_record_cases() if case.format == format_]
    assert len(cases) >= 50
    valid = valid_national_records(format_, VALID_PER_FILE, format_)
    path = tmp_path / FILE_NAMES[format_].format(tag="hostile")
    path.write_bytes(national_case_file(format_, cases, valid))

    report = ingest_file(engine, path)

    assert report.new == len(valid), report.describe()[:2000]
    assert report.rejected == len(cases)
    assert _numbers(engine) == {number for number, _ in valid}
    with engine.connect() as conn:
        rejects = list_rejects(conn)
    assert len(rejects) == len(cases)
    wrong = [
        f"{case.name}: {why}"
        for case in cases
        if (why := _record_problem(case, rejects)) is not None
    ]
    assert not wrong, f"{len(wrong)} case(s) missed their fate:\n" + "\n".join(wrong[:40])
    # Reading the same file again keeps every reject once.
    again = ingest_file(engine, path)
    assert (again.new, again.unchanged, again.rejected) == (0, len(valid), len(cases))
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(reject)).scalar_one() == len(cases)


def test_unreadable_files_are_set_aside_with_their_reason(engine, tmp_path, canary, listener):
    cases = national_file_cases(canary, listener.url)
    assert len(cases) >= 40
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    names = {}
    for number, case in enumerate(cases):
        name = FILE_NAMES[case.format].format(tag=f"hostile-{number:03d}")
        (inbox / name).write_bytes(case.data)
        names[name] = case
    good = FILE_NAMES["csv"].format(tag="zz-good")  # a good file after them all
    (inbox / good).write_bytes(csv_file([csv_record("OK-INBOX-1", "inbox")]))

    reports = ingest_inbox(engine, inbox)

    by_file = {report.file: report for report in reports}
    assert set(by_file) == {*names, good}
    wrong = []
    for name, case in names.items():
        failure = by_file[name].failure
        reason_file = inbox / "failed" / f"{name}.reason.txt"
        if failure is None:
            wrong.append(f"{case.name}: read, {by_file[name].describe()[:200]}")
        elif case.reason not in failure:
            wrong.append(f"{case.name}: failure {failure[:300]!r} lacks {case.reason!r}")
        elif not reason_file.is_file() or case.reason not in reason_file.read_text():
            wrong.append(f"{case.name}: no inbox/failed/{name}.reason.txt with the reason")
    assert not wrong, f"{len(wrong)} file(s) missed their fate:\n" + "\n".join(wrong)
    assert by_file[good].new == 1
    assert _numbers(engine) == {"OK-INBOX-1"}
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(reject)).scalar_one() == 0
    # Nothing was followed: the secret is nowhere, the listener saw no one.
    for failure in (report.failure or "" for report in reports):
        assert SECRET not in failure
    assert listener.connections == 0


# ----------------------------------------------------------------- bugs found, one by one


def test_text_a_certificate_cannot_carry_is_rejected_at_ingest(engine, tmp_path):
    """The fuzzer's finding `not-xml-text` (fuzz/national_mapper.py): a control character in a
    record passed validation, and the licence could never be certified."""
    (case,) = [c for c in national_record_cases() if c.name == "json/control-character/escape"]
    _expect_rejected(engine, tmp_path, case)


def test_a_general_authorisation_the_certificate_refuses_is_rejected_at_ingest(engine, tmp_path):
    """The fuzzer's finding `schema:GeneralAuthorisation:pattern`."""
    (case,) = [c for c in national_record_cases() if c.name == "csv/general-authorisation/AGG16,"]
    _expect_rejected(engine, tmp_path, case)


def _expect_rejected(engine, tmp_path: Path, case: NationalCase) -> None:
    path = tmp_path / FILE_NAMES[case.format].format(tag="pinned")
    path.write_bytes(national_case_file(case.format, [case], []))
    report = ingest_file(engine, path)
    assert report.rejected == 1 and report.new == 0, report.describe()
    with engine.connect() as conn:
        assert _record_problem(case, list_rejects(conn)) is None


@pytest.mark.parametrize(
    "name", ["csv/unknown-code/status-with-nul", "json/lone-surrogate/description"]
)
def test_the_rejects_store_keeps_text_no_column_holds_exactly(engine, tmp_path, name):
    """NUL (PostgreSQL text refuses it) and a lone surrogate from a JSON escape (UTF-8 cannot
    encode it) once made saving the reject fail, and with it the whole file. The reject now
    shows them escaped and gives back the record exactly as it was read."""
    (case,) = [c for c in national_record_cases() if c.name == name]
    path = tmp_path / FILE_NAMES[case.format].format(tag="unstorable")
    path.write_bytes(national_case_file(case.format, [case], []))
    records = list(translate(mapping_for(path.name, load_mappings()), path.read_bytes(), path.name))
    (read,) = [record.text for record in records]
    assert "\x00" in read or "\ud800" in read
    ingest_file(engine, path)
    with engine.connect() as conn:
        (stored,) = list_rejects(conn)
        (shown,) = conn.execute(select(reject.c.record)).scalars()
    assert stored.record == read
    assert "\x00" not in shown and "\ud800" not in shown
    assert "\\u0000" in shown or "\\ud800" in shown


def test_an_unclosed_quote_rejects_its_row_and_the_rows_after_it_go_in(engine, tmp_path):
    """A quote opened and never closed once swallowed every later row into one field: the
    licences after it were neither ingested nor rejected. Now the row is rejected, naming its
    line and field, and every other licence goes in."""
    path = tmp_path / FILE_NAMES["csv"].format(tag="quote")
    path.write_bytes(unclosed_quote_file(5, broken=(1, 3)))
    report = ingest_file(engine, path)
    assert (report.new, report.rejected) == (3, 2), report.describe()
    assert _numbers(engine) == {"OK-QUOTE-0", "OK-QUOTE-2", "OK-QUOTE-4"}
    with engine.connect() as conn:
        rejects = list_rejects(conn)
    found = {
        (problem.source, problem.code)
        for stored in rejects
        for problem in stored.problems
        if problem.code == "unclosed-quote"
    }
    assert found == {
        (f"{path.name} line 3", "unclosed-quote"),
        (f"{path.name} line 5", "unclosed-quote"),
    }
    assert all(
        "'Warenbezeichnung'" in p.reason
        for r in rejects
        for p in r.problems
        if p.code == "unclosed-quote"
    )


def test_a_long_control_list_entry_is_rejected_in_bounded_time(tmp_path):
    """A control list entry of 5 characters, 40 digits and one stray letter (normalise_cle's
    pattern once backtracked on it for minutes): the record must be rejected within seconds
    (run in a subprocess, since a regular expression holds the GIL)."""
    cle = "1C350" + "4" * 40 + "\u00e9"
    path = tmp_path / FILE_NAMES["csv"].format(tag="redos")
    rows = csv_record("EVIL-REDOS-1", "redos")
    rows[0]["AL-Nummer"] = cle
    path.write_bytes(csv_file([rows]))
    script = (
        "import sys, json\n"
        "from pathlib import Path\n"
        "from bridge.services.ingest import load_mappings\n"
        "from bridge.core.mapping import mapping_for, translate\n"
        "path = Path(sys.argv[1])\n"
        "mapping = mapping_for(path.name, load_mappings())\n"
        "records = list(translate(mapping, path.read_bytes(), path.name))\n"
        "print(json.dumps([[p.path, p.reason] for r in records for p in r.problems]))\n"
    )
    try:
        done = subprocess.run(
            [sys.executable, "-c", script, str(path)],
            capture_output=True,
            text=True,
            timeout=5,
            cwd=Path(__file__).resolve().parents[2],
        )
    except subprocess.TimeoutExpired:
        pytest.fail("translating one CSV record took more than 5 s")
    assert done.returncode == 0, done.stderr
    problems = json.loads(done.stdout)
    assert any("control_list_entry" in path for path, _ in problems)


def test_the_corpus_is_large_enough(canary, listener, wco_samples):
    """Issue 4 asks for at least 1,000 generated cases across the three inputs."""
    sizes = corpus_size(wco_samples, canary, listener.url)
    assert sum(sizes.values()) >= 1000, sizes


def test_the_national_fuzz_target_runs_clean(tmp_path):
    """CI's brief fuzzing run of the mapper (scripts/fuzz.sh runs it long): bytes through the
    three mappings, only UnreadableFile, accepted records certifiable."""
    output = run_fuzz_target("national_mapper", tmp_path)
    assert "Done 2000 runs" in output

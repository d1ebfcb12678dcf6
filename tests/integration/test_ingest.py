"""National files into a real SQLite ledger: counts, rejects with every reason, versions, inbox."""

import json
import os
import shutil
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import func, select

from bridge.adapters.store.licences import load_licences
from bridge.adapters.store.rejects import list_rejects
from bridge.adapters.store.schema import licence_version
from bridge.core.errors import MappingError
from bridge.core.mapping import UnreadableFile
from bridge.core.paths import MAPPINGS_DIR
from bridge.services.ingest import (
    ingest_file,
    ingest_inbox,
    load_mapping_set,
    load_mappings,
)

NOW = datetime(2026, 11, 28, 6, 0, tzinfo=UTC)
SAMPLES = MAPPINGS_DIR / "samples"
BAFA = SAMPLES / "bafa_ausfuhr_2025-11-27.csv"
ECJU = SAMPLES / "ecju_licences_2026-11-27.json"
ELIC = SAMPLES / "elicensing_export_LV_2026-11-27.xml"
DEMO_LICENCES = ["GBSIEXYK3ZZZPADR-0002", "GBSIEXYK3ZZZ-0001", "GBSIEE2E350001-0001"]


def _versions(engine) -> int:
    with engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(licence_version)).scalar_one()


@pytest.mark.parametrize(
    ("sample", "mapping", "new", "rejected_number"),
    [
        (BAFA, "de-bafa-legacy", 4, "EA-2025-004799"),
        (ECJU, "gb-ecju-api", 5, "GBSIEL/2026/00999"),
        (ELIC, "eu-elicensing-tool", 3, "RO-ANCEX-2025-0155"),
    ],
)
def test_each_sample_ingests_its_valid_licences_and_rejects_its_broken_one(
    engine, sample, mapping, new, rejected_number
):
    report = ingest_file(engine, sample, now=NOW)
    assert (report.mapping, report.new, report.rejected) == (mapping, new, 1)
    assert (report.new_version, report.unchanged, report.stale) == (0, 0, 0)
    assert [r.number for r in report.rejects] == [rejected_number]
    assert len(report.changed) == new
    with engine.connect() as conn:
        (stored,) = list_rejects(conn)
        ingested = load_licences(conn, [number for number, _ in report.changed])
    assert len(ingested) == new
    assert stored.format == mapping
    assert stored.source == report.rejects[0].source
    assert rejected_number in stored.record
    assert len(stored.problems) >= 5  # all of its reasons, not the first one


def test_a_rejected_json_record_keeps_every_reason_while_its_neighbours_go_in(engine):
    report = ingest_file(engine, ECJU, now=NOW)
    with engine.connect() as conn:
        (stored,) = list_rejects(conn)
        neighbours = load_licences(conn, [*DEMO_LICENCES, "GBOIEL/2025/00042", "GBSIEL/2026/00999"])
    assert stored.source == "ecju_licences_2026-11-27.json $.licences[5]"
    assert {(p.path, p.code) for p in stored.problems} == {
        ("holder_eori", "eori"),
        ("valid_to", "dates-reversed"),
        ("lines[0].quantity", "not-a-number"),
        ("lines[0].currency", "currency"),
        ("lines[0].destinations[1]", "country"),
        ("lines[1]", "no-ceiling"),
        ("lines[1].line_number", "duplicate-line"),
    }
    quantity = next(p for p in stored.problems if p.path == "lines[0].quantity")
    assert quantity.source == "ecju_licences_2026-11-27.json $.licences[5].goods[0]"
    assert quantity.value == "1,2,3"
    assert json.loads(stored.record)["licensee"]["eori"] == "GB89645889501599999"
    assert stored.at.replace(tzinfo=UTC) == NOW  # SQLite hands back naive UTC
    assert sorted(neighbours) == sorted([*DEMO_LICENCES, "GBOIEL/2025/00042"])
    assert "1 rejected" in report.describe() and "GBSIEL/2026/00999" in report.describe()


def test_the_demo_licences_are_stored_exactly_as_customs_will_write_them_off(engine):
    ingest_file(engine, ECJU, now=NOW)
    with engine.connect() as conn:
        found = load_licences(conn, DEMO_LICENCES)
    padr = found["GBSIEXYK3ZZZPADR-0002"]
    assert (padr.holder_name, padr.holder_eori, padr.issuing_authority) == (
        "Precision Arms Ltd",
        "GB896458895015",
        "Export Control Joint Unit",
    )
    assert [(li.cn_code, li.quantity, li.unit, li.value, li.currency) for li in padr.lines] == [
        ("93059100", Decimal(500), "KGM", Decimal("400000.00"), "GBP")
    ]
    rifles = found["GBSIEXYK3ZZZ-0001"]
    assert [(li.line_number, li.cn_code, li.quantity, li.value) for li in rifles.lines] == [
        (1, "93019000", Decimal(200), Decimal(900000)),
        (2, "93059100", Decimal(100), Decimal(100000)),
    ]
    ammo = found["GBSIEE2E350001-0001"]
    assert (ammo.holder_eori, ammo.lines[0].cn_code, ammo.lines[0].destinations) == (
        "GB417869120000",
        "93063030",
        ("PK",),
    )


@pytest.mark.parametrize("sample", [BAFA, ECJU, ELIC])
def test_reingesting_the_same_file_changes_nothing(engine, sample):
    first = ingest_file(engine, sample, now=NOW)
    versions = _versions(engine)
    again = ingest_file(engine, sample, now=NOW)
    assert (again.new, again.new_version, again.stale) == (0, 0, 0)
    assert again.unchanged == first.new
    assert again.rejected == 1  # still reported, stored once
    assert _versions(engine) == versions
    with engine.connect() as conn:
        assert len(list_rejects(conn)) == 1


def test_a_changed_csv_record_becomes_the_next_version(engine, tmp_path):
    ingest_file(engine, BAFA, now=NOW)
    text = BAFA.read_bytes().decode("latin-1")
    changed = text.replace(
        "Wärmebildkameras, ungekühlt;120;Stück", "Wärmebildkameras, ungekühlt;150;Stück"
    )
    assert changed != text
    amended = tmp_path / "bafa_ausfuhr_2025-11-28.csv"
    amended.write_bytes(changed.encode("latin-1"))
    report = ingest_file(engine, amended, now=NOW)
    assert (report.new, report.new_version, report.unchanged, report.rejected) == (0, 1, 3, 1)
    assert report.changed == [("EA-2025-004711", 2)]
    with engine.connect() as conn:
        optik = load_licences(conn, ["EA-2025-004711"])["EA-2025-004711"]
    assert (optik.version, optik.lines[0].quantity) == (2, Decimal(150))


def test_json_revisions_are_kept_and_an_older_revision_is_stale(engine, tmp_path):
    ingest_file(engine, ECJU, now=NOW)
    # json.dumps writes 900000.00 back as 900000.0: the same amount, so still unchanged
    document = json.loads(ECJU.read_text(encoding="utf-8"))
    padr = document["licences"][0]
    padr["revision"] = 4
    padr["goods"][0]["quantity"]["amount"] = 450
    amended = tmp_path / "ecju_licences_2026-11-28.json"
    amended.write_text(json.dumps(document), encoding="utf-8")
    assert '"amount": 900000.0,' in amended.read_text(encoding="utf-8")
    report = ingest_file(engine, amended, now=NOW)
    assert (report.new_version, report.unchanged, report.changed) == (
        1,
        4,
        [("GBSIEXYK3ZZZPADR-0002", 4)],
    )
    late = ingest_file(engine, ECJU, now=NOW)  # yesterday's file, delivered again
    assert (late.stale, late.unchanged, late.new_version) == (1, 4, 0)
    with engine.connect() as conn:
        stored = load_licences(conn, ["GBSIEXYK3ZZZPADR-0002"])["GBSIEXYK3ZZZPADR-0002"]
    assert (stored.version, stored.lines[0].quantity) == (4, Decimal(450))


def test_a_file_no_mapping_claims_is_refused_naming_the_mappings_tried(engine, tmp_path):
    stray = tmp_path / "licences_2026.ods"
    stray.write_bytes(b"PK\x03\x04")
    with pytest.raises(UnreadableFile) as refused:
        ingest_file(engine, stray, now=NOW)
    message = str(refused.value)
    assert "licences_2026.ods" in message
    for name in ("de-bafa-legacy", "gb-ecju-api", "eu-elicensing-tool"):
        assert name in message


def test_a_named_mapping_reads_a_file_whatever_its_name(engine, tmp_path):
    renamed = tmp_path / "export.dat"
    shutil.copyfile(ELIC, renamed)
    report = ingest_file(engine, renamed, mapping_name="eu-elicensing-tool", now=NOW)
    assert (report.new, report.rejected) == (3, 1)


def test_the_inbox_moves_read_files_to_done_and_unreadable_ones_to_failed(engine, tmp_path):
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    for sample in (BAFA, ECJU, ELIC):
        shutil.copyfile(sample, inbox / sample.name)
    (inbox / "ecju_licences_truncated.json").write_text('{"licences": [{"ref', encoding="utf-8")
    (inbox / "notes.ods").write_bytes(b"PK\x03\x04")
    (inbox / "ecju_licences_next.json.part").write_text("{", encoding="utf-8")  # being written
    (inbox / ".hidden").write_text("x", encoding="utf-8")

    reports = ingest_inbox(engine, inbox, now=NOW)

    by_file = {report.file: report for report in reports}
    assert set(by_file) == {
        BAFA.name,
        ECJU.name,
        ELIC.name,
        "ecju_licences_truncated.json",
        "notes.ods",
    }
    assert sum(r.new for r in reports) == 12
    assert sum(r.rejected for r in reports) == 3
    assert "not well-formed JSON" in by_file["ecju_licences_truncated.json"].failure
    assert "no mapping claims" in by_file["notes.ods"].failure
    assert sorted(p.name for p in (inbox / "done").iterdir()) == sorted(
        [BAFA.name, ECJU.name, ELIC.name]
    )
    assert sorted(p.name for p in (inbox / "failed").iterdir()) == [
        "ecju_licences_truncated.json",
        "ecju_licences_truncated.json.reason.txt",
        "notes.ods",
        "notes.ods.reason.txt",
    ]
    reason = (inbox / "failed" / "notes.ods.reason.txt").read_text(encoding="utf-8")
    assert "tried: " in reason and "de-bafa-legacy" in reason
    assert sorted(p.name for p in inbox.iterdir() if p.is_file()) == [
        ".hidden",
        "ecju_licences_next.json.part",
    ]
    assert ingest_inbox(engine, inbox, now=NOW) == []  # each file is ingested once

    shutil.copyfile(ECJU, inbox / ECJU.name)  # the same name arrives again
    (again,) = ingest_inbox(engine, inbox, now=NOW)
    assert again.unchanged == 5
    assert (inbox / "done" / "ecju_licences_2026-11-27.1.json").is_file()


def test_a_broken_mapping_is_reported_and_skipped_while_the_other_formats_go_in(engine, tmp_path):
    mappings = tmp_path / "mappings"
    mappings.mkdir()
    for path in MAPPINGS_DIR.glob("*.yaml"):
        shutil.copyfile(path, mappings / path.name)
    broken = (mappings / "gb_ecju_api.yaml").read_text(encoding="utf-8")
    (mappings / "gb_ecju_api.yaml").write_text(
        broken.replace("  holder_eori: licensee.eori", "  holder_eory: licensee.eori"),
        encoding="utf-8",
    )
    (mappings / "not_yaml.yaml").write_text("files: [x\n", encoding="utf-8")
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    for sample in (BAFA, ECJU, ELIC):
        shutil.copyfile(sample, inbox / sample.name)

    reports = ingest_inbox(engine, inbox, mappings_dir=mappings, now=NOW)

    skipped = {Path(r.file).name: r.failure for r in reports if r.kind == "mapping"}
    assert sorted(skipped) == ["gb_ecju_api.yaml", "not_yaml.yaml"]
    assert "licence.holder_eory: unknown key" in skipped["gb_ecju_api.yaml"]
    assert "not valid YAML" in skipped["not_yaml.yaml"]
    files = {r.file: r for r in reports if r.kind == "file"}
    assert (files[BAFA.name].new, files[ELIC.name].new) == (4, 3)
    assert "waits for its mapping, which is broken" in files[ECJU.name].failure
    assert [p.name for p in inbox.iterdir() if p.is_file()] == [ECJU.name]  # kept for the fix
    assert "mapping skipped: " in files[BAFA.name].describe()


def test_load_mappings_still_refuses_a_broken_mapping_for_tools_that_need_all(tmp_path):
    (tmp_path / "x.yaml").write_text("name: x\n", encoding="utf-8")
    with pytest.raises(MappingError, match=r"x\.yaml: files: is required"):
        load_mappings(tmp_path)


def test_the_mappings_folders_come_from_the_environment(engine, tmp_path, monkeypatch):
    first, second = tmp_path / "first", tmp_path / "second"
    first.mkdir()
    second.mkdir()
    shutil.copyfile(MAPPINGS_DIR / "gb_ecju_api.yaml", first / "gb_ecju_api.yaml")
    shutil.copyfile(MAPPINGS_DIR / "de_bafa_legacy.yaml", second / "de_bafa_legacy.yaml")
    shutil.copyfile(MAPPINGS_DIR / "de_bafa_legacy.yaml", second / "de_bafa_again.yaml")
    missing = tmp_path / "nowhere"
    monkeypatch.setenv(
        "ELBRIDGE_MAPPINGS_DIR", os.pathsep.join(str(f) for f in (first, second, missing))
    )
    found = load_mapping_set()
    assert [m.name for m in found.mappings] == ["gb-ecju-api", "de-bafa-legacy"]
    assert sorted(Path(b.path).name for b in found.broken) == ["de_bafa_legacy.yaml", "nowhere"]
    assert any("is already used by" in b.reason for b in found.broken)
    assert any("does not exist" in b.reason for b in found.broken)
    report = ingest_file(engine, BAFA, now=NOW)
    assert (report.mapping, report.new) == ("de-bafa-legacy", 4)
    with pytest.raises(UnreadableFile, match="mappings not loaded"):
        ingest_file(engine, ELIC, now=NOW)  # its mapping is not configured here
    monkeypatch.delenv("ELBRIDGE_MAPPINGS_DIR")
    assert ingest_file(engine, ELIC, now=NOW).new == 3  # the project's own by default

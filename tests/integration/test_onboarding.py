"""Two national formats unlike the shipped three, onboarded with a mapping file only, from a
folder outside the project (tests/onboarding/<format>/mappings, copied to a temporary folder
that ELBRIDGE_MAPPINGS_DIR points at), ingested end to end into the ledger:

- cz_lsu: one licence per JSON document, end user, consignee, destinations and currency on the
  licence, items in micrograms, microlitres, pieces and grams, EU dual-use and Common Military
  List entries (docs/mappings.md walks through it);
- nl_cdiu: open licences (no goods lines) as JSON Lines, by category and destination, value
  ceilings in thousands of euro, and a national control list the deployment declares."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import select

from bridge.adapters.store.licences import load_licences
from bridge.adapters.store.rejects import list_rejects
from bridge.adapters.store.schema import licence_version
from bridge.core.model import LicenceType, Party
from bridge.core.paths import MAPPINGS_DIR, PROJECT_ROOT
from bridge.services.ingest import ingest_inbox

NOW = datetime(2026, 11, 28, 6, 0, tzinfo=UTC)
ONBOARDING = PROJECT_ROOT / "tests" / "onboarding"


def _deploy(tmp_path: Path, monkeypatch, *formats: str) -> tuple[Path, Path]:
    """Each format's mappings in a folder of its own outside the project, named by
    ELBRIDGE_MAPPINGS_DIR (with the project's shipped mappings first), and an inbox holding
    its exports."""
    folders = [MAPPINGS_DIR]
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    for name in formats:
        folder = tmp_path / "deployment" / name
        shutil.copytree(ONBOARDING / name / "mappings", folder)
        folders.append(folder)
        for export in (ONBOARDING / name / "exports").iterdir():
            shutil.copyfile(export, inbox / export.name)
    monkeypatch.setenv("ELBRIDGE_MAPPINGS_DIR", os.pathsep.join(str(f) for f in folders))
    return inbox, tmp_path / "deployment"


def test_a_one_licence_per_document_export_goes_in_with_a_mapping_file_only(
    engine, tmp_path, monkeypatch
):
    inbox, _ = _deploy(tmp_path, monkeypatch, "cz_lsu")

    reports = ingest_inbox(engine, inbox, now=NOW)

    assert [(r.file, r.mapping, r.new, r.rejected) for r in reports] == [
        ("lsu_povoleni_2026-00412.json", "cz-lsu-povoleni", 1, 0),
        ("lsu_povoleni_2026-00418.json", "cz-lsu-povoleni", 1, 0),
        ("lsu_povoleni_2026-00421.json", "cz-lsu-povoleni", 0, 1),
    ]
    with engine.connect() as conn:
        found = load_licences(conn, ["CZ-LSU-2026-00412", "CZ-LSU-2026-00418"])
        (reject,) = list_rejects(conn)
    reagents = found["CZ-LSU-2026-00412"]
    assert (reagents.version, reagents.holder_eori, reagents.valid_to.isoformat()) == (
        2,
        "CZ27418863",
        "2028-02-02",
    )
    end_user = Party("Institute of Virology, Vaccines and Sera Torlak", "RS")
    consignee = Party("Torlak Institute", "RS", "Vojvode Stepe 458, Beograd")
    parties = (end_user, consignee)
    assert [
        (
            line.control_list,
            line.control_list_entry,
            line.quantity,
            line.unit,
            line.value,
            line.currency,
            line.destinations,
            line.end_user,
            line.consignee,
        )
        for line in reagents.lines
    ] == [
        # micrograms and microlitres as Rec 20 units, licence-level values on every line, an
        # item's own currency over the licence's
        ("eu-dual-use", "1C351.d.4", 250, "MC", Decimal("48500.00"), "CZK", ("RS",), *parties),
        ("eu-military", "ML7.b.1", Decimal("12.5"), "4G", 2150, "EUR", ("RS",), *parties),
    ]
    arms = found["CZ-LSU-2026-00418"]
    assert [
        (line.control_list, line.control_list_entry, line.quantity, line.unit, line.destinations)
        for line in arms.lines
    ] == [
        ("eu-military", "ML1.a", Decimal(400), "NAR", ("SK", "SI")),
        ("eu-military", "ML8.a.1", Decimal(1500), "GRM", ("SK",)),  # the item's own destination
        ("eu-military", "ML3.a", Decimal(200000), "NAR", ("SK", "SI")),
    ]
    assert {line.end_user.name for line in arms.lines} == {
        "Ministerstvo obrany Slovenskej republiky"
    }
    with engine.connect() as conn:
        document = conn.execute(
            select(licence_version.c.document).where(
                licence_version.c.number == "CZ-LSU-2026-00418"
            )
        ).scalar_one()
    assert [line.get("control_list") for line in json.loads(document)["lines"]] == [
        "eu-military"
    ] * 3  # the list is stored with the line
    assert reject.source == "lsu_povoleni_2026-00421.json $.povoleni"
    assert {(p.path, p.code) for p in reject.problems} == {
        ("lines[0].control_list_entry", "cle"),  # ML23 is on no list
        ("lines[0].quantity", "too-many-decimals"),  # 0.0000005 µg: finer than the ledger
        ("lines[1].unit", "word"),
        ("lines[0].end_user.name", "missing"),
        ("lines[1].end_user.name", "missing"),
        ("lines[0].destinations[0]", "country"),
        ("lines[1].destinations[0]", "country"),
    }
    cle = next(p for p in reject.problems if p.code == "cle")
    assert "none of this format's control lists" in cle.reason and "ML8.a.1" in cle.reason
    assert sorted(p.name for p in (inbox / "done").iterdir()) == [
        "lsu_povoleni_2026-00412.json",
        "lsu_povoleni_2026-00418.json",
        "lsu_povoleni_2026-00421.json",
    ]


def test_an_open_licence_export_without_goods_lines_goes_in_with_a_mapping_file_only(
    engine, tmp_path, monkeypatch
):
    inbox, _ = _deploy(tmp_path, monkeypatch, "nl_cdiu")

    (report,) = ingest_inbox(engine, inbox, now=NOW)

    assert (report.mapping, report.new, report.rejected) == ("nl-cdiu-open", 3, 3)
    with engine.connect() as conn:
        found = load_licences(
            conn, ["NL-CDIU-GV-2026-0031", "NL-CDIU-GV-2026-0032", "NL-CDIU-NAV-2026-0004"]
        )
        rejects = {r.source.rsplit(" ", 1)[1]: r for r in list_rejects(conn)}
    photonics = found["NL-CDIU-GV-2026-0031"]
    assert (photonics.type, photonics.lines, photonics.is_open) == (LicenceType.GLOBAL, (), True)
    assert photonics.control_list_entries == ("6A003.b.4.b", "6A005")
    assert (photonics.destinations, photonics.value, photonics.currency) == (
        ("JP", "KR", "SG"),
        Decimal("2500500.00"),  # 2500.5 thousand euro, exactly
        "EUR",
    )
    networks = found["NL-CDIU-GV-2026-0032"]
    # no ceiling: usage is recorded in euro; the deployment's national entry in its spelling
    assert (networks.value, networks.currency, networks.destinations) == (None, "EUR", ())
    assert networks.control_list_entries == ("5A002", "5D002", "NL0002.a")
    general = found["NL-CDIU-NAV-2026-0004"]
    assert (general.type, general.general_authorisation, general.control_list_entries) == (
        LicenceType.NATIONAL_GENERAL,
        "NL003",
        ("8", "ML9"),
    )
    assert sorted(rejects) == ["5", "6", "7"]  # line 3 is blank
    assert {(p.path, p.code) for p in rejects["5"].problems} == {
        ("destinations[0]", "country"),
        ("value", "not-positive"),
    }
    assert {p.code for p in rejects["6"].problems} == {"no-lines"}  # individual: needs lines
    (unreadable,) = rejects["7"].problems
    assert "is not well-formed JSON" in unreadable.reason
    assert rejects["7"].record.startswith('{"vergunningnummer": "NL-CDIU-GV-2026-0036"')


def test_a_broken_mapping_is_skipped_and_the_other_formats_still_go_in(
    engine, tmp_path, monkeypatch
):
    inbox, deployment = _deploy(tmp_path, monkeypatch, "cz_lsu", "nl_cdiu")
    broken = deployment / "cz_lsu" / "cz_lsu_povoleni.yaml"
    broken.write_text(
        broken.read_text(encoding="utf-8").replace("  holder_eori: vyvozce.eori", "  eori: x"),
        encoding="utf-8",
    )
    ecju = MAPPINGS_DIR / "samples" / "ecju_licences_2026-11-27.json"
    shutil.copyfile(ecju, inbox / ecju.name)  # a shipped format beside them

    reports = ingest_inbox(engine, inbox, now=NOW)

    by_file = {r.file: r for r in reports}
    (skipped,) = [r for r in reports if r.kind == "mapping"]
    assert skipped.file == str(broken)
    assert "licence.eori: unknown key" in skipped.failure
    assert "not loaded, skipped" in skipped.describe()
    assert (
        by_file["cdiu_open_vergunningen_2026-11-27.jsonl"].new,
        by_file["ecju_licences_2026-11-27.json"].new,
    ) == (3, 5)
    waiting = by_file["lsu_povoleni_2026-00412.json"]
    assert "waits for its mapping, which is broken" in waiting.failure
    # what only the broken mapping reads stays in the inbox for its fix, nothing is lost
    assert sorted(p.name for p in inbox.iterdir() if p.is_file()) == [
        "lsu_povoleni_2026-00412.json",
        "lsu_povoleni_2026-00418.json",
        "lsu_povoleni_2026-00421.json",
    ]
    assert not (inbox / "failed").exists()

    shutil.copyfile(ONBOARDING / "cz_lsu" / "mappings" / "cz_lsu_povoleni.yaml", broken)  # fixed
    again = ingest_inbox(engine, inbox, now=NOW)
    assert [(r.mapping, r.new, r.rejected) for r in again] == [("cz-lsu-povoleni", 1, 0)] * 2 + [
        ("cz-lsu-povoleni", 0, 1)
    ]


@pytest.mark.sqlite_only
def test_elbridge_ingest_reads_the_mappings_folders_of_the_environment(tmp_path, ledger_url):
    deployment = tmp_path / "deployment"
    shutil.copytree(ONBOARDING / "cz_lsu" / "mappings", deployment)
    (deployment / "zz_broken.yaml").write_text("name: zz\nfiles: [zz_*.csv]\n", encoding="utf-8")
    inbox = tmp_path / "home" / "inbox"
    inbox.mkdir(parents=True)
    for export in (ONBOARDING / "cz_lsu" / "exports").iterdir():
        shutil.copyfile(export, inbox / export.name)
    env = {
        "PATH": "/usr/bin:/bin",
        "ELBRIDGE_MAPPINGS_DIR": str(deployment),
        "ELBRIDGE_DATABASE_URL": ledger_url,
    }
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "bridge.entrypoints.cli",
            "--home",
            str(tmp_path / "home"),
            "ingest",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=env,
        cwd=PROJECT_ROOT,
    )
    assert done.returncode == 4, done.stderr  # partly done: a rejected record needs attention
    out = done.stdout
    assert f"mapping {deployment / 'zz_broken.yaml'}: not loaded, skipped:" in out
    assert "reader: is required" in out
    assert "lsu_povoleni_2026-00418.json (cz-lsu-povoleni): 1 new" in out
    assert "rejected CZ-LSU-2026-00421" in out
    assert "de-bafa-legacy" not in out  # the project's mappings are not read: not configured


def test_the_worked_onboarding_of_docs_mappings_shows_the_mapping_as_it_is():
    text = (PROJECT_ROOT / "docs" / "mappings.md").read_text(encoding="utf-8")
    (shown,) = re.findall(
        r"<!-- onboarding: cz_lsu_povoleni\.yaml -->\n```yaml\n(.*?)```", text, re.S
    )
    mapping = ONBOARDING / "cz_lsu" / "mappings" / "cz_lsu_povoleni.yaml"
    assert shown == mapping.read_text(encoding="utf-8")

"""The worked example of docs/mappings.md: a fourth national format added with one YAML file
and no code. The mapping and the sample are taken from the documentation itself, so the page
and the engine cannot drift apart."""

import re
import shutil
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

from bridge.adapters.store.licences import load_licences
from bridge.adapters.store.rejects import list_rejects
from bridge.core.model import LicenceType
from bridge.core.paths import MAPPINGS_DIR, PROJECT_ROOT
from bridge.services.ingest import ingest_inbox

NOW = datetime(2026, 11, 28, 6, 0, tzinfo=UTC)
DOC = PROJECT_ROOT / "docs" / "mappings.md"


def _examples() -> dict[str, str]:
    text = DOC.read_text(encoding="utf-8")
    return dict(re.findall(r"<!-- example: (\S+) -->\n```\w*\n(.*?)```", text, re.S))


def test_a_fourth_format_is_ingested_from_a_new_yaml_file_alone(engine, tmp_path: Path):
    examples = _examples()
    mappings = tmp_path / "mappings"
    mappings.mkdir()
    for shipped in MAPPINGS_DIR.glob("*.yaml"):  # the new format sits beside the shipped ones
        shutil.copyfile(shipped, mappings / shipped.name)
    (mappings / "dk_eksport.yaml").write_text(examples["dk_eksport.yaml"], encoding="utf-8")
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    sample = inbox / "dk_eksport_2026-11-27.txt"
    sample.write_text(examples["dk_eksport_2026-11-27.txt"], encoding="utf-8")

    (report,) = ingest_inbox(engine, inbox, mappings_dir=mappings, now=NOW)

    assert (report.mapping, report.new, report.rejected) == ("dk-eksport", 2, 1)
    with engine.connect() as conn:
        found = load_licences(conn, ["DK-EKS-2026-0101", "DK-GEN-2026-0007"])
        (reject,) = list_rejects(conn)
    radar = found["DK-EKS-2026-0101"]
    assert (radar.issuing_member_state, radar.issuing_authority) == ("DK", "Erhvervsstyrelsen")
    assert (radar.valid_from, radar.valid_to) == (date(2026, 1, 15), date(2028, 1, 14))
    (line,) = radar.lines
    assert (line.line_number, line.control_list_entry, line.cn_code) == (1, "6A008.j.1", "85261000")
    assert (line.value, line.currency, line.destinations) == (
        Decimal("2400000.00"),
        "DKK",
        ("NO", "IS"),
    )
    general = found["DK-GEN-2026-0007"]
    assert (general.type, general.general_authorisation, general.valid_to) == (
        LicenceType.NATIONAL_GENERAL,
        "DK002",
        None,
    )
    assert reject.format == "dk-eksport"
    assert reject.source == "dk_eksport_2026-11-27.txt line 3"
    assert reject.record.startswith("DK-EKS-2026-0102|E|X|")
    assert {(p.path, p.code) for p in reject.problems} == {
        ("status", "word"),
        ("valid_to", "dates-reversed"),
        ("lines[0].quantity", "not-positive"),
        ("lines[0].destinations[1]", "country"),
    }
    assert (inbox / "done" / sample.name).is_file()

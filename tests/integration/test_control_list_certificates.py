"""Certificates of licences with Common Military List and national list lines (certificate
schema 1.3, ControlListEntry's list attribute): a national export onboarded with a mapping file
only (tests/onboarding/cz_lsu), certified, checked by the bridge (lxml) and delivered over SOAP
to the real customs simulator, which checks it again with xmlschema and the bridge's reader;
what customs stored reads back with every line's list."""

from __future__ import annotations

import os
import shutil
from datetime import UTC, datetime
from pathlib import Path

import pytest

from bridge.adapters.soap.client import CustomsClient, CustomsEndpoint
from bridge.adapters.store.licences import load_licences
from bridge.adapters.store.outbox import outbox_rows
from bridge.core.certificate import certificate_problems, parse_certificate
from bridge.core.errors import DeliveryError
from bridge.core.paths import MAPPINGS_DIR, PROJECT_ROOT
from bridge.services.config import Settings
from bridge.services.ingest import ingest_inbox
from bridge.services.outbox import CustomsClient as OutboxClient
from bridge.services.outbox import certify_pending, deliver_pending

NOW = datetime(2026, 11, 28, 6, 0, tzinfo=UTC)
CZ_LSU = PROJECT_ROOT / "tests" / "onboarding" / "cz_lsu"
REAGENTS, ARMS = "CZ-LSU-2026-00412", "CZ-LSU-2026-00418"


def _ingest_cz_lsu(engine, tmp_path: Path, monkeypatch) -> None:
    """The Czech export and its mapping, kept outside the project as a deployment would."""
    mappings = tmp_path / "deployment" / "cz_lsu"
    shutil.copytree(CZ_LSU / "mappings", mappings)
    inbox = tmp_path / "inbox"
    shutil.copytree(CZ_LSU / "exports", inbox)
    monkeypatch.setenv("ELBRIDGE_MAPPINGS_DIR", os.pathsep.join(map(str, (MAPPINGS_DIR, mappings))))
    reports = ingest_inbox(engine, inbox, now=NOW)
    assert sum(r.new for r in reports) == 2  # 00421 is refused (ML23 is on no list)


def test_military_and_national_lines_are_certified_delivered_and_read_back_with_their_lists(
    engine, tmp_path, monkeypatch, customs_simulator
):
    _ingest_cz_lsu(engine, tmp_path, monkeypatch)
    with engine.connect() as conn:
        stored = load_licences(conn, [REAGENTS, ARMS])

    report = certify_pending(engine, now=NOW)
    assert (report.certified, report.invalid, report.problems) == (2, 0, [])
    with engine.connect() as conn:
        built = {r["licence_number"]: r["document"].encode() for r in outbox_rows(conn)}
    assert all(certificate_problems(xml) == [] for xml in built.values())  # lxml, the bridge
    assert b'<ControlListEntry list="eu-military">ML1.a</ControlListEntry>' in built[ARMS]
    # The dual-use line of the same licence is written as in 1.0: no list named.
    assert b"<ControlListEntry>1C351.d.4</ControlListEntry>" in built[REAGENTS]

    client = OutboxClient(Settings(soap_url=customs_simulator.url, soap_timeout=5.0))
    delivered = deliver_pending(engine, client, now_fn=lambda: NOW)
    assert (delivered.delivered, delivered.failed, delivered.still_pending) == (2, 0, 0)

    received = {r["reference"]: r["document"].encode() for r in customs_simulator.received()}
    assert received == built  # byte for byte, after xmlschema and the bridge's reader accepted
    back = {number: parse_certificate(xml) for number, xml in received.items()}
    assert back == stored  # the whole licence, each line with its list
    assert [(x.control_list, x.control_list_entry) for x in back[REAGENTS].lines] == [
        ("eu-dual-use", "1C351.d.4"),
        ("eu-military", "ML7.b.1"),
    ]
    assert [(x.control_list, x.control_list_entry) for x in back[ARMS].lines] == [
        ("eu-military", "ML1.a"),
        ("eu-military", "ML8.a.1"),
        ("eu-military", "ML3.a"),
    ]
    assert [(x.quantity, x.unit) for x in back[REAGENTS].lines] == [(250, "MC"), (12.5, "4G")]


@pytest.mark.sqlite_only
@pytest.mark.parametrize(
    ("written", "said"),
    [
        # Without its list the entry would be an Annex I entry: the bridge's reader refuses it.
        (b"", "Annex I spelling"),
        # A list id outside the contract: xmlschema, the customs side's own validator.
        (b' list="eu military"', "(xmlschema)"),
    ],
    ids=["list-dropped", "list-id-broken"],
)
def test_customs_refuse_a_military_entry_whose_list_is_missing_or_malformed(
    engine, tmp_path, monkeypatch, customs_simulator, written, said
):
    _ingest_cz_lsu(engine, tmp_path, monkeypatch)
    certify_pending(engine, now=NOW)
    with engine.connect() as conn:
        (xml,) = [r["document"].encode() for r in outbox_rows(conn) if r["licence_number"] == ARMS]
    tampered = xml.replace(b' list="eu-military"', written)
    assert tampered != xml
    client = CustomsClient(CustomsEndpoint(customs_simulator.url, timeout=5.0))
    with pytest.raises(DeliveryError) as refused:
        client.submit_certificate("tampered-1", tampered, NOW)
    assert not refused.value.transient and said in refused.value.reason
    assert "ControlListEntry" in refused.value.reason
    assert customs_simulator.received() == []

"""The synthetic data generator (bridge.testkit) that benchmarks and fault-injection tests
share: deterministic, of the real WCO DEC-DMS shape (checked against the real schema), read by
the bridge as intended, and with a ground truth the ledger actually reaches."""

from __future__ import annotations

import threading
from collections import Counter
from decimal import Decimal
from pathlib import Path

import pytest
from lxml import etree

from bridge.adapters.mqtt.client import Received
from bridge.adapters.store.reconciliation import reconciliation_rows
from bridge.core.declaration import read_declaration
from bridge.core.envelope import parse_envelope
from bridge.core.mapping import mapping_for, translate
from bridge.core.model import LicenceType
from bridge.core.validation import licence_problems
from bridge.services.config import Settings
from bridge.services.consumer import ConsumeReport, store_batch
from bridge.services.ingest import load_mappings
from bridge.testkit import declaration_plans, declarations, streams
from bridge.testkit.licences import licences as synthetic_licences
from bridge.testkit.national_files import national_files
from tests.conftest import SHARED_FIXTURES
from tests.fixtures_mqtt import store_licences

WCO_XSD = SHARED_FIXTURES / "wco-dec-dms" / "xsd"


@pytest.fixture(scope="module")
def wco_schema() -> etree.XMLSchema:
    """The published DMS schemas, through a wrapper that imports both namespaces: the MetaData
    root holds the Declaration through a strict wildcard, so the metadata schema alone rejects
    every declaration (see the fixtures' NOTICE.md)."""
    if not WCO_XSD.is_dir():
        pytest.fail(f"the shared WCO DEC-DMS schemas are missing at {WCO_XSD}")
    wrapper = f"""<xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema">
      <xs:import namespace="urn:wco:datamodel:WCO:DocumentMetaData-DMS:2"
                 schemaLocation="{(WCO_XSD / "DocumentMetaData_2_DMS.xsd").as_uri()}"/>
      <xs:import namespace="urn:wco:datamodel:WCO:DEC-DMS:2"
                 schemaLocation="{(WCO_XSD / "WCO_DEC_2_DMS.xsd").as_uri()}"/>
    </xs:schema>"""
    return etree.XMLSchema(etree.fromstring(wrapper.encode()))


def _valid(schema: etree.XMLSchema, xml: bytes) -> None:
    if not schema.validate(etree.fromstring(xml)):
        pytest.fail(f"not valid WCO DEC-DMS: {schema.error_log.last_error}")


def test_the_schema_wrapper_really_validates(wco_schema, wco_samples: Path):
    sample = (wco_samples / "TT_EX004a.xml").read_bytes()
    assert wco_schema.validate(etree.fromstring(sample))
    spoiled = sample.replace(b">102.00<", b">102,00<")
    assert not wco_schema.validate(etree.fromstring(spoiled))


def test_the_same_seed_gives_the_same_licences_declarations_and_stream():
    first = list(synthetic_licences(60, seed=7))
    assert first == list(synthetic_licences(60, seed=7))
    assert first != list(synthetic_licences(60, seed=8))
    assert declarations.declaration_xml(first, seed=3) == declarations.declaration_xml(
        first, seed=3
    )
    kwargs = dict(seed=5, duplicates=0.1, reorder=0.1, amendments=0.1, invalidations=0.1, bad=0.1)
    one = [e.envelope for e in streams.event_stream(first, 300, **kwargs)]
    assert one == [e.envelope for e in streams.event_stream(first, 300, **kwargs)]


def test_licences_are_valid_and_of_every_type():
    made = list(synthetic_licences(400, seed=1, holders=30))
    assert [p for licence in made for p in licence_problems(licence, licence.number)] == []
    assert {licence.type for licence in made} == set(LicenceType)
    assert len({licence.number for licence in made}) == 400
    assert len({licence.holder_eori for licence in made}) == 30
    for licence in made:
        for line in licence.lines:
            if licence.type.has_ceiling:
                assert line.quantity is not None or line.value is not None
            else:
                assert line.quantity is None and line.value is None
        assert len({line.cn_code for line in licence.lines}) == len(licence.lines)


def test_declarations_validate_against_the_real_wco_schema_and_read_as_planned(wco_schema):
    made = list(synthetic_licences(150, seed=2, scale=1000))
    plans = list(declaration_plans.plan_declarations(made, 40, seed=3))
    sizes = []
    codes: Counter[str] = Counter()
    for plan in plans:
        xml = declarations.render_declaration(plan)
        sizes.append(len(xml))
        _valid(wco_schema, xml)
        declaration = read_declaration(xml)
        assert declaration.mrn == plan.mrn
        assert declaration.exporter_eori == plan.exporter_eori
        read = sorted(
            (item.sequence, d.document_code, d.reference) for item, d in declaration.write_offs()
        )
        assert read == sorted(w.key for w in plan.write_offs)
        codes.update(d.document_code for item in declaration.goods_items for d in item.documents)
    assert 15_000 < sorted(sizes)[len(sizes) // 2] < 25_000  # about 20 KB
    assert {"X002", "X060", "X070"} <= set(codes)
    assert {"C512", "Y935"} & set(codes)  # ordinary documents beside the dual-use ones


def test_minimal_declarations_are_about_1_kb_and_valid(wco_schema):
    made = list(synthetic_licences(50, seed=4, scale=1000))
    for plan in declaration_plans.plan_declarations(made, 20, seed=5, minimal=True):
        xml = declarations.render_declaration(plan)
        assert 700 < len(xml) < 1400
        _valid(wco_schema, xml)
        assert len(read_declaration(xml).goods_items) == 1


def test_every_event_of_a_stream_says_what_it_is(wco_schema):
    made = list(synthetic_licences(120, seed=6, scale=1000))
    events = list(
        streams.event_stream(
            made,
            600,
            seed=7,
            duplicates=0.08,
            reorder=0.1,
            amendments=0.1,
            invalidations=0.05,
            bad=0.05,
        )
    )
    assert len(events) == 600
    assert sorted(e.position for e in events) == list(range(600))
    assert any(e.reordered for e in events)
    kinds = Counter(e.kind for e in events)
    assert set(kinds) == {"released", "amended", "invalidated", "unreadable"}
    assert {e.bad for e in events if e.bad} == set(streams.BAD_KINDS)
    originals = {e.message_id: e.envelope for e in events if e.duplicate_of is None}
    for event in events:
        if event.duplicate_of is not None:
            assert event.envelope == originals[event.duplicate_of]
        if event.bad is None:
            envelope = parse_envelope(event.envelope, max_bytes=2**21)
            assert (envelope.message_id, envelope.mrn) == (event.message_id, event.mrn)
            if envelope.payload and event.kind != "invalidated":
                _valid(wco_schema, envelope.payload.encode())


def _received(events) -> list[Received]:
    return [Received("synthetic", e.envelope, i, 1, 1, False) for i, e in enumerate(events)]


def test_the_ledger_reaches_the_ground_truth_of_a_messy_stream(tmp_path: Path, ledger_url: str):
    """Duplicates, late and early events, amendments, invalidations and unreadable messages,
    stored in batches exactly as the consumer stores them: the ledger ends where the ground
    truth says, nothing is refused and every unreadable message is quarantined once."""
    from bridge.adapters.store.db import make_engine

    made = list(synthetic_licences(80, seed=8, scale=1000, holders=8))
    events = list(
        streams.event_stream(
            made,
            500,
            seed=9,
            duplicates=0.1,
            reorder=0.15,
            amendments=0.15,
            invalidations=0.08,
            bad=0.05,
        )
    )
    truth = streams.GroundTruth()
    for event in events:
        truth.add(event)
    engine = make_engine(ledger_url)
    try:
        store_licences(engine, made)
        settings = Settings(home=tmp_path, database_url=ledger_url)
        report = ConsumeReport()
        batch = _received(events)
        for start in range(0, len(batch), 37):
            store_batch(settings, engine, batch[start : start + 37], threading.Event(), report)
        with engine.connect() as conn:
            rows = reconciliation_rows(conn)
    finally:
        engine.dispose()
    written = {
        (r.licence_number, r.line_number): (r.written_off_quantity, r.written_off_value)
        for r in rows
        if (r.written_off_quantity, r.written_off_value) != (0, 0)
    }
    assert written == truth.totals()
    assert report.refused == 0
    assert report.quarantined == truth.quarantined
    assert sum(q for q, _ in truth.totals().values()) > Decimal(0)


def test_national_files_map_back_to_the_same_licences():
    made = list(synthetic_licences(90, seed=10))
    files = national_files(made)
    assert set(files) == {
        "bafa_ausfuhr_synthetic.csv",
        "ecju_licences_synthetic.json",
        "elicensing_export_synthetic.xml",
    }
    mappings = load_mappings()
    read = {}
    for name, data in files.items():
        for record in translate(mapping_for(name, mappings), data, name):
            assert record.problems == (), record.problems
            read[record.licence.number] = record.licence
    assert read == {licence.number: licence for licence in made}

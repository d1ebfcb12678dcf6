"""The mapping engine on the shipped national formats and on small hand-made files."""

import csv
import io
import json
import re
from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.core.control_lists import parse_control_lists, project_control_lists
from bridge.core.errors import MappingError
from bridge.core.mapping import (
    EncodingProblem,
    UnreadableFile,
    mapping_for,
    parse_mapping,
    translate,
)
from bridge.core.model import LicenceStatus, LicenceType, Party
from bridge.core.paths import MAPPINGS_DIR

SAMPLES = MAPPINGS_DIR / "samples"
BAFA = SAMPLES / "bafa_ausfuhr_2025-11-27.csv"
ECJU = SAMPLES / "ecju_licences_2026-11-27.json"
ELIC = SAMPLES / "elicensing_export_LV_2026-11-27.xml"


def _mapping(file_name: str):
    path = MAPPINGS_DIR / file_name
    return parse_mapping(path.read_text(encoding="utf-8"), str(path), path.stem)


def _records(mapping_file: str, sample: Path):
    return list(translate(_mapping(mapping_file), sample.read_bytes(), sample.name))


def _by_number(records):
    return {record.number: record for record in records}


def test_the_latin1_csv_reads_umlauts_comma_decimals_and_grouped_rows():
    records = _by_number(_records("de_bafa_legacy.yaml", BAFA))
    optik = records["EA-2025-004711"].licence
    assert optik.holder_name == "Müller Präzisionsoptik GmbH"
    assert optik.issuing_authority == "Bundesamt für Wirtschaft und Ausfuhrkontrolle (BAFA)"
    assert optik.lines[0].description == "Wärmebildkameras, ungekühlt"
    assert (optik.valid_from, optik.valid_to) == (date(2025, 1, 15), date(2027, 1, 14))
    # "1.250.000,00" and "12,75": exact Decimals, digits as written, never through float
    assert optik.lines[0].value == Decimal("1250000.00")
    assert str(optik.lines[0].value) == "1250000.00"
    assert optik.lines[1].quantity == Decimal("12.75")
    assert (optik.lines[0].unit, optik.lines[1].unit) == ("NAR", "KGM")  # Stück, kg
    assert optik.lines[0].cn_code == "85258900"
    assert optik.lines[0].consignee.name == "Bharat Optronics Pvt. Ltd."
    # the two rows of SG-2025-000220 are not adjacent in the file
    sammel = records["SG-2025-000220"]
    assert sammel.source == "bafa_ausfuhr_2025-11-27.csv lines 4, 6"
    assert sammel.licence.type is LicenceType.GLOBAL
    assert [line.line_number for line in sammel.licence.lines] == [1, 2]
    assert sammel.licence.lines[0].destinations == ("BR", "IN", "SG", "ZA")
    assert records["EA-2025-004802"].licence.status is LicenceStatus.SUSPENDED
    agg = records["AGG-2025-001234"].licence
    assert (agg.type, agg.general_authorisation, agg.valid_to) == (
        LicenceType.NATIONAL_GENERAL,
        "AGG16",
        None,
    )
    assert agg.lines[0].description == "Thiodiglykol; technisch rein"  # quoted delimiter


def test_both_cle_spellings_in_the_samples_normalise_to_the_annex_form():
    bafa = _by_number(_records("de_bafa_legacy.yaml", BAFA))
    ecju = _by_number(_records("gb_ecju_api.yaml", ECJU))
    elic = _by_number(_records("eu_elicensing_tool.yaml", ELIC))
    assert bafa["EA-2025-004711"].licence.lines[1].control_list_entry == "6A002.a.3"  # 6A002a3
    assert bafa["SG-2025-000220"].licence.lines[0].control_list_entry == "5A002.a.1"
    assert ecju["GBOIEL/2025/00042"].licence.lines[0].control_list_entry == "5A002.a.1"  # 5A002a1
    assert elic["LV-DU-2025-000311"].licence.lines[0].control_list_entry == "5A002.a.1"
    # 2B018a and 2B018.a in one licence become one entry
    gb = ecju["GBSIEXYK3ZZZ-0001"].licence
    assert {line.control_list_entry for line in gb.lines} == {"2B018.a"}


def test_the_json_export_keeps_numbers_exact_and_carries_the_demo_licences():
    records = _by_number(_records("gb_ecju_api.yaml", ECJU))
    padr = records["GBSIEXYK3ZZZPADR-0002"].licence
    assert (padr.issuing_member_state, padr.issuing_authority) == (
        "GB",
        "Export Control Joint Unit",
    )
    assert (padr.holder_name, padr.holder_eori) == ("Precision Arms Ltd", "GB896458895015")
    assert (padr.valid_from, padr.valid_to) == (date(2024, 1, 1), date(2027, 12, 31))
    (line,) = padr.lines
    assert (line.cn_code, line.quantity, line.unit) == ("93059100", Decimal(500), "KGM")
    assert (line.value, line.currency, line.destinations) == (Decimal("400000.00"), "GBP", ("SD",))
    rifles = records["GBSIEXYK3ZZZ-0001"].licence
    # a JSON number 900000.00 keeps its two decimals
    assert str(rifles.lines[0].value) == "900000.00"
    assert [(li.cn_code, li.quantity, li.value) for li in rifles.lines] == [
        ("93019000", Decimal(200), Decimal("900000.00")),
        ("93059100", Decimal(100), Decimal("100000.00")),
    ]
    ammo = records["GBSIEE2E350001-0001"].licence
    assert (ammo.holder_name, ammo.holder_eori) == (
        "Pakistan Rifle Export Co UK Ltd",
        "GB417869120000",
    )
    assert (ammo.lines[0].description, ammo.lines[0].destinations) == (
        "Military weapons ammunition parts",
        ("PK",),
    )
    assert records["GBOIEL/2025/00042"].licence.version == 3


def test_the_namespaced_xml_export_reads_attributes_and_repeated_elements():
    records = _by_number(_records("eu_elicensing_tool.yaml", ELIC))
    ro = records["RO-ANCEX-2025-0142"]
    assert (
        ro.source == "elicensing_export_LV_2026-11-27.xml /LicenceExport/Authorisation[2] (line 31)"
    )
    licence = ro.licence
    assert (licence.type, licence.version, licence.holder_name) == (
        LicenceType.GLOBAL,
        3,
        "Avionica Carpați SRL",
    )
    assert licence.lines[1].quantity == Decimal("180.5")
    assert licence.lines[1].destinations == ("BR", "IN")
    union = records["LV-EU001-2025-0007"].licence
    assert (union.type, union.general_authorisation) == (LicenceType.UNION_GENERAL, "EU001")
    assert union.lines[0].destinations == ("US", "CA", "JP", "NO", "CH")
    consignee = records["LV-DU-2025-000311"].licence.lines[0].consignee
    assert (consignee.name, consignee.country) == ("Caucasus Telecom LLC", "GE")


def test_a_broken_csv_record_reports_every_problem_with_its_line():
    records = _records("de_bafa_legacy.yaml", BAFA)
    assert [r.accepted for r in records].count(False) == 1
    broken = _by_number(records)["EA-2025-004799"]
    assert broken.licence is None
    where = "bafa_ausfuhr_2025-11-27.csv line 7"
    assert {(p.path, p.code, p.source) for p in broken.problems} == {
        ("type", "word", where),
        ("valid_from", "not-a-date", where),
        ("holder_eori", "eori", where),
        ("lines[0].control_list_entry", "cle", where),
        ("lines[0].quantity", "not-a-number", where),
        ("lines[0].destinations[0]", "country", where),
    }
    quantity = next(p for p in broken.problems if p.path == "lines[0].quantity")
    assert quantity.value == "1,2,3"
    assert broken.text.startswith("EA-2025-004799;Ausfuhrgenehmigung light;gültig;31.02.2025")


def test_problems_of_nested_lines_point_at_the_line_itself():
    records = _by_number(_records("eu_elicensing_tool.yaml", ELIC))
    broken = records["RO-ANCEX-2025-0155"]
    sources = {p.path: p.source for p in broken.problems}
    item = f"{ELIC.name} /LicenceExport/Authorisation[4]/Items/Item[1] (line 97)"
    assert sources["lines[0].quantity"] == item
    assert sources["lines[0].unit"] == item
    assert sources["general_authorisation"].endswith("/LicenceExport/Authorisation[4] (line 84)")
    assert set(sources) == {
        "valid_from",
        "holder_eori",
        "general_authorisation",
        "lines[0].control_list_entry",
        "lines[0].quantity",
        "lines[0].unit",
        "lines[0].destinations[0]",
    }
    assert "<elic:Reference>RO-ANCEX-2025-0155</elic:Reference>" in broken.text


CSV_MAPPING = """
files: ["*.csv"]
reader: {kind: csv, delimiter: ";", group_by: Nr}
conventions: {decimal_comma: true, date_format: "%d.%m.%Y"}
licence:
  number: Nr
  type: {const: individual}
  issuing_member_state: {const: DE}
  issuing_authority: {const: BAFA}
  holder_name: Firma
  holder_eori: EORI
  valid_from: Ab
lines:
  control_list_entry: AL
  description: Ware
  quantity: Menge
  unit: {from: Einheit, default: KGM}
"""


def _csv(text: str, mapping_text: str = CSV_MAPPING):
    mapping = parse_mapping(mapping_text, "test.yaml", "test")
    return list(translate(mapping, text.encode("utf-8"), "t.csv"))


def test_rows_of_one_licence_that_disagree_are_reported_not_guessed():
    (record,) = _csv(
        "Nr;Firma;EORI;Ab;AL;Ware;Menge;Einheit\n"
        "A-1;Muster GmbH;DE1234567;01.01.2026;1C010;Fasern;10,5;\n"
        "A-1;Muster AG;DE1234567;01.01.2026;1C010.a;Gewebe;3;\n"
    )
    assert record.licence is None
    (problem,) = record.problems
    assert (problem.path, problem.code, problem.source, problem.value) == (
        "holder_name",
        "inconsistent",
        "t.csv line 3",
        "Muster AG",
    )
    assert record.text.splitlines()[1].startswith("A-1;Muster AG")


def test_line_numbers_default_to_the_position_and_defaults_fill_blanks():
    (record,) = _csv(
        "Nr;Firma;EORI;Ab;AL;Ware;Menge;Einheit\n"
        "A-1;Muster GmbH;DE1234567;01.01.2026;1C010;Fasern;10,5;\n"
        "A-1;Muster GmbH;DE1234567;01.01.2026;1C010a;Gewebe;3;TNE\n"
    )
    lines = record.licence.lines
    assert [(li.line_number, li.quantity, li.unit) for li in lines] == [
        (1, Decimal("10.5"), "KGM"),
        (2, Decimal(3), "TNE"),
    ]


def test_constants_are_canonical_values_checked_once():
    mapping = parse_mapping(
        CSV_MAPPING.replace("valid_from: Ab", "valid_from: {const: 2026-01-01}").replace(
            "issuing_member_state: {const: DE}",
            "issuing_member_state: {from: Land, map: {Deutschland: DE}, default: DE}",
        ),
        "c.yaml",
    )
    (record,) = translate(
        mapping, b"Nr;Firma;EORI;AL;Ware;Menge\nA-1;X GmbH;DE1234567;1C010;Fasern;1\n", "c.csv"
    )
    assert record.licence.valid_from == date(2026, 1, 1)
    assert record.licence.issuing_member_state == "DE"  # the default, not looked up in the map


def test_a_row_longer_than_the_header_is_reported_so_no_cell_is_silently_dropped():
    (record,) = _csv(
        "Nr;Firma;EORI;Ab;AL;Ware;Menge;Einheit\n"
        "A-1;Muster GmbH;DE1234567;01.01.2026;1C010;Fasern;10,5;;Zusatz\n"
    )
    assert [(p.path, p.code, p.source) for p in record.problems] == [
        ("", "ragged-row", "t.csv line 2")
    ]


def test_an_empty_required_value_is_missing_and_a_missing_required_column_refuses_the_file():
    (record,) = _csv(
        "Nr;Firma;EORI;Ab;AL;Ware;Menge;Einheit\nA-1;;DE1234567;01.01.2026;1C010;Fasern;1;\n"
    )
    assert [(p.path, p.code) for p in record.problems] == [("holder_name", "missing")]
    with pytest.raises(UnreadableFile, match="no column 'EORI'"):
        _csv("Nr;Firma;Ab;AL;Ware;Menge\nA-1;X;01.01.2026;1C010;Fasern;1\n")


@pytest.mark.parametrize(
    ("mapping_file", "data", "reason"),
    [
        ("de_bafa_legacy.yaml", b"", "no header row"),
        ("gb_ecju_api.yaml", b'{"licences": [', "not well-formed JSON"),
        ("gb_ecju_api.yaml", b'{"licences": {"a": 1}}', "should be the list of licences"),
        ("gb_ecju_api.yaml", b'{"licences": []}\xff', "is not utf-8"),
        ("eu_elicensing_tool.yaml", b"<LicenceExport><unclosed></LicenceExport>", "well-formed"),
        (
            "eu_elicensing_tool.yaml",
            b'<!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]><x>&e;</x>',
            "DTD",
        ),
        # Another document, or the export in another namespace, is no empty export.
        ("eu_elicensing_tool.yaml", b"<LicenceExport/>", "in namespace \\(none\\), not urn:eu"),
        ("eu_elicensing_tool.yaml", b"<html><body/></html>", "the root element is html, not"),
        ("gb_ecju_api.yaml", b'{"licences": [], "licences": []}', "'licences' appears more than"),
        ("de_bafa_legacy.yaml", b'Genehmigungsnummer;"Status\r\nA;B\r\n', "header row is never"),
    ],
)
def test_a_file_that_cannot_be_read_at_all_raises_unreadable_file(mapping_file, data, reason):
    with pytest.raises(UnreadableFile, match=reason):
        translate(_mapping(mapping_file), data, "f")


def test_json_records_and_lines_that_are_not_objects_are_rejected_with_their_place():
    data = b'{"licences": [42, {"reference": "X", "goods": ["oops"]}]}'
    first, second = translate(_mapping("gb_ecju_api.yaml"), data, "f.json")
    assert ("", "shape", "f.json $.licences[0]") in {
        (p.path, p.code, p.source) for p in first.problems
    }
    assert ("lines[0]", "shape", "f.json $.licences[1].goods[0]") in {
        (p.path, p.code, p.source) for p in second.problems
    }
    assert first.text == "42"


def test_the_mapping_is_chosen_by_file_name_and_an_unclaimed_file_lists_what_was_tried():
    mappings = [_mapping(name) for name in ("de_bafa_legacy.yaml", "gb_ecju_api.yaml")]
    assert mapping_for("BAFA_AUSFUHR_2026-01-02.CSV", mappings).name == "de-bafa-legacy"
    assert mapping_for("ecju_licences_x.json", mappings).name == "gb-ecju-api"
    with pytest.raises(UnreadableFile) as refused:
        mapping_for("licences.ods", mappings)
    assert "de-bafa-legacy (bafa_ausfuhr_*.csv" in str(refused.value)
    assert "gb-ecju-api (ecju_licences_*.json)" in str(refused.value)
    with pytest.raises(MappingError, match="no mapping is named 'nl-api'"):
        mapping_for("x.json", mappings, "nl-api")


BROKEN_MAPPINGS = [
    ("nonsense: 1\n" + CSV_MAPPING, r"nonsense: unknown key"),
    (CSV_MAPPING.replace("kind: csv", "kind: tsv"), r"reader\.kind: must be one of csv"),
    (CSV_MAPPING.replace("delimiter:", "delimeter:"), r"reader\.delimeter: unknown key"),
    (CSV_MAPPING.replace("Ware\n", "Ware\n  quantitty: Menge\n"), r"lines\.quantitty: unknown key"),
    (CSV_MAPPING.replace("  holder_eori: EORI\n", ""), r"licence\.holder_eori: is missing"),
    (
        CSV_MAPPING.replace("{const: individual}", "{const: einzel}"),
        r"licence\.type\.const: 'einzel' is not a licence type",
    ),
    (
        CSV_MAPPING.replace("{const: individual}", "{from: Art, map: {EG: single}}"),
        r"licence\.type\.map\.EG: 'single' is not a licence type",
    ),
    (CSV_MAPPING.replace('"%d.%m.%Y"', '"%d.%q"'), r"conventions\.date_format: '%d\.%q'"),
    (
        CSV_MAPPING.replace("valid_from: Ab", "valid_from: {from: Ab, decimal_comma: true}"),
        r"licence\.valid_from\.decimal_comma: does not apply to a date field",
    ),
    (
        CSV_MAPPING.replace("description: Ware", "description: {from: Ware, optional: true}"),
        r"lines\.description\.optional: this field is required",
    ),
    (CSV_MAPPING.replace("reader:", "readr:"), r"readr: unknown key"),
    ("- just\n- a list\n", r"must be a mapping"),
    ("files: [\n", r"not valid YAML"),
]


@pytest.mark.parametrize(("text", "message"), BROKEN_MAPPINGS)
def test_a_broken_mapping_raises_mapping_error_naming_the_key(text, message):
    with pytest.raises(MappingError, match=message) as raised:
        parse_mapping(text, "mappings/broken.yaml", "broken")
    assert str(raised.value).startswith("mappings/broken.yaml: ")


def test_a_broken_xml_mapping_names_the_bad_xpath_or_prefix():
    text = (MAPPINGS_DIR / "eu_elicensing_tool.yaml").read_text(encoding="utf-8")
    with pytest.raises(MappingError, match=r"licence\.holder_eori\.from: .*elic2"):
        parse_mapping(text.replace("elic:Exporter/elic:EORI", "elic2:EORI"), "x.yaml")
    with pytest.raises(MappingError, match=r"licence\.number\.from: .*not an XPath"):
        parse_mapping(text.replace("number: elic:Reference", 'number: "elic:Reference[["'), "x")
    with pytest.raises(MappingError, match=r"reader\.records: '///' is not usable XPath"):
        parse_mapping(text.replace("/elic:LicenceExport/elic:Authorisation", "///"), "x.yaml")
    with pytest.raises(MappingError, match=r"reader\.lines: 'x:Item' .*Undefined namespace"):
        parse_mapping(text.replace("lines: elic:Items/elic:Item", "lines: x:Item"), "x.yaml")


def test_a_broken_json_mapping_names_the_bad_path():
    text = (MAPPINGS_DIR / "gb_ecju_api.yaml").read_text(encoding="utf-8")
    with pytest.raises(MappingError, match=r"reader\.records: 'licences' must start at"):
        parse_mapping(text.replace("records: $.licences", "records: licences"), "x.yaml")
    with pytest.raises(MappingError, match=r"licence\.holder_eori\.from: .*relative"):
        parse_mapping(text.replace("holder_eori: licensee.eori", "holder_eori: $.eori"), "x")


JSON_MAPPING = """
files: ["*.json"]
reader: {kind: json, records: $.data.items, lines: lines}
licence:
  number: id
  type: {const: global}
  issuing_member_state: {const: NL}
  issuing_authority: {const: CDIU}
  holder_name: holder
  holder_eori: eori
  valid_from: from
lines:
  control_list_entry: cle
  description: text
  quantity: qty
  unit: {const: KGM}
  value: value
  currency: {const: EUR}
"""


def _json_lines(*lines: str):
    data = (
        '{"data": {"items": [{"id": "NL-1", "holder": "ASML-ish B.V.", "eori": "NL123456789",'
        ' "from": "2026-01-01", "lines": [' + ", ".join(lines) + "]}]}}"
    )
    mapping = parse_mapping(JSON_MAPPING, "nl.yaml", "nl")
    (record,) = translate(mapping, data.encode(), "nl.json")
    return record


def test_equal_amounts_spelled_differently_get_one_canonical_spelling():
    record = _json_lines(
        '{"cle": "3B001f1", "text": "Lithography", "qty": 12.750, "value": 900000.0}',
        '{"cle": "3B001.f.1", "text": "Masks", "qty": 5E+2, "value": 1e3}',
    )
    assert record.problems == ()
    first, second = record.licence.lines
    assert (str(first.quantity), str(first.value)) == ("12.75", "900000.00")
    assert (str(second.quantity), str(second.value)) == ("500", "1000.00")


def test_an_amount_with_too_many_decimals_is_kept_for_validation_to_report():
    record = _json_lines(
        '{"cle": "3B001.f.1", "text": "Lithography", "qty": 1, "value": "10.005"}',
        '{"cle": "3B001.f.1", "text": "Masks", "qty": NaN, "value": true}',
    )
    assert {(p.path, p.code) for p in record.problems} == {
        ("lines[0].value", "too-many-decimals"),
        ("lines[1].quantity", "not-a-number"),
        ("lines[1].value", "invalid"),
    }
    sources = {p.source for p in record.problems}
    assert sources == {"nl.json $.data.items[0].lines[0]", "nl.json $.data.items[0].lines[1]"}


XML_MAPPING = """
files: ["*.xml"]
reader:
  kind: xml
  namespaces: {x: "urn:example:licences"}
  records: //x:Licence
  lines: x:Line
licence:
  number: "@no"
  type: {const: individual}
  issuing_member_state: {const: RO}
  issuing_authority: {const: ANCEX}
  holder_name: "x:Party[@role='holder']/x:Name"
  holder_eori: "x:Party[@role='holder']/@eori"
  valid_from: {from: x:From, date_format: ["%Y-%m-%d", "%d/%m/%Y"]}
lines:
  control_list_entry: x:Cle
  description: x:Text
  value: x:Value
  currency: {from: x:Value/@cur, map: {EURO: EUR, "-": null}, default: EUR}
  end_user:
    name: "x:Party[@role='end-user']/x:Name"
    country: "x:Party[@role='end-user']/@country"
"""


def test_xpath_predicates_date_format_lists_and_maps_to_no_value():
    data = b"""<Export xmlns="urn:example:licences">
      <Licence no="RO-9">
        <Party role="holder" eori="RO12345678"><Name>Electro Dunarea SA</Name></Party>
        <From>28/02/2026</From>
        <Line><Cle>9A012a</Cle><Text>UAV</Text><Value cur="-">100</Value>
          <Party role="end-user" country="MD"><Name>Moldtelecom</Name></Party></Line>
        <Line><Cle>9A012.b</Cle><Text>UAV parts</Text><Value cur="EURO">5.5</Value></Line>
      </Licence>
    </Export>"""
    mapping = parse_mapping(XML_MAPPING, "ro.yaml", "ro")
    (record,) = translate(mapping, data, "ro.xml")
    assert record.problems == ()
    licence = record.licence
    assert (licence.holder_name, licence.holder_eori) == ("Electro Dunarea SA", "RO12345678")
    assert licence.valid_from == date(2026, 2, 28)
    first, second = licence.lines
    assert (first.control_list_entry, first.currency, first.end_user.name) == (
        "9A012.a",
        "EUR",
        "Moldtelecom",
    )
    assert (second.value, second.currency, second.end_user) == (Decimal("5.50"), "EUR", None)
    assert record.source == "ro.xml /Export/Licence[1] (line 2)"


_BAFA_COLUMNS = BAFA.read_bytes().decode("latin-1").splitlines()[0].split(";")
_LATIN1_TEXT = st.text(
    alphabet=st.characters(max_codepoint=255, exclude_categories=["Cs"]), max_size=14
)
_JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=12),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=6,
)


@settings(max_examples=120, deadline=None, database=None)
@given(
    st.lists(
        st.lists(_LATIN1_TEXT, min_size=len(_BAFA_COLUMNS), max_size=len(_BAFA_COLUMNS) + 2),
        min_size=1,
        max_size=4,
    )
)
def test_any_csv_cell_values_give_records_or_problems_never_exceptions(rows):
    buffer = io.StringIO()
    writer = csv.writer(buffer, delimiter=";")
    writer.writerow(_BAFA_COLUMNS)
    writer.writerows(rows)
    records = list(
        translate(_mapping("de_bafa_legacy.yaml"), buffer.getvalue().encode("latin-1"), "f.csv")
    )
    assert len(records) <= len(rows)  # rows of blank cells are no record at all
    for record in records:
        assert (record.licence is None) == bool(record.problems)
        assert record.text
        assert all(p.source.startswith("f.csv line") for p in record.problems)


@settings(max_examples=120, deadline=None, database=None)
@given(
    st.dictionaries(
        st.sampled_from(
            [
                "reference",
                "revision",
                "licenceType",
                "status",
                "issuer",
                "validity",
                "licensee",
                "generalAuthorisation",
            ]
        ),
        _JSON_VALUES,
    ),
    st.lists(
        st.dictionaries(
            st.sampled_from(
                [
                    "lineNo",
                    "controlEntry",
                    "commodityCode",
                    "description",
                    "quantity",
                    "value",
                    "destinations",
                    "consignee",
                ]
            ),
            _JSON_VALUES,
        ),
        max_size=3,
    ),
)
def test_any_json_values_give_records_or_problems_never_exceptions(head, goods):
    document = {"licences": [{**head, "goods": goods}]}
    (record,) = translate(_mapping("gb_ecju_api.yaml"), json.dumps(document).encode(), "f.json")
    assert (record.licence is None) == bool(record.problems)
    assert json.loads(record.text) == {**head, "goods": goods}


def test_a_json_member_written_twice_rejects_its_record_and_shows_both_values():
    """json.loads keeps the last of two members silently; which one the export meant cannot be
    told, so the record is rejected and its stored text keeps both."""
    record = _json_lines('{"cle": "3B001f1", "text": "Masks", "qty": 5, "qty": 500, "value": 1}')
    (problem,) = [p for p in record.problems if p.code == "duplicate-member"]
    assert (problem.path, problem.source) == ("lines[0].qty", "nl.json $.data.items[0]")
    assert "first 5, then 500" in problem.reason
    assert record.licence is None
    assert '"qty": 5' in record.text and '"qty": 500' in record.text


def test_numbers_too_large_for_any_field_are_problems_not_exceptions():
    """A day of twenty digits once raised OverflowError out of the date converter, and a whole
    number of 5,000 digits int()'s own ValueError: either failed the whole file."""
    (record,) = _csv(
        "Nr;Firma;EORI;Ab;AL;Ware;Menge;Einheit\n"
        "A-1;Muster GmbH;DE1234567;99999999999999999999.01.2026;1C010;Fasern;10,5;\n"
    )
    (problem,) = [p for p in record.problems if p.path == "valid_from"]
    assert "a number in it is far too large" in problem.reason
    mapping = CSV_MAPPING.replace(
        "  control_list_entry: AL", "  line_number: Pos\n  control_list_entry: AL"
    )
    (record,) = _csv(
        "Nr;Firma;EORI;Ab;Pos;AL;Ware;Menge\n"
        f"A-1;Muster GmbH;DE1234567;01.01.2026;{'9' * 5000};1C010;Fasern;1\n",
        mapping,
    )
    (problem,) = [p for p in record.problems if p.path == "lines[0].line_number"]
    assert "has 5000 digits" in problem.reason and len(problem.reason) < 400


def test_a_quote_never_closed_rejects_its_row_and_the_next_rows_are_read():
    records = _csv(
        "Nr;Firma;EORI;Ab;AL;Ware;Menge;Einheit\n"
        'A-1;Muster GmbH;DE1234567;01.01.2026;1C010;"Fasern;10,5;\n'
        "A-2;Muster GmbH;DE1234567;01.01.2026;1C010;Fasern;10,5;\n"
        'A-3;Muster GmbH;DE1234567;01.01.2026;1C010;"Fasern"x;10,5;\n'
    )
    by_number = {record.number: record for record in records}
    assert set(by_number) == {"A-1", "A-2", "A-3"}
    (problem,) = [p for p in by_number["A-1"].problems if p.code == "unclosed-quote"]
    assert problem.source == "t.csv line 2" and "field 6 ('Ware')" in problem.reason
    assert by_number["A-2"].accepted
    # A stray quote within one line is read leniently, as before: "Fasern"x is Fasernx.
    assert by_number["A-3"].accepted
    assert by_number["A-3"].licence.lines[0].description == "Fasernx"


# ------------------------------------------------------------ record shapes and licence values

_HEAD = """
licence:
  number: ref
  type: {const: individual}
  issuing_member_state: {const: SE}
  issuing_authority: {const: ISP}
  holder_name: holder
  holder_eori: eori
  valid_from: {const: 2026-01-01}
"""
_LINES = """
lines:
  control_list_entry: cle
  description: what
  quantity: qty
  unit: {from: unit, map: {"µg": MC, "µl": 4G, st: NAR}}
  destinations: {from: to, from_licence: to}
  end_user:
    name: {from_licence: endUser.name}
    country: {from_licence: endUser.country}
"""


def _licence_json(ref: str, **extra) -> dict:
    return {
        "ref": ref,
        "holder": "Uppsala Toxin AB",
        "eori": "SE5566778899",
        "to": ["NO"],
        "endUser": {"name": "FFI", "country": "NO"},
        "items": [
            {"cle": "1C351.d.4", "what": "ricin standard", "qty": "250", "unit": "µg"},
            {"cle": "ML7.b.1", "what": "agent standard", "qty": "12.5", "unit": "µl", "to": "IS"},
        ],
        **extra,
    }


def _json_mapping(layout: str, records: str = "$", lists: str = "[eu-dual-use, eu-military]"):
    text = (
        f"files: ['*']\nreader: {{kind: json, layout: {layout}, records: '{records}',"
        f" lines: items}}\ncontrol_lists: {lists}\n" + _HEAD + _LINES
    )
    return parse_mapping(text, "t.yaml")


def test_a_file_of_one_json_licence_is_one_record_with_licence_level_values_on_its_lines():
    data = json.dumps({"licence": _licence_json("SE-1")}).encode()
    (record,) = translate(_json_mapping("one", "$.licence"), data, "one.json")
    assert record.problems == () and record.source == "one.json $.licence"
    first, second = record.licence.lines
    assert (first.control_list, first.control_list_entry, first.quantity, first.unit) == (
        "eu-dual-use",
        "1C351.d.4",
        Decimal(250),
        "MC",
    )
    assert (second.control_list, second.control_list_entry, second.unit) == (
        "eu-military",
        "ML7.b.1",
        "4G",
    )
    # the licence's destinations where the line has none; the line's own where it has them
    assert (first.destinations, second.destinations) == (("NO",), ("IS",))
    assert first.end_user == second.end_user == Party("FFI", "NO")


def test_one_licence_per_document_refuses_a_list_and_a_list_layout_refuses_an_object():
    with pytest.raises(UnreadableFile, match=r"should be one licence .* but is a list"):
        translate(_json_mapping("one"), b"[]", "x.json")
    with pytest.raises(UnreadableFile, match="should be the list of licences but is a dict"):
        translate(_json_mapping("list"), b"{}", "x.json")


def test_json_lines_read_one_licence_a_line_and_a_broken_line_stays_its_own_problem():
    lines = [json.dumps(_licence_json("SE-1")), "", '{"ref": "SE-2", "holder": ', "[1]"]
    lines.append(json.dumps(_licence_json("SE-3", to=["XX"])))
    data = "\n".join(lines).encode()
    records = list(translate(_json_mapping("json-lines"), data, "lic.jsonl"))
    assert [r.source for r in records] == [f"lic.jsonl line {n}" for n in (1, 3, 4, 5)]
    assert records[0].accepted
    assert records[1].problems[0].code == "shape" and len(records[1].problems) == 1
    assert records[1].text == '{"ref": "SE-2", "holder": '
    assert "should be one licence (a JSON object) but is a list" in records[2].problems[0].reason
    (bad,) = [p for p in records[3].problems if p.code == "country"]
    assert bad.path == "lines[0].destinations[0]"
    assert records[3].problems[0].source == "lic.jsonl line 5 $.items[0]"


def test_an_xml_document_of_one_licence_is_one_record():
    mapping = parse_mapping(
        "files: ['*']\nreader: {kind: xml, records: /Licence, lines: Items/Item}\n"
        + _HEAD.replace("ref\n", "Ref\n")
        .replace("holder\n", "Holder\n")
        .replace(": eori", ": Eori")
        + "lines:\n  control_list_entry: Cle\n  description: What\n"
        + "  destinations: {from_licence: To/Country}\n  quantity: {const: 10}\n"
        + "  unit: {const: NAR}\n",
        "x.yaml",
    )
    xml = (
        b"<Licence><Ref>SE-X</Ref><Holder>Saab</Holder><Eori>SE5560360793</Eori>"
        b"<To><Country>NO</Country><Country>FI</Country></To>"
        b"<Items><Item><Cle>5A002a1</Cle><What>radios</What></Item></Items></Licence>"
    )
    (record,) = translate(mapping, xml, "one.xml")
    assert record.source == "one.xml /Licence (line 1)"
    (line,) = record.licence.lines
    assert (line.control_list_entry, line.destinations) == ("5A002.a.1", ("NO", "FI"))


def test_an_entry_two_lists_accept_is_refused_and_a_named_list_is_taken():
    lists = parse_control_lists(
        'lists:\n  a-list: {name: A, stem: "ML[0-9]", examples: [ML1]}\n'
        '  b-list: {name: B, stem: "ML[0-9]{1,2}", examples: [ML10]}\n'
    )
    registry = project_control_lists().merged(lists, "t")
    text = (
        "files: ['*']\nreader: {kind: json, lines: items}\ncontrol_lists: [a-list, b-list]\n"
        + _HEAD
        + "lines:\n  control_list_entry: cle\n  description: what\n"
        + "  quantity: {from: qty, scale: 0.001}\n  unit: {const: KGM}\n"
        + "  control_list: {from: list, optional: true, map: {A: a-list, B: b-list}}\n"
    )
    mapping = parse_mapping(text, "t.yaml", None, registry)
    item = {"cle": "ML1a", "what": "x", "qty": "1500"}
    data = json.dumps(
        [
            _licence_json("SE-1", items=[item]),
            _licence_json("SE-2", items=[{**item, "list": "B"}]),
        ]
    ).encode()
    ambiguous, named = translate(mapping, data, "x.json")
    assert [(p.path, p.code) for p in ambiguous.problems] == [
        ("lines[0].control_list_entry", "cle-ambiguous")
    ]
    (line,) = named.licence.lines
    assert (line.control_list, line.control_list_entry, line.quantity) == (
        "b-list",
        "ML1.a",
        Decimal("1.5"),  # 1500 g in kg, scaled exactly
    )


def test_a_licence_without_lines_is_read_when_the_reader_has_none():
    text = (
        "files: ['*']\nreader: {kind: json, layout: json-lines}\n"
        "control_lists: [eu-dual-use, eu-military]\n"
        + _HEAD.replace("{const: individual}", "{const: global}")
        + "  control_list_entries: cats\n  destinations: to\n"
        + "  value: {from: ceilingKEUR, scale: 1000}\n  currency: {const: EUR}\n"
    )
    mapping = parse_mapping(text, "open.yaml")
    row = {"ref": "SE-O", "holder": "h", "eori": "SE1", "cats": "5A002a1, ml1a, 6", "to": "NO"}
    (record,) = translate(mapping, json.dumps({**row, "ceilingKEUR": 12.5}).encode(), "o.jsonl")
    licence = record.licence
    assert record.problems == () and licence.lines == ()
    assert licence.control_list_entries == ("5A002.a.1", "ML1.a", "6")
    assert (licence.destinations, licence.value, licence.currency) == (
        ("NO",),
        Decimal("12500.00"),
        "EUR",
    )


@pytest.mark.parametrize(
    ("change", "said"),
    [
        (("layout: one", "layout: many"), "reader.layout: must be one of list, one, json-lines"),
        (("control_lists: [eu-dual-use, eu-military]", "control_lists: [nato]"), "'nato' is not"),
        (("from_licence: to", "from_licence: to, const: x"), "give from:"),
        (("qty\n", "{from: qty, scale: -1}\n"), "quantity.scale: must be more than zero"),
        (("qty\n", "{from: qty, scale: abc}\n"), "'abc' is not a decimal number"),
        (("what\n", "{from: what, scale: 2}\n"), "description.scale: does not apply"),
        (("holder_name: holder", "holder_name: {from_licence: holder}"), "is for line fields"),
    ],
)
def test_mistakes_in_the_new_mapping_keys_are_named(change, said):
    text = (
        "files: ['*']\nreader: {kind: json, layout: one, lines: items}\n"
        "control_lists: [eu-dual-use, eu-military]\n" + _HEAD + _LINES
    )
    assert change[0] in text
    with pytest.raises(MappingError, match=re.escape(said)):
        parse_mapping(text.replace(change[0], change[1], 1), "t.yaml")
    no_lines = text.replace("layout: one, lines: items", "layout: one")
    with pytest.raises(MappingError, match=r"the reader has no reader\.lines"):
        parse_mapping(no_lines, "t.yaml")


# ------------------------------------------------------------------------ encoding problems

_CSV_MAPPING = """
files: ['*']
reader: {kind: csv, encoding: latin-1, delimiter: ";"}
licence:
  number: Nummer
  type: {const: individual}
  issuing_member_state: {const: DE}
  issuing_authority: {const: BAFA}
  holder_name: Ausführer
  holder_eori: EORI
  valid_from: {from: Gültig ab, date_format: "%d.%m.%Y"}
lines:
  control_list_entry: AL
  description: Ware
  quantity: Menge
  unit: {const: NAR}
"""
_CSV_TEXT = (
    "Nummer;Ausführer;EORI;Gültig ab;AL;Ware;Menge\nEA-1;Müller GmbH;DE1;01.02.2026;1C350;x;1\n"
)


@pytest.mark.parametrize(
    ("data", "said"),
    [
        (_CSV_TEXT.encode("utf-8"), "the column name 'AusfÃ¼hrer' reads as UTF-8 'Ausführer'"),
        (_CSV_TEXT.encode("utf-16"), "it starts with a UTF-16 (little-endian) byte order mark"),
        (_CSV_TEXT.encode("utf-16-be"), "as in UTF-16 or UTF-32"),
        (b"\xef\xbb\xbf" + _CSV_TEXT.encode("utf-8"), "it starts with a UTF-8 byte order mark"),
    ],
)
def test_a_file_in_another_encoding_is_an_encoding_problem_never_a_missing_column(data, said):
    with pytest.raises(EncodingProblem) as refused:
        translate(parse_mapping(_CSV_MAPPING, "de.yaml"), data, "bafa.csv")
    message = str(refused.value)
    assert message.startswith("encoding problem: bafa.csv is not latin-1: ")
    assert said in message and "has no column" not in message


def test_invalid_bytes_are_an_encoding_problem_with_where_and_a_hint():
    utf8 = parse_mapping(_CSV_MAPPING.replace("latin-1", "utf-8"), "de.yaml")
    assert translate(utf8, _CSV_TEXT.encode("utf-8"), "ok.csv")  # read as it should be
    with pytest.raises(EncodingProblem) as refused:
        translate(utf8, _CSV_TEXT.encode("latin-1"), "bafa.csv")
    message = str(refused.value)
    assert "encoding problem: bafa.csv is not utf-8: byte 11 (b'\\xfc', line 1)" in message
    assert "it may be Latin-1 or Windows-1252" in message
    # a latin-1 file read as latin-1 is fine: its umlauts are not taken for mojibake
    (record,) = translate(parse_mapping(_CSV_MAPPING, "de.yaml"), _CSV_TEXT.encode("latin-1"), "x")
    assert record.licence.holder_name == "Müller GmbH"

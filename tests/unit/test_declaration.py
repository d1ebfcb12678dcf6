"""Reading WCO DEC-DMS declarations: the real HMRC samples, and every way one can be wrong."""

from __future__ import annotations

import copy
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st
from lxml import etree

from bridge.core.declaration import (
    DEC_NS,
    METADATA_NS,
    Amendment,
    Pointer,
    parse_write_off_decimal,
    read_declaration,
)
from bridge.core.errors import Rejected

D = f"{{{DEC_NS}}}"


def _sample(wco_samples, name: str) -> bytes:
    return (wco_samples / name).read_bytes()


def test_tt_ex004a_x002_write_off_is_read_with_its_place(wco_samples):
    declaration = read_declaration(_sample(wco_samples, "TT_EX004a.xml"), source="TT_EX004a")

    assert declaration.function_code == "9"
    assert declaration.type_code == "EXY"
    assert declaration.lrn == "TTEX004a_1010WE"
    assert declaration.mrn is None  # lodged samples carry no MRN yet
    assert declaration.exporter_eori == "GB896458895015"
    assert declaration.country == "GB"
    assert not declaration.is_cancellation
    first, second = declaration.goods_items
    assert (first.sequence, first.cn_code, first.destination) == (1, "93019000", "SD")
    assert (second.sequence, second.cn_code, second.destination) == (2, "93059100", "SD")
    assert [d.document_code for d in second.documents] == [
        "C512",
        "Y903",
        "Y935",
        "E020",
        "X002",
        "9104",
    ]
    x002 = second.documents[4]
    assert x002.reference == "GBSIEXYK3ZZZPADR-0002"
    assert x002.status == "EA"
    assert (x002.quantity, x002.unit) == (Decimal("102.00"), "KGM#G")
    assert (x002.amount, x002.currency, x002.line_item_number) == (None, None, None)
    assert x002.path == "GoodsShipment/GovernmentAgencyGoodsItem[2]/AdditionalDocument[5]"
    write_offs = [(item.sequence, doc.document_code) for item, doc in declaration.write_offs()]
    assert write_offs == [(1, "9104"), (2, "X002"), (2, "9104")]
    uk = first.documents[3]
    assert (uk.document_code, uk.reference, uk.quantity, uk.unit) == (
        "9104",
        "GBSIEXYK3ZZZ-0001",
        Decimal("5"),
        "KGM#G",
    )


def test_tt_ex010a_takes_the_destination_from_the_shipment(wco_samples):
    declaration = read_declaration(_sample(wco_samples, "TT_EX010a.xml"))
    (item,) = declaration.goods_items
    assert (item.cn_code, item.destination) == ("93063030", "PK")
    assert declaration.exporter_eori == "GB417869120000"
    ((_, document),) = list(declaration.write_offs())
    assert (document.document_code, document.reference, document.quantity) == (
        "9104",
        "GBSIEE2E350001-0001",
        Decimal("10.00"),
    )


def test_cancellation_names_the_mrn_it_cancels(wco_samples):
    declaration = read_declaration(_sample(wco_samples, "TT_EX010a_Cancellation.xml"))
    assert declaration.is_cancellation
    assert declaration.mrn == "24GBDIRIGZ7QLCPAA8"
    assert declaration.exporter_eori is None  # a cancellation needs no exporter
    assert declaration.goods_items == ()


def test_declaration_without_licence_write_off_reads_with_none(wco_samples):
    declaration = read_declaration(_sample(wco_samples, "TT_EX001a.xml"))
    assert declaration.exporter_eori == "GB427168118378"
    assert list(declaration.write_offs()) == []
    assert declaration.goods_items[0].destination == "US"


def test_bare_declaration_without_metadata_wrapper(wco_samples):
    root = etree.fromstring(_sample(wco_samples, "TT_EX004a.xml"))
    bare = etree.tostring(root.find(f"{D}Declaration"))
    declaration = read_declaration(bare)
    assert declaration.country is None
    assert len(list(declaration.write_offs())) == 3


def _broken_tt_ex004a(wco_samples) -> bytes:
    """TT_EX004a with one of each problem the reader must find."""
    root = etree.fromstring(_sample(wco_samples, "TT_EX004a.xml"))
    declaration = root.find(f"{D}Declaration")
    declaration.remove(declaration.find(f"{D}Exporter"))
    shipment = declaration.find(f"{D}GoodsShipment")
    first, second = shipment.findall(f"{D}GovernmentAgencyGoodsItem")
    first.remove(first.find(f"{D}SequenceNumeric"))
    third = copy.deepcopy(second)  # goods item number 2 twice
    second.addnext(third)
    quantities = second.findall(f".//{D}QuantityQuantity")
    quantities[0].text = "102,00"  # the X002, AdditionalDocument[5]
    quantities[1].text = "-5"
    third_quantities = third.findall(f".//{D}QuantityQuantity")
    third_quantities[0].text = "1.1234567"
    third_quantities[1].text = "NaN"
    return etree.tostring(root)


def test_every_problem_is_reported_at_once_with_its_path(wco_samples):
    with pytest.raises(Rejected) as caught:
        read_declaration(_broken_tt_ex004a(wco_samples), source="broken.xml")
    found = {(p.path, p.code) for p in caught.value.problems}
    item = "GoodsShipment/GovernmentAgencyGoodsItem"
    assert found == {
        (f"{item}[1]/SequenceNumeric", "missing-goods-item-number"),
        (f"{item}[3]/SequenceNumeric", "duplicate-goods-item"),
        (f"{item}[2]/AdditionalDocument[5]/WriteOff/QuantityQuantity", "bad-quantity"),
        (f"{item}[2]/AdditionalDocument[6]/WriteOff/QuantityQuantity", "bad-quantity"),
        (f"{item}[3]/AdditionalDocument[5]/WriteOff/QuantityQuantity", "bad-quantity"),
        (f"{item}[3]/AdditionalDocument[6]/WriteOff/QuantityQuantity", "bad-quantity"),
    }
    reasons = {p.path: p.reason for p in caught.value.problems}
    assert "comma" in reasons[f"{item}[2]/AdditionalDocument[5]/WriteOff/QuantityQuantity"]
    assert "negative" in reasons[f"{item}[2]/AdditionalDocument[6]/WriteOff/QuantityQuantity"]
    assert "6 decimals" in reasons[f"{item}[3]/AdditionalDocument[5]/WriteOff/QuantityQuantity"]
    assert all(p.source == "broken.xml" for p in caught.value.problems)
    assert "102,00" in str(caught.value)


def test_wrong_root_namespace_is_refused(wco_samples):
    text = _sample(wco_samples, "TT_EX004a.xml").replace(
        b'xmlns="urn:wco:datamodel:WCO:DEC-DMS:2"', b'xmlns="urn:wco:datamodel:WCO:DEC-DMS:1"'
    )
    with pytest.raises(Rejected) as caught:
        read_declaration(text)
    (problem,) = caught.value.problems
    assert problem.code == "wrong-namespace"
    assert "urn:wco:datamodel:WCO:DEC-DMS:1" in problem.reason

    with pytest.raises(Rejected) as caught:
        read_declaration(b"<Declaration><FunctionCode>9</FunctionCode></Declaration>")
    assert caught.value.problems[0].code == "wrong-namespace"


def test_document_that_writes_off_needs_code_reference_and_unit():
    xml = f"""<Declaration xmlns="{DEC_NS}"><FunctionCode>9</FunctionCode>
      <Exporter><ID>DE123456789012345</ID></Exporter>
      <GoodsShipment><GovernmentAgencyGoodsItem><SequenceNumeric>1</SequenceNumeric>
        <AdditionalDocument><CategoryCode>X</CategoryCode>
          <WriteOff><QuantityQuantity>3</QuantityQuantity></WriteOff></AdditionalDocument>
        <AdditionalDocument><CategoryCode>X</CategoryCode><ID>L-1</ID><TypeCode>060</TypeCode>
          <WriteOff><AmountAmount>12.5</AmountAmount></WriteOff></AdditionalDocument>
      </GovernmentAgencyGoodsItem></GoodsShipment></Declaration>""".encode()
    with pytest.raises(Rejected) as caught:
        read_declaration(xml)
    reasons = sorted(p.reason.split(" (")[0] for p in caught.value.problems)
    assert reasons == [
        "a document used for a write-off needs CategoryCode and TypeCode",
        "a document used for a write-off needs its reference",
        "a write-off amount needs its currency",
        "a write-off quantity needs its unit",
    ]


def test_amounts_and_line_item_numbers_are_read_when_present():
    xml = f"""<md:MetaData xmlns:md="{METADATA_NS}" xmlns="{DEC_NS}">
      <md:ResponsibleCountryCode>DE</md:ResponsibleCountryCode>
      <Declaration><FunctionCode>9</FunctionCode><ID>26DE123456789012A1</ID>
      <Exporter><ID>de 1234-5678 9012345</ID></Exporter>
      <GoodsShipment><Destination><CountryCode>in</CountryCode></Destination>
        <GovernmentAgencyGoodsItem><SequenceNumeric>7</SequenceNumeric>
        <AdditionalDocument><CategoryCode>X</CategoryCode><ID>DE-EA-1</ID>
          <TypeCode>070</TypeCode><LineNumeric>2</LineNumeric>
          <WriteOff><AmountAmount currencyID="EUR">1250.50</AmountAmount></WriteOff>
        </AdditionalDocument></GovernmentAgencyGoodsItem></GoodsShipment>
      </Declaration></md:MetaData>""".encode()
    declaration = read_declaration(xml)
    assert declaration.exporter_eori == "DE123456789012345"
    assert (declaration.country, declaration.mrn) == ("DE", "26DE123456789012A1")
    ((item, document),) = list(declaration.write_offs())
    assert (item.sequence, item.destination, item.cn_code) == (7, "IN", None)
    assert (document.amount, document.currency, document.line_item_number) == (
        Decimal("1250.50"),
        "EUR",
        2,
    )


def test_external_entity_is_refused_and_not_resolved():
    xml = (
        b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]>'
        b'<Declaration xmlns="urn:wco:datamodel:WCO:DEC-DMS:2"><FunctionalReferenceID>&e;'
        b"</FunctionalReferenceID></Declaration>"
    )
    with pytest.raises(Rejected) as caught:
        read_declaration(xml)
    (problem,) = caught.value.problems
    assert problem.code == "xml-refused"
    assert "DTD" in problem.reason
    assert "root:" not in str(caught.value)  # /etc/passwd's first line starts with root:


def test_oversized_declaration_is_refused_before_parsing():
    with pytest.raises(Rejected) as caught:
        read_declaration(b"<a>" + b"x" * 5000 + b"</a>", max_bytes=1000)
    assert "over the limit of 1000 bytes" in caught.value.problems[0].reason


@pytest.mark.parametrize(
    ("raw", "value", "reason"),
    [
        ("102.00", Decimal("102.00"), None),
        ("  5 ", Decimal("5"), None),
        ("0.000001", Decimal("0.000001"), None),
        ("1.1000000", Decimal("1.1"), None),  # trailing zeros do not count as decimals
        ("9999999999999999", Decimal("9999999999999999"), None),
        ("10,5", None, "comma"),
        ("-3", None, "negative"),
        ("0", None, "zero"),
        ("0.000", None, "zero"),
        ("NaN", None, "not a plain decimal"),
        ("Infinity", None, "not a plain decimal"),
        ("1e3", None, "not a plain decimal"),
        ("abc", None, "not a plain decimal"),
        ("", None, "empty"),
        (None, None, "empty"),
        ("1.1234567", None, "more than 6 decimals"),
        ("12345678901234567", None, "more than 16 digits"),
    ],
)
def test_write_off_quantities_are_plain_positive_decimals(raw, value, reason):
    parsed, why = parse_write_off_decimal(raw)
    assert parsed == value
    if reason is None:
        assert why is None
    else:
        assert reason in why


@given(
    st.decimals(
        min_value=Decimal("0.000001"),
        max_value=Decimal("9999999999"),
        places=6,
        allow_nan=False,
        allow_infinity=False,
    )
)
def test_any_six_decimal_quantity_reads_back_exactly(quantity):
    parsed, why = parse_write_off_decimal(f"{quantity:f}")
    assert why is None
    assert parsed == quantity


def test_a_real_amendment_is_read_with_its_amendment_and_pointer_sections(wco_samples):
    amendments = wco_samples / "amendments"
    step_2_file = amendments / "TT_Add_Item_Scenario_Step2_Amendment.xml"
    step_2 = read_declaration(step_2_file.read_bytes())
    assert (step_2.function_code, step_2.type_code, step_2.is_amendment) == ("13", "COR", True)
    assert step_2.exporter_eori is None and step_2.destination is None  # not carried
    assert [item.sequence for item in step_2.goods_items] == [3]  # only the goods item added
    *_, adds_item_3 = step_2.amendments
    assert adds_item_3 == Amendment("32", (Pointer("42A", 1), Pointer("67A", 1), Pointer("68A", 3)))
    complex_ = read_declaration((amendments / "TT_IM002c_Complex_Multi_Amendment.xml").read_bytes())
    assert [a.change_reason for a in complex_.amendments] == ["28", "29", "29", "29", "29", "28"]
    assert complex_.amendments[-1].pointers[-1] == Pointer("93A", 1, "144")


def test_an_import_without_exporter_is_read(wco_samples):
    # No exporter EORI on an import: nothing the bridge acts on needs one.
    step_1 = wco_samples / "amendments" / "TT_Add_Item_Scenario_Step1_Declaration.xml"
    declaration = read_declaration(step_1.read_bytes())
    assert declaration.is_original and declaration.exporter_eori is None
    assert not declaration.quotes_dual_use
    assert (declaration.destination, declaration.dispatch) == ("GB", "US")


def test_a_declaration_inside_a_transport_wrapper_is_read(wco_samples):
    inner = _sample(wco_samples, "TT_EX004a.xml").decode("utf-8").split("?>", 1)[-1]
    wrapped = (
        '<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/">'
        f"<soapenv:Header/><soapenv:Body>{inner}</soapenv:Body></soapenv:Envelope>"
    )
    declaration = read_declaration(wrapped.encode("utf-8"))
    assert (declaration.country, len(list(declaration.write_offs()))) == ("GB", 3)
    twice = wrapped.replace(inner, inner + inner)
    with pytest.raises(Rejected) as caught:
        read_declaration(twice.encode("utf-8"))
    assert [p.code for p in caught.value.problems] == ["several-declarations"]

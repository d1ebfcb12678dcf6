"""Certificates: document codes, deterministic canonical XML, round trips, and precise reasons
when a certificate breaks the contract (schemas/certex-certificate-1.0.xsd)."""

from __future__ import annotations

from dataclasses import replace
from datetime import date
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lxml import etree

from bridge.core.certificate import (
    build_certificate,
    certificate_problems,
    document_code_for,
    parse_certificate,
)
from bridge.core.errors import Rejected, XmlRefused
from bridge.core.model import Licence, LicenceLine, LicenceStatus, LicenceType, Party
from tests.fixtures_soap import (
    chemicals_licence,
    global_licence,
    individual_licence,
    national_general_licence,
    sample_licences,
    union_general_licence,
)


def _c14n(xml: bytes) -> bytes:
    return etree.tostring(etree.fromstring(xml), method="c14n", exclusive=True)


# ------------------------------------------------------------------------- document codes


def test_document_codes_follow_the_licence_type():
    assert document_code_for(individual_licence()) == "X060"
    assert document_code_for(global_licence()) == "X070"
    assert document_code_for(national_general_licence()) == "X071"
    union = union_general_licence()
    codes = [
        document_code_for(replace(union, general_authorisation=f"EU00{n}")) for n in range(1, 9)
    ]
    assert codes == ["X061", "X062", "X063", "X064", "X065", "X066", "X067", "X068"]


def test_a_union_general_authorisation_without_its_eu_code_has_no_document_code():
    licence = union_general_licence(general_authorisation="DK002")
    with pytest.raises(Rejected) as refused:
        document_code_for(licence)
    (problem,) = refused.value.problems
    assert problem.path == "general_authorisation"
    assert problem.value == "DK002"
    assert "EU001 to EU008" in problem.reason
    with pytest.raises(Rejected):
        build_certificate(licence)


# ---------------------------------------------------------------------- building, reading


@pytest.mark.parametrize("licence", sample_licences(), ids=lambda licence: licence.number)
def test_realistic_licences_make_valid_certificates_that_read_back_exactly(licence):
    xml = build_certificate(licence)
    assert certificate_problems(xml) == []
    assert parse_certificate(xml) == licence


def test_the_same_licence_always_gives_the_same_bytes_which_are_their_own_c14n():
    first = build_certificate(chemicals_licence())
    assert build_certificate(chemicals_licence()) == first
    assert _c14n(first) == first
    assert first.startswith(b'<Certificate xmlns="urn:elicensing-bridge:certex:certificate:1.0"')
    assert "深圳光电化工有限公司".encode() in first  # UTF-8, not character references


def test_the_certificate_carries_what_customs_check_in_data_element_12_03():
    root = etree.fromstring(build_certificate(chemicals_licence()))
    ns = {"c": "urn:elicensing-bridge:certex:certificate:1.0"}

    def text(path: str) -> list[str]:
        return [e.text for e in root.xpath(path, namespaces=ns)]

    assert text("c:DocumentCode") == ["X060"]
    assert text("c:Reference") == ["PL/DU/2026/000321"]
    assert text("c:Version") == ["3"]
    assert text("c:Status") == ["suspended"]
    assert text("c:IssuingAuthority/c:MemberState") == ["PL"]
    assert text("c:Holder/c:EORI") == ["PL5260001234"]
    assert text("c:Validity/c:To") == ["2027-05-03"]
    assert text("c:Line/c:LineNumber") == ["10", "20"]
    quantity = root.xpath("c:Line[1]/c:Quantity", namespaces=ns)[0]
    assert (quantity.text, quantity.get("unitCode")) == ("1250.375", "KGM")
    value = root.xpath("c:Line[1]/c:Value", namespaces=ns)[0]
    assert (value.text, value.get("currencyID")) == ("18755.63", "PLN")
    assert text("c:Line[2]/c:Quantity") == ["0.000001"]
    assert text("c:Line[2]/c:DestinationCountry") == ["CN", "VN"]


def test_lines_without_ceilings_keep_the_unit_and_currency_usage_is_recorded_in():
    union = build_certificate(union_general_licence())
    national = build_certificate(national_general_licence())
    assert b"<UsageUnit>NAR</UsageUnit>" in union and b"<Quantity" not in union
    assert b"<UsageCurrency>DKK</UsageCurrency>" in national and b"<Value" not in national
    assert b"<To>" not in union  # no end date
    assert parse_certificate(union) == union_general_licence()
    assert parse_certificate(national) == national_general_licence()


def test_decimals_are_written_in_fixed_point_however_they_were_spelled():
    line = replace(individual_licence().lines[0], quantity=Decimal("1E+2"), value=Decimal("5E-2"))
    xml = build_certificate(individual_licence(lines=(line,)))
    assert b'<Quantity unitCode="NAR">100</Quantity>' in xml
    assert b'<Value currencyID="EUR">0.05</Value>' in xml
    assert certificate_problems(xml) == []


def test_markup_characters_in_names_are_escaped_and_read_back():
    licence = individual_licence(holder_name='Smith & Söhne <"Optik"> GmbH\r\nAbt. 3')
    xml = build_certificate(licence)
    assert _c14n(xml) == xml
    assert parse_certificate(xml).holder_name == licence.holder_name


def test_text_xml_cannot_carry_is_refused_with_every_place_it_occurs():
    line = replace(individual_licence().lines[0], description="camera\x00model")
    licence = individual_licence(holder_name="Muster\x1bOptik", lines=(line,))
    with pytest.raises(Rejected) as refused:
        build_certificate(licence)
    assert [p.path for p in refused.value.problems] == ["holder_name", "lines[0].description"]
    assert all(p.code == "not-xml-text" for p in refused.value.problems)


# ------------------------------------------------------------------------------- invalid


def test_every_contract_breach_is_reported_at_once_with_reason_path_and_line():
    licence = individual_licence(
        number="X" * 71,
        holder_eori="de 1234",
        lines=(
            replace(individual_licence().lines[0], quantity=Decimal("1.1234567")),
            replace(individual_licence().lines[1], line_number=1, unit="kilo"),
        ),
    )
    problems = certificate_problems(build_certificate(licence), source="DE licence")
    by_path = {p.path.split(" (")[0]: p for p in problems}
    assert set(by_path) == {
        "/Certificate/Reference",
        "/Certificate/Holder/EORI",
        "/Certificate/Line[1]/Quantity",
        "/Certificate/Line[2]/Quantity",
        "/Certificate/Line[2]",
    }
    assert "maxLength" in by_path["/Certificate/Reference"].reason
    assert by_path["/Certificate/Holder/EORI"].value == "de 1234"
    assert "fractionDigits" in by_path["/Certificate/Line[1]/Quantity"].reason
    assert "unitCode" in by_path["/Certificate/Line[2]/Quantity"].reason
    assert "UniqueLineNumber" in by_path["/Certificate/Line[2]"].reason
    assert by_path["/Certificate/Holder/EORI"].path == "/Certificate/Holder/EORI (line 12)"
    assert all(p.source == "DE licence" and p.code == "schema" for p in problems)
    assert all("{urn:" not in p.reason for p in problems)  # names without namespaces


def test_a_quantity_without_its_unit_is_caught_by_the_schema():
    line = replace(individual_licence().lines[0], unit=None)
    (problem,) = certificate_problems(build_certificate(individual_licence(lines=(line,))))
    assert problem.path.startswith("/Certificate/Line/Quantity")
    assert "unitCode" in problem.reason and "required" in problem.reason


def test_a_tampered_certificate_is_caught_and_refused_when_read():
    xml = build_certificate(individual_licence())
    tampered = xml.replace(b"<CNCode>85258900</CNCode>", b"<CNCode>8525 89 00</CNCode>")
    (problem,) = certificate_problems(tampered)
    line = next(n for n, text in enumerate(tampered.split(b"\n"), 1) if b"<CNCode>" in text)
    assert problem.path == f"/Certificate/Line[1]/CNCode (line {line})"
    assert problem.value == "8525 89 00"
    with pytest.raises(Rejected) as refused:
        parse_certificate(tampered)
    assert refused.value.problems == (problem,)


def test_the_document_code_and_the_general_authorisation_must_agree():
    xml = build_certificate(union_general_licence())
    (problem,) = certificate_problems(xml.replace(b">EU001<", b">EU002<"))
    assert problem.code == "document-code"
    assert "X061" in problem.reason and "EU001" in problem.reason and problem.value == "EU002"


def test_a_document_that_is_not_a_certificate_is_named_as_such():
    (problem,) = certificate_problems(b"<Licence/>")
    assert "not {urn:elicensing-bridge:certex:certificate:1.0}Certificate" in problem.reason


@pytest.mark.parametrize(
    "xml",
    [
        b'<!DOCTYPE c [<!ENTITY x "boom">]><Certificate>&x;</Certificate>',
        b"<Certificate><Reference>unclosed</Certificate>",
        b"",
    ],
    ids=["entity", "malformed", "empty"],
)
def test_unsafe_or_broken_xml_is_refused_before_validation(xml):
    (problem,) = certificate_problems(xml)
    assert problem.code == "not-xml"
    with pytest.raises(XmlRefused):
        parse_certificate(xml)


# -------------------------------------------------------------------- other control lists


def _military_licence() -> Licence:
    annex, optics = individual_licence().lines
    return individual_licence(
        lines=(
            replace(annex, control_list="eu-military", control_list_entry="ML1.a"),
            optics,  # an Annex I line beside it
            replace(optics, line_number=3, control_list="uk-national", control_list_entry="PL5001"),
        )
    )


def test_a_line_of_another_control_list_carries_its_list_and_reads_back():
    licence = _military_licence()
    xml = build_certificate(licence)
    assert certificate_problems(xml) == []
    entries = etree.fromstring(xml).iter("{*}ControlListEntry")
    assert [(e.get("list"), e.text) for e in entries] == [
        ("eu-military", "ML1.a"),
        (None, "6A002.a.3.f"),  # the EU dual-use list is the default: named by no attribute
        ("uk-national", "PL5001"),
    ]
    assert [(x.control_list, x.control_list_entry) for x in parse_certificate(xml).lines] == [
        ("eu-military", "ML1.a"),
        ("eu-dual-use", "6A002.a.3.f"),
        ("uk-national", "PL5001"),
    ]
    assert parse_certificate(xml) == licence


def test_an_annex_i_certificate_keeps_its_bytes():
    xml = build_certificate(individual_licence())
    assert b" list=" not in xml
    assert b"<ControlListEntry>6A003.b.4.b</ControlListEntry>" in xml


@pytest.mark.parametrize(
    ("before", "after"),
    [
        (b'<ControlListEntry list="eu-military">ML1.a<', b"<ControlListEntry>ML1.a<"),
        (b'list="eu-military">ML1.a<', b'list="eu-dual-use">ML1.a<'),
        (b"<ControlListEntry>6A002.a.3.f<", b"<ControlListEntry>6A002a3f<"),
    ],
    ids=["military-entry-without-list", "military-entry-as-dual-use", "footnote-spelling"],
)
def test_an_entry_of_the_dual_use_list_must_be_in_the_annex_i_spelling(before, after):
    xml = build_certificate(_military_licence())
    assert before in xml
    tampered = xml.replace(before, after)
    (problem,) = certificate_problems(tampered)
    line = next(n for n, text in enumerate(tampered.split(b"\n"), 1) if after in text)
    assert problem.path.endswith(f"/ControlListEntry (line {line})")
    assert "Annex I spelling" in problem.reason and problem.code == "schema"
    with pytest.raises(Rejected):
        parse_certificate(tampered)


def test_a_list_id_or_entry_outside_the_contract_is_caught_by_the_schema():
    xml = build_certificate(_military_licence())
    (problem,) = certificate_problems(xml.replace(b'list="eu-military"', b'list="EU Military"'))
    assert "list" in problem.reason and problem.value == "EU Military"
    (problem,) = certificate_problems(xml.replace(b">ML1.a<", b">ML 1 a<"))
    assert problem.path.startswith("/Certificate/Line[1]/ControlListEntry")


# ------------------------------------------------------------------------------- property

_XML_TEXT = st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters="\ufffe\uffff")


def _text(max_size: int):
    # Names are not only white space (XSD \s: space, tab, CR, LF).
    return st.text(_XML_TEXT, min_size=1, max_size=max_size).filter(lambda s: s.strip(" \t\r\n"))


def _decimal(max_places: int, integer_digits: int):
    return st.integers(0, max_places).flatmap(
        lambda places: st.decimals(
            min_value=0,
            max_value=Decimal(10**integer_digits - 1),
            places=places,
            allow_nan=False,
            allow_infinity=False,
        )
    )


_COUNTRIES = st.sampled_from(["IN", "CN", "US", "BR", "AE", "SG", "ZA", "JP", "CH", "TR"])
_PARTIES = st.builds(
    Party,
    name=_text(60),
    country=st.none() | _COUNTRIES,
    address=st.none() | _text(80),
)


_ENTRIES = [
    ("eu-dual-use", entry) for entry in ("5A002.a", "6A003.b.4.b", "1C350.11", "3A001.a.1", "9E003")
] + [("eu-military", "ML1.a"), ("eu-military", "ML8.a.1"), ("uk-national", "PL5001")]


@st.composite
def _lines(draw) -> tuple[LicenceLine, ...]:
    numbers = draw(st.lists(st.integers(1, 99999), min_size=1, max_size=5, unique=True))
    lines = []
    for number in numbers:
        quantity = draw(st.none() | _decimal(6, 10))
        value = draw(st.none() | _decimal(2, 12))
        lines.append(
            LicenceLine(
                line_number=number,
                **dict(
                    zip(
                        ("control_list", "control_list_entry"),
                        draw(st.sampled_from(_ENTRIES)),
                        strict=True,
                    )
                ),
                description=draw(_text(200)),
                cn_code=draw(st.none() | st.from_regex(r"[0-9]{8}", fullmatch=True)),
                quantity=quantity,
                unit=draw(st.sampled_from(["NAR", "KGM", "C62", "KGM#G"]))
                if quantity is not None
                else draw(st.none() | st.just("LTR")),
                value=value,
                currency=draw(st.sampled_from(["EUR", "USD", "SEK"]))
                if value is not None
                else draw(st.none() | st.just("EUR")),
                destinations=tuple(draw(st.lists(_COUNTRIES, max_size=4))),
                consignee=draw(st.none() | _PARTIES),
                end_user=draw(st.none() | _PARTIES),
            )
        )
    return tuple(lines)


@st.composite
def _licences(draw) -> Licence:
    kind = draw(st.sampled_from(list(LicenceType)))
    general = {
        LicenceType.UNION_GENERAL: draw(st.sampled_from([f"EU00{n}" for n in range(1, 9)])),
        LicenceType.NATIONAL_GENERAL: draw(
            st.sampled_from(["DK001", "SE12", "OGEL-CRYP", "X.1/2"])
        ),
    }.get(kind)
    valid_from = draw(st.dates(date(2021, 9, 9), date(2030, 12, 31)))
    return Licence(
        number=draw(st.from_regex(r"[A-Z]{2}[A-Z0-9/ .\-]{0,60}[0-9]", fullmatch=True)),
        type=kind,
        issuing_member_state=draw(st.sampled_from(["DE", "FR", "GR", "LV", "RO", "SI", "GB"])),
        issuing_authority=draw(_text(100)),
        holder_name=draw(_text(100)),
        holder_eori=draw(st.from_regex(r"[A-Z]{2}[A-Z0-9]{1,15}", fullmatch=True)),
        valid_from=valid_from,
        valid_to=draw(st.none() | st.dates(valid_from, date(2032, 12, 31))),
        lines=draw(_lines()),
        status=draw(st.sampled_from(list(LicenceStatus))),
        version=draw(st.integers(1, 10**6)),
        general_authorisation=general,
    )


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_licences())
def test_any_licence_the_contract_allows_round_trips_exactly(licence):
    xml = build_certificate(licence)
    assert certificate_problems(xml) == []
    assert _c14n(xml) == xml
    assert build_certificate(licence) == xml
    assert parse_certificate(xml) == licence

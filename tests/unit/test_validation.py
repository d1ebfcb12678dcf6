import json
from dataclasses import replace
from datetime import date
from decimal import Decimal

from bridge.core.model import (
    Licence,
    LicenceLine,
    LicenceType,
    Party,
    licence_from_dict,
    licence_to_dict,
)
from bridge.core.validation import licence_problems

SOURCE = "bafa_ausfuhr_2025-11-27.csv line 2"


def _line(**changes) -> LicenceLine:
    base = LicenceLine(
        line_number=1,
        control_list_entry="6A003.b.4.b",
        description="Wärmebildkameras, ungekühlt",
        cn_code="85258900",
        quantity=Decimal("120"),
        unit="NAR",
        value=Decimal("1250000.00"),
        currency="EUR",
        destinations=("IN",),
        consignee=Party("Bharat Optronics Pvt. Ltd.", "IN"),
    )
    return replace(base, **changes)


def _licence(**changes) -> Licence:
    base = Licence(
        number="EA-2025-004711",
        type=LicenceType.INDIVIDUAL,
        issuing_member_state="DE",
        issuing_authority="BAFA",
        holder_name="Müller Präzisionsoptik GmbH",
        holder_eori="DE4711234",
        valid_from=date(2025, 1, 15),
        valid_to=date(2027, 1, 14),
        lines=(_line(),),
    )
    return replace(base, **changes)


def _found(licence: Licence) -> set[tuple[str, str]]:
    return {(problem.path, problem.code) for problem in licence_problems(licence, SOURCE)}


def test_a_sound_individual_licence_has_no_problems():
    assert licence_problems(_licence(), SOURCE) == []


def test_every_problem_of_a_licence_is_reported_at_once_with_its_path():
    broken = _licence(
        holder_eori="EL123456789",
        issuing_member_state="XX",
        valid_from=date(2026, 6, 1),
        valid_to=date(2025, 6, 1),
        lines=(
            _line(quantity=Decimal("-5"), unit="KILO", currency="GBX", destinations=("SD", "EL")),
            _line(
                line_number=1,
                control_list_entry="5X002",
                cn_code="8517",
                quantity=Decimal("1.1234567"),
                unit=None,
                value=Decimal("10.005"),
                currency=None,
                consignee=Party("Hellenic Automation S.A.", "QQ"),
            ),
            _line(line_number=3, quantity=None, value=None),
        ),
    )
    problems = licence_problems(broken, SOURCE)
    assert {(p.path, p.code) for p in problems} == {
        ("issuing_member_state", "country"),
        ("holder_eori", "eori"),
        ("valid_to", "dates-reversed"),
        ("lines[0].quantity", "not-positive"),
        ("lines[0].unit", "unit"),
        ("lines[0].currency", "currency"),
        ("lines[0].destinations[1]", "country"),
        ("lines[1].line_number", "duplicate-line"),
        ("lines[1].control_list_entry", "cle"),
        ("lines[1].cn_code", "cn"),
        ("lines[1].quantity", "too-many-decimals"),
        ("lines[1].unit", "unit-missing"),
        ("lines[1].value", "too-many-decimals"),
        ("lines[1].currency", "currency-missing"),
        ("lines[1].consignee.country", "country"),
        ("lines[2]", "no-ceiling"),
    }
    assert all(p.source == SOURCE for p in problems)
    by_path = {p.path: p for p in problems}
    assert "GR" in by_path["lines[0].destinations[1]"].reason  # EL is the VAT prefix for Greece
    assert by_path["lines[0].quantity"].value == "-5"
    assert "also used by lines[0]" in by_path["lines[1].line_number"].reason


def test_trailing_zeros_are_not_extra_decimals_but_a_seventh_decimal_is():
    ok = _licence(lines=(_line(quantity=Decimal("12.7500000000"), value=Decimal("48300.500")),))
    assert licence_problems(ok, SOURCE) == []
    assert _found(_licence(lines=(_line(quantity=Decimal("0.0000001")),))) == {
        ("lines[0].quantity", "too-many-decimals")
    }


def test_amounts_beyond_what_customs_and_the_ledger_hold_are_too_large():
    found = _found(_licence(lines=(_line(quantity=Decimal("12345678901"), value=Decimal("1e13")),)))
    assert found == {("lines[0].quantity", "too-large"), ("lines[0].value", "too-large")}


def test_a_licence_needs_at_least_one_line():
    assert _found(_licence(lines=())) == {("lines", "no-lines")}


def test_union_general_authorisations_must_name_eu001_to_eu008():
    general_line = _line(quantity=None, unit=None, value=None, currency=None)
    union = _licence(type=LicenceType.UNION_GENERAL, lines=(general_line,))
    assert _found(replace(union, general_authorisation="EU001")) == set()
    assert _found(replace(union, general_authorisation="EU009")) == {
        ("general_authorisation", "general-authorisation")
    }
    assert _found(union) == {("general_authorisation", "general-authorisation")}
    national = replace(union, type=LicenceType.NATIONAL_GENERAL, general_authorisation="EU003")
    assert _found(national) == {("general_authorisation", "general-authorisation")}


def test_general_authorisations_need_no_ceiling_but_individual_and_global_lines_do():
    no_ceiling = (_line(quantity=None, unit=None, value=None, currency=None),)
    national = _licence(type=LicenceType.NATIONAL_GENERAL, general_authorisation="AGG16")
    assert _found(replace(national, lines=no_ceiling)) == set()
    assert _found(_licence(type=LicenceType.GLOBAL, lines=no_ceiling)) == {
        ("lines[0]", "no-ceiling")
    }
    value_only = (_line(quantity=None, unit=None),)
    assert _found(_licence(lines=value_only)) == set()


def test_a_cle_not_in_the_annex_spelling_is_reported():
    found = licence_problems(_licence(lines=(_line(control_list_entry="5A002a1"),)), SOURCE)
    assert [(p.path, p.code) for p in found] == [("lines[0].control_list_entry", "cle")]
    assert "5A002.a.1" in found[0].reason


def test_fields_that_could_not_be_read_are_reported_missing():
    partial = _licence(number=None, type=None, valid_from=None, holder_eori=None)
    partial = replace(partial, lines=(_line(control_list_entry=None, description=""),))
    assert _found(partial) == {
        ("number", "missing"),
        ("type", "missing"),
        ("valid_from", "missing"),
        ("holder_eori", "missing"),
        ("lines[0].control_list_entry", "missing"),
        ("lines[0].description", "missing"),
    }


def test_line_numbers_are_whole_numbers_up_to_five_digits():
    assert _found(_licence(lines=(_line(line_number=0),))) == {
        ("lines[0].line_number", "line-number")
    }
    assert _found(_licence(lines=(_line(line_number=100000),))) == {
        ("lines[0].line_number", "line-number")
    }


def test_text_a_certificate_cannot_carry_is_reported_with_its_field():
    """NUL, ESC and lone surrogates pass every length check but no XML 1.0 document (the
    certificate) can carry them: such a licence could never reach customs."""
    broken = _licence(
        holder_name="Müller\x00 GmbH",
        lines=(
            _line(description="Kamera\x1b"),
            _line(line_number=2, consignee=Party("Bharat", "IN", "Road \ud800 1")),
        ),
    )
    found = _found(broken)
    assert {
        ("holder_name", "not-xml-text"),
        ("lines[0].description", "not-xml-text"),
        ("lines[1].consignee.address", "not-xml-text"),
    } <= found
    assert licence_problems(_licence(holder_name="Müller\tGmbH\n"), SOURCE) == []


def test_a_licence_number_with_a_tab_or_line_break_inside_is_refused():
    for number in ("EA-2025\t4711", "EA-2025\n4711", "EA-2025\r4711"):
        assert ("number", "reference") in _found(_licence(number=number))
    assert ("number", "reference") in _found(_licence(number=" EA-2025-004711"))


def test_a_general_authorisation_must_have_the_certificate_s_shape():
    for general in ("AGG16,", "AGG 16", "0", "-DK002", "dk002"):
        found = _found(_licence(type=LicenceType.NATIONAL_GENERAL, general_authorisation=general))
        assert ("general_authorisation", "general-authorisation") in found, general
    for general in ("DK002", "OGEL-CRYP", "AGG/16"):
        licence = _licence(type=LicenceType.NATIONAL_GENERAL, general_authorisation=general)
        assert "general_authorisation" not in {path for path, _ in _found(licence)}, general


def test_a_version_must_fit_the_ledger():
    assert ("version", "invalid") in _found(_licence(version=2**31))
    assert ("version", "invalid") in _found(_licence(version=10**20))
    assert licence_problems(_licence(version=2**31 - 1), SOURCE) == []


def test_a_line_is_checked_against_its_own_control_list():
    military = _line(control_list="eu-military", control_list_entry="ML8.a.1")
    assert licence_problems(_licence(lines=(military,)), SOURCE) == []
    assert _found(_licence(lines=(replace(military, control_list_entry="ML8a1"),))) == {
        ("lines[0].control_list_entry", "cle")  # stored in the list's own spelling
    }
    # an Annex I line keeps refusing military entries, as before
    assert _found(_licence(lines=(_line(control_list_entry="ML8.a.1"),))) == {
        ("lines[0].control_list_entry", "cle")
    }
    unknown = _licence(lines=(_line(control_list="wassenaar-munitions"),))
    (problem,) = licence_problems(unknown, SOURCE)
    assert (problem.path, problem.code) == ("lines[0].control_list", "control-list")
    assert "eu-dual-use, eu-military" in problem.reason


def test_the_control_list_of_a_line_is_kept_in_the_licence_document():
    military = _line(control_list="eu-military", control_list_entry="ML1.a")
    licence = _licence(lines=(_line(), military))
    document = licence_to_dict(licence)
    assert "control_list" not in document["lines"][0]  # Annex I: the document as before
    assert document["lines"][1]["control_list"] == "eu-military"
    back = licence_from_dict(json.loads(json.dumps(document)))
    assert [line.control_list for line in back.lines] == ["eu-dual-use", "eu-military"]
    assert back == licence

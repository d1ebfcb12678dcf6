"""Units: the explicit conversion table between EU tariff units and UN/ECE Rec 20 codes. Mass
to mass and volume to volume convert exactly in Decimal; anything else is refused with a
reason, never guessed; and the write-off rules use exactly this table."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bridge.core.declaration import Declaration, DocumentUse, GoodsItem
from bridge.core.envelope import DeclarationEvent, Envelope, EventKind
from bridge.core.model import LicenceLine
from bridge.core.units import (
    ALIASES,
    UnitError,
    UnitPrecisionError,
    convert,
    convert_exact,
    from_alias,
    known_units,
    parse_unit,
    scale_exact,
)
from bridge.core.writeoff.batch import decide
from bridge.core.writeoff.decision import LedgerSnapshot
from tests.fixtures_mqtt import uk_licence

EXPORTER = "GB896458895015"
AT = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)


@pytest.mark.parametrize(
    ("quantity", "source", "target", "expected"),
    [
        ("1500", "GRM", "KGM", "1.5"),
        ("1.5", "KGM", "GRM", "1500"),
        ("1.000001", "KGM", "GRM", "1000.001"),
        ("0.25", "TNE", "KGM", "250"),
        ("2.5", "DTN", "KGM", "250"),
        ("1", "MGM", "TNE", "0.000000001"),
        ("123456789012345.123456", "TNE", "MGM", "123456789012345123456000"),
        ("750", "MLT", "LTR", "0.75"),
        ("3", "MTQ", "LTR", "3000"),
        ("1.2", "HLT", "LTR", "120"),
        ("33", "CLT", "MLT", "330"),
        ("2500", "MMT", "MTR", "2.5"),
        ("12", "CMK", "MTK", "0.0012"),
        ("7", "NAR", "C62", "7"),
        ("7", "H87", "NAR", "7"),
    ],
)
def test_same_dimension_converts_exactly_in_decimal(quantity, source, target, expected):
    converted = convert(Decimal(quantity), source, target)
    assert isinstance(converted, Decimal)
    assert converted == Decimal(expected)
    assert f"{converted:f}" == expected  # no trailing zeros, no exponent above one


@given(
    st.decimals(
        min_value=Decimal("0.000001"),
        max_value=Decimal("9999999999"),
        places=6,
        allow_nan=False,
        allow_infinity=False,
    ),
    st.sampled_from([("GRM", "KGM"), ("KGM", "TNE"), ("MGM", "GRM"), ("MLT", "LTR")]),
)
def test_a_conversion_there_and_back_is_the_identity(quantity, units):
    there = convert(quantity, *units)
    assert convert(there, units[1], units[0]) == quantity


@pytest.mark.parametrize(
    ("source", "target", "said"),
    [
        ("KGM", "NAR", "(mass) does not convert to NAR (items)"),
        ("NAR", "GRM", "(items) does not convert to GRM (mass)"),
        ("LTR", "KGM", "(volume) does not convert to KGM (mass)"),
        ("MTR", "MTK", "(length) does not convert to MTK (area)"),
        ("NPR", "NAR", "(pairs) does not convert to NAR (items)"),
        ("GFI", "GRM", "(fissile) does not convert to GRM (mass)"),
        ("KGM#G", "KGM#N", "gross and net do not convert"),
        ("GRM#N", "TNE#G", "gross and net do not convert"),
    ],
)
def test_other_dimensions_and_gross_against_net_are_refused_with_a_reason(source, target, said):
    with pytest.raises(UnitError, match=said.replace("(", r"\(").replace(")", r"\)")):
        convert(Decimal(1), source, target)


def test_a_qualifier_on_one_side_only_converts():
    assert convert(Decimal("102.00"), "KGM#G", "KGM") == 102
    assert convert(Decimal(5), "GRM", "KGM#N") == Decimal("0.005")
    assert parse_unit("kgm#g").code == "KGM#G"


@pytest.mark.parametrize(
    ("code", "said"),
    [
        ("XYZ", "unknown unit 'XYZ'"),
        ("KGM#X", "unknown unit qualifier 'X'"),
        ("KGM#N#", "unknown unit qualifier 'N#'"),
        ("KGM#", "a qualifier after '#'"),
        ("", "unknown unit ''"),
    ],
)
def test_unknown_units_and_qualifiers_are_refused(code, said):
    with pytest.raises(UnitError, match=said):
        parse_unit(code)


def test_the_table_has_eu_tariff_and_rec_20_codes():
    assert {"NAR", "C62", "H87", "GRM", "KGM", "TNE", "MLT", "LTR", "MTR", "MTK"} <= set(
        known_units()
    )


def _write_off(quantity: str, unit: str, line: LicenceLine):
    licence = uk_licence("GB-UNITS-1", EXPORTER, line)
    document = DocumentUse("X060", licence.number, quantity=Decimal(quantity), unit=unit)
    declaration = Declaration(
        "9", "EX", "LRN", None, EXPORTER, "GB", (GoodsItem(1, "28121000", "x", "US", (document,)),)
    )
    envelope = Envelope(
        "units-1", "26GBUNITSAAAAAAAA1", EventKind.RELEASED, AT, 1, None, "wco-dec-dms-2", "<x/>"
    )
    event = DeclarationEvent(envelope, declaration, b"{}")
    return decide([event], LedgerSnapshot(licences={licence.number: licence}))


def test_kgm_against_a_grm_line_is_written_off_exactly_in_grams():
    grams = LicenceLine(1, "1C350.a", "precursor", "28121000", Decimal("5000"), "GRM")
    decision = _write_off("1.234567", "KGM", grams)
    (move,) = decision.movements
    assert (move.quantity, move.declared_quantity, move.declared_unit) == (
        Decimal("1234.567"),
        Decimal("1.234567"),
        "KGM",
    )
    (result,) = decision.outcomes[0].documents
    assert result.remaining.quantity == Decimal("3765.433") and result.remaining.unit == "GRM"


def test_kgm_against_a_nar_line_is_refused_and_nothing_written_off():
    items = LicenceLine(1, "1C350.a", "cylinders", "28121000", Decimal("10"), "NAR")
    decision = _write_off("1", "KGM", items)
    assert decision.movements == []
    (refusal,) = decision.refusals
    assert refusal.code == "unit-mismatch"
    assert "KGM (mass) does not convert to NAR (items)" in refusal.reason


@pytest.mark.parametrize(
    ("quantity", "source", "target", "expected"),
    [
        ("250", "MC", "MGM", "0.25"),
        ("250", "MC", "GRM", "0.00025"),
        ("2500000", "MC", "KGM", "0.0025"),
        ("1.5", "MGM", "MC", "1500"),
        ("12.5", "4G", "MLT", "0.0125"),
        ("3", "MLT", "4G", "3000"),
        ("1", "CMQ", "MLT", "1"),
        ("1", "MMQ", "4G", "1"),
        ("2", "DMQ", "LTR", "2"),
        ("5", "DLT", "CLT", "50"),
        ("40", "4H", "MMT", "0.04"),
        ("3", "MMK", "CMK", "0.03"),
        ("2", "MWH", "KWH", "2000"),
        ("7", "DG", "GRM", "0.7"),
        ("3", "HGM", "GRM", "300"),
    ],
)
def test_the_micro_units_of_rec_20_convert_exactly(quantity, source, target, expected):
    assert f"{convert_exact(Decimal(quantity), source, target):f}" == expected


@pytest.mark.parametrize(
    ("quantity", "source", "target", "needed"),
    [
        ("250", "MC", "KGM", 8),
        ("1", "MC", "KGM", 9),
        ("0.5", "4G", "LTR", 7),
        ("3", "4H", "KMT", 9),
    ],
)
def test_a_conversion_finer_than_the_ledgers_six_decimals_is_refused_not_rounded(
    quantity, source, target, needed
):
    with pytest.raises(UnitPrecisionError) as refused:
        convert_exact(Decimal(quantity), source, target)
    said = str(refused.value)
    assert f"needs {needed} decimals; the ledger keeps 6" in said
    assert "never rounded into a coarser unit" in said
    # The figures, for the write-off rules' own wording (code unit-precision).
    error = refused.value
    assert (error.from_code, error.to_code, error.needed, error.decimals) == (
        source,
        target,
        needed,
        6,
    )
    assert error.converted == convert(Decimal(quantity), source, target)


def test_units_that_do_not_convert_are_not_a_precision_problem():
    with pytest.raises(UnitError) as refused:
        convert_exact(Decimal(1), "MC", "LTR")
    assert not isinstance(refused.value, UnitPrecisionError)


def test_micro_units_are_known_by_their_rec_20_codes_and_names():
    assert {code: parse_unit(code).unit.name for code in ("MC", "4G", "4H", "MMQ")} == {
        "MC": "microgram",
        "4G": "microlitre",
        "4H": "micrometre",
        "MMQ": "cubic millimetre",
    }
    assert {"MC", "4G", "MGM", "MLT"} <= set(known_units())


def test_scaling_is_exact_or_refused():
    assert scale_exact(Decimal("2500.5"), Decimal(1000)) == Decimal(2500500)
    assert scale_exact(Decimal("12.345"), Decimal("0.001")) == Decimal("0.012345")
    with pytest.raises(UnitError, match="cannot be computed exactly"):
        scale_exact(Decimal("1." + "1" * 60), Decimal("1." + "3" * 60))


# What an officer types: everyday symbols for the Rec 20 codes ---------------------------------


@pytest.mark.parametrize(
    ("typed", "code"),
    [
        ("kg", "KGM"),
        ("KG", "KGM"),
        (" g ", "GRM"),
        ("t", "TNE"),
        ("l", "LTR"),
        ("ml", "MLT"),
        ("pcs", "H87"),
        ("m", "MTR"),
        ("m2", "MTK"),
        ("m3", "MTQ"),
        ("µg", "MC"),
        ("μg", "MC"),  # the Greek mu some keyboards give
        ("kg#g", "KGM#G"),
        ("KGM", "KGM"),
        ("KGM#N", "KGM#N"),
    ],
)
def test_an_alias_is_the_rec_20_code_it_stands_for(typed, code):
    assert from_alias(typed) == code
    assert parse_unit(from_alias(typed)).code == code


def test_every_alias_names_a_known_unit_and_converts_like_it():
    for alias, code in ALIASES.items():
        assert parse_unit(code).code == code, alias
    assert convert(Decimal(1500), from_alias("g"), from_alias("kg")) == Decimal("1.5")
    assert convert(Decimal(2), from_alias("t"), "KGM") == 2000


def test_text_that_is_no_alias_comes_back_for_parse_unit_to_refuse_naming_the_accepted():
    assert from_alias("stone") == "stone"
    with pytest.raises(UnitError) as refused:
        parse_unit(from_alias("stone"))
    message = str(refused.value)
    assert "unknown unit 'stone'" in message
    assert "KGM" in message and "kg=KGM" in message and "pcs=H87" in message


def test_an_alias_given_where_a_code_is_required_is_refused_with_its_code():
    with pytest.raises(UnitError, match="unknown unit 'kg': the code for 'kg' is KGM"):
        parse_unit("kg")

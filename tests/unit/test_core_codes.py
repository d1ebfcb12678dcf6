from decimal import Decimal

import pytest

from bridge.core.codes import cle_problem, country_problem, eori_problem, normalise_cle
from bridge.core.units import UnitError, convert


@pytest.mark.parametrize(
    ("raw", "normal"),
    [
        ("5A002.a.1", "5A002.a.1"),
        ("5A002a1", "5A002.a.1"),
        ("5a002A1", "5A002.a.1"),
        ("3A001b2a", "3A001.b.2.a"),
        ("1C010", "1C010"),
        ("6A008.j.1", "6A008.j.1"),
    ],
)
def test_both_cle_spellings_normalise_to_the_annex_form(raw, normal):
    assert normalise_cle(raw) == normal


@pytest.mark.parametrize("raw", ["5F002", "X5A002", "5A02", "5A002aa", "5A002.a..1x!", ""])
def test_malformed_cle_is_refused_with_a_reason(raw):
    assert normalise_cle(raw) is None
    assert "control list entry" in cle_problem(raw)


def test_eori_prefix_must_be_a_customs_country():
    assert eori_problem("GB896458895015") is None
    assert eori_problem("XI123456789000") is None
    assert "GR" in eori_problem("EL123456789")
    assert eori_problem("GB") is not None
    assert eori_problem("GB1234567890123456") is not None


def test_country_codes_are_iso_3166():
    assert country_problem("SD") is None
    assert "not an ISO" in country_problem("QQ")


def test_mass_converts_exactly_and_items_do_not_become_kilograms():
    assert convert(Decimal("102.00"), "KGM#G", "GRM") == Decimal(102000)
    assert convert(Decimal("1500"), "GRM", "KGM") == Decimal("1.5")
    assert convert(Decimal("2"), "TNE", "KGM#G") == Decimal(2000)
    assert convert(Decimal("3"), "NAR", "C62") == Decimal(3)
    with pytest.raises(UnitError, match="does not convert"):
        convert(Decimal(1), "KGM", "NAR")
    with pytest.raises(UnitError, match="gross and net"):
        convert(Decimal(1), "KGM#G", "KGM#N")


def test_a_long_control_list_entry_is_refused_at_once():
    """The pattern once backtracked exponentially on a long run of digits that does not match
    (one CSV record held the ingest for minutes); now the check is linear and bounded."""
    for raw in ("1C350" + "4" * 40 + "\u00e9", "1C350" + "4" * 100_000 + "x", "5A002" + "a1" * 40):
        assert normalise_cle(raw) is None
    assert "at most 40 characters" in cle_problem("5A002" + "a1" * 40)
    assert normalise_cle("1C350" + "4" * 40) == "1C350." + "4" * 40  # validation says too long

"""The fast paths of the certificate pipeline against the paths they replace, over the testkit's
generated corpus, the national-file samples and the hostile corpus: the compiled mapping
(remembered conversions, indexed XML children) gives the same records and rejects as the
generic reading, and the certificate written in one go and checked from one parse gives the
same bytes and the same problems as the writer and certificate_problems."""

from __future__ import annotations

from dataclasses import FrozenInstanceError, fields, replace
from decimal import Decimal
from pathlib import Path

import pytest

from bridge.core import validation
from bridge.core.certificate import (
    _write_certificate,
    build_certificate,
    certificate_problems,
    certified,
)
from bridge.core.errors import Rejected
from bridge.core.mapping import UnreadableFile, mapping_for, translate
from bridge.core.mapping.values import (
    Conventions,
    FieldError,
    canonical_money,
    canonical_quantity,
    decimal_converter,
    make_converter,
)
from bridge.core.model import (
    Licence,
    LicenceLine,
    LicenceType,
    Party,
    assemble_licence,
    assemble_line,
    assemble_party,
)
from bridge.core.paths import MAPPINGS_DIR
from bridge.services.ingest import load_mappings
from bridge.testkit.licences import licences
from bridge.testkit.national_files import national_files
from bridge.testkit.sample_licences import sample_licences
from tests.hostile.corpus import (
    FILE_NAMES,
    Fate,
    csv_file,
    hostile_licences,
    json_file,
    national_file_cases,
    national_record_cases,
    valid_national_records,
    xml_file,
)

MAPPINGS = load_mappings()


def _outcome(mapping, data: bytes, name: str, compiled: bool):
    try:
        records = list(translate(mapping, data, name, compiled=compiled))
    except UnreadableFile as error:
        return ("unreadable", type(error).__name__, str(error))
    return [(r.source, r.licence, r.problems, r.number, r.accepted, r.text) for r in records]


def _same_both_ways(data: bytes, name: str) -> list:
    mapping = mapping_for(name, MAPPINGS)
    interpreted = _outcome(mapping, data, name, compiled=False)
    # Twice: the second compiled pass reads with every remembered conversion warm.
    assert _outcome(mapping, data, name, compiled=True) == interpreted
    assert _outcome(mapping, data, name, compiled=True) == interpreted
    return interpreted


def _hostile_files() -> dict[str, bytes]:
    by_format: dict[str, list] = {"csv": [], "json": [], "xml": []}
    for case in national_record_cases():
        by_format[case.format].append(case.record)
    files = {}
    for format_, records in by_format.items():
        neighbours = [record for _, record in valid_national_records(format_, 3, "diff")]
        every = neighbours[:1] + records + neighbours[1:]
        build = {"csv": csv_file, "json": json_file, "xml": xml_file}[format_]
        files[FILE_NAMES[format_].format(tag="differential")] = build(every)
    return files


def test_the_compiled_mapping_reads_the_generated_corpus_as_the_generic_reading_does():
    for seed in (3, 21):
        for name, data in national_files(licences(400, seed=seed)).items():
            outcome = _same_both_ways(data, name)
            assert outcome and all(accepted for *_, accepted, _ in outcome)


def test_the_compiled_mapping_reads_the_samples_as_the_generic_reading_does():
    samples = sorted((MAPPINGS_DIR / "samples").iterdir())
    assert samples
    for path in samples:
        assert _same_both_ways(path.read_bytes(), path.name)


def test_the_compiled_mapping_rejects_every_hostile_record_as_the_generic_reading_does():
    for name, data in _hostile_files().items():
        outcome = _same_both_ways(data, name)
        rejected = [problems for _, _, problems, _, accepted, _ in outcome if not accepted]
        assert len(rejected) > 10, name  # the hostile records are there, and refused
        assert all(rejected)


def test_the_compiled_mapping_refuses_every_unreadable_file_as_the_generic_reading_does(
    tmp_path: Path,
):
    cases = national_file_cases(tmp_path / "canary", "http://127.0.0.1:9/")
    assert cases
    for case in cases:
        assert case.fate is Fate.UNREADABLE
        name = FILE_NAMES[case.format].format(tag="unreadable")
        outcome = _same_both_ways(case.data, name)
        assert outcome[0] == "unreadable", case.name


def _certificate_outcome(licence):
    try:
        xml = build_certificate(licence)
    except Rejected as refused:
        return ("rejected", refused.problems)
    return (xml, certificate_problems(xml, source="diff"))


def _written(licence):
    try:
        xml = _write_certificate(licence)
    except Rejected as refused:
        return ("rejected", refused.problems)
    return (xml, certificate_problems(xml, source="diff"))


def _certified(licence):
    try:
        return certified(licence, source="diff")
    except Rejected as refused:
        return ("rejected", refused.problems)


def _awkward_licences() -> list:
    """Licences whose text needs escaping, cannot be carried at all, or breaks the contract in
    the ways only certificate_problems sees: each must take the same path as before."""
    base = next(licence for licence in licences(50, seed=9) if licence.lines)
    line = base.lines[0]
    with_line = lambda **changes: replace(base, lines=(replace(line, **changes),))  # noqa: E731
    return [
        replace(base, holder_name='Smith & "Sons" <GmbH>'),
        replace(base, issuing_authority="tab\there"),
        replace(base, number="CR\rLF\n"),
        replace(base, holder_name="nul\x00byte"),
        replace(base, holder_eori="\ud800"),
        replace(base, type=LicenceType.UNION_GENERAL, general_authorisation=None),
        replace(base, type=LicenceType.UNION_GENERAL, general_authorisation="EU003"),
        replace(base, type=LicenceType.INDIVIDUAL, general_authorisation="EU003"),
        replace(base, status="not-a-status", version=0),
        replace(base, valid_to=None, general_authorisation="AB-1"),
        with_line(description="a > b", cn_code=None),
        with_line(description='say "hi"\tthen\nstop', control_list="eu>military"),
        with_line(control_list="eu-military", control_list_entry="ML1.a"),
        with_line(control_list="eu-military", control_list_entry='ML1"a'),
        with_line(control_list_entry="5a002a"),
        with_line(quantity=Decimal("1E+3"), unit=None, value=None, currency="EUR"),
        with_line(quantity=None, unit="KGM", value=Decimal("0.5"), currency=None),
        with_line(consignee=Party("C & D", None, "Street\n1"), end_user=Party("E", "FR")),
        with_line(destinations=("FR", "D\x07E")),
        replace(
            base,
            type=LicenceType.GLOBAL,
            lines=(),
            control_list_entries=("5A002.a", "5<"),
            destinations=("FR",),
            quantity=Decimal("10"),
            unit="KGM",
            value=None,
            currency="EUR",
        ),
        replace(base, lines=(), control_list_entries=(), destinations=()),
    ]


def _certificate_corpus() -> list:
    found = _awkward_licences() + list(sample_licences()) + list(hostile_licences())
    found += list(licences(600, seed=5))
    for name, data in _hostile_files().items():
        for record in translate(mapping_for(name, MAPPINGS), data, name):
            if record.licence is not None:
                found.append(record.licence)
    return found


@pytest.mark.parametrize("licence", _certificate_corpus(), ids=lambda licence: repr(licence.number))
def test_a_certificate_written_in_one_go_is_the_writers_with_the_same_verdict(licence):
    expected = _written(licence)
    assert _certificate_outcome(licence) == expected
    assert _certified(licence) == expected


_AMOUNTS = [
    *[
        "0",
        "0.0",
        "0.00",
        "0.000",
        "-0",
        "-0.0",
        "+0.50",
        "00.50",
        "0.05",
        "1",
        "10",
        "100",
        "1500",
        "1500.0",
        "1500.00",
        "1500.000",
        "12.75",
        "12.750",
        "12.7500",
        "0.1",
        "0.10",
        "1.01",
        "10.10",
        "10.01",
        "007",
        "007.70",
        "-5",
        "-5.50",
        "+12.3",
    ],
    *[
        "1.500",
        "1.500,5",
        "1.500,50",
        "1.500,00",
        "1.234.567,89",
        "1,5",
        "1,50",
        "1,00",
        "0,0",
        "12,750",
        "1.000",
    ],
    *[
        "1,500",
        "1,500.5",
        "1,234,567.89",
        "1e3",
        "1E+2",
        "NaN",
        "abc",
        "1..2",
        ",5",
        "5,",
        "12.345.6",
        "1.2.3",
    ],
]


@pytest.mark.parametrize("kind", ["quantity", "money"])
@pytest.mark.parametrize("decimal_comma", [False, True])
def test_an_amount_already_canonical_as_written_is_the_amount_canonicalised(kind, decimal_comma):
    """The converters return text that is already canonical without canonicalising it again:
    the same Decimal, to the digit and the exponent, and the same refusals."""
    conventions = Conventions(
        decimal_comma=decimal_comma, thousands_separator="." if decimal_comma else ","
    )
    convert = make_converter(kind, conventions)
    read = decimal_converter(conventions)
    canonical = canonical_quantity if kind == "quantity" else canonical_money
    checked = 0
    for text in _AMOUNTS:
        try:
            expected = canonical(read(text))
        except FieldError as error:
            with pytest.raises(FieldError) as refused:
                convert(text)
            assert refused.value.reason == error.reason
            continue
        found = convert(text)
        assert found.as_tuple() == expected.as_tuple(), text
        checked += 1
    assert checked > 15


# Validation's quick acceptance (`_plain_text`, `_plain_amount`, the country look-up first)
# against the full checks it lets a good value skip: the same problems for every licence.


def _validation_corpus() -> list:
    base = next(licence for licence in licences(50, seed=9) if licence.lines)
    line = base.lines[0]
    with_line = lambda **changes: replace(base, lines=(replace(line, **changes),))  # noqa: E731

    class Amount(Decimal):
        pass

    amounts = [
        Decimal(text)
        for text in (
            "0",
            "0.00",
            "-1",
            "1",
            "1.0000000",
            "1.1234567",
            "0.000001",
            "0.0000001",
            "1E+3",
            "1E+12",
            "9999999999.999999",
            "99999999999",
            "999999999999.99",
            "1000000000000",
            "12.50",
            "12.500",
            "12.501",
            "NaN",
            "Infinity",
            "-0",
        )
    ]
    amounts += [Amount("5"), Amount("1.1234567"), 5, 0, True, "12", None, 1.5]
    texts = [None, "", " ", "\t", "x" * 200, "x" * 201, "x" * 10_001, "nul\x00", "\ud800", "ok", 5]
    found = [with_line(quantity=a, value=a) for a in amounts]
    found += [with_line(quantity=a, unit=None, value=a, currency=None) for a in amounts[:5]]
    found += [with_line(description=t) for t in texts]
    countries = [t if isinstance(t, str) else None for t in texts]  # a country is read as text
    found += [
        with_line(consignee=Party(t, c, t), end_user=Party(t, "FR", None))
        for t, c in zip(texts, countries, strict=True)
    ]
    found += [with_line(destinations=d) for d in (("FR", None), ("XX", "fr"), (), ("FR", "DE"))]
    found += [replace(base, type=LicenceType.GLOBAL, lines=(), quantity=a) for a in amounts[:8]]
    found += _awkward_licences() + list(sample_licences()) + list(hostile_licences())
    found += list(licences(300, seed=4))
    return found


def test_validations_quick_acceptance_gives_the_full_checks_verdict(monkeypatch):
    corpus = _validation_corpus()
    quick = [validation.licence_problems(licence, "diff") for licence in corpus]
    monkeypatch.setattr(validation, "_plain_text", lambda value, limit: False)
    monkeypatch.setattr(validation, "_plain_amount", lambda amount, decimals, digits: False)
    full = [validation.licence_problems(licence, "diff") for licence in corpus]
    assert quick == full
    assert sum(1 for problems in full if problems) > 60  # the bad values are there, and found


def test_a_licence_assembled_field_by_field_is_the_one_its_constructor_builds():
    corpus = _validation_corpus()
    for licence in corpus:
        given = {f.name: getattr(licence, f.name) for f in fields(Licence) if f.name != "extra"}
        built, assembled = Licence(**given), assemble_licence(**given)
        assert type(assembled) is Licence
        assert [getattr(assembled, f.name) for f in fields(Licence)] == [
            getattr(built, f.name) for f in fields(Licence)
        ]
        assert assembled.extra == {} and assembled.extra is not assemble_licence(**given).extra
        assert hash(assembled) == hash(built)
        for line in licence.lines or ():
            values = [getattr(line, f.name) for f in fields(LicenceLine)]
            assert assemble_line(*values) == LicenceLine(*values)
            for party in (line.consignee, line.end_user):
                if party is not None:
                    parts = (party.name, party.country, party.address)
                    assert assemble_party(*parts) == Party(*parts)
    with pytest.raises(TypeError):
        assemble_line(1, "5A002.a")  # every field is given: no default is assumed
    with pytest.raises(FrozenInstanceError):
        assemble_party("a", None, None).name = "b"  # still frozen

"""Open licences (no goods lines: by category or destination, licence-level ceilings) and
contingency write-offs (goods released against a licence customs held no certificate of): the
pure rules, the dry run, validation and the certificate."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal

import pytest

from bridge.core.availability import AvailabilityRequest, check_availability
from bridge.core.certificate import build_certificate, certificate_problems, parse_certificate
from bridge.core.correlation import load_correlation
from bridge.core.envelope import DocumentStatus
from bridge.core.ledger_state import MovementKind
from bridge.core.model import (
    OPEN_LINE,
    LicenceStatus,
    LicenceType,
    licence_from_dict,
    licence_to_dict,
)
from bridge.core.validation import licence_problems
from bridge.core.writeoff.batch import decide
from bridge.core.writeoff.dry_run import availability
from tests.unit.test_licence_types import (
    DAY,
    OTHER,
    codes,
    doc,
    event,
    licence,
    snapshot,
)


def open_global(**changes):
    """A global licence for encryption (5A002, category 5 part 2 group D) to two countries, with
    a value ceiling of EUR 1,000 and usage recorded in kilograms."""
    made = licence(
        "DE-OPEN-5",
        LicenceType.GLOBAL,
        control_list_entries=("5A002", "5D"),
        destinations=("US", "CH"),
        value=Decimal("1000.00"),
        currency="EUR",
        unit="KGM",
    )
    return replace(made, lines=(), **changes)


def write_off(quantity="2", amount="400", destination="US", cn="85176200", **more):
    return event(
        doc("X070", "DE-OPEN-5", quantity, amount=amount, currency="EUR", **more),
        cn=cn,
        destination=destination,
    )


# ------------------------------------------------------------------------------ open licences


def test_an_open_licence_records_usage_on_the_licence_as_a_whole_and_refuses_over_its_ceiling():
    lic = open_global()
    decision = decide(
        [write_off(amount="400"), write_off(amount="500"), write_off(amount="200", line=7)],
        snapshot(lic),
    )
    assert [str(o.outcome) for o in decision.outcomes] == ["applied", "applied", "refused"]
    assert [(m.line_number, m.quantity, m.value) for m in decision.movements] == [
        (OPEN_LINE, Decimal(2), Decimal(400)),
        (OPEN_LINE, Decimal(2), Decimal(500)),
    ]
    first = decision.outcomes[0].documents[0]
    assert first.status is DocumentStatus.ACCEPTED and first.line_number == OPEN_LINE
    assert (first.remaining.value, first.remaining.currency) == (Decimal(600), "EUR")
    assert codes(decision) == ["over-use"]
    assert "200 EUR more exceeds the 100 EUR remaining on open licence DE-OPEN-5" in (
        decision.refusals[0].reason
    )
    (alert,) = decision.alerts
    assert (alert.kind, alert.line_number) == ("over-use", OPEN_LINE)


def test_an_open_licence_without_a_ceiling_records_usage_and_is_never_exhausted():
    lic = open_global(value=None, currency=None)
    decision = decide([write_off(quantity="5000", amount=None)], snapshot(lic))
    assert codes(decision) == [] and decision.status_changes == []
    (movement,) = decision.movements
    assert (movement.quantity, movement.kind) == (Decimal(5000), MovementKind.WRITE_OFF)
    assert decision.outcomes[0].documents[0].remaining is None


def test_an_open_general_authorisation_records_usage_without_a_ceiling():
    lic = replace(
        open_global(),
        number="DE-AGG-OPEN",
        type=LicenceType.NATIONAL_GENERAL,
        general_authorisation="AGG16",
        valid_to=None,
    )
    decision = decide(
        [event(doc("X071", lic.number, "3", amount="5000", currency="EUR"), cn="85176200")],
        snapshot(lic),
    )
    assert codes(decision) == []
    (movement,) = decision.movements
    assert (movement.kind, movement.value) == (MovementKind.RECORD, Decimal(5000))
    assert decision.outcomes[0].documents[0].status is DocumentStatus.RECORDED


def test_an_open_licence_checks_its_destinations_and_warns_on_goods_outside_its_categories():
    lic = open_global()
    elsewhere = decide([write_off(destination="CN")], snapshot(lic))
    assert codes(elsewhere) == ["destination-not-allowed"]
    assert "CN is not among open licence DE-OPEN-5's US, CH" in elsewhere.refusals[0].reason
    # 2812 is linked to 1C350 only: outside 5A002 and 5D. Indicative: a warning, no refusal.
    chemicals = decide([write_off(cn="28121000")], snapshot(lic), correlation=load_correlation())
    assert codes(chemicals) == []
    (warning,) = chemicals.outcomes[0].documents[0].warnings
    assert warning.code == "cn-cle-correlation" and "none of them within its scope" in (
        warning.reason
    )
    inside = decide([write_off(cn="85176200")], snapshot(lic), correlation=load_correlation())
    assert inside.outcomes[0].documents[0].warnings == ()


def test_check_availability_finds_an_open_licence_and_refuses_an_entry_outside_its_scope():
    lic = open_global()

    def ask(**more):
        request = AvailabilityRequest(reference=lic.number, amount=Decimal(10), currency="EUR")
        return check_availability(
            lic, {OPEN_LINE: (Decimal(0), Decimal(950))}, replace(request, **more), DAY
        )

    inside = ask(control_list_entry="5A002a1")
    assert inside.available and inside.line_number == OPEN_LINE
    assert inside.reason == "open licence DE-OPEN-5: 50 EUR remaining"
    assert (inside.remaining.value, inside.remaining.currency) == (Decimal(50), "EUR")
    by_category = ask(control_list_entry="5D002.c.1")
    assert by_category.available
    outside = ask(control_list_entry="1C350")
    assert (outside.available, outside.code) == (False, "outside-scope")
    assert "outside open licence DE-OPEN-5's scope (5A002, 5D)" in outside.reason
    over = ask(control_list_entry="5A002", amount=Decimal(100))
    assert (over.available, over.code) == (False, "over-use")


def test_only_global_licences_and_general_authorisations_may_be_open():
    assert licence_problems(open_global(), "test") == []
    individual = replace(open_global(), type=LicenceType.INDIVIDUAL)
    (problem,) = licence_problems(individual, "test")
    assert (problem.path, problem.code) == ("lines", "no-lines")
    assert "only global licences and general authorisations may be open" in problem.reason
    scoped_with_lines = replace(licence(), control_list_entries=("5A",), value=Decimal(1))
    found = {(p.path, p.code) for p in licence_problems(scoped_with_lines, "test")}
    assert found == {
        ("control_list_entries", "open-scope-with-lines"),
        ("value", "open-scope-with-lines"),
    }
    bad = replace(
        open_global(),
        control_list_entries=("5a002", "Cat 5", "ML1.a", "5"),
        destinations=("XX",),
        quantity=Decimal("1.1234567"),
        unit=None,
    )
    found = {(p.path, p.code) for p in licence_problems(bad, "test")}
    assert found == {
        ("control_list_entries[0]", "cle"),
        ("control_list_entries[1]", "cle"),
        ("destinations[0]", "country"),
        ("quantity", "too-many-decimals"),
        ("unit", "unit-missing"),
    }


def test_an_open_licence_round_trips_through_the_ledger_document_and_the_certificate():
    lic = open_global()
    assert licence_from_dict(licence_to_dict(lic)) == lic
    xml = build_certificate(lic)
    assert certificate_problems(xml) == []
    assert b"<OpenScope>" in xml and b"<Line>" not in xml
    assert parse_certificate(xml) == lic
    # A licence with lines keeps the document it had before open licences existed (its content
    # hash, which decides whether a record is a new version, is unchanged).
    assert "control_list_entries" not in licence_to_dict(licence())


# ----------------------------------------------------------------------- contingency write-offs

NEVER_ACKNOWLEDGED = frozenset()  # customs acknowledged no certificate of any licence


def test_a_release_against_a_licence_customs_never_held_is_recorded_as_contingency():
    lic = licence()
    decision = decide(
        [event(doc("X060", lic.number, "30"))], snapshot(lic, known_to_customs=NEVER_ACKNOWLEDGED)
    )
    assert codes(decision) == [] and decision.alerts == []
    (movement,) = decision.movements
    assert (movement.quantity, movement.contingency) == (Decimal(30), True)
    result = decision.outcomes[0].documents[0]
    assert result.status is DocumentStatus.ACCEPTED
    assert [w.code for w in result.warnings] == ["contingency"]
    # Before release, the same write-off is refused: customs must not release on it.
    before = availability(
        lic, number=lic.number, on=DAY, quantity=Decimal(30), unit="KGM", known_to_customs=False
    )
    assert (before.available, before.code) == (False, "not-known-to-customs")


def test_a_contingency_write_off_that_overdraws_or_was_not_allowed_is_recorded_and_alerted():
    lic = licence(status=LicenceStatus.SUSPENDED)
    decision = decide(
        [
            event(doc("X060", lic.number, "80")),
            event(doc("X060", lic.number, "50"), exporter=OTHER),
        ],
        snapshot(lic, known_to_customs=NEVER_ACKNOWLEDGED),
    )
    assert codes(decision) == []
    assert [(m.quantity, m.contingency) for m in decision.movements] == [
        (Decimal(80), True),
        (Decimal(50), True),
    ]
    kinds = [(a.kind, a.mrn) for a in decision.alerts]
    first, second = (o.mrn for o in decision.outcomes)
    assert kinds == [
        ("contingency-not-allowed", first),
        ("contingency-over-use", second),
        ("contingency-not-allowed", second),
    ]
    not_allowed, over, other_exporter = decision.alerts
    assert "licence DE-IND-1 is suspended" in not_allowed.message
    assert "50 KGM more exceeds the 20 KGM remaining" in over.message
    assert f"the exporter {OTHER} is not the holder" in other_exporter.message
    assert over.details["remaining_quantity"] == "-30"
    warnings = [w.code for w in decision.outcomes[1].documents[0].warnings]
    assert warnings == ["contingency", "licence-not-valid", "wrong-exporter", "over-use"]


@pytest.mark.parametrize(
    ("lic", "document", "code"),
    [
        (None, doc("X060", "DE-NOWHERE", "1"), "licence-unknown"),
        (licence(), doc("X060", "DE-IND-1", "1", line=9), "no-matching-line"),
        (licence(), doc("X060", "DE-IND-1", "1", unit="NAR"), "unit-mismatch"),
    ],
)
def test_a_contingency_write_off_that_cannot_be_counted_is_refused(lic, document, code):
    decision = decide(
        [event(document)],
        snapshot(*([lic] if lic else []), known_to_customs=NEVER_ACKNOWLEDGED),
    )
    assert code in codes(decision) and decision.movements == []


def test_a_licence_customs_hold_is_still_refused_over_its_ceiling():
    lic = licence()
    decision = decide(
        [event(doc("X060", lic.number, "80")), event(doc("X060", lic.number, "50"))],
        snapshot(lic, known_to_customs=frozenset({lic.number})),
    )
    assert codes(decision) == ["over-use"]
    assert [m.contingency for m in decision.movements] == [False]
    assert [a.kind for a in decision.alerts] == ["over-use"]


def test_an_open_licence_customs_never_held_takes_a_contingency_write_off_beyond_its_ceiling():
    lic = open_global()
    decision = decide(
        [write_off(amount="1200", destination="CN")],
        snapshot(lic, known_to_customs=NEVER_ACKNOWLEDGED),
    )
    (movement,) = decision.movements
    assert (movement.line_number, movement.value, movement.contingency) == (
        OPEN_LINE,
        Decimal(1200),
        True,
    )
    assert sorted(a.kind for a in decision.alerts) == [
        "contingency-not-allowed",
        "contingency-over-use",
    ]
    assert decision.status_changes[0].to_status is LicenceStatus.EXHAUSTED

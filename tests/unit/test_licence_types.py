"""Every licence type with its own rules, the document codes that name them, the checks before a
write-off, exhaustion, and the dry run customs can ask for (availability): the pure rules."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest

from bridge.core.correlation import load_correlation, parse_correlation
from bridge.core.declaration import Declaration, DocumentUse, GoodsItem
from bridge.core.envelope import DeclarationEvent, DocumentStatus, Envelope, EventKind
from bridge.core.ledger_state import MovementKind
from bridge.core.model import Licence, LicenceLine, LicenceStatus, LicenceType
from bridge.core.writeoff.batch import decide
from bridge.core.writeoff.checks import UNION_GENERAL_DESTINATIONS
from bridge.core.writeoff.decision import LedgerSnapshot
from bridge.core.writeoff.dry_run import availability

AT = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)
DAY = AT.date()
EXPORTER = "DE123456789012345"
OTHER = "DE999999999999999"


def licence(
    number="DE-IND-1",
    kind=LicenceType.INDIVIDUAL,
    *lines: LicenceLine,
    general_authorisation=None,
    **changes,
) -> Licence:
    made = Licence(
        number=number,
        type=kind,
        issuing_member_state="DE",
        issuing_authority="BAFA",
        holder_name="Exporter GmbH",
        holder_eori=EXPORTER,
        valid_from=date(2026, 1, 1),
        valid_to=date(2027, 12, 31),
        lines=lines or (kg(1, "28121000", "100"),),
        general_authorisation=general_authorisation,
    )
    return replace(made, **changes)


def kg(number, cn, quantity=None, *destinations, value=None, currency=None, cle="1C350.a"):
    return LicenceLine(
        number,
        cle,
        f"goods of CN {cn}",
        cn,
        None if quantity is None else Decimal(quantity),
        "KGM" if quantity is not None else None,
        None if value is None else Decimal(value),
        currency,
        tuple(destinations),
    )


def union(authorisation="EU001", *lines, **changes) -> Licence:
    return licence(
        f"REG-{authorisation}-{EXPORTER}",
        LicenceType.UNION_GENERAL,
        *(lines or (kg(1, "28121000"),)),
        general_authorisation=authorisation,
        valid_to=None,
        **changes,
    )


def national_general(**changes) -> Licence:
    return licence(
        "DE-AGG-12-REG-7",
        LicenceType.NATIONAL_GENERAL,
        kg(1, "28121000", "1"),  # a figure on a registration is no ceiling
        general_authorisation="AGG12",
        valid_to=None,
        **changes,
    )


_count = iter(range(1, 10**6))


def event(
    *documents: DocumentUse,
    cn="28121000",
    destination="US",
    exporter=EXPORTER,
    kind="released",
    version=1,
    mrn=None,
) -> DeclarationEvent:
    mrn = mrn or f"26DE{next(_count):014d}"
    item = GoodsItem(1, cn, "goods", destination, documents)
    declaration = Declaration("9", "EX", "LRN", None, exporter, "DE", (item,))
    envelope = Envelope(
        f"{mrn}-{kind}-v{version}",
        mrn,
        EventKind(kind),
        AT,
        version,
        None,
        "wco-dec-dms-2",
        "<Declaration/>",
    )
    return DeclarationEvent(envelope, declaration, b"{}")


def doc(code, ref, quantity=None, unit="KGM", amount=None, currency=None, line=None):
    return DocumentUse(
        code,
        ref,
        quantity=None if quantity is None else Decimal(quantity),
        unit=unit if quantity is not None else None,
        amount=None if amount is None else Decimal(amount),
        currency=currency,
        line_item_number=line,
    )


def snapshot(*licences: Licence, **more) -> LedgerSnapshot:
    return LedgerSnapshot(licences={x.number: x for x in licences}, **more)


def codes(decision) -> list[str]:
    return [r.code for r in decision.refusals]


def test_individual_licence_quantity_ceiling_refuses_over_use_whole_with_an_alert():
    lic = licence()
    decision = decide(
        [event(doc("X060", lic.number, "60")), event(doc("X060", lic.number, "50"))],
        snapshot(lic),
    )
    assert [m.quantity for m in decision.movements] == [60]
    assert codes(decision) == ["over-use"]
    second = decision.outcomes[1].documents[0]
    assert second.status is DocumentStatus.REFUSED
    assert second.refusals[0].code == "over-use" and "40 KGM remaining" in second.refusals[0].reason
    assert (second.remaining.quantity, second.remaining.unit) == (Decimal(40), "KGM")
    (alert,) = decision.alerts
    assert (alert.kind, alert.licence_number, alert.line_number) == ("over-use", lic.number, 1)
    assert alert.details["requested_quantity"] == "50"
    assert alert.details["remaining_quantity"] == "40"


def test_value_ceiling_and_both_ceilings_each_hold():
    value_only = licence(
        "DE-VAL", LicenceType.INDIVIDUAL, kg(1, "85176200", value="1000", currency="EUR")
    )
    by_value = decide(
        [event(doc("X060", "DE-VAL", amount="999.99", currency="EUR"), cn="85176200")],
        snapshot(value_only),
    )
    assert [m.value for m in by_value.movements] == [Decimal("999.99")]
    assert by_value.outcomes[0].documents[0].remaining.value == Decimal("0.01")
    quantity_only = decide([event(doc("X060", "DE-VAL", "1"), cn="85176200")], snapshot(value_only))
    assert codes(quantity_only) == ["unit-mismatch"]
    assert "counts value in EUR" in quantity_only.refusals[0].reason

    both = licence(
        "DE-BOTH", LicenceType.GLOBAL, kg(1, "28121000", "10", value="1000", currency="EUR")
    )

    def write_off(quantity, amount):
        return event(doc("X070", "DE-BOTH", quantity, amount=amount, currency="EUR"))

    decision = decide(
        [
            write_off("5", "600"),
            write_off("4", "500"),
            write_off("6", "100"),
            write_off("5", "400"),
        ],
        snapshot(both),
    )
    assert [str(o.outcome) for o in decision.outcomes] == [
        "applied",
        "refused",
        "refused",
        "applied",
    ]
    value_reason, quantity_reason = (r.reason for r in decision.refusals)
    assert "500 EUR more exceeds the 400 EUR remaining" in value_reason
    assert "6 KGM more exceeds the 5 KGM remaining" in quantity_reason
    assert sum(m.quantity for m in decision.movements) == 10
    assert sum(m.value for m in decision.movements) == 1000


def test_global_licence_takes_x070_and_x002_but_not_x060():
    lic = licence("DE-GLO", LicenceType.GLOBAL)
    assert codes(decide([event(doc("X070", lic.number, "1"))], snapshot(lic))) == []
    assert codes(decide([event(doc("X002", lic.number, "1"))], snapshot(lic))) == []
    refused = decide([event(doc("X060", lic.number, "1"))], snapshot(lic))
    assert codes(refused) == ["document-type-mismatch"]
    assert "X060 is for a individual licence; DE-GLO is global" in refused.refusals[0].reason


def test_national_general_authorisation_records_usage_never_decremented_nor_refused():
    reg = national_general()
    big = [event(doc("X071", reg.number, "5000")), event(doc("X002", reg.number, "7000"))]
    decision = decide(big, snapshot(reg))
    assert codes(decision) == [] and decision.status_changes == []
    assert [(m.kind, m.quantity) for m in decision.movements] == [
        (MovementKind.RECORD, 5000),
        (MovementKind.RECORD, 7000),
    ]
    result = decision.outcomes[1].documents[0]
    assert result.status is DocumentStatus.RECORDED and result.remaining is None
    assert result.written_off.quantity == 7000
    refused = decide([event(doc("X060", reg.number, "1"))], snapshot(reg))
    assert codes(refused) == ["document-type-mismatch"]


def test_eu001_covers_only_its_destinations():
    assert UNION_GENERAL_DESTINATIONS["EU001"] == {
        "AU", "CA", "IS", "JP", "NZ", "NO", "CH", "LI", "GB", "US"
    }  # fmt: skip
    reg = union("EU001")
    for country in ("AU", "LI", "GB", "US"):
        ok = decide([event(doc("X061", reg.number, "3"), destination=country)], snapshot(reg))
        assert codes(ok) == [], country
        assert ok.movements[0].kind is MovementKind.RECORD
    refused = decide([event(doc("X061", reg.number, "3"), destination="CN")], snapshot(reg))
    assert codes(refused) == ["destination-not-allowed"] and refused.movements == []
    reason = refused.refusals[0].reason
    assert "EU001 covers exports to AU, CA, CH, GB, IS, JP, LI, NO, NZ, US only" in reason
    assert "the destination is CN" in reason


def test_other_union_general_authorisations_keep_their_registration_destinations():
    # EU002-EU008: no built-in destination list; a registration's own destinations apply.
    reg = union("EU007", kg(1, "28121000", None, "SG", "IN"))
    assert (
        codes(decide([event(doc("X067", reg.number, "1"), destination="SG")], snapshot(reg))) == []
    )
    refused = decide([event(doc("X067", reg.number, "1"), destination="CN")], snapshot(reg))
    assert codes(refused) == ["destination-not-allowed"]


@pytest.mark.parametrize(
    ("code", "lic", "said"),
    [
        ("X061", union("EU002"), "X061 stands for EU001; REG-EU002-"),
        ("X062", union("EU001"), "X062 stands for EU002; REG-EU001-"),
        ("X061", union(None), "registered for no Union general authorisation"),
        ("X061", licence(), "X061 is for a union_general licence; DE-IND-1 is individual"),
        ("X060", union("EU001"), "X060 is for a individual licence"),
        ("X070", licence(), "X070 is for a global licence"),
        ("X071", licence(), "X071 is for a national_general licence"),
    ],
)
def test_a_document_code_that_contradicts_the_licence_is_refused(code, lic, said):
    decision = decide([event(doc(code, lic.number, "1"))], snapshot(lic))
    assert codes(decision) == ["document-type-mismatch"]
    assert said in decision.refusals[0].reason
    assert decision.movements == []


@pytest.mark.parametrize(
    "lic", [licence(), licence("DE-G", LicenceType.GLOBAL), national_general(), union("EU001")]
)
def test_x002_takes_the_type_from_the_licence(lic):
    decision = decide([event(doc("X002", lic.number, "1"))], snapshot(lic))
    assert codes(decision) == [] and len(decision.movements) == 1


def test_x072_transit_authorisation_is_an_individual_decision():
    lic = licence()
    assert codes(decide([event(doc("X072", lic.number, "1"))], snapshot(lic))) == []


def test_y901_and_licences_quoted_without_write_off_are_ignored_with_a_note():
    lic = licence()
    decision = decide(
        [event(doc("Y901", "-", "3"), doc("X060", lic.number), doc("C512", "x", "1"))],
        snapshot(lic),
    )
    assert str(decision.outcomes[0].outcome) == "ignored"
    assert decision.movements == [] and decision.refusals == []
    documents = decision.outcomes[0].documents
    assert [(d.document_code, d.status) for d in documents] == [
        ("Y901", DocumentStatus.IGNORED),
        ("X060", DocumentStatus.IGNORED),
    ]
    assert "no dual-use licence" in documents[0].detail
    assert "without a write-off" in documents[1].detail


def test_the_exporter_must_be_the_holder_or_the_registered_exporter():
    lic, reg = licence(), union("EU001")
    wrong = decide([event(doc("X060", lic.number, "1"), exporter=OTHER)], snapshot(lic))
    assert codes(wrong) == ["wrong-exporter"]
    assert f"{OTHER} is not the holder of licence DE-IND-1" in wrong.refusals[0].reason
    unregistered = decide([event(doc("X061", reg.number, "1"), exporter=OTHER)], snapshot(reg))
    assert codes(unregistered) == ["wrong-exporter"]
    assert f"{OTHER} is not registered for EU001" in unregistered.refusals[0].reason


def test_goods_released_against_a_licence_customs_never_acknowledged_are_a_contingency():
    lic = licence()
    decision = decide(
        [event(doc("X060", lic.number, "1"))], snapshot(lic, known_to_customs=frozenset())
    )
    # Released: the goods left, so the write-off is recorded, flagged (docs/contingency.md).
    assert codes(decision) == [] and [m.contingency for m in decision.movements] == [True]
    known = decide(
        [event(doc("X060", lic.number, "1"))],
        snapshot(lic, known_to_customs=frozenset({lic.number})),
    )
    assert codes(known) == [] and [m.contingency for m in known.movements] == [False]


@pytest.mark.parametrize("status", [s for s in LicenceStatus if s is not LicenceStatus.VALID])
def test_a_licence_that_is_not_valid_refuses_with_its_status(status):
    lic = licence(status=status)
    decision = decide([event(doc("X060", lic.number, "1"))], snapshot(lic))
    assert codes(decision) == ["licence-not-valid"]
    assert f"licence DE-IND-1 is {status}, not valid" in decision.refusals[0].reason


def test_used_up_lines_exhaust_the_licence_and_quantity_given_back_revives_it():
    lic = licence(
        "DE-TWO",
        LicenceType.INDIVIDUAL,
        kg(1, "28121000", "10"),
        kg(2, "28121090", value="500", currency="EUR", cle="1C350.b"),
        kg(3, "28121010"),  # no ceiling: does not count
    )
    first = event(doc("X060", "DE-TWO", "10", line=1))
    second = event(doc("X060", "DE-TWO", amount="500", currency="EUR", line=2))
    late = event(doc("X060", "DE-TWO", amount="1", currency="EUR", line=3))
    decision = decide([first, second, late], snapshot(lic))
    assert [(c.from_status, c.to_status) for c in decision.status_changes] == [
        (LicenceStatus.VALID, LicenceStatus.EXHAUSTED)
    ]
    assert second.mrn in decision.status_changes[0].reason
    assert codes(decision) == ["licence-not-valid"]  # the third, later in the same batch

    state = snapshot(
        replace(lic, status=LicenceStatus.EXHAUSTED),
        usage={k: v for k, v in decision.usage.items()},
        line_totals={
            ("DE-TWO", 1): (Decimal(10), Decimal(0)),
            ("DE-TWO", 2): (Decimal(0), Decimal(500)),
        },
        declarations=decision.declarations,
    )
    down = event(doc("X060", "DE-TWO", "7", line=1), kind="amended", version=2, mrn=first.mrn)
    amended = decide([down], state)
    assert codes(amended) == []  # giving back is allowed on an exhausted licence
    assert [(m.kind, m.quantity) for m in amended.movements] == [(MovementKind.ADJUSTMENT, -3)]
    assert [(c.from_status, c.to_status) for c in amended.status_changes] == [
        (LicenceStatus.EXHAUSTED, LicenceStatus.VALID)
    ]
    up = event(doc("X060", "DE-TWO", "11", line=1), kind="amended", version=2, mrn=first.mrn)
    assert codes(decide([up], state)) == ["licence-not-valid", "over-use"]


def test_general_authorisations_are_never_exhausted():
    reg = union("EU001", kg(1, "28121000", "1"))
    decision = decide([event(doc("X061", reg.number, "100"))], snapshot(reg))
    assert decision.status_changes == [] and codes(decision) == []


def test_the_cn_to_cle_correlation_only_warns():
    encryption = licence("DE-NET", LicenceType.INDIVIDUAL, kg(1, "85176200", "10", cle="2B018.a"))
    decision = decide(
        [
            event(doc("X060", "DE-NET", "1"), cn="85176200"),
            event(doc("X060", "DE-NET", "1"), cn="85176200"),
        ],
        snapshot(encryption),
        correlation=load_correlation(),
    )
    assert codes(decision) == [] and len(decision.movements) == 2
    warning = decision.outcomes[0].documents[0].warnings[0]
    assert warning.code == "cn-cle-correlation"
    assert "5A001, 5A002" in warning.reason and "2B018.a" in warning.reason
    assert [a.kind for a in decision.alerts] == ["cn-cle-correlation"]  # once per batch and line
    agrees = licence("DE-OK", LicenceType.INDIVIDUAL, kg(1, "85176200", "10", cle="5A002a1"))
    fine = decide(
        [event(doc("X060", "DE-OK", "1"), cn="85176200")],
        snapshot(agrees),
        correlation=load_correlation(),
    )
    assert fine.outcomes[0].documents[0].warnings == () and fine.alerts == []


def test_a_bad_correlation_table_is_refused_with_every_reason():
    from bridge.core.errors import ConfigError

    with pytest.raises(ConfigError, match=r"'85x' is not a CN code.*9999: ZZ1 is not a control"):
        parse_correlation('correlation: {"85x": [5A002], "9999": [ZZ1]}')


# Availability: the same checks, nothing written. -------------------------------------------


def test_availability_answers_with_the_remaining_balance():
    lic = licence()
    answer = availability(
        lic,
        number=lic.number,
        on=DAY,
        cn_code="28121000",
        quantity=Decimal("30"),
        unit="KGM",
        exporter=EXPORTER,
        destination="US",
        line_totals={1: (Decimal(60), Decimal(0))},
    )
    assert answer.available and answer.code is None
    assert (answer.line_number, answer.remaining.quantity, answer.remaining.unit) == (1, 40, "KGM")
    assert "40 KGM remaining" in answer.reason
    assert answer.licence_number == lic.number
    over = availability(
        lic, number=lic.number, on=DAY, line_number=1, quantity=Decimal("41000"), unit="GRM",
        line_totals={1: (Decimal(60), Decimal(0))},
    )  # fmt: skip
    assert (over.available, over.code) == (False, "over-use")
    assert "41 KGM more exceeds the 40 KGM remaining" in over.reason
    assert over.remaining.quantity == 40


@pytest.mark.parametrize(
    ("lic", "ask", "code"),
    [
        (None, {}, "licence-unknown"),
        (licence(status=LicenceStatus.SUSPENDED), {}, "licence-not-valid"),
        (licence(valid_to=date(2026, 3, 1)), {}, "outside-validity"),
        (licence(), {"exporter": OTHER}, "wrong-exporter"),
        (union("EU001"), {"destination": "IR"}, "destination-not-allowed"),
        (licence(), {"document_code": "X061"}, "document-type-mismatch"),
        (licence(), {"quantity": Decimal(1), "unit": "NAR"}, "unit-mismatch"),
        (licence(), {"cn_code": "85423190", "line_number": None}, "no-matching-line"),
        (licence(), {"known_to_customs": False}, "not-known-to-customs"),
    ],
)
def test_availability_refuses_for_the_same_reasons_as_a_write_off(lic, ask, code):
    ask = {"line_number": 1, **ask}
    answer = availability(lic, number="DE-IND-1", on=DAY, **ask)
    assert (answer.available, answer.code) == (False, code)
    assert answer.reason
    if lic is None:
        return
    # The write-off with the same facts is refused with the same code.
    document = doc(
        ask.get("document_code", "X002"),
        lic.number,
        str(ask.get("quantity", 1)),
        unit=ask.get("unit", "KGM"),
        line=ask.get("line_number"),
    )
    decision = decide(
        [
            event(
                document,
                cn=ask.get("cn_code", "28121000"),
                exporter=ask.get("exporter", EXPORTER),
                destination=ask.get("destination", "US"),
            )
        ],
        snapshot(lic, known_to_customs=None if ask.get("known_to_customs", True) else frozenset()),
    )
    if code == "not-known-to-customs":
        # Before release refused; released all the same, recorded as a contingency write-off.
        assert codes(decision) == [] and [m.contingency for m in decision.movements] == [True]
        return
    assert code in codes(decision)

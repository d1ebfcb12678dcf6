"""The ledger's write-off rules, pure: no broker, no database."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest

from bridge.core.declaration import Amendment, Declaration, DocumentUse, GoodsItem, Pointer
from bridge.core.documents import (
    licence_document,
    national_document_codes,
    parse_national_document_codes,
)
from bridge.core.envelope import DeclarationEvent, Envelope, EventKind, read_event
from bridge.core.errors import ConfigError
from bridge.core.ledger_state import MovementKind, Outcome, Record, Usage
from bridge.core.model import Licence, LicenceLine, LicenceStatus, LicenceType
from bridge.core.writeoff.batch import decide
from bridge.core.writeoff.decision import DeclarationState, LedgerSnapshot
from bridge.services.customs_events import envelope_for_declaration_file
from tests.fixtures_mqtt import kg_line, tt_ex004a_licences, uk_licence

AT = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)
EXPORTER = "GB896458895015"
MRN = "26GBAAAAAAAAAAAAA1"
OTHER_MRN = "26GBBBBBBBBBBBBBB2"
LICENCE = "GBSIEXYK3ZZZPADR-0002"


def doc(code="X002", ref=LICENCE, quantity=None, unit="KGM#G", **more) -> DocumentUse:
    return DocumentUse(
        document_code=code,
        reference=ref,
        quantity=None if quantity is None else Decimal(quantity),
        unit=unit if quantity is not None else None,
        **more,
    )


def item(sequence=2, *documents, cn="93059100", destination="SD") -> GoodsItem:
    return GoodsItem(sequence, cn, "goods", destination, tuple(documents))


def event(
    *items: GoodsItem,
    mrn=MRN,
    kind="released",
    version=1,
    exporter=EXPORTER,
    message_id=None,
    at=AT,
    country="GB",
) -> DeclarationEvent:
    declaration = None
    if kind != "invalidated":
        declaration = Declaration("9", "EXA", "LRN-1", None, exporter, country, tuple(items))
    envelope = Envelope(
        message_id or f"{mrn}-{kind}-v{version}",
        mrn,
        EventKind(kind),
        at,
        version,
        None,
        "wco-dec-dms-2",
        None if declaration is None else "<Declaration/>",
    )
    return DeclarationEvent(envelope, declaration, b"{}")


def amend(amendment: DeclarationEvent, *sections: Amendment) -> DeclarationEvent:
    """`amendment` as customs send one: FunctionCode 13, TypeCode COR, its Amendment sections."""
    declaration = replace(
        amendment.declaration, function_code="13", type_code="COR", amendments=sections
    )
    return replace(amendment, declaration=declaration)


def release(quantity="102", **kwargs) -> DeclarationEvent:
    return event(item(2, doc(quantity=quantity)), **kwargs)


def snapshot(*licences: Licence) -> LedgerSnapshot:
    return LedgerSnapshot(licences={lic.number: lic for lic in licences})


def after(before: LedgerSnapshot, decision) -> LedgerSnapshot:
    """What the ledger holds once `decision` is written: the next batch's snapshot."""
    totals = dict(before.line_totals)
    for m in decision.movements:
        quantity, value = totals.get((m.licence_number, m.line_number), (Decimal(0), Decimal(0)))
        totals[(m.licence_number, m.line_number)] = (quantity + m.quantity, value + m.value)
    return LedgerSnapshot(
        licences=before.licences,
        usage={**before.usage, **decision.usage},
        line_totals=totals,
        declarations={**before.declarations, **decision.declarations},
        seen_message_ids=before.seen_message_ids | {o.message_id for o in decision.outcomes},
    )


def run(state: LedgerSnapshot, *batches: list[DeclarationEvent]):
    """Decide batch after batch; returns the final snapshot and every decision."""
    decisions = []
    for batch in batches:
        decision = decide(batch, state)
        decisions.append(decision)
        state = after(state, decision)
    return state, decisions


def used(state: LedgerSnapshot, number=LICENCE, line=1) -> Decimal:
    return state.line_totals.get((number, line), (Decimal(0), Decimal(0)))[0]


def outcomes(decision) -> list[str]:
    return [str(o.outcome) for o in decision.outcomes]


def the_licence(**changes) -> Licence:
    return replace(tt_ex004a_licences()[0], **changes)


def test_tt_ex004a_writes_off_102_kg_gross_against_the_x002_licence(wco_samples):
    data = envelope_for_declaration_file(
        wco_samples / "TT_EX004a.xml", event="released", event_time=AT
    )
    released = read_event(data, max_bytes=1 << 20)
    decision = decide([released], snapshot(*tt_ex004a_licences()))

    assert outcomes(decision) == ["applied"]
    moves = {(m.licence_number, m.line_number, m.document_code): m for m in decision.movements}
    x002 = moves[(LICENCE, 1, "X002")]
    assert (x002.kind, x002.quantity, x002.value) == (MovementKind.WRITE_OFF, 102, 0)
    assert (x002.declared_quantity, x002.declared_unit) == (Decimal("102.00"), "KGM#G")
    # The UK 9104 licence is written off per goods item on the line of its CN code.
    assert moves[("GBSIEXYK3ZZZ-0001", 1, "9104")].quantity == 5
    assert moves[("GBSIEXYK3ZZZ-0001", 2, "9104")].quantity == 5
    assert len(decision.movements) == 3
    assert decision.refusals == []


def test_unknown_licence_is_refused_with_a_code_and_the_rest_applies(wco_samples):
    data = envelope_for_declaration_file(
        wco_samples / "TT_EX004a.xml", event="released", event_time=AT
    )
    decision = decide([read_event(data, max_bytes=1 << 20)], snapshot(the_licence()))
    assert outcomes(decision) == ["refused"]
    assert [(r.goods_item, r.code) for r in decision.refusals] == [
        (1, "licence-unknown"),
        (2, "licence-unknown"),
    ]
    assert [m.document_code for m in decision.movements] == ["X002"]


def test_documents_that_are_not_dual_use_licences_are_ignored():
    declaration_items = [
        item(1, doc("C512", "GBSDE1", quantity="1"), doc("Y901", "none", quantity="3")),
        item(2, doc("E020", "005345687", quantity="7"), doc("X002", LICENCE)),  # no write-off
    ]
    decision = decide([event(*declaration_items)], snapshot(the_licence()))
    assert outcomes(decision) == ["ignored"]
    assert decision.movements == [] and decision.refusals == []
    assert decision.declarations[MRN].version == 1  # remembered all the same


def test_redelivery_changes_nothing():
    state, (first, again, new_id) = run(
        snapshot(the_licence()),
        [release()],
        [release()],
        [release(message_id="another-id-same-mrn-and-version")],
    )
    assert outcomes(first) == ["applied"]
    assert [(o.outcome, o.record) for o in again.outcomes] == [(Outcome.DUPLICATE, Record.NONE)]
    assert [(o.outcome, o.record) for o in new_id.outcomes] == [(Outcome.DUPLICATE, Record.INSERT)]
    assert again.movements == new_id.movements == []
    assert used(state) == 102


def test_the_same_message_twice_in_one_batch_counts_once():
    decision = decide([release(), release()], snapshot(the_licence()))
    assert outcomes(decision) == ["applied", "duplicate"]
    assert len(decision.movements) == 1


def test_two_write_offs_in_one_batch_see_each_other_and_over_use_is_refused_whole():
    first = release("300", mrn=MRN)
    second = release("250", mrn=OTHER_MRN)
    decision = decide([first, second], snapshot(the_licence()))
    assert outcomes(decision) == ["applied", "refused"]
    assert [m.quantity for m in decision.movements] == [300]
    (refusal,) = decision.refusals
    assert (refusal.mrn, refusal.code, refusal.line_number) == (OTHER_MRN, "over-use", 1)
    assert "200 KGM remaining" in refusal.reason
    assert (MRN, 2, "X002", LICENCE) in decision.usage
    assert (OTHER_MRN, 2, "X002", LICENCE) not in decision.usage


def test_a_write_off_exactly_to_the_ceiling_is_allowed():
    state, _ = run(snapshot(the_licence()), [release("500")])
    assert used(state) == 500


def test_value_ceiling_and_currency():
    line = LicenceLine(1, "5A002.a", "crypto", "84713000", value=Decimal("1000.00"), currency="EUR")
    licence = uk_licence("EU-VALUE-1", EXPORTER, line)

    def by_value(amount, currency, mrn):
        document = doc("X060", "EU-VALUE-1", amount=Decimal(amount), currency=currency)
        return event(item(1, document, cn="84713000"), mrn=mrn)

    state, (decision,) = run(
        snapshot(licence),
        [by_value("600", "EUR", MRN), by_value("500", "EUR", OTHER_MRN)],
    )
    assert [m.value for m in decision.movements] == [600]
    assert [r.code for r in decision.refusals] == ["over-use"]
    _, (wrong_currency,) = run(state, [by_value("10", "GBP", "26GBCCCCCCCCCCCCC3")])
    assert [r.code for r in wrong_currency.refusals] == ["currency-mismatch"]


def test_general_authorisation_records_usage_without_ceiling():
    union = Licence(
        number="EU001-GB896458895015",
        type=LicenceType.UNION_GENERAL,
        issuing_member_state="DE",
        issuing_authority="BAFA",
        holder_name="Exporter",
        holder_eori=EXPORTER,
        valid_from=date(2021, 9, 9),
        valid_to=None,
        lines=(kg_line(1, "93059100", "1"),),
        general_authorisation="EU001",
    )
    big = event(item(1, doc("X061", union.number, quantity="5000"), destination="NO"))
    state, (decision,) = run(snapshot(union), [big])
    assert outcomes(decision) == ["applied"]
    assert used(state, union.number) == 5000
    (move,) = decision.movements
    assert move.kind is MovementKind.RECORD
    (result,) = decision.outcomes[0].documents
    assert (result.status, result.remaining) == ("recorded", None)

    wrong = event(item(1, doc("X062", union.number, quantity="1"), destination="NO"), mrn=OTHER_MRN)
    _, (refused,) = run(state, [wrong])
    assert [r.code for r in refused.refusals] == ["document-type-mismatch"]
    assert "EU002" in refused.refusals[0].reason


def test_amendment_adjusts_by_the_difference():
    state, (_, amended) = run(
        snapshot(the_licence()), [release("10")], [release("7", kind="amended", version=2)]
    )
    (move,) = amended.movements
    assert (move.kind, move.quantity) == (MovementKind.ADJUSTMENT, -3)
    assert used(state) == 7
    assert state.usage[(MRN, 2, "X002", LICENCE)].quantity == 7
    assert state.usage[(MRN, 2, "X002", LICENCE)].declaration_version == 2


def test_amendment_that_drops_a_document_reverses_it_and_an_older_version_is_stale():
    second_licence = uk_licence("GB-OTHER-1", EXPORTER, kg_line(1, "93059100", "50", "SD"))
    both = event(item(2, doc(quantity="10"), doc("X060", "GB-OTHER-1", quantity="4")))
    only_x002 = event(item(2, doc(quantity="10")), kind="amended", version=3)
    stale = event(item(2, doc(quantity="99")), kind="amended", version=2)
    state, (_, amended, old) = run(
        snapshot(the_licence(), second_licence), [both], [only_x002], [stale]
    )
    assert [(m.document_ref, m.kind, m.quantity) for m in amended.movements] == [
        ("GB-OTHER-1", MovementKind.REVERSAL, -4)
    ]
    assert outcomes(old) == ["stale"] and old.movements == []
    assert used(state) == 10 and used(state, "GB-OTHER-1") == 0


# The WCO path (Amendment/Pointer) to goods item 2 as a whole: Declaration 42A, GoodsShipment
# 67A, GovernmentAgencyGoodsItem 68A.
ITEM_2 = Amendment("32", (Pointer("42A", 1), Pointer("67A", 1), Pointer("68A", 2)))


@pytest.mark.parametrize(
    ("amended_item", "pointers"),
    [
        # The goods item renumbered: item 2 removed (its Pointer, not carried), item 3 added.
        (item(3, doc(quantity="102")), (ITEM_2,)),
        # The same licence under its new document code: item 2 resent whole.
        (item(2, doc("X060", quantity="102")), (ITEM_2,)),
    ],
    ids=["goods-item-renumbered", "document-code-changed"],
)
def test_an_amendment_that_moves_a_write_off_to_a_new_key_gives_back_first(amended_item, pointers):
    # The line holds exactly what the release wrote off: the licence was used up, exhausted.
    used_up_licence = the_licence(lines=(kg_line(1, "93059100", "102", "SD"),))
    state, (released,) = run(snapshot(used_up_licence), [release("102")])
    assert [c.to_status for c in released.status_changes] == [LicenceStatus.EXHAUSTED]
    exhausted = replace(used_up_licence, status=LicenceStatus.EXHAUSTED)
    state = replace(state, licences={LICENCE: exhausted})

    amendment = amend(event(amended_item, kind="amended", version=2), *pointers)
    state, (amended,) = run(state, [amendment])

    assert outcomes(amended) == ["applied"] and amended.refusals == []
    assert [(m.kind, m.quantity) for m in amended.movements] == [
        (MovementKind.REVERSAL, -102),
        (MovementKind.WRITE_OFF, 102),
    ]
    assert used(state) == 102  # what left is counted once, never zero, never twice
    assert amended.status_changes == [] and amended.alerts == []  # still exhausted, no flapping
    statuses = [d.status for d in amended.outcomes[0].documents]
    assert statuses == ["accepted", "reversed"]


def test_an_exhausted_licence_still_refuses_what_gives_nothing_back():
    used_up_licence = the_licence(lines=(kg_line(1, "93059100", "102", "SD"),))
    state, _ = run(snapshot(used_up_licence), [release("102")])
    state = replace(
        state, licences={LICENCE: replace(used_up_licence, status=LicenceStatus.EXHAUSTED)}
    )
    _, (other,) = run(state, [release("1", mrn=OTHER_MRN)])
    assert [r.code for r in other.refusals] == ["licence-not-valid", "over-use"]
    assert other.movements == []


def test_amendment_over_the_ceiling_is_refused_and_the_old_write_off_stays():
    state, (_, amended) = run(
        snapshot(the_licence()), [release("100")], [release("600", kind="amended", version=2)]
    )
    assert outcomes(amended) == ["refused"]
    assert amended.movements == []
    assert used(state) == 100
    assert state.declarations[MRN].version == 2


def test_invalidation_reverses_everything_and_is_remembered():
    state, (_, invalidated, late_again) = run(
        snapshot(the_licence()),
        [release("102")],
        [event(kind="invalidated", version=1)],
        [release("102", kind="amended", version=2)],
    )
    (move,) = invalidated.movements
    assert (move.kind, move.quantity) == (MovementKind.REVERSAL, -102)
    assert used(state) == 0
    assert outcomes(late_again) == ["ignored"]


def test_invalidation_before_release_means_the_release_writes_nothing():
    state, (early, late) = run(
        snapshot(the_licence()), [event(kind="invalidated")], [release("102")]
    )
    assert outcomes(early) == ["applied"]
    assert "remembered" in early.outcomes[0].detail
    assert outcomes(late) == ["ignored"]
    assert late.movements == [] and used(state) == 0


def test_amendment_before_release_is_held_then_applied_after_it():
    amendment = release("7", kind="amended", version=2)
    state, (held, released) = run(snapshot(the_licence()), [amendment], [release("10")])
    assert outcomes(held) == ["held"]
    assert held.movements == []
    assert held.declarations[MRN].held == (amendment,)
    assert [(o.message_id, o.outcome, o.record) for o in released.outcomes] == [
        (f"{MRN}-released-v1", Outcome.APPLIED, Record.INSERT),
        (f"{MRN}-amended-v2", Outcome.APPLIED, Record.UPDATE),
    ]
    assert [(m.kind, m.quantity) for m in released.movements] == [
        (MovementKind.WRITE_OFF, 10),
        (MovementKind.ADJUSTMENT, -3),
    ]
    assert used(state) == 7
    assert state.declarations[MRN].held == () and state.declarations[MRN].version == 2


def test_invalidation_drops_a_held_amendment():
    amendment = release("7", kind="amended", version=2)
    decision = decide(
        [amendment, event(kind="invalidated"), release("10")], snapshot(the_licence())
    )
    assert [(o.outcome, o.record) for o in decision.outcomes] == [
        (Outcome.HELD, Record.INSERT),
        (Outcome.IGNORED, Record.UPDATE),  # the held amendment, dropped
        (Outcome.APPLIED, Record.INSERT),
        (Outcome.IGNORED, Record.INSERT),
    ]
    assert decision.movements == []


@pytest.mark.parametrize(
    ("change", "code"),
    [
        ({"status": LicenceStatus.SUSPENDED}, "licence-not-valid"),
        ({"valid_to": date(2026, 3, 1)}, "outside-validity"),
        ({"valid_from": date(2026, 3, 3)}, "outside-validity"),
        ({"holder_eori": "GB000000000001"}, "wrong-exporter"),
        ({"type": LicenceType.GLOBAL}, None),  # X002: the licence's own type decides
    ],
)
def test_licence_header_rules(change, code):
    decision = decide([release()], snapshot(the_licence(**change)))
    assert [r.code for r in decision.refusals] == ([code] if code else [])
    assert len(decision.movements) == (0 if code else 1)


def test_document_type_must_match_the_licence_type():
    global_code = event(item(2, doc("X070", quantity="1")))
    decision = decide([global_code], snapshot(the_licence()))
    assert [r.code for r in decision.refusals] == ["document-type-mismatch"]


def test_every_reason_for_refusing_one_write_off_is_given():
    wrong = event(item(2, doc(quantity="1"), destination="IR"), exporter="GB000000000001")
    decision = decide([wrong], snapshot(the_licence(status=LicenceStatus.REVOKED)))
    assert sorted(r.code for r in decision.refusals) == [
        "destination-not-allowed",
        "licence-not-valid",
        "wrong-exporter",
    ]


def test_line_matching_by_line_number_cn_code_or_only_line():
    two_lines = tt_ex004a_licences()[1]  # lines 1 (CN 93019000) and 2 (CN 93059100)
    number = two_lines.number

    def write_off(cn, line_item_number=None, mrn=MRN):
        document = doc("9104", number, quantity="1", line_item_number=line_item_number)
        return event(item(1, document, cn=cn), mrn=mrn)

    assert decide([write_off("93019000")], snapshot(two_lines)).movements[0].line_number == 1
    assert decide([write_off("9305910010")], snapshot(two_lines)).movements[0].line_number == 2
    by_number = decide([write_off("93019000", line_item_number=2)], snapshot(two_lines))
    assert by_number.movements[0].line_number == 2
    no_line = decide([write_off("85423190")], snapshot(two_lines))
    assert [r.code for r in no_line.refusals] == ["no-matching-line"]
    missing = decide([write_off("93019000", line_item_number=9)], snapshot(two_lines))
    assert [r.code for r in missing.refusals] == ["no-matching-line"]
    # One line: its CN code must still cover the declared one; a line without CN takes any.
    other_cn = event(item(2, doc(quantity="1"), cn="85423190"))
    assert [r.code for r in decide([other_cn], snapshot(the_licence())).refusals] == [
        "no-matching-line"
    ]
    no_cn_line = the_licence(lines=(replace(the_licence().lines[0], cn_code=None),))
    assert decide([other_cn], snapshot(no_cn_line)).movements[0].line_number == 1
    no_cn_declared = event(item(2, doc(quantity="1"), cn=None))
    assert decide([no_cn_declared], snapshot(the_licence())).movements[0].line_number == 1
    assert [r.code for r in decide([write_off(None)], snapshot(two_lines)).refusals] == [
        "no-matching-line"
    ]
    # Two lines under one CN code: ambiguous without the line item number, never guessed.
    twins = replace(
        two_lines, lines=(two_lines.lines[1], replace(two_lines.lines[1], line_number=3))
    )
    ambiguous = decide([write_off("93059100")], snapshot(twins))
    assert [r.code for r in ambiguous.refusals] == ["ambiguous-line"]
    assert "lines 2, 3" in ambiguous.refusals[0].reason and ambiguous.movements == []
    chosen = decide([write_off("93059100", line_item_number=3)], snapshot(twins))
    assert chosen.movements[0].line_number == 3


def test_units_convert_exactly_or_are_refused():
    grams = event(item(2, doc(quantity="1500", unit="GRM")))
    (move,) = decide([grams], snapshot(the_licence())).movements
    assert (move.quantity, move.declared_quantity, move.declared_unit) == (
        Decimal("1.5"),
        Decimal("1500"),
        "GRM",
    )
    tonnes = event(item(2, doc(quantity="0.25", unit="TNE")))
    assert decide([tonnes], snapshot(the_licence())).movements[0].quantity == 250
    # Micro units convert exactly or are refused: 1.5 mg is 0.0000015 kg, seven decimals where
    # the ledger keeps six, so it is refused (never charged a rounded 0.000002 kg), naming both
    # units and the decimals it needs; 1 ug would have been charged a thousand times over.
    for quantity, unit, needed in (("1.5", "MGM", 7), ("1", "MC", 9)):
        speck = decide([event(item(2, doc(quantity=quantity, unit=unit)))], snapshot(the_licence()))
        (refusal,) = speck.refusals
        assert (refusal.code, speck.movements) == ("unit-precision", [])
        assert f"{quantity} {unit} is " in refusal.reason
        assert f"needs {needed} decimals; licence {the_licence().number} line 1 counts in KGM" in (
            refusal.reason
        )
    # The same micro units convert where the line's unit holds them exactly.
    exact = event(item(2, doc(quantity="1500", unit="MGM")))  # 0.0015 kg
    assert decide([exact], snapshot(the_licence())).movements[0].quantity == Decimal("0.0015")
    for unit in ("NAR", "LTR", "KGM#N#", "XYZ"):
        bad = event(item(2, doc(quantity="1", unit=unit)))
        assert [r.code for r in decide([bad], snapshot(the_licence())).refusals] == [
            "unit-mismatch"
        ]


def test_amended_goods_moving_to_another_line_leave_the_old_one():
    two_lines = tt_ex004a_licences()[1]

    def on(cn, kind="released", version=1):
        document = doc("9104", two_lines.number, quantity="4")
        return event(item(1, document, cn=cn), kind=kind, version=version)

    state, (_, moved) = run(snapshot(two_lines), [on("93019000")], [on("93059100", "amended", 2)])
    assert [(m.line_number, m.kind, m.quantity) for m in moved.movements] == [
        (1, MovementKind.REVERSAL, -4),
        (2, MovementKind.ADJUSTMENT, 4),
    ]
    assert used(state, two_lines.number, 1) == 0 and used(state, two_lines.number, 2) == 4


def test_national_codes_count_only_in_their_country():
    national = national_document_codes("DE:8123=global, 7777=any")
    assert licence_document("9104", "GB", national) == (True, LicenceType.INDIVIDUAL)
    assert licence_document("9104", "DE", national) == (False, None)
    assert licence_document("8123", "DE", national) == (True, LicenceType.GLOBAL)
    assert licence_document("7777", "FR", national) == (True, None)
    assert licence_document("X002", None, national) == (True, None)
    assert licence_document("C512", "GB", national) == (False, None)

    uk_code_in_france = event(item(2, doc("9104", quantity="5")), country="FR")
    decision = decide([uk_code_in_france], snapshot(the_licence()))
    assert outcomes(decision) == ["ignored"]


@pytest.mark.parametrize(
    "spec", ["GB:9104", "GB:X002=individual", "GB:9104=sometimes", "GB:91=individual"]
)
def test_bad_national_code_settings_are_refused(spec):
    with pytest.raises(ConfigError):
        parse_national_document_codes(spec)


def test_snapshot_usage_from_before_is_respected():
    before = LedgerSnapshot(
        licences={LICENCE: the_licence()},
        usage={
            (MRN, 2, "X002", LICENCE): Usage(LICENCE, 1, Decimal(10), Decimal(0), 1, "released")
        },
        line_totals={(LICENCE, 1): (Decimal(490), Decimal(0))},
        declarations={MRN: DeclarationState(MRN, version=1, event="released")},
    )
    decision = decide([release("20", kind="amended", version=2)], before)
    assert [(m.kind, m.quantity) for m in decision.movements] == [(MovementKind.ADJUSTMENT, 10)]
    too_much = decide([release("21", kind="amended", version=2)], before)
    assert [r.code for r in too_much.refusals] == ["over-use"]


def test_quantities_beyond_the_ledger_are_refused_not_crashed_on():
    union = replace(the_licence(), type=LicenceType.NATIONAL_GENERAL)  # no ceiling
    huge = event(item(2, doc(quantity="9999999999999999")))
    decision = decide([huge], snapshot(union))
    assert [r.code for r in decision.refusals] == ["out-of-range"]
    assert decision.movements == []


def test_one_refusal_per_code_with_every_reason():
    mixed_up = replace(the_licence(), general_authorisation="EU001")  # an individual licence
    decision = decide([event(item(2, doc("X062", quantity="1")))], snapshot(mixed_up))
    (refusal,) = decision.refusals
    assert refusal.code == "document-type-mismatch"
    assert "union_general licence" in refusal.reason and "EU002" in refusal.reason


def test_partial_amendments_before_the_release_are_all_held_and_merged_after_it():
    lower_item_2 = amend(event(item(2, doc(quantity="7")), kind="amended", version=2))
    add_item_3 = amend(event(item(3, doc(quantity="5")), kind="amended", version=3))
    state, (held, released) = run(
        snapshot(the_licence()), [add_item_3, lower_item_2], [release("10")]
    )
    assert outcomes(held) == ["held", "held"]
    assert [(o.version, o.outcome, o.record) for o in released.outcomes] == [
        (1, Outcome.APPLIED, Record.INSERT),
        (2, Outcome.APPLIED, Record.UPDATE),
        (3, Outcome.APPLIED, Record.UPDATE),
    ]
    assert used(state) == 12  # item 2 at 7, item 3 at 5: neither amendment lost the other


def test_a_declaration_released_before_the_ledger_kept_it_takes_its_amendment_whole():
    # An upgraded ledger: version 1 applied, usage kept, no declaration acted on.
    before, _ = run(snapshot(the_licence()), [release("10")])
    legacy = replace(before.declarations[MRN], acted_on=None)
    before = replace(before, declarations={MRN: legacy})
    moved = event(item(3, doc(quantity="4")), kind="amended", version=2)
    state, (amended,) = run(before, [moved])
    assert outcomes(amended) == ["applied"]
    assert used(state) == 4  # goods item 2, not carried, given back: the rule before merging
    assert state.declarations[MRN].acted_on is not None

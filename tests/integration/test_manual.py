"""Manual quantity management on the real ledger: an authority writes off, corrects and
reverses by hand, with who and why, and the rules hold (bridge.core.manual via
bridge.services.authority)."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import func, insert, select

from bridge.adapters.store.alerts import list_alerts
from bridge.adapters.store.licence_events import licence_events
from bridge.adapters.store.licences import load_licences, save_licence
from bridge.adapters.store.outbox import outbox_rows
from bridge.adapters.store.reconciliation import reconciliation_rows
from bridge.adapters.store.schema import alert, movement
from bridge.core.errors import Rejected
from bridge.core.manual import ManualRequest, decide_manual
from bridge.core.model import LicenceStatus
from bridge.core.movements import ManualKind
from bridge.services.authority import correct, manual_write_off, reverse_movement
from tests.commit_hooks import before_first_commit
from tests.fixtures_soap import (
    chemicals_licence,
    global_licence,
    individual_licence,
    union_general_licence,
)

NOW = datetime(2026, 11, 28, 9, 30, tzinfo=UTC)
OFFICER = "Inge Berger (BAFA, Referat 213)"
NUMBER = "DE-EA-2026-004711"  # line 1: 120 NAR, EUR 486000.00; line 2: 12.5 KGM, EUR 37250.50


def seed(engine, *licences) -> None:
    with engine.begin() as conn:
        for licence in licences or (individual_licence(),):
            save_licence(conn, licence, source="test", now=NOW, explicit_version=False)


def customs_write_off(engine, line: int, quantity: str, value: str = "0", at=NOW) -> int:
    """A write-off as the customs path leaves it in the ledger (data, not a manual act)."""
    with engine.begin() as conn:
        return conn.execute(
            insert(movement).values(
                licence_number=NUMBER,
                line_number=line,
                kind="write_off",
                quantity=Decimal(quantity),
                value=Decimal(value),
                declared_quantity=Decimal(quantity),
                declared_unit="NAR",
                mrn="26DE000000000471A1",
                goods_item=1,
                document_code="X060",
                document_ref=NUMBER,
                message_id="customs-msg-1",
                actor="customs-declaration",
                reason="released v1",
                at=at,
            )
        ).inserted_primary_key[0]


def line(engine, number: str, line_number: int):
    with engine.connect() as conn:
        return next(r for r in reconciliation_rows(conn, number) if r.line_number == line_number)


def movement_count(engine) -> int:
    with engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(movement)).scalar_one()


def codes(error: pytest.ExceptionInfo) -> set[str]:
    return codes_of(error.value)


def codes_of(rejected: Rejected) -> set[str]:
    return {problem.code for problem in rejected.problems}


def write_off(engine, line_number, quantity, unit, **options):
    options.setdefault("reason", "contingency: paper declaration DE-2026-77 released by hand")
    options.setdefault("actor", OFFICER)
    options.setdefault("now", NOW)
    return manual_write_off(engine, NUMBER, line_number, Decimal(quantity), unit, **options)


# ------------------------------------------------------------------ writing off by hand


def test_a_manual_write_off_decrements_the_balance_and_keeps_who_and_why(engine):
    seed(engine)
    result = write_off(
        engine, 1, "7", "NAR", value=Decimal("28350.00"), currency="EUR", reference="DE-2026-77"
    )
    after = line(engine, NUMBER, 1)
    assert (after.written_off_quantity, after.remaining_quantity) == (Decimal(7), Decimal(113))
    assert after.remaining_value == Decimal("457650.00")
    assert result.line == after and result.alerts == ()
    with engine.connect() as conn:
        row = conn.execute(select(movement).where(movement.c.id == result.movement_id)).one()
    assert row.kind == "manual_write_off"
    assert (row.actor, row.reason) == (
        OFFICER,
        "contingency: paper declaration DE-2026-77 released by hand",
    )
    assert (row.quantity, row.declared_quantity, row.declared_unit) == (
        Decimal(7),
        Decimal(7),
        "NAR",
    )
    assert (row.value, row.document_ref, row.mrn) == (Decimal("28350"), "DE-2026-77", None)


@pytest.mark.parametrize(
    ("reason", "actor", "missing"),
    [
        ("", OFFICER, {"reason-missing"}),
        ("audit", "   ", {"actor-missing"}),
        (" ", "", {"reason-missing", "actor-missing"}),
    ],
)
def test_a_manual_movement_without_reason_or_person_is_refused(engine, reason, actor, missing):
    seed(engine)
    with pytest.raises(Rejected) as refused:
        write_off(engine, 1, "1", "NAR", reason=reason, actor=actor)
    assert codes(refused) == missing
    assert movement_count(engine) == 0


def test_grams_against_a_kilogram_line_convert_exactly(engine):
    seed(engine)
    result = write_off(engine, 2, "1500", "GRM")
    assert (result.movement.quantity, result.movement.declared_quantity) == (
        Decimal("1.5"),
        Decimal(1500),
    )
    assert line(engine, NUMBER, 2).remaining_quantity == Decimal("11")


def test_kilograms_against_an_items_line_are_refused_never_guessed(engine):
    seed(engine)
    with pytest.raises(Rejected) as refused:
        write_off(engine, 1, "3", "KGM")
    assert codes(refused) == {"unit-mismatch"}
    assert "does not convert" in str(refused.value)
    assert movement_count(engine) == 0


def test_more_than_the_remaining_quantity_is_refused_whole(engine):
    seed(engine)
    customs_write_off(engine, 1, "118")
    with pytest.raises(Rejected) as refused:
        write_off(engine, 1, "3", "NAR")
    assert codes(refused) == {"over-use"}
    assert "exceeds the 2 NAR remaining" in str(refused.value)
    assert line(engine, NUMBER, 1).remaining_quantity == Decimal(2)
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(alert)).scalar_one() == 0


def test_forced_over_use_is_recorded_with_its_reason_and_raises_an_alert(engine):
    seed(engine)
    customs_write_off(engine, 1, "118")
    result = write_off(
        engine,
        1,
        "3",
        "NAR",
        reason="export of 3 cameras approved by the head of unit, letter 2026-213-17",
        force=True,
    )
    assert result.alerts == ("manual-over-use",)
    after = line(engine, NUMBER, 1)
    assert after.remaining_quantity == Decimal(-1) and after.over_used
    with engine.connect() as conn:
        (raised,) = list_alerts(conn, licence_number=NUMBER)
    assert (raised["kind"], raised["line_number"]) == ("manual-over-use", 1)
    assert "letter 2026-213-17" in raised["message"] and OFFICER in raised["message"]
    assert raised["details"]["movement_id"] == result.movement_id


def test_a_value_ceiling_holds_too_and_the_value_is_in_the_lines_currency(engine):
    seed(engine)
    with pytest.raises(Rejected) as refused:
        write_off(engine, 2, "1", "KGM", value=Decimal("37250.51"), currency="EUR")
    assert codes(refused) == {"over-use"}
    with pytest.raises(Rejected) as refused:
        write_off(engine, 2, "1", "KGM", value=Decimal("100.00"), currency="USD")
    assert codes(refused) == {"currency-mismatch"}
    with pytest.raises(Rejected) as refused:
        write_off(engine, 2, "1", "KGM", value=Decimal("100.00"))
    assert codes(refused) == {"currency-missing"}
    assert movement_count(engine) == 0


def test_a_general_authorisation_records_usage_without_a_ceiling(engine):
    general = union_general_licence()
    seed(engine, general)
    result = manual_write_off(
        engine,
        general.number,
        1,
        Decimal(250000),
        "C62",
        reason="enter record: usage reported by the exporter",
        actor=OFFICER,
        now=NOW,
    )
    assert result.alerts == ()
    recorded = line(engine, general.number, 1)
    assert recorded.written_off_quantity == Decimal(250000)
    assert recorded.remaining_quantity is None and not recorded.over_used


def test_an_unknown_licence_or_line_is_refused(engine):
    seed(engine)
    with pytest.raises(Rejected) as refused:
        manual_write_off(
            engine, "DE-EA-2026-999999", 1, Decimal(1), "NAR", reason="r", actor="a", now=NOW
        )
    assert codes(refused) == {"licence-unknown"}
    with pytest.raises(Rejected) as refused:
        write_off(engine, 3, "1", "NAR")
    assert codes(refused) == {"no-such-line"}
    assert "lines 1, 2" in str(refused.value)


@pytest.mark.parametrize(
    ("quantity", "unit", "code"),
    [
        ("0", "NAR", "quantity-not-positive"),
        ("-2", "NAR", "quantity-not-positive"),
        ("0.0000001", "NAR", "too-many-decimals"),
        # 0.0000005 KGM: more decimals than the ledger keeps, refused as a customs write-off
        # would be (units.convert_exact), never rounded
        ("0.5", "MGM", "unit-precision"),
        ("1", "XYZ", "unit-unknown"),
    ],
)
def test_quantities_are_positive_exact_and_within_six_decimals(engine, quantity, unit, code):
    seed(engine)
    line_number = 2 if unit == "MGM" else 1
    with pytest.raises(Rejected) as refused:
        write_off(engine, line_number, quantity, unit)
    assert codes(refused) == {code}
    if code == "unit-precision":
        assert "0.5 MGM is 0.0000005 KGM, which needs 7 decimals" in str(refused.value)
    assert movement_count(engine) == 0


def test_a_float_is_refused_as_inexact(engine):
    seed(engine)
    with pytest.raises(Rejected, match="exact decimal"):
        manual_write_off(engine, NUMBER, 1, 0.1, "NAR", reason="r", actor="a", now=NOW)


def test_a_suspended_licence_refuses_a_manual_write_off_unless_forced(engine):
    suspended = chemicals_licence()
    seed(engine, suspended)
    options = dict(reason="late record of an export made in March", actor=OFFICER, now=NOW)
    with pytest.raises(Rejected) as refused:
        manual_write_off(engine, suspended.number, 10, Decimal(5), "KGM", **options)
    assert codes(refused) == {"licence-not-valid"}
    result = manual_write_off(
        engine, suspended.number, 10, Decimal(5), "KGM", force=True, **options
    )
    assert result.alerts == ("manual-override",)
    assert line(engine, suspended.number, 10).written_off_quantity == Decimal(5)


# ------------------------------------------------------------------ corrections


def test_a_correction_moves_either_way_with_its_reason(engine):
    seed(engine)
    customs_write_off(engine, 2, "4", "11920.00")
    up = correct(
        engine,
        NUMBER,
        2,
        Decimal(500),
        "GRM",
        reason="audit 2026-14: customs declared 4 kg, the packing list shows 4.5 kg",
        actor=OFFICER,
        now=NOW,
    )
    down = correct(
        engine,
        NUMBER,
        2,
        Decimal("-1.25"),
        "KGM",
        value=Decimal("-100.00"),
        currency="EUR",
        reason="audit 2026-15: one crate returned unused",
        actor=OFFICER,
        now=NOW + timedelta(minutes=1),
    )
    assert (up.movement.kind, up.movement.quantity) == (ManualKind.CORRECTION, Decimal("0.5"))
    assert (down.movement.quantity, down.movement.value) == (Decimal("-1.25"), Decimal("-100"))
    after = line(engine, NUMBER, 2)
    assert after.written_off_quantity == Decimal("3.25")
    assert after.written_off_value == Decimal("11820.00")


def test_a_correction_never_leaves_less_than_nothing_written_off(engine):
    seed(engine)
    customs_write_off(engine, 2, "1")
    with pytest.raises(Rejected) as refused:
        correct(engine, NUMBER, 2, Decimal(-2), "KGM", reason="audit", actor=OFFICER, now=NOW)
    assert codes(refused) == {"below-zero"}
    assert line(engine, NUMBER, 2).written_off_quantity == Decimal(1)


def test_a_correction_beyond_the_ceiling_needs_force(engine):
    seed(engine)
    customs_write_off(engine, 2, "12")
    options = dict(reason="audit 2026-16: 1 kg more left than declared", actor=OFFICER, now=NOW)
    with pytest.raises(Rejected) as refused:
        correct(engine, NUMBER, 2, Decimal(1), "KGM", **options)
    assert codes(refused) == {"over-use"}
    forced = correct(engine, NUMBER, 2, Decimal(1), "KGM", force=True, **options)
    assert forced.alerts == ("manual-over-use",) and forced.line.over_used


def test_using_the_last_line_up_by_hand_exhausts_the_licence_and_a_reversal_revives_it(engine):
    seed(engine)
    customs_write_off(engine, 1, "120")  # line 1 used up by customs; line 2 still open
    last = write_off(engine, 2, "12.5", "KGM")
    assert (last.status, last.alerts) == (LicenceStatus.EXHAUSTED, ("exhausted",))
    assert "is now exhausted" in last.describe()
    with engine.connect() as conn:
        assert load_licences(conn, [NUMBER])[NUMBER].status is LicenceStatus.EXHAUSTED
        (event,) = licence_events(conn, NUMBER)
        (raised,) = list_alerts(conn, licence_number=NUMBER, kind="exhausted")
        statuses = [r for r in outbox_rows(conn, NUMBER) if r["kind"] == "status"]
    assert (event["from_status"], event["to_status"], event["actor"]) == (
        "valid",
        "exhausted",
        "bridge",
    )
    assert f"movement {last.movement_id} by {OFFICER}" in event["reason"]
    assert f"movement {last.movement_id}" in raised["message"]
    assert len(statuses) == 1 and "exhausted" in statuses[0]["document"]  # customs are told

    undone = reverse_movement(
        engine, last.movement_id, reason="entered twice", actor=OFFICER, now=NOW
    )
    assert (undone.status, undone.alerts) == (LicenceStatus.VALID, ())
    with engine.connect() as conn:
        assert load_licences(conn, [NUMBER])[NUMBER].status is LicenceStatus.VALID
        statuses = [r for r in outbox_rows(conn, NUMBER) if r["kind"] == "status"]
    assert len(statuses) == 2 and "valid" in statuses[1]["document"]


def test_a_movement_that_leaves_room_changes_no_status(engine):
    seed(engine)
    done = write_off(engine, 2, "12.5", "KGM")  # line 2 used up, line 1 untouched
    assert done.status is None and done.alerts == ()
    with engine.connect() as conn:
        assert load_licences(conn, [NUMBER])[NUMBER].status is LicenceStatus.VALID
        assert licence_events(conn, NUMBER) == []


# ------------------------------------------------------------------ reversals


def test_a_manual_write_off_is_reversed_once_only(engine):
    seed(engine)
    done = write_off(engine, 1, "5", "NAR", value=Decimal("20250.00"), currency="EUR")
    undone = reverse_movement(
        engine,
        done.movement_id,
        reason="entered on the wrong licence",
        actor="Jonas Krüger (BAFA)",
        now=NOW + timedelta(hours=1),
    )
    assert (undone.movement.kind, undone.movement.quantity) == ("reversal", Decimal(-5))
    assert undone.movement.declared_quantity == Decimal(-5)
    assert undone.line.written_off_quantity == 0 and undone.line.written_off_value == 0
    with pytest.raises(Rejected) as refused:
        reverse_movement(
            engine, done.movement_id, reason="again", actor=OFFICER, now=NOW + timedelta(hours=2)
        )
    assert codes(refused) == {"already-reversed"}
    assert f"by movement {undone.movement_id}" in str(refused.value)
    assert movement_count(engine) == 2
    assert line(engine, NUMBER, 1).written_off_quantity == 0


def test_a_reversal_and_a_customs_movement_are_not_reversed_by_hand(engine):
    seed(engine)
    customs = customs_write_off(engine, 1, "2")
    done = write_off(engine, 1, "1", "NAR")
    undone = reverse_movement(engine, done.movement_id, reason="typo", actor=OFFICER, now=NOW)
    for movement_id, why in (
        (customs, "customs movements follow their declaration"),
        (undone.movement_id, "is itself the reversal of movement"),
    ):
        with pytest.raises(Rejected) as refused:
            reverse_movement(engine, movement_id, reason="undo", actor=OFFICER, now=NOW)
        assert codes(refused) == {"not-reversible"} and why in str(refused.value)
    with pytest.raises(Rejected) as refused:
        reverse_movement(engine, 9999, reason="undo", actor=OFFICER, now=NOW)
    assert codes(refused) == {"movement-unknown"}
    assert line(engine, NUMBER, 1).written_off_quantity == Decimal(2)


def test_reversing_a_reduction_beyond_the_ceiling_needs_force(engine):
    seed(engine)
    customs_write_off(engine, 1, "120")
    reduction = correct(
        engine, NUMBER, 1, Decimal(-10), "NAR", reason="audit", actor=OFFICER, now=NOW
    )
    with engine.begin() as conn:  # customs use the room the reduction gave back
        customs_again = conn.execute(
            insert(movement).values(
                licence_number=NUMBER,
                line_number=1,
                kind="write_off",
                quantity=Decimal(10),
                value=Decimal(0),
                actor="customs-declaration",
                at=NOW,
            )
        )
    assert customs_again.rowcount == 1
    with pytest.raises(Rejected) as refused:
        reverse_movement(
            engine, reduction.movement_id, reason="audit undone", actor=OFFICER, now=NOW
        )
    assert codes(refused) == {"over-use"}
    forced = reverse_movement(
        engine, reduction.movement_id, reason="audit undone", actor=OFFICER, now=NOW, force=True
    )
    assert forced.alerts == ("manual-over-use",)
    assert line(engine, NUMBER, 1).remaining_quantity == Decimal(-10)


# ------------------------------------------------------------------ the rules alone


def test_the_rules_report_every_reason_at_once():
    licence = individual_licence()
    request = ManualRequest(
        ManualKind.WRITE_OFF,
        licence.number,
        1,
        Decimal("-1.0000001"),
        "KGM",
        reason="",
        actor="",
        value=Decimal("1.001"),
        currency="USD",
    )
    with pytest.raises(Rejected) as refused:
        decide_manual(request, licence, (Decimal(0), Decimal(0)))
    assert codes(refused) == {
        "reason-missing",
        "actor-missing",
        "quantity-not-positive",
        "too-many-decimals",
        "currency-mismatch",
    }


def test_two_reversals_at_once_take_turns_and_the_second_is_refused(engine):
    seed(engine)
    done = write_off(engine, 1, "5", "NAR")
    second: list[BaseException | object] = []

    def reverse_too() -> None:
        try:
            second.append(
                reverse_movement(engine, done.movement_id, reason="b", actor="B", now=NOW)
            )
        except Rejected as refused:
            second.append(refused)

    other = threading.Thread(target=reverse_too)
    waiting: list[bool] = []

    def start_the_second() -> None:  # the first reversal is recorded, not yet committed
        other.start()
        other.join(timeout=1.0)
        waiting.append(other.is_alive())

    with before_first_commit(engine, start_the_second):
        first = reverse_movement(engine, done.movement_id, reason="a", actor="A", now=NOW)
    assert waiting == [True], "the second reversal must wait for the first to commit"
    other.join(timeout=30)
    assert first.movement.quantity == Decimal(-5)
    (outcome,) = second
    assert isinstance(outcome, Rejected) and codes_of(outcome) == {"already-reversed"}
    assert movement_count(engine) == 2
    assert line(engine, NUMBER, 1).written_off_quantity == 0


def test_a_movement_that_moves_nothing_is_refused(engine):
    seed(engine)
    with pytest.raises(Rejected) as refused:
        correct(engine, NUMBER, 1, Decimal(0), "NAR", reason="audit", actor=OFFICER, now=NOW)
    assert codes(refused) == {"nothing-to-move"}
    value_only = global_licence()  # line 1 has a value ceiling and no unit
    seed(engine, value_only)
    options = dict(reason="contingency", actor=OFFICER, now=NOW)
    with pytest.raises(Rejected) as refused:
        manual_write_off(engine, value_only.number, 1, Decimal(3), "NAR", **options)
    assert codes(refused) == {"nothing-to-move"}
    assert "counts no quantity" in str(refused.value)
    result = manual_write_off(
        engine,
        value_only.number,
        1,
        Decimal(3),
        "NAR",
        value=Decimal("75000.00"),
        currency="EUR",
        **options,
    )
    assert (result.movement.quantity, result.movement.declared_quantity) == (0, Decimal(3))
    assert result.line.remaining_value == Decimal("2425000.00")

"""The licence lifecycle: which status changes are allowed (pure), and what a change writes in
a real SQLite ledger (status, audit event, status update for customs) in one transaction."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import func, select

from bridge.adapters.store.alerts import list_alerts
from bridge.adapters.store.licence_events import licence_events
from bridge.adapters.store.licences import load_licences, save_licence
from bridge.adapters.store.outbox import DELIVERED, NewMessage, add_messages, outbox_rows
from bridge.adapters.store.schema import licence_event, outbox
from bridge.core.certificate import parse_status_update
from bridge.core.envelope import read_event
from bridge.core.lifecycle import (
    ALLOWED,
    FINAL,
    AuthorityAction,
    StatusChangeRefused,
    check_transition,
    status_after_action,
    status_for_new_version,
)
from bridge.core.model import LicenceStatus
from bridge.core.paths import MAPPINGS_DIR
from bridge.services.config import Settings
from bridge.services.customs_events import envelope_for_declaration_file
from bridge.services.declarations import apply_declarations
from bridge.services.ingest import ingest_file
from bridge.services.licence_status import apply_authority_action, change_status, expire_due
from bridge.services.outbox import STATUS, status_message_id
from tests.fixtures_mqtt import RELEASED_AT
from tests.fixtures_soap import individual_licence, union_general_licence

S = LicenceStatus
NOW = datetime(2026, 6, 1, 8, 0, tzinfo=UTC)
NUMBER = "DE-EA-2026-004711"
ECJU = MAPPINGS_DIR / "samples" / "ecju_licences_2026-11-27.json"


# ---------------------------------------------------------------------------- pure rules


@pytest.mark.parametrize(
    ("current", "new"),
    [
        (S.VALID, S.SUSPENDED),
        (S.VALID, S.REVOKED),
        (S.VALID, S.ANNULLED),
        (S.VALID, S.EXPIRED),
        (S.VALID, S.EXHAUSTED),
        (S.SUSPENDED, S.VALID),
        (S.SUSPENDED, S.REVOKED),
        (S.SUSPENDED, S.ANNULLED),
        (S.SUSPENDED, S.EXPIRED),
        (S.EXHAUSTED, S.VALID),
        (S.EXHAUSTED, S.REVOKED),
        (S.EXHAUSTED, S.ANNULLED),
        (S.EXHAUSTED, S.EXPIRED),
    ],
)
def test_the_lifecycle_allows_these_changes(current, new):
    check_transition(NUMBER, current, new)  # does not raise


@pytest.mark.parametrize("final", sorted(FINAL))
@pytest.mark.parametrize("new", [s for s in S])
def test_revoked_annulled_and_expired_are_final(final, new):
    if new == final:
        check_transition(NUMBER, final, new)  # no change at all is not a transition
        return
    with pytest.raises(StatusChangeRefused) as refused:
        check_transition(NUMBER, final, new)
    assert refused.value.code == "status-final"
    assert f"licence {NUMBER} is {final}, which is final" in refused.value.reason
    assert "new version" in refused.value.reason


def test_a_suspended_licence_cannot_become_exhausted_nor_an_exhausted_one_suspended():
    with pytest.raises(StatusChangeRefused) as suspended:
        check_transition(NUMBER, S.SUSPENDED, S.EXHAUSTED)
    assert suspended.value.code == "transition-not-allowed"
    assert "reinstate it first" in suspended.value.reason
    with pytest.raises(StatusChangeRefused) as exhausted:
        check_transition(NUMBER, S.EXHAUSTED, S.SUSPENDED)
    assert exhausted.value.code == "transition-not-allowed"
    # every pair outside the table is refused, and the table is exactly what is allowed
    refused = {(a, b) for a in S for b in S if a != b and b not in ALLOWED[a]}
    assert (S.SUSPENDED, S.EXHAUSTED) in refused and (S.VALID, S.EXPIRED) not in refused


def test_authority_actions_apply_only_where_they_make_sense():
    assert status_after_action(NUMBER, S.VALID, AuthorityAction.SUSPEND) is S.SUSPENDED
    assert status_after_action(NUMBER, S.SUSPENDED, AuthorityAction.REINSTATE) is S.VALID
    assert status_after_action(NUMBER, S.EXHAUSTED, AuthorityAction.REVOKE) is S.REVOKED
    assert status_after_action(NUMBER, S.SUSPENDED, AuthorityAction.ANNUL) is S.ANNULLED
    with pytest.raises(StatusChangeRefused) as reinstate_exhausted:
        status_after_action(NUMBER, S.EXHAUSTED, AuthorityAction.REINSTATE)
    assert reinstate_exhausted.value.code == "action-not-allowed"
    assert "quantity is given back" in reinstate_exhausted.value.reason
    with pytest.raises(StatusChangeRefused) as twice:
        status_after_action(NUMBER, S.SUSPENDED, AuthorityAction.SUSPEND)
    assert twice.value.reason == f"licence {NUMBER} is already suspended"
    with pytest.raises(StatusChangeRefused) as final:
        status_after_action(NUMBER, S.REVOKED, AuthorityAction.REINSTATE)
    assert final.value.code == "status-final" and "cannot be reinstated" in final.value.reason


@pytest.mark.parametrize(
    ("held", "issued", "over", "used_up", "expected"),
    [
        (S.VALID, S.VALID, False, False, S.VALID),
        (S.VALID, S.SUSPENDED, False, False, S.SUSPENDED),  # the authority's word
        (S.SUSPENDED, S.VALID, False, False, S.SUSPENDED),  # not lifted by an amendment
        (S.SUSPENDED, S.REVOKED, False, False, S.REVOKED),
        (S.REVOKED, S.VALID, False, False, S.REVOKED),  # final
        (S.ANNULLED, S.SUSPENDED, False, False, S.ANNULLED),
        (S.EXPIRED, S.VALID, False, False, S.VALID),  # validity extended
        (S.EXPIRED, S.VALID, True, False, S.EXPIRED),
        (S.EXHAUSTED, S.VALID, False, False, S.VALID),  # ceiling raised
        (S.EXHAUSTED, S.VALID, False, True, S.EXHAUSTED),  # still used up
        (S.VALID, S.VALID, False, True, S.EXHAUSTED),  # ceiling lowered to what is used
    ],
)
def test_a_new_version_from_the_national_records_and_the_status_in_force(
    held, issued, over, used_up, expected
):
    status, why = status_for_new_version(held, issued, validity_over=over, used_up=used_up)
    assert status is expected
    assert (why is None) == (status is issued)


# --------------------------------------------------------------------------- in the ledger


def _store(engine, *licences):
    with engine.begin() as conn:
        for licence in licences:
            save_licence(conn, licence, source="test", now=NOW, explicit_version=False)


def _counts(engine):
    with engine.connect() as conn:
        events = conn.execute(select(func.count()).select_from(licence_event)).scalar_one()
        messages = conn.execute(select(func.count()).select_from(outbox)).scalar_one()
    return events, messages


def test_a_suspension_writes_status_event_and_status_update_in_one_transaction(engine):
    _store(engine, individual_licence())
    with engine.begin() as conn:
        changed = change_status(
            conn, NUMBER, S.SUSPENDED, reason="end-use inquiry", actor="K. Weber, BAFA", now=NOW
        )
    assert changed is True
    with engine.connect() as conn:
        assert load_licences(conn, [NUMBER])[NUMBER].status is S.SUSPENDED
        (event,) = licence_events(conn, NUMBER)
        (row,) = outbox_rows(conn, NUMBER)
    assert (event["from_status"], event["to_status"], event["version"]) == (
        "valid",
        "suspended",
        1,
    )
    assert (event["actor"], event["reason"], event["at"]) == (
        "K. Weber, BAFA",
        "end-use inquiry",
        NOW,
    )
    assert (row["kind"], row["status"], row["licence_version"]) == (STATUS, "pending", 1)
    assert row["message_id"] == status_message_id(NUMBER, 1, "suspended", 1)
    update = parse_status_update(row["document"].encode())
    assert (update.reference, update.version, update.sequence, update.status) == (
        NUMBER,
        1,
        1,
        S.SUSPENDED,
    )
    assert (update.reason, update.effective_at) == ("end-use inquiry", NOW)


def test_a_change_rolled_back_leaves_neither_event_nor_message_nor_status(engine):
    _store(engine, individual_licence())
    with pytest.raises(RuntimeError), engine.begin() as conn:
        change_status(conn, NUMBER, S.REVOKED, reason="fraud", actor="K. Weber", now=NOW)
        raise RuntimeError("the caller's transaction fails after the change")
    assert _counts(engine) == (0, 0)
    with engine.connect() as conn:
        assert load_licences(conn, [NUMBER])[NUMBER].status is S.VALID


def test_the_same_status_again_is_a_no_op_and_a_forbidden_change_writes_nothing(engine):
    _store(engine, individual_licence())
    with engine.begin() as conn:
        assert change_status(conn, NUMBER, S.VALID, reason="x", actor="bridge", now=NOW) is False
        change_status(conn, NUMBER, S.REVOKED, reason="sanctions", actor="K. Weber", now=NOW)
    before = _counts(engine)
    with pytest.raises(StatusChangeRefused) as refused, engine.begin() as conn:
        change_status(conn, NUMBER, S.VALID, reason="oops", actor="K. Weber", now=NOW)
    assert refused.value.code == "status-final"
    assert _counts(engine) == before == (1, 1)


@pytest.mark.parametrize(
    ("number", "reason", "actor", "code"),
    [
        ("NO-SUCH-LICENCE", "why", "who", "licence-unknown"),
        (NUMBER, "  ", "who", "reason-missing"),
        (NUMBER, "why", "", "actor-missing"),
    ],
)
def test_a_status_change_needs_a_known_licence_a_reason_and_an_actor(
    engine, number, reason, actor, code
):
    _store(engine, individual_licence())
    with pytest.raises(StatusChangeRefused) as refused, engine.begin() as conn:
        change_status(conn, number, S.SUSPENDED, reason=reason, actor=actor, now=NOW)
    assert refused.value.code == code
    assert _counts(engine) == (0, 0)


def test_suspend_reinstate_suspend_gives_three_distinct_ordered_status_updates(engine):
    _store(engine, individual_licence())
    steps = [
        (AuthorityAction.SUSPEND, "inquiry opened"),
        (AuthorityAction.REINSTATE, "inquiry closed"),
        (AuthorityAction.SUSPEND, "second inquiry"),
    ]
    for minutes, (action, reason) in enumerate(steps):
        apply_authority_action(
            engine,
            NUMBER,
            action,
            reason=reason,
            actor="A. Officer",
            now=NOW + timedelta(minutes=minutes),
        )
    with engine.connect() as conn:
        rows = outbox_rows(conn, NUMBER)
    updates = [parse_status_update(row["document"].encode()) for row in rows]
    assert [(u.sequence, u.status) for u in updates] == [
        (1, S.SUSPENDED),
        (2, S.VALID),
        (3, S.SUSPENDED),
    ]
    assert len({row["message_id"] for row in rows}) == 3


def test_expire_due_expires_exactly_the_licences_whose_validity_ended(engine):
    today = date(2027, 1, 15)
    licences = [
        individual_licence(number="ENDED-YESTERDAY", valid_to=today - timedelta(days=1)),
        individual_licence(number="ENDS-TODAY", valid_to=today),
        individual_licence(number="ENDED-LONG-AGO", valid_to=date(2026, 12, 1)),
        individual_licence(number="REVOKED-AND-ENDED", valid_to=date(2026, 12, 1)),
        individual_licence(number="SUSPENDED-AND-ENDED", valid_to=date(2026, 12, 1)),
        union_general_licence(number="NO-END-DATE"),
    ]
    _store(engine, *licences)
    with engine.begin() as conn:
        change_status(conn, "REVOKED-AND-ENDED", S.REVOKED, reason="r", actor="a", now=NOW)
        change_status(conn, "SUSPENDED-AND-ENDED", S.SUSPENDED, reason="s", actor="a", now=NOW)
    expired = expire_due(engine, today, NOW)
    assert expired == ["ENDED-LONG-AGO", "ENDED-YESTERDAY", "SUSPENDED-AND-ENDED"]
    assert expire_due(engine, today, NOW) == []  # once only
    with engine.connect() as conn:
        statuses = {
            n: x.status for n, x in load_licences(conn, [x.number for x in licences]).items()
        }
        (event,) = licence_events(conn, "ENDED-YESTERDAY")
    assert statuses == {
        "ENDED-YESTERDAY": S.EXPIRED,
        "ENDS-TODAY": S.VALID,
        "ENDED-LONG-AGO": S.EXPIRED,
        "REVOKED-AND-ENDED": S.REVOKED,
        "SUSPENDED-AND-ENDED": S.EXPIRED,
        "NO-END-DATE": S.VALID,
    }
    assert (event["actor"], event["reason"]) == ("bridge", "validity ended on 2027-01-14")


# ----------------------------------------------------------------- new national versions


def _known_to_customs(engine, number, version):
    with engine.begin() as conn:
        add_messages(
            conn,
            [
                NewMessage(
                    f"test-{number}-v{version}", "certificate", number, version, "<c/>", DELIVERED
                )
            ],
            now=NOW,
        )


def test_a_new_ceiling_below_usage_is_accepted_and_raised_to_the_authority(
    engine, wco_samples, tmp_path
):
    ingest_file(engine, ECJU, now=NOW)
    _known_to_customs(engine, "GBSIEXYK3ZZZPADR-0002", 3)
    _known_to_customs(engine, "GBSIEXYK3ZZZ-0001", 1)
    data = envelope_for_declaration_file(
        wco_samples / "TT_EX004a.xml", event="released", event_time=RELEASED_AT
    )
    event = read_event(data, max_bytes=Settings().max_message_bytes)
    with engine.begin() as conn:
        apply_declarations(conn, [event], now=RELEASED_AT, settings=Settings())
    document = json.loads(ECJU.read_text(encoding="utf-8"))
    padr = document["licences"][0]
    assert padr["reference"] == "GBSIEXYK3ZZZPADR-0002"
    padr["revision"] = 4
    padr["goods"][0]["quantity"]["amount"] = 100  # 102 kg are already written off
    amended = tmp_path / "ecju_licences_2026-11-28.json"
    amended.write_text(json.dumps(document), encoding="utf-8")

    report = ingest_file(engine, amended, now=NOW)

    assert report.changed == [("GBSIEXYK3ZZZPADR-0002", 4)]
    with engine.connect() as conn:
        stored = load_licences(conn, ["GBSIEXYK3ZZZPADR-0002"])["GBSIEXYK3ZZZPADR-0002"]
        (alert,) = list_alerts(conn, kind="ceiling-below-usage")
    assert (stored.version, stored.lines[0].quantity) == (4, Decimal(100))
    assert alert["licence_number"] == "GBSIEXYK3ZZZPADR-0002" and alert["line_number"] == 1
    assert (
        "the new quantity ceiling 100 KGM is below the 102 KGM already written off"
        in (alert["message"])
    )
    assert alert["details"]["authorised_quantity"] == "100"
    assert alert["details"]["written_off_quantity"] == "102"
    # usage carried over: the line has 102 written off under its new ceiling, and it is used up
    assert stored.status is S.EXHAUSTED
    with engine.connect() as conn:
        (exhausted,) = list_alerts(conn, kind="exhausted")
        rows = [r for r in outbox_rows(conn, "GBSIEXYK3ZZZPADR-0002") if r["kind"] == STATUS]
    assert "every line with a ceiling is used up" in exhausted["message"]
    (update,) = [parse_status_update(r["document"].encode()) for r in rows]
    assert (update.version, update.status) == (4, S.EXHAUSTED)


def test_a_suspension_survives_a_new_version_and_customs_are_told_for_that_version(engine):
    _store(engine, individual_licence())
    with engine.begin() as conn:
        change_status(conn, NUMBER, S.SUSPENDED, reason="inquiry", actor="K. Weber", now=NOW)
    amended = individual_licence(valid_to=date(2028, 12, 31))
    with engine.begin() as conn:
        from bridge.services.licence_status import on_new_version

        _, stored = save_licence(conn, amended, source="test", now=NOW, explicit_version=False)
        assert on_new_version(conn, stored, now=NOW) is S.SUSPENDED
    with engine.connect() as conn:
        licence = load_licences(conn, [NUMBER])[NUMBER]
        events = licence_events(conn, NUMBER)
        rows = outbox_rows(conn, NUMBER)
    assert (licence.version, licence.status) == (2, S.SUSPENDED)
    assert [(e["version"], e["from_status"], e["to_status"]) for e in events] == [
        (1, "valid", "suspended"),
        (2, "suspended", "suspended"),
    ]
    assert "does not lift a suspension" in events[1]["reason"]
    updates = [parse_status_update(r["document"].encode()) for r in rows]
    assert [(u.version, u.sequence, u.status) for u in updates] == [
        (1, 1, S.SUSPENDED),
        (2, 2, S.SUSPENDED),
    ]


def test_an_expired_licence_whose_new_version_extends_validity_is_valid_again(engine):
    _store(engine, individual_licence(valid_to=date(2026, 5, 31)))
    assert expire_due(engine, date(2026, 6, 1), NOW) == [NUMBER]
    extended = individual_licence(valid_to=date(2027, 5, 31))
    with engine.begin() as conn:
        from bridge.services.licence_status import on_new_version

        _, stored = save_licence(conn, extended, source="test", now=NOW, explicit_version=False)
        assert on_new_version(conn, stored, now=NOW) is S.VALID
        events = licence_events(conn, NUMBER)
        rows = outbox_rows(conn, NUMBER)
    assert [(e["version"], e["to_status"], e["actor"]) for e in events] == [
        (1, "expired", "bridge"),
        (2, "valid", "national-records"),
    ]
    # the certificate of version 2 says valid: no status update is needed for it
    assert [(r["kind"], r["licence_version"]) for r in rows] == [(STATUS, 1)]
    assert replace(stored, status=S.VALID) == stored


# ----------------------------------------------------------------- the status document


def test_a_status_update_document_round_trips_and_breaks_loudly():
    from bridge.core.certificate import (
        StatusUpdate,
        build_status_update,
        status_update_problems,
    )
    from bridge.core.errors import Rejected

    update = StatusUpdate(NUMBER, 2, 3, S.REVOKED, "sanctions <listed> & frozen", NOW)
    xml = build_status_update(update)
    assert build_status_update(update) == xml  # the same update, the same bytes
    assert status_update_problems(xml) == []
    assert parse_status_update(xml) == update
    blank = build_status_update(replace(update, reason="   "))
    (problem,) = status_update_problems(blank)
    assert "/CertificateStatus/Reason" in problem.path
    with pytest.raises(Rejected):
        build_status_update(replace(update, effective_at=datetime(2026, 6, 1, 8, 0)))
    with pytest.raises(Rejected) as control:
        build_status_update(replace(update, reason="bad\x00byte"))
    assert control.value.problems[0].code == "not-xml-text"
    (wrong_root,) = status_update_problems(b"<Certificate/>")
    assert "not {urn:elicensing-bridge:certex:certificate:1.0}CertificateStatus" in (
        wrong_root.reason
    )

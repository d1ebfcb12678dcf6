"""Issue 3, accepted on real parts: declaration events over a real mosquitto into the real
consumer and the real ledger (SQLite and PostgreSQL, `ledger_url`), results read back from the
result topic as customs read them, licence statuses delivered over real SOAP/HTTP to the customs
simulator, and the query service asked over real SOAP/HTTP.

Each test names the rule of the issue it shows. The rules shown elsewhere on the same real parts
are listed in the traceability table of the issue-3 report (tests/integration/test_results.py,
tests/integration/test_status_delivery.py, tests/integration/test_manual.py,
tests/integration/test_history.py, tests/system/test_demo.py);
this file adds what was shown only on the pure core, or not end to end."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest
from sqlalchemy import func, select

from bridge.adapters.soap.query_client import QueryClient
from bridge.adapters.store.licences import load_licences, save_licence
from bridge.adapters.store.schema import movement
from bridge.core.envelope import DocumentStatus
from bridge.core.lifecycle import AuthorityAction
from bridge.core.model import Licence, LicenceStatus, LicenceType
from bridge.entrypoints.cli import main as elbridge
from bridge.entrypoints.customs_sim.release import check_before_release
from bridge.entrypoints.query_service import start_query_service
from bridge.services.authority import list_alerts, list_refusals, manual_write_off
from bridge.services.config import Settings
from bridge.services.licence_status import apply_authority_action
from bridge.services.outbox import CustomsClient, certify_pending, deliver_pending
from tests.fixtures_mqtt import RELEASED_AT, store_licences
from tests.integration.test_results import (
    CN,
    EXPORTER,
    LICENCE,
    ResultTopic,
    balance,
    event,
    general,
    individual,
    line,
    only_document,
    refusal_codes,
    run,
)
from tests.integration.test_results import declaration as results_declaration

DELIVERED_AT = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)  # certificates reach customs before release


@pytest.fixture
def customs(mqtt_settings, engine):
    """Customs' side of the result topic (its session opened before any event is published)."""
    consume_once(mqtt_settings, engine)
    topic = ResultTopic(mqtt_settings)
    yield topic
    topic.close()


def consume_once(settings, engine) -> None:
    from bridge.services.consumer import consume

    assert consume(settings, engine, idle_seconds=0.1).messages == 0


def declaration(
    wco_samples,
    *,
    quantity: str | None = "10",
    unit: str = "KGM#G",
    code: str = "9104",
    reference: str = LICENCE,
    destination: str = "PK",
    exporter: str = EXPORTER,
    cn: str = CN,
) -> str:
    """The real TT_EX010a declaration with its dual-use document and goods item as asked."""
    return results_declaration(
        wco_samples,
        quantity=quantity,
        unit=unit,
        code=code,
        reference=reference,
        destination=destination,
        exporter=exporter,
        cn=cn,
    )


def movements(engine) -> int:
    with engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(movement)).scalar_one()


def status_of(engine, number: str = LICENCE) -> LicenceStatus:
    with engine.connect() as conn:
        return load_licences(conn, [number])[number].status


# ------------------------------------------------------------- real SOAP delivery to customs


def issue_to_customs(engine, simulator, *licences: Licence) -> None:
    """Issue the licences as ingestion does and deliver their certificates to the simulator
    over SOAP: from then on customs know them (a write-off requires it)."""
    with engine.begin() as conn:
        for licence in licences:
            save_licence(conn, licence, source="test", now=DELIVERED_AT, explicit_version=False)
    certify_pending(engine, now=DELIVERED_AT)
    assert deliver(engine, simulator).delivered == len(licences)


def deliver(engine, simulator):
    """Everything pending in the outbox, over SOAP to the customs simulator."""
    client = CustomsClient(Settings(soap_url=simulator.url, soap_timeout=5.0))
    report = deliver_pending(engine, client, sleep=lambda _seconds: None)
    assert report.failed == 0
    return report


def test_rule_5_a_licence_whose_lines_are_used_up_is_exhausted_and_customs_receive_that_status(
    mqtt_settings, engine, wco_samples, customs, customs_simulator
):
    issue_to_customs(engine, customs_simulator, individual(line(quantity="10")))
    using_it_up = event(declaration(wco_samples, quantity="10"))
    one_more = event(declaration(wco_samples, quantity="1"))
    report = run(mqtt_settings, engine, using_it_up, one_more)
    assert report.status_changes == 1

    assert status_of(engine) is LicenceStatus.EXHAUSTED
    assert deliver(engine, customs_simulator).delivered == 1  # the status update, over SOAP
    (status,) = customs_simulator.statuses()
    assert (status["reference"], status["version"], status["status"]) == (LICENCE, 1, "exhausted")
    assert "every line with a ceiling is used up" in status["reason"]

    customs.wait(2)
    last = only_document(customs.answer(using_it_up[0]))
    assert (last.status, last.remaining.quantity) == (DocumentStatus.ACCEPTED, 0)
    refused = only_document(customs.answer(one_more[0]))
    assert [r.code for r in refused.refusals] == ["licence-not-valid", "over-use"]
    assert "is exhausted" in refused.refusals[0].reason
    assert balance(engine).written_off_quantity == 10  # the refusal wrote nothing off


def test_rule_7_a_suspended_licence_refuses_and_reinstated_accepts_and_customs_are_told_each_time(
    mqtt_settings, engine, wco_samples, customs, customs_simulator
):
    issue_to_customs(engine, customs_simulator, individual())
    apply_authority_action(
        engine,
        LICENCE,
        AuthorityAction.SUSPEND,
        reason="end-use inquiry",
        actor="ECJU officer",
        now=RELEASED_AT,
    )
    assert deliver(engine, customs_simulator).delivered == 1
    while_suspended = event(declaration(wco_samples))
    run(mqtt_settings, engine, while_suspended)
    assert balance(engine).written_off_quantity == 0

    apply_authority_action(
        engine,
        LICENCE,
        AuthorityAction.REINSTATE,
        reason="inquiry closed",
        actor="ECJU officer",
        now=RELEASED_AT,
    )
    assert deliver(engine, customs_simulator).delivered == 1
    reinstated = event(declaration(wco_samples))
    run(mqtt_settings, engine, reinstated)
    assert balance(engine).written_off_quantity == 10

    told = [(s["status"], s["reason"]) for s in customs_simulator.statuses()]
    assert told == [("suspended", "end-use inquiry"), ("valid", "inquiry closed")]
    customs.wait(2)
    suspended = only_document(customs.answer(while_suspended[0]))
    assert suspended.status is DocumentStatus.REFUSED
    assert suspended.refusals[0].code == "licence-not-valid"
    assert "is suspended" in suspended.refusals[0].reason
    assert only_document(customs.answer(reinstated[0])).status is DocumentStatus.ACCEPTED


# ------------------------------------------------------------- licence types, document codes


def global_licence() -> Licence:
    return individual(line(quantity="100"), number="GB-OGEL-GLOBAL-7", type=LicenceType.GLOBAL)


def test_rules_1_and_2_each_document_code_must_agree_with_the_licence_type(
    mqtt_settings, engine, wco_samples, customs
):
    eu001 = general("EU001", "GB-EU001-REG-2")
    store_licences(engine, [individual(), global_licence(), eu001])
    x060 = event(declaration(wco_samples, code="X060"))
    x070 = event(declaration(wco_samples, code="X070", reference="GB-OGEL-GLOBAL-7"))
    x002 = event(declaration(wco_samples, code="X002", reference="GB-OGEL-GLOBAL-7"))
    x060_on_global = event(declaration(wco_samples, code="X060", reference="GB-OGEL-GLOBAL-7"))
    x070_on_individual = event(declaration(wco_samples, code="X070"))
    eu001_to_the_us = event(
        declaration(wco_samples, code="X061", reference=eu001.number, destination="US")
    )
    eu001_to_china = event(
        declaration(wco_samples, code="X061", reference=eu001.number, destination="CN")
    )
    no_licence_needed = event(declaration(wco_samples, code="Y901", reference="Y901-EXEMPT"))
    events = [
        x060,
        x070,
        x002,
        x060_on_global,
        x070_on_individual,
        eu001_to_the_us,
        eu001_to_china,
        no_licence_needed,
    ]
    run(mqtt_settings, engine, *events)

    assert balance(engine).written_off_quantity == 10
    assert balance(engine, "GB-OGEL-GLOBAL-7").written_off_quantity == 20  # X070 and X002
    registration = balance(engine, eu001.number)
    assert (registration.written_off_quantity, registration.remaining_quantity) == (10, None)
    assert refusal_codes(engine) == [
        "document-type-mismatch",
        "document-type-mismatch",
        "destination-not-allowed",
    ]
    customs.wait(len(events))
    statuses = [only_document(customs.answer(e[0])).status for e in events]
    assert statuses == [
        DocumentStatus.ACCEPTED,
        DocumentStatus.ACCEPTED,
        DocumentStatus.ACCEPTED,
        DocumentStatus.REFUSED,
        DocumentStatus.REFUSED,
        DocumentStatus.RECORDED,  # a general authorisation: usage recorded, no ceiling
        DocumentStatus.REFUSED,
        DocumentStatus.IGNORED,
    ]
    mismatch = only_document(customs.answer(x060_on_global[0])).refusals[0].reason
    assert "X060 is for a individual licence; GB-OGEL-GLOBAL-7 is global" in mismatch
    china = only_document(customs.answer(eu001_to_china[0])).refusals[0]
    assert "EU001 covers exports to" in china.reason and "the destination is CN" in china.reason
    assert only_document(customs.answer(eu001_to_the_us[0])).remaining is None
    exempt = customs.answer(no_licence_needed[0])
    assert exempt.outcome == "ignored"
    assert "Y901: the goods need no dual-use licence" in only_document(exempt).detail


# ------------------------------------------------------------- checks before a write-off


def test_rule_3_every_check_refuses_with_a_code_and_a_reason_and_writes_nothing_off(
    mqtt_settings, engine, wco_samples, customs
):
    two_lines_one_cn = individual(line(1, quantity="50"), line(2, quantity="50"), number="GB-TWO")
    computers = individual(
        replace(line(quantity="100", unit="NAR"), cn_code="84714100"), number="GB-COMPUTERS"
    )
    store_licences(engine, [individual(), two_lines_one_cn, computers])
    ambiguous = event(declaration(wco_samples, reference="GB-TWO"))
    no_line = event(declaration(wco_samples, cn="90139000"))
    elsewhere = event(declaration(wco_samples, destination="IR"))
    unknown = event(declaration(wco_samples, reference="GB-NO-SUCH-LICENCE"))
    not_the_holder = event(declaration(wco_samples, exporter="GB000000000001"))
    # The line is 1C011.b; the correlation links CN 8471 to 4A001, 4A003, 5A002: it warns only.
    warned = event(
        declaration(wco_samples, reference="GB-COMPUTERS", cn="84714100", quantity="3", unit="NAR")
    )
    events = [ambiguous, no_line, elsewhere, unknown, not_the_holder, warned]
    run(mqtt_settings, engine, *events)

    assert refusal_codes(engine) == [
        "ambiguous-line",
        "no-matching-line",
        "destination-not-allowed",
        "licence-unknown",
        "wrong-exporter",
    ]
    assert movements(engine) == 1  # only the warned one, accepted
    assert balance(engine, "GB-COMPUTERS").written_off_quantity == 3
    customs.wait(len(events))
    reasons = {e[0]: only_document(customs.answer(e[0])).refusals[0].reason for e in events[:-1]}
    assert "matches lines 1, 2 of licence GB-TWO" in reasons[ambiguous[0]]
    assert "CN code 90139000 matches no line" in reasons[no_line[0]]
    assert "destination IR is not among" in reasons[elsewhere[0]]
    assert "GB-NO-SUCH-LICENCE is not in the ledger" in reasons[unknown[0]]
    assert "GB000000000001 is not the holder" in reasons[not_the_holder[0]]
    accepted = only_document(customs.answer(warned[0]))
    assert accepted.status is DocumentStatus.ACCEPTED
    assert [w.code for w in accepted.warnings] == ["cn-cle-correlation"]
    (alert,) = list_alerts(engine, "GB-COMPUTERS")
    assert alert["kind"] == "cn-cle-correlation" and "nothing refused" in alert["message"]


def test_rule_4_units_convert_exactly_within_a_dimension_and_gross_never_becomes_net(
    mqtt_settings, engine, wco_samples, customs
):
    net_kilograms = individual(line(quantity="20", unit="KGM#N"), number="GB-NET-KG")
    store_licences(engine, [individual(), net_kilograms])
    tonnes = event(declaration(wco_samples, quantity="0.0125", unit="TNE"))
    gross_on_net = event(declaration(wco_samples, reference="GB-NET-KG", unit="KGM#G"))
    net_on_net = event(declaration(wco_samples, reference="GB-NET-KG", unit="KGM#N"))
    run(mqtt_settings, engine, tonnes, gross_on_net, net_on_net)

    assert balance(engine).written_off_quantity == Decimal("12.5")
    assert balance(engine, "GB-NET-KG").written_off_quantity == 10
    assert refusal_codes(engine) == ["unit-mismatch"]
    customs.wait(3)
    converted = only_document(customs.answer(tonnes[0])).written_off
    assert (converted.quantity, converted.unit) == (Decimal("12.5"), "KGM")
    refused = only_document(customs.answer(gross_on_net[0])).refusals[0].reason
    assert "gross and net do not convert" in refused


# ------------------------------------------------------------- manual movements and history


def test_rules_8_and_11_a_manual_write_off_counts_for_customs_and_the_history_shows_everything(
    mqtt_settings, engine, wco_samples, customs, ledger_url, capsys
):
    store_licences(engine, [individual(line(quantity="25"))])
    manual = manual_write_off(
        engine,
        LICENCE,
        1,
        Decimal("12000"),
        "GRM",
        reason="paper declaration 2026-04 released during the outage",
        actor="ECJU officer A. Khan",
        now=RELEASED_AT,
    )
    assert manual.line.remaining_quantity == 13
    mrn = "26GBMANUAL00000001"
    fits = event(declaration(wco_samples, quantity="10"), mrn=mrn)
    too_much = event(declaration(wco_samples, quantity="5"))  # 3 left after both
    run(mqtt_settings, engine, fits, too_much)
    assert balance(engine).remaining_quantity == 3
    customs.wait(2)
    assert only_document(customs.answer(fits[0])).remaining.quantity == 3

    history = ["reconcile", "--licence", LICENCE, "--history", "--format", "json"]
    code = elbridge(["--database-url", ledger_url, *history])
    rows = json.loads(capsys.readouterr().out)["movements"]
    assert code == 0  # nothing over-used
    assert [(r["kind"], r["actor"]) for r in rows] == [
        ("manual_write_off", "ECJU officer A. Khan"),
        ("write_off", "customs-declaration"),
    ]
    customs_row = rows[1]
    assert (customs_row["mrn"], customs_row["goods_item"]) == (mrn, 1)
    assert (Decimal(customs_row["quantity"]), customs_row["unit"]) == (10, "KGM")
    assert customs_row["reason"] == "released v1" and customs_row["at"]
    assert Decimal(rows[0]["declared_quantity"]) == 12000 and rows[0]["declared_unit"] == "GRM"
    (refused,) = list_refusals(engine, LICENCE)
    (over_use,) = list_alerts(engine, LICENCE)
    assert refused["code"] == "over-use" and "remaining on licence" in refused["reason"]
    assert over_use["kind"] == "over-use" and over_use["details"]["remaining_quantity"] == "3"


# ------------------------------------------------------------- the query service for customs


def test_rule_10_customs_ask_the_query_service_before_release_with_the_deployments_codes(
    mqtt_settings, engine, wco_samples, customs, ledger_url, tmp_path, monkeypatch
):
    # A deployment that reads GB 9105 as an individual licence: the write-offs and the query
    # service must read it alike, or "available" would not mean "accepted".
    codes = "GB:9105=individual"
    monkeypatch.setenv("ELBRIDGE_NATIONAL_DOCUMENT_CODES", codes)
    settings = replace(mqtt_settings, national_document_codes=codes)
    store_licences(engine, [individual()])
    run(settings, engine, event(declaration(wco_samples, code="9105", quantity="40")))
    assert balance(engine).remaining_quantity == 210

    with start_query_service(tmp_path / "query", ledger_url) as service:
        xml = declaration(wco_samples, code="9105", quantity="200").encode()
        (before_release,) = check_before_release(
            service.url, xml, on=date(2026, 3, 3), national_document_codes=codes
        )
        too_much = declaration(wco_samples, code="9105", quantity="211").encode()
        (refused,) = check_before_release(
            service.url, too_much, on=date(2026, 3, 3), national_document_codes=codes
        )
        (document,) = QueryClient(service.url).list_supporting_documents(
            EXPORTER, on=date(2026, 3, 3)
        )
    assert (before_release.available, before_release.remaining_quantity) == (True, 210)
    assert (refused.available, refused.code) == (False, "over-use")
    assert "211 KGM more exceeds the 210 KGM remaining" in refused.reason
    assert (document.reference, document.lines[0].remaining_quantity) == (LICENCE, 210)
    assert customs.wait(1)[0].outcome == "applied"

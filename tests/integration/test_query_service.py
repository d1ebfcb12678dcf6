"""The query service customs call before release: CheckAvailability and
ListSupportingDocuments over real SOAP/HTTP (a subprocess serving the bridge's own WSDL)
against a real SQLite ledger written by the real write-off path."""

from __future__ import annotations

import urllib.request
from dataclasses import replace
from datetime import date
from decimal import Decimal

import pytest
from lxml import etree
from zeep import Client

from bridge.adapters.soap.query_client import QueryClient, QueryFailed
from bridge.adapters.store.db import make_engine
from bridge.core.availability import AvailabilityRequest, check_availability
from bridge.core.envelope import read_event
from bridge.core.model import LicenceLine, LicenceStatus
from bridge.entrypoints.customs_sim.release import check_before_release
from bridge.entrypoints.query_service import start_query_service
from bridge.services.config import Settings
from bridge.services.customs_events import envelope_for_declaration_file
from bridge.services.declarations import apply_declarations
from bridge.services.licence_status import change_status
from tests.conftest import WCO_SAMPLES
from tests.fixtures_mqtt import RELEASED_AT, store_licences, tt_ex010a_licence, uk_licence
from tests.fixtures_soap import individual_licence

ON = date(2026, 3, 10)
HOLDER = "GB417869120000"
SIEL = "GBSIEE2E350001-0001"  # 250 KGM, 10 written off by TT_EX010a
GRAMS = "GBSIEL/2026/00777"  # 5000 GRM
OPTIK = "DE-EA-2026-004711"  # line 1: 120 NAR, line 2: 12.5 KGM
ARMS, ARMS_HOLDER = "CZ-LSU-2026-00418", "CZ27418863"  # Common Military List lines


def _arms_licence():
    """Lines of the Common Military List (as tests/onboarding/cz_lsu's export has them)."""
    cameras, arrays = individual_licence().lines
    return individual_licence(
        number=ARMS,
        holder_eori=ARMS_HOLDER,
        lines=(
            replace(cameras, control_list="eu-military", control_list_entry="ML1.a"),
            replace(arrays, control_list="eu-military", control_list_entry="ML8.a.1", unit="GRM"),
        ),
    )


def _grams_licence():
    line = LicenceLine(
        line_number=1,
        control_list_entry="1C011.b",
        description="Boron powder",
        cn_code="28045010",
        quantity=Decimal("5000"),
        unit="GRM",
        destinations=("PK",),
    )
    return uk_licence(GRAMS, HOLDER, line)


@pytest.fixture(scope="module")
def query_service(tmp_path_factory):
    """A ledger as customs would find it, and the query service over it."""
    folder = tmp_path_factory.mktemp("query-service")
    url = f"sqlite:///{folder / 'ledger.db'}"
    engine = make_engine(url)
    store_licences(
        engine,
        [
            tt_ex010a_licence(),
            _grams_licence(),
            individual_licence(),
            individual_licence(number="DE-EA-2026-009999", holder_eori="DE999999999999"),
            _arms_licence(),
            uk_licence(
                "GBSIEL/2025/00001",
                HOLDER,
                _grams_licence().lines[0],
                valid_from=date(2025, 1, 1),
                valid_to=date(2026, 1, 31),
            ),
            uk_licence("GBSIEL/2026/00888", HOLDER, _grams_licence().lines[0]),
        ],
    )
    store_licences(
        engine,
        [uk_licence("GBSIEL/2026/00999", HOLDER, _grams_licence().lines[0])],
        known_to_customs=False,
    )
    settings = Settings()
    data = envelope_for_declaration_file(
        WCO_SAMPLES / "TT_EX010a.xml", event="released", event_time=RELEASED_AT
    )
    with engine.begin() as conn:
        apply_declarations(
            conn,
            [read_event(data, max_bytes=settings.max_message_bytes)],
            now=RELEASED_AT,
            settings=settings,
        )
        change_status(
            conn,
            "GBSIEL/2026/00888",
            LicenceStatus.SUSPENDED,
            reason="end-use inquiry",
            actor="ECJU officer",
            now=RELEASED_AT,
        )
    engine.dispose()
    service = start_query_service(folder, url)
    yield service
    service.stop()


@pytest.fixture(scope="module")
def client(query_service):
    return QueryClient(query_service.url)


def _ask(client, reference, **values):
    values.setdefault("on_date", ON)
    return client.check_availability(reference, **values)


def test_a_write_off_within_the_balance_is_available_with_what_remains(client):
    answer = _ask(
        client,
        SIEL,
        line_item_number=1,
        quantity=Decimal("5"),
        unit="KGM",
        exporter_eori=HOLDER,
        destination="PK",
        document_code="X060",
    )
    assert (answer.available, answer.code, answer.refusals) == (True, None, ())
    assert (answer.line_item_number, answer.remaining_quantity, answer.unit) == (
        1,
        Decimal("240"),
        "KGM",
    )
    assert answer.reason == f"licence {SIEL} line 1: 240 KGM remaining"


def test_an_over_use_is_not_available_and_says_the_remaining_balance_and_why(client):
    answer = _ask(client, SIEL, quantity=Decimal("240.5"), unit="KGM", cn_code="93063030")
    assert (answer.available, answer.code) == (False, "over-use")
    assert answer.remaining_quantity == Decimal("240")
    assert "exceeds the 240 KGM remaining" in answer.reason
    assert [r.code for r in answer.refusals] == ["over-use"]


def test_an_unknown_licence_is_not_available(client):
    answer = _ask(client, "GBSIEL/1999/00000", quantity=Decimal("1"), unit="KGM")
    assert (answer.available, answer.code) == (False, "licence-unknown")
    assert answer.remaining_quantity is None
    assert "GBSIEL/1999/00000 is not in the ledger" in answer.reason


def test_a_suspended_licence_is_not_available(client):
    answer = _ask(client, "GBSIEL/2026/00888", quantity=Decimal("1"), unit="GRM")
    assert (answer.available, answer.code) == (False, "licence-not-valid")
    assert "is suspended" in answer.reason
    assert answer.remaining_quantity == Decimal("5000")


def test_kilograms_against_a_gram_line_convert_exactly(client):
    exact = _ask(client, GRAMS, quantity=Decimal("5"), unit="KGM")
    just_over = _ask(client, GRAMS, quantity=Decimal("5.000001"), unit="KGM")
    assert (exact.available, exact.remaining_quantity, exact.unit) == (True, Decimal(5000), "GRM")
    assert (just_over.available, just_over.code) == (False, "over-use")
    assert "5000.001 GRM more exceeds the 5000 GRM remaining" in just_over.reason


def test_kilograms_against_an_items_line_are_refused(client):
    answer = _ask(client, OPTIK, line_item_number=1, quantity=Decimal("2"), unit="KGM")
    assert (answer.available, answer.code) == (False, "unit-mismatch")
    assert "does not convert to NAR" in answer.reason
    assert (answer.remaining_quantity, answer.unit) == (Decimal(120), "NAR")


def test_the_line_can_be_found_by_its_control_list_entry_in_either_spelling(client):
    answer = _ask(client, OPTIK, control_list_entry="6A002a3f", quantity=Decimal("1"), unit="KGM")
    assert (answer.available, answer.line_item_number, answer.remaining_quantity) == (
        True,
        2,
        Decimal("12.5"),
    )
    wrong = _ask(client, OPTIK, line_item_number=1, control_list_entry="6A002.a.3.f")
    assert (wrong.available, wrong.code) == (False, "no-matching-line")
    assert "line 1 is control list entry 6A003.b.4.b, not 6A002.a.3.f" in wrong.reason


def test_a_military_line_is_found_by_its_entry_in_the_military_lists_spelling(client):
    answer = _ask(client, ARMS, control_list_entry="ML8a1", quantity=Decimal("0.01"), unit="KGM")
    assert (answer.available, answer.line_item_number, answer.remaining_quantity) == (
        True,
        2,
        Decimal("12.5"),
    )
    assert answer.unit == "GRM"
    assert _ask(client, ARMS, control_list_entry="ml1.a").line_item_number == 1
    wrong = _ask(client, ARMS, control_list_entry="ML1.b")
    assert (wrong.available, wrong.code) == (False, "no-matching-line")
    assert "ML1.b is on no line of licence CZ-LSU-2026-00418 (lines: 1 ML1.a, 2 ML8.a.1)" in (
        wrong.reason
    )


def test_a_micro_quantity_the_line_cannot_count_exactly_is_refused_not_rounded(client):
    exact = _ask(client, ARMS, line_item_number=2, quantity=Decimal(1), unit="MC")
    assert (exact.available, exact.remaining_quantity) == (True, Decimal("12.5"))
    speck = _ask(client, ARMS, line_item_number=2, quantity=Decimal("0.5"), unit="MC")
    assert (speck.available, speck.code) == (False, "unit-precision")
    assert "0.5 MC is 0.0000005 GRM, which needs 7 decimals" in speck.reason


def test_the_holder_the_destination_and_the_validity_are_checked(client):
    answer = _ask(
        client,
        SIEL,
        quantity=Decimal("1"),
        unit="KGM",
        exporter_eori="GB000000000001",
        destination="IN",
        on_date=date(2028, 1, 1),
    )
    assert not answer.available
    assert {r.code for r in answer.refusals} == {
        "wrong-exporter",
        "destination-not-allowed",
        "outside-validity",
    }


def test_list_supporting_documents_lists_only_the_holders_usable_licences_with_balances(client):
    documents = client.list_supporting_documents(HOLDER, ON)
    assert [d.reference for d in documents] == [SIEL, GRAMS]  # not expired, suspended, unknown
    siel = documents[0]
    assert (siel.document_code, siel.version, siel.status) == ("X060", 1, "valid")
    assert (siel.valid_from, siel.valid_to) == (date(2026, 1, 1), date(2027, 12, 31))
    (line,) = siel.lines
    assert (line.line_number, line.unit) == (1, "KGM")
    assert (line.authorised_quantity, line.written_off_quantity, line.remaining_quantity) == (
        Decimal(250),
        Decimal(10),
        Decimal(240),
    )
    assert client.list_supporting_documents("DE999999999999", ON)[0].reference == (
        "DE-EA-2026-009999"
    )
    assert client.list_supporting_documents("FR000000000", ON) == []
    (arms,) = client.list_supporting_documents(ARMS_HOLDER, ON)
    assert [(x.line_number, x.control_list, x.control_list_entry) for x in arms.lines] == [
        (1, "eu-military", "ML1.a"),
        (2, "eu-military", "ML8.a.1"),
    ]
    assert [x.control_list for x in siel.lines] == ["eu-dual-use"]


def test_a_request_that_breaks_the_contract_is_a_client_fault_naming_the_problem(client):
    with pytest.raises(QueryFailed) as failed:
        client.list_supporting_documents("not an eori", ON)
    assert (failed.value.code, failed.value.transient) == ("fault-invalid_message", False)
    assert "HolderEORI" in failed.value.reason


def test_the_service_serves_its_wsdl_with_its_own_address_and_zeep_can_call_it(query_service):
    with urllib.request.urlopen(query_service.wsdl_url, timeout=10) as answer:
        wsdl = etree.fromstring(answer.read())
    (address,) = wsdl.iter("{http://schemas.xmlsoap.org/wsdl/soap/}address")
    assert address.get("location") == query_service.url
    remote = Client(query_service.wsdl_url)  # every imported schema fetched from the service
    reply = remote.service.CheckAvailability(Reference=SIEL, OnDate=ON)
    assert (reply.Available, reply.RemainingQuantity._value_1) == (True, Decimal(240))


def test_customs_check_every_dual_use_document_of_a_declaration_before_release(query_service):
    xml = (WCO_SAMPLES / "TT_EX010a.xml").read_bytes()
    (answer,) = check_before_release(query_service.url, xml, on=RELEASED_AT.date())
    assert (answer.goods_item, answer.document_code, answer.reference) == (1, "9104", SIEL)
    assert (answer.available, answer.remaining_quantity, answer.unit) == (
        True,
        Decimal(240),
        "KGM",
    )


def test_the_decision_is_the_write_off_rules_dry_run():
    licence = replace(tt_ex010a_licence(), valid_to=date(2026, 12, 31))
    request = AvailabilityRequest(SIEL, quantity=Decimal("250001"), unit="GRM")
    answer = check_availability(licence, {1: (Decimal(0), Decimal(0))}, request, ON)
    assert (answer.available, answer.code) == (False, "over-use")
    assert check_availability(
        licence, {}, replace(request, quantity=Decimal("250000")), ON
    ).available
    late = check_availability(licence, {}, replace(request, quantity=Decimal(1)), date(2027, 1, 1))
    assert late.code == "outside-validity"  # the day is the caller's, never a clock's

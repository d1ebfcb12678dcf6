"""The customs single window simulator as a SOAP server over HTTP: the contract it serves,
what it stores, what it refuses and why. Real subprocess, real HTTP, real zeep client."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from dataclasses import replace
from datetime import UTC, datetime

import pytest
import zeep
from lxml import etree

from bridge.adapters.soap import SOAP_ENV_NAMESPACE
from bridge.adapters.soap.client import CustomsClient, CustomsEndpoint
from bridge.core.certificate import StatusUpdate, build_certificate, build_status_update
from bridge.core.errors import DeliveryError
from bridge.core.model import LicenceStatus
from tests.fixtures_soap import global_licence, individual_licence, sample_licences

SENT_AT = datetime(2026, 11, 28, 9, 30, tzinfo=UTC)
NS = {
    "wsdl": "http://schemas.xmlsoap.org/wsdl/",
    "soap": "http://schemas.xmlsoap.org/wsdl/soap/",
    "xs": "http://www.w3.org/2001/XMLSchema",
    "env": SOAP_ENV_NAMESPACE,
    "m": "urn:elicensing-bridge:certex:messages:1.0",
}


def _client(url: str, **endpoint) -> CustomsClient:
    return CustomsClient(CustomsEndpoint(url, timeout=5.0, **endpoint))


def _get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as answer:
            return answer.status, answer.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def _post(url: str, body: bytes, content_type: str = "text/xml; charset=utf-8"):
    request = urllib.request.Request(url, data=body, headers={"Content-Type": content_type})
    return _get(request)


def _fault(body: bytes) -> dict[str, str]:
    envelope = etree.fromstring(body)
    fault = envelope.find("env:Body/env:Fault", NS)
    return {
        "faultcode": fault.findtext("faultcode"),
        "Code": fault.findtext("detail/m:CertexFault/m:Code", namespaces=NS),
        "Reason": fault.findtext("detail/m:CertexFault/m:Reason", namespaces=NS),
        "Transient": fault.findtext("detail/m:CertexFault/m:Transient", namespaces=NS),
    }


# ----------------------------------------------------------------------------- contract


def test_the_wsdl_served_names_the_real_address_and_its_schemas_resolve(customs_simulator):
    status, wsdl = _get(customs_simulator.wsdl_url)
    assert status == 200
    root = etree.fromstring(wsdl)
    (address,) = root.xpath("//soap:address/@location", namespaces=NS)
    assert address == customs_simulator.url
    (messages,) = root.xpath("//xs:import/@schemaLocation", namespaces=NS)
    assert messages == f"{customs_simulator.url}?xsd=certex-messages-1.0.xsd"
    status, xsd = _get(messages)
    assert status == 200
    (certificate,) = etree.fromstring(xsd).xpath("//xs:import/@schemaLocation", namespaces=NS)
    assert certificate == f"{customs_simulator.url}?xsd=certex-certificate-1.0.xsd"
    assert _get(certificate)[0] == 200
    assert _get(f"{customs_simulator.url}?xsd=../../etc/passwd")[0] == 404


def test_a_zeep_client_built_from_the_served_wsdl_talks_to_the_simulator(customs_simulator):
    client = zeep.Client(customs_simulator.wsdl_url)
    assert client.service._binding_options["address"] == customs_simulator.url
    certificate = etree.fromstring(build_certificate(individual_licence()))
    answer = client.service.SubmitCertificate(
        MessageId="wsdl-1", SentAt=SENT_AT, Sender="ELBRIDGE", _value_1=certificate
    )
    assert (answer.MessageId, answer.Status) == ("wsdl-1", "ACCEPTED")


# ------------------------------------------------------------------------ acknowledgement


def test_certificates_are_acknowledged_and_stored_once_byte_for_byte(customs_simulator):
    client = _client(customs_simulator.url)
    built = {licence.number: build_certificate(licence) for licence in sample_licences()}
    answers = [
        client.submit_certificate(f"m-{n}", xml, SENT_AT) for n, xml in enumerate(built.values())
    ]
    assert [a.status for a in answers] == ["ACCEPTED"] * len(built)
    assert len({a.receipt_id for a in answers}) == len(built)
    received = customs_simulator.received()
    assert [(r["message_id"], r["reference"]) for r in received] == [
        (f"m-{n}", number) for n, number in enumerate(built)
    ]
    for row in received:
        assert row["document"].encode("utf-8") == built[row["reference"]]
    assert {r["version"] for r in received} == {1, 3}
    assert all(r["sender"] == "ELBRIDGE" for r in received)


def test_a_resend_is_answered_duplicate_with_the_first_receipt_and_stores_nothing(
    customs_simulator,
):
    client = _client(customs_simulator.url)
    xml = build_certificate(individual_licence())
    first = client.submit_certificate("same-id", xml, SENT_AT)
    again = client.submit_certificate("same-id", xml, SENT_AT)
    assert (first.status, again.status) == ("ACCEPTED", "DUPLICATE")
    assert (again.receipt_id, again.received_at) == (first.receipt_id, first.received_at)
    assert len(customs_simulator.received()) == 1
    assert customs_simulator.stats()["duplicate"] == 1


def test_a_message_id_reused_for_another_certificate_is_refused_for_good(customs_simulator):
    client = _client(customs_simulator.url)
    client.submit_certificate("reused", build_certificate(individual_licence()), SENT_AT)
    with pytest.raises(DeliveryError) as refused:
        client.submit_certificate("reused", build_certificate(global_licence()), SENT_AT)
    assert not refused.value.transient
    assert "MESSAGE_ID_REUSED" in refused.value.reason
    assert [r["reference"] for r in customs_simulator.received()] == ["DE-EA-2026-004711"]


# ------------------------------------------------------------------------------- refusals


def test_a_tampered_certificate_gets_a_client_fault_naming_the_reason(customs_simulator):
    xml = build_certificate(individual_licence()).replace(
        b"<EORI>DE123456789012345</EORI>", b"<EORI>DE-1234</EORI>"
    )
    with pytest.raises(DeliveryError) as refused:
        _client(customs_simulator.url).submit_certificate("bad-1", xml, SENT_AT)
    error = refused.value
    assert not error.transient
    assert error.code == "fault-invalid_message"
    assert "Client fault INVALID_MESSAGE" in error.reason
    assert "certificate refused: /cert:Certificate/cert:Holder/cert:EORI:" in error.reason
    assert "'DE-1234'" in error.reason and error.reason.endswith("(xmlschema)")
    assert customs_simulator.received() == []


def _request(operation: str, document: bytes, message_id: str = "xsd-1") -> bytes:
    """A SubmitCertificate or UpdateCertificateStatus envelope carrying `document` as is."""
    return _envelope(
        f'<m:{operation} xmlns:m="urn:elicensing-bridge:certex:messages:1.0">'
        f"<m:MessageId>{message_id}</m:MessageId><m:SentAt>2026-11-28T09:30:00Z</m:SentAt>"
        f"<m:Sender>ELBRIDGE</m:Sender>{document.decode()}</m:{operation}>"
    )


def test_a_certificate_breaking_the_schema_is_refused_with_xmlschemas_path_and_reason(
    customs_simulator,
):
    # Well-formed, but a negative quantity on line 2 and no holder's name: the customs side's
    # own validator (xmlschema, not the bridge's libxml2) names each by its path and reason.
    xml = build_certificate(individual_licence())
    xml = xml.replace(
        b'<Quantity unitCode="KGM">12.5</Quantity>', b'<Quantity unitCode="KGM">-3</Quantity>'
    )
    holder_name = b"<Name>Muster Optik GmbH</Name>"
    assert holder_name in xml
    xml = xml.replace(holder_name, b"")
    status, answer = _post(customs_simulator.url, _request("SubmitCertificate", xml))
    assert status == 500
    fault = _fault(answer)
    assert (fault["faultcode"], fault["Code"], fault["Transient"]) == (
        "soap-env:Client",
        "INVALID_MESSAGE",
        "false",
    )
    problems = fault["Reason"].splitlines()
    assert (
        "certificate refused: /cert:Certificate/cert:Line[2]/cert:Quantity: value has to be"
        " greater or equal than Decimal('0'), got '-3' (xmlschema)"
    ) in problems
    (holder,) = [
        p for p in problems if p.startswith("certificate refused: /cert:Certificate/cert:Holder:")
    ]
    assert "Name' expected" in holder and holder.endswith("(xmlschema)")
    assert customs_simulator.received() == []
    assert customs_simulator.stats()["refused"] == 1


def test_a_status_update_breaking_the_schema_is_refused_with_xmlschemas_path_and_reason(
    customs_simulator,
):
    update = StatusUpdate(
        "DE-EA-2026-004711",
        1,
        1,
        LicenceStatus.SUSPENDED,
        "end-use inquiry",
        datetime(2026, 11, 28, 9, 0, tzinfo=UTC),
    )
    xml = build_status_update(update).replace(b"<Sequence>1</Sequence>", b"<Sequence>0</Sequence>")
    status, answer = _post(customs_simulator.url, _request("UpdateCertificateStatus", xml))
    assert status == 500
    fault = _fault(answer)
    assert (fault["Code"], fault["Transient"]) == ("INVALID_MESSAGE", "false")
    assert fault["Reason"].startswith(
        "status update refused: /cert:CertificateStatus/cert:Sequence: value must be positive,"
        " got '0' (xmlschema)"
    ), fault["Reason"]
    assert customs_simulator.statuses() == []


def _envelope(payload: str, env: str = SOAP_ENV_NAMESPACE) -> bytes:
    return f'<e:Envelope xmlns:e="{env}"><e:Body>{payload}</e:Body></e:Envelope>'.encode()


@pytest.mark.parametrize(
    ("body", "faultcode", "code", "reason"),
    [
        (b"<not xml", "soap-env:Client", "INVALID_MESSAGE", "not well-formed"),
        (
            b'<!DOCTYPE e [<!ENTITY x SYSTEM "file:///etc/passwd">]><e>&x;</e>',
            "soap-env:Client",
            "INVALID_MESSAGE",
            "DTD",
        ),
        (
            _envelope("<x/>", "http://www.w3.org/2003/05/soap-envelope"),
            "soap-env:VersionMismatch",
            "INVALID_MESSAGE",
            "SOAP 1.1",
        ),
        (
            _envelope('<m:CheckAvailability xmlns:m="urn:elicensing-bridge:certex:messages:1.0"/>'),
            "soap-env:Client",
            "UNKNOWN_OPERATION",
            "CheckAvailability",
        ),
        (
            _envelope(
                '<m:SubmitCertificate xmlns:m="urn:elicensing-bridge:certex:messages:1.0">'
                "<m:MessageId>x 1</m:MessageId><m:SentAt>2026-11-28T09:30:00</m:SentAt>"
                "<m:Sender>ELBRIDGE</m:Sender></m:SubmitCertificate>"
            ),
            "soap-env:Client",
            "INVALID_MESSAGE",
            "SentAt",
        ),
    ],
    ids=["malformed", "dtd", "soap12", "unknown-operation", "invalid-payload"],
)
def test_requests_that_break_the_contract_get_a_permanent_client_fault(
    customs_simulator, body, faultcode, code, reason
):
    status, answer = _post(customs_simulator.url, body)
    assert status == 500
    fault = _fault(answer)
    assert (fault["faultcode"], fault["Code"], fault["Transient"]) == (faultcode, code, "false")
    assert reason in fault["Reason"]
    assert customs_simulator.received() == []


def test_an_invalid_payload_is_refused_with_every_problem(customs_simulator):
    body = _envelope(
        '<m:SubmitCertificate xmlns:m="urn:elicensing-bridge:certex:messages:1.0">'
        "<m:MessageId>x 1</m:MessageId><m:SentAt>2026-11-28T09:30:00</m:SentAt>"
        "<m:Sender>ELBRIDGE</m:Sender></m:SubmitCertificate>"
    )
    reason = _fault(_post(customs_simulator.url, body)[1])["Reason"]
    assert reason.splitlines() == [
        "message refused: /m:SubmitCertificate/m:MessageId: value doesn't match any pattern of"
        " ['[A-Za-z0-9][A-Za-z0-9._:\\\\-]{0,63}'], got 'x 1' (xmlschema)",
        "message refused: /m:SubmitCertificate/m:SentAt: value doesn't match any pattern of"
        " ['.+(Z|[+\\\\-][0-9]{2}:[0-9]{2})'], got '2026-11-28T09:30:00' (xmlschema)",
        "message refused: /m:SubmitCertificate: The content of element 'm:SubmitCertificate' is"
        " not complete. Tag from 'urn:elicensing-bridge:certex:certificate:1.0' namespace/s"
        " expected. (xmlschema)",
    ]


def test_a_request_over_the_size_limit_is_refused_unread(customs_simulator_factory):
    simulator = customs_simulator_factory(max_bytes=4096)
    xml = build_certificate(individual_licence())
    line = individual_licence().lines[0]
    big = individual_licence(lines=tuple(replace(line, line_number=n) for n in range(1, 30)))
    with pytest.raises(DeliveryError) as refused:
        _client(simulator.url).submit_certificate("big-1", build_certificate(big), SENT_AT)
    assert not refused.value.transient
    assert "MESSAGE_TOO_LARGE" in refused.value.reason
    assert _client(simulator.url).submit_certificate("small-1", xml, SENT_AT).status == "ACCEPTED"


# ---------------------------------------------------------------------------- WS-Security


def test_ws_security_username_token_with_digest_is_checked(customs_simulator_factory):
    simulator = customs_simulator_factory(credentials=("elbridge", "s3cret-pass"))
    xml = build_certificate(individual_licence())
    good = _client(simulator.url, username="elbridge", password="s3cret-pass")
    assert good.submit_certificate("ws-1", xml, SENT_AT).status == "ACCEPTED"
    assert good.submit_certificate("ws-2", xml, SENT_AT).status == "ACCEPTED"  # fresh nonce
    for client in (
        _client(simulator.url, username="elbridge", password="wrong"),
        _client(simulator.url),
    ):
        with pytest.raises(DeliveryError) as refused:
            client.submit_certificate("ws-3", xml, SENT_AT)
        assert not refused.value.transient
        assert "AUTHENTICATION_FAILED" in refused.value.reason
    assert [r["message_id"] for r in simulator.received()] == ["ws-1", "ws-2"]


# -------------------------------------------------------------------------------- admin


def test_the_fault_plan_is_set_at_start_and_changed_through_the_admin_endpoint(
    customs_simulator_factory,
):
    simulator = customs_simulator_factory(next=2, kinds=["http503"], seed=7)
    assert simulator.faults()["remaining"] == 2
    client = _client(simulator.url)
    xml = build_certificate(individual_licence())
    for _ in range(2):
        with pytest.raises(DeliveryError) as refused:
            client.submit_certificate("plan-1", xml, SENT_AT)
        assert refused.value.transient and refused.value.code == "http-503"
    assert client.submit_certificate("plan-1", xml, SENT_AT).status == "ACCEPTED"
    plan = simulator.set_faults(next=1, kinds=["transient_fault"])
    assert plan["kinds"] == ["transient_fault"] and plan["remaining"] == 1
    with pytest.raises(DeliveryError):
        client.submit_certificate("plan-2", xml, SENT_AT)
    stats = simulator.stats()
    assert stats["injected_http503"] == 2 and stats["injected_transient_fault"] == 1


def test_a_bad_fault_plan_is_refused_with_its_reasons(customs_simulator):
    request = urllib.request.Request(
        f"{customs_simulator.base_url}/admin/faults",
        data=json.dumps({"rate": 2, "kinds": ["meteor"]}).encode(),
        headers={"Authorization": f"Bearer {customs_simulator.admin_token}"},
        method="POST",
    )
    status, body = _get(request)
    assert status == 400
    error = json.loads(body)["error"]
    assert "rate must be a number from 0 to 1" in error and "meteor" in error


def test_a_random_fault_rate_is_repeatable_with_a_seed(customs_simulator):
    client = _client(customs_simulator.url)
    xml = build_certificate(individual_licence())

    def outcomes() -> list[str]:
        customs_simulator.set_faults(rate=0.5, kinds=["http503"], seed=42)
        seen = []
        for n in range(12):
            try:
                seen.append(client.submit_certificate(f"r-{n}", xml, SENT_AT).status)
            except DeliveryError as error:
                seen.append(error.code)
        return seen

    first = outcomes()
    assert "http-503" in first and any(s in ("ACCEPTED", "DUPLICATE") for s in first)
    assert [s if s.startswith("http") else "ok" for s in outcomes()] == [
        s if s.startswith("http") else "ok" for s in first
    ]


def test_a_fault_plan_in_the_environment_applies_at_start(customs_simulator_factory, monkeypatch):
    monkeypatch.setenv("ELBRIDGE_SIM_FAULTS", json.dumps({"next": 1, "kinds": ["drop"]}))
    simulator = customs_simulator_factory()
    assert (simulator.faults()["kinds"], simulator.faults()["remaining"]) == (["drop"], 1)
    client = _client(simulator.url)
    xml = build_certificate(individual_licence())
    with pytest.raises(DeliveryError) as dropped:
        client.submit_certificate("env-1", xml, SENT_AT)
    assert (dropped.value.transient, dropped.value.code) == (True, "connection-dropped")
    assert client.submit_certificate("env-1", xml, SENT_AT).status == "ACCEPTED"

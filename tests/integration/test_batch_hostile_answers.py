"""Hostile answers to SubmitCertificates (contract 1.5): the corpus of tests/hostile/corpus.py
served by the hostile server of test_hostile_soap_responses to the zeep client's batch call.
Each must become a DeliveryError for the request as a whole (never another exception, never
a hang, never a file read or a URL fetched), transient exactly when the same answer to a
single SubmitCertificate is, with the same code then; a permanent one makes the outbox send
each certificate alone (bridge.services.outbox_sending), where the single call's verdict
holds. A well-formed batch answer that does not match the request is refused as a whole."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from bridge.adapters.soap.client import Acknowledgement, CustomsClient, CustomsEndpoint
from bridge.core.certificate import build_certificate
from bridge.core.errors import DeliveryError
from tests.fixtures_soap import individual_licence
from tests.hostile.corpus import SECRET, SOAP_MESSAGE_ID, SoapCase, soap_envelope
from tests.integration.test_hostile_soap_responses import (
    CASE_BOUND,
    SENT_AT,
    TIMEOUT,
    HostileServer,
    _cases,
)

M = "urn:elicensing-bridge:certex:messages:1.0"


@pytest.fixture(scope="module")
def server() -> Iterator[HostileServer]:
    found = HostileServer()
    yield found
    found.stop()


@pytest.fixture(scope="module")
def client(server: HostileServer) -> CustomsClient:
    return CustomsClient(CustomsEndpoint(server.url, timeout=TIMEOUT))


@pytest.fixture(scope="module")
def certificate() -> bytes:
    return build_certificate(individual_licence())


def _outcome(message_id: str, inner: str) -> str:
    return f"<m:Outcome><m:MessageId>{message_id}</m:MessageId>{inner}</m:Outcome>"


def _accepted(receipt: str = "CSW-1") -> str:
    return (
        "<m:Acknowledgement><m:Status>ACCEPTED</m:Status>"
        f"<m:ReceiptId>{receipt}</m:ReceiptId>"
        "<m:ReceivedAt>2026-11-28T09:30:01Z</m:ReceivedAt></m:Acknowledgement>"
    )


def _answer(*outcomes: str) -> bytes:
    return soap_envelope(
        f'<m:SubmitCertificatesResponse xmlns:m="{M}">{"".join(outcomes)}'
        "</m:SubmitCertificatesResponse>"
    )


def _submit(client, server, case: SoapCase, certificate: bytes, count: int = 1):
    server.case = case
    server.release.clear()
    started = time.monotonic()
    outcome: list = []
    items = [
        (SOAP_MESSAGE_ID if n == 0 else f"{SOAP_MESSAGE_ID}-{n}", certificate) for n in range(count)
    ]

    def call() -> None:
        try:
            outcome.append(client.submit_certificates(items, SENT_AT))
        except BaseException as error:
            outcome.append(error)

    worker = threading.Thread(target=call, daemon=True)
    worker.start()
    worker.join(CASE_BOUND)
    server.release.set()
    if worker.is_alive():
        worker.join(CASE_BOUND)
        pytest.fail(f"{case.name}: the client was still waiting after {CASE_BOUND} s")
    return outcome[0], time.monotonic() - started


def test_a_valid_batch_answer_gives_each_certificate_its_outcome(client, server, certificate):
    refusal = (
        "<m:Refusal><m:Code>SIGNATURE_REFUSED</m:Code><m:Reason>certificate refused: not"
        " signed</m:Reason><m:Transient>false</m:Transient></m:Refusal>"
    )
    body = _answer(
        _outcome(SOAP_MESSAGE_ID, _accepted()), _outcome(f"{SOAP_MESSAGE_ID}-1", refusal)
    )
    answer, _ = _submit(
        client, server, SoapCase("control/batch", body, "", False, ""), certificate, 2
    )
    assert isinstance(answer, list) and len(answer) == 2, answer
    assert isinstance(answer[0], Acknowledgement) and answer[0].status == "ACCEPTED"
    assert isinstance(answer[1], DeliveryError) and answer[1].transient is False
    assert answer[1].code == "fault-signature_refused"
    assert answer[1].reason == (
        "customs answered Client fault SIGNATURE_REFUSED: certificate refused: not signed"
    )


@pytest.mark.parametrize(
    "outcomes",
    [
        pytest.param(lambda: [], id="no-outcome"),
        pytest.param(lambda: [_outcome(SOAP_MESSAGE_ID, _accepted())] * 2, id="one-too-many"),
        pytest.param(lambda: [_outcome("someone-else", _accepted())], id="another-message"),
        pytest.param(lambda: [_outcome(SOAP_MESSAGE_ID, "")], id="neither-outcome"),
    ],
)
def test_a_batch_answer_that_does_not_match_the_request_is_refused_whole(
    client,
    server,
    certificate,
    outcomes,
):
    case = SoapCase("batch/mismatch", _answer(*outcomes()), "invalid-response", False, "")
    result, _ = _submit(client, server, case, certificate)
    assert isinstance(result, DeliveryError), result
    assert (result.code, result.transient) == ("invalid-response", False), result.reason


@pytest.mark.parametrize("case", [pytest.param(case, id=case.name) for case in _cases()])
def test_a_hostile_answer_to_a_batch_is_a_delivery_error_for_the_whole_request(
    client,
    server,
    certificate,
    case,
):
    result, took = _submit(client, server, case, certificate)
    if not isinstance(result, DeliveryError):
        pytest.fail(f"{case.name}: expected a DeliveryError, got {result!r}")
    assert result.transient is case.transient, (case.name, result.code, result.reason)
    if case.transient:
        if case.code.endswith("-"):
            assert result.code.startswith(case.code), (case.name, result.code)
        else:
            assert result.code == case.code, (case.name, result.code, result.reason)
    assert SECRET not in result.reason and "root:x:0:0" not in result.reason
    assert took < CASE_BOUND

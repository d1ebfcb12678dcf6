"""The CERTEX contract through an independent SOAP stack: node-soap (tests/node, pinned by its
lock file, installed by scripts/setup.sh) reads the WSDL the customs simulator serves and calls
it over HTTP. A customs system or authority built on another stack than zeep sees the same
contract: 1.5's SubmitCertificates with one outcome per submission, 1.0's single
SubmitCertificate, and 1.0's WSDL without the batch operation, as an old receiver expects.

The certificates travel in the contract's `xs:any` slot, which node-soap fills with raw XML
(its `$xml` key): the envelope, the operation element, SentAt and Sender of a batch, the
SOAPAction and the parsing of the answer are node-soap's own, from the WSDL alone."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from bridge.core.certificate import build_certificate
from tests.fixtures_soap import global_licence, individual_licence

PEER = Path(__file__).resolve().parents[1] / "node" / "certex_peer.js"
M = "urn:elicensing-bridge:certex:messages:1.0"
SENT_AT = "2026-12-07T10:00:00Z"


@pytest.fixture(scope="module")
def node() -> str:
    found = shutil.which("node")
    if found is None:
        pytest.skip("no Node.js on PATH: the node-soap peer needs one")
    if not (PEER.parent / "node_modules" / "soap").is_dir():
        pytest.fail(
            "tests/node is not installed: run `ELBRIDGE_WITH_POSTGRES=1 bash scripts/setup.sh`"
        )
    return found


def _peer(node: str, wsdl: str, calls: list[dict]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [node, str(PEER), wsdl],
        input=json.dumps(calls),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _answers(done: subprocess.CompletedProcess) -> list[dict]:
    assert done.returncode == 0, done.stderr[-2000:]
    return [json.loads(line) for line in done.stdout.splitlines()]


def _element(name: str, text: str) -> str:
    return f'<{name} xmlns="{M}">{text}</{name}>'


def _certificate(licence) -> str:
    """The certificate as the bridge builds it, without its XML declaration (it goes inside
    the request)."""
    xml = build_certificate(licence).decode("utf-8")
    return xml.split("?>", 1)[1].lstrip() if xml.startswith("<?xml") else xml


def _submission(message_id: str, certificate: str) -> dict:
    return {"$xml": _element("MessageId", message_id) + certificate}


def _batch(*submissions: dict) -> dict:
    """A SubmitCertificates call: SentAt and Sender by node-soap, the submissions as given."""
    return {
        "operation": "SubmitCertificates",
        "args": {"SentAt": SENT_AT, "Sender": "NODE-PEER", "Submission": list(submissions)},
    }


def test_node_soap_delivers_a_batch_and_a_single_certificate_through_the_1_5_wsdl(
    node, customs_simulator
):
    first = _certificate(individual_licence())
    second = _certificate(global_licence())
    batch = _batch(_submission("node-1", first), _submission("node-2", second))
    # node-1 resent as it was, node-2's id reused for another certificate
    again = _batch(_submission("node-1", first), _submission("node-2", first))
    single = {
        "operation": "SubmitCertificate",
        "args": {
            "$xml": _element("MessageId", "node-3")
            + _element("SentAt", SENT_AT)
            + _element("Sender", "NODE-PEER")
            + second
        },
    }
    answers = _answers(_peer(node, f"{customs_simulator.url}?wsdl=1.5", [batch, again, single]))

    assert [a["operation"] for a in answers] == [
        "SubmitCertificates",
        "SubmitCertificates",
        "SubmitCertificate",
    ]
    outcomes = answers[0]["result"]["Outcome"]
    assert [o["MessageId"] for o in outcomes] == ["node-1", "node-2"]
    assert [o["Acknowledgement"]["Status"] for o in outcomes] == ["ACCEPTED", "ACCEPTED"]
    resent, reused = answers[1]["result"]["Outcome"]
    assert resent["Acknowledgement"]["Status"] == "DUPLICATE"
    assert resent["Acknowledgement"]["ReceiptId"] == outcomes[0]["Acknowledgement"]["ReceiptId"]
    assert reused["Refusal"]["Code"] == "MESSAGE_ID_REUSED"
    assert str(reused["Refusal"]["Transient"]).lower() == "false"
    assert answers[2]["result"]["Status"] == "ACCEPTED"
    stored = {row["message_id"]: row for row in customs_simulator.received()}
    assert sorted(stored) == ["node-1", "node-2", "node-3"]
    assert stored["node-2"]["sender"] == "NODE-PEER"


def test_node_soap_gets_a_certex_fault_for_a_request_the_contract_refuses(node, customs_simulator):
    # An element the contract does not know where the certificate belongs.
    unknown = _certificate(individual_licence()).replace("Certificate", "Certificat")
    not_a_certificate = {
        "operation": "SubmitCertificate",
        "args": {
            "$xml": _element("MessageId", "node-bad")
            + _element("SentAt", SENT_AT)
            + _element("Sender", "NODE-PEER")
            + unknown
        },
    }
    (answer,) = _answers(_peer(node, f"{customs_simulator.url}?wsdl=1.5", [not_a_certificate]))
    assert answer["fault"]["code"] == "INVALID_MESSAGE"
    assert answer["fault"]["transient"] is False
    assert "/m:SubmitCertificate/cert:Certificat:" in answer["fault"]["reason"]
    assert customs_simulator.received() == []


def test_the_1_0_wsdl_offers_node_soap_no_batch_operation(node, customs_simulator):
    done = _peer(
        node,
        f"{customs_simulator.url}?wsdl",
        [{"operation": "SubmitCertificates", "args": {}}],
    )
    assert done.returncode == 2
    assert "has no operation SubmitCertificates" in done.stderr

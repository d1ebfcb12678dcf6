"""SubmitCertificates (contract 1.5): several certificates per request, each judged on its own.

- Differential: the same corpus (generated licences, signed, plus hostile certificates:
  altered after signing, unsigned, signed by a stranger, breaking the schema, not XML, a
  MessageId reused for another certificate, an exact resend) sent one SubmitCertificate at a
  time to one simulator and in SubmitCertificates batches to another gives the same verdict
  for every certificate: the same status, or the same fault code, transient flag and reason.
- The outbox delivers through batches exactly once per certificate, on both databases (a
  backlog too small to fill batches of eight per call in flight goes one call each); a batch
  failing as a whole transiently is retried certificate by certificate within the budget, one
  whose answer was lost is answered DUPLICATE, and the budget ends it naming the reason.
- A receiver on contract 1.0 answers SubmitCertificates UNKNOWN_OPERATION: the client goes back
  to one SubmitCertificate per certificate and everything is delivered.
- WS-Security applies to the batch; a wrong password refuses every certificate with the reason.
  Batches go over mutual TLS; a TLS failure stops the run and no batch counts as an attempt.
- A licence with two versions waiting goes one call at a time, in order, beside the batches.
- The simulator serves the 1.0 WSDL at ?wsdl as before and the 1.5 one at ?wsdl=1.5.

Real ledger (SQLite and PostgreSQL), real simulator subprocesses over HTTP, real zeep clients."""

from __future__ import annotations

import math
import re
import shutil
import subprocess
import urllib.request
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import zeep
from lxml import etree

from bridge.adapters.signing import development_signer
from bridge.adapters.soap import BATCH_MESSAGES_SCHEMA_FILE, MESSAGES_NAMESPACE
from bridge.adapters.soap.client import Acknowledgement, CustomsClient, CustomsEndpoint
from bridge.adapters.soap.server_process import TlsTrust
from bridge.core.certificate import build_certificate
from bridge.core.errors import ConfigError, DeliveryError
from bridge.core.model import LicenceStatus
from bridge.core.paths import SCHEMAS_DIR
from bridge.services.config import Settings
from bridge.services.outbox import CustomsClient as OutboxClient
from bridge.services.outbox import (
    DeliveryStopped,
    batch_size_of,
    certify_pending,
    deliver_pending,
    retry_failed,
)
from bridge.testkit import licences as synth
from tests.fixtures_soap import chemicals_licence, outbox_of, save_licences
from tests.integration.test_soap_tls import settings_for

NOW = datetime.now(UTC).replace(microsecond=0)  # authority certificates are checked against it
_RECEIPT = re.compile(r"CSW-[0-9A-F]{20}")


def _message_id(name: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"batch-test:{name}"))


@pytest.fixture
def corpus(tmp_path: Path, development_authority) -> list[tuple[str, bytes]]:
    """(message id, certificate) in sending order: generated licences signed by the trusted
    authority, and hostile ones among them."""
    signer = development_authority
    stranger = development_signer(tmp_path / "stranger-keys")
    licences = list(synth.licences(24, seed=41))
    signed = [signer.sign(build_certificate(licence)) for licence in licences]
    items = [(_message_id(f"good-{n}"), xml) for n, xml in enumerate(signed[:16])]
    version = b"<Version>" + str(licences[16].version).encode() + b"</Version>"
    hostile = [
        ("altered", signed[16].replace(version, b"<Version>77</Version>", 1)),
        ("unsigned", build_certificate(licences[17])),
        ("stranger", stranger.sign(build_certificate(licences[18]))),
        ("schema", signed[19].replace(b"<DocumentCode>", b"<DocumentCode>Q", 1)),
        ("not-xml", b"<Certificate><unclosed>"),
        ("resend", signed[0]),
    ]
    assert hostile[0][1] != signed[16] and hostile[3][1] != signed[19]
    for position, (name, xml) in enumerate(hostile):
        message_id = items[0][0] if name == "resend" else _message_id(name)
        items.insert(2 + 3 * position, (message_id, xml))
    # The same MessageId as a good certificate, with another certificate: MESSAGE_ID_REUSED.
    items.append((items[1][0], signed[20]))
    items.extend((_message_id(f"good-{n}"), xml) for n, xml in enumerate(signed[21:], start=21))
    return items


def _verdict(result) -> tuple:
    if isinstance(result, Acknowledgement):
        return ("acknowledged", result.message_id, result.status)
    assert isinstance(result, DeliveryError), result
    # Receipt ids are drawn at random by each simulator; everything else must be equal.
    return ("refused", result.code, result.transient, _RECEIPT.sub("CSW-*", result.reason))


def test_a_batch_judges_every_certificate_as_single_calls_do(
    customs_simulator_factory, development_authority, corpus
):
    trusted = [development_authority.certificate_file]
    alone_at = customs_simulator_factory(trusted_authorities=trusted)
    batched_at = customs_simulator_factory(trusted_authorities=trusted)
    alone = CustomsClient(CustomsEndpoint(alone_at.url, timeout=10.0))
    batched = CustomsClient(CustomsEndpoint(batched_at.url, timeout=10.0))

    singles = []
    for message_id, xml in corpus:
        try:
            singles.append(alone.submit_certificate(message_id, xml, NOW))
        except DeliveryError as error:
            singles.append(error)
    batches = []
    for start in range(0, len(corpus), 7):  # several requests, a resend in a later one
        batches.extend(batched.submit_certificates(corpus[start : start + 7], NOW))

    assert [_verdict(r) for r in batches] == [_verdict(r) for r in singles]
    verdicts = [_verdict(r) for r in singles]
    codes = {v[1] for v in verdicts if v[0] == "refused"}
    assert codes == {
        "fault-signature_refused",
        "fault-invalid_message",
        "invalid-certificate",
        "fault-message_id_reused",
    }
    accepted = 16 + 3  # the good ones: all but the hostile five and the reused id's
    assert sum(v[0] == "acknowledged" and v[2] == "ACCEPTED" for v in verdicts) == accepted
    assert [v[2] for v in verdicts if v[0] == "acknowledged"].count("DUPLICATE") == 1
    assert any("digest mismatch" in v[3] for v in verdicts if v[0] == "refused")
    assert any("not signed" in v[3] for v in verdicts if v[0] == "refused")
    # Both stores hold the same certificates under the same ids, byte for byte.
    stored = [
        {(r["message_id"], r["document"]) for r in s.received()} for s in (alone_at, batched_at)
    ]
    assert stored[0] == stored[1] and len(stored[0]) == accepted
    stats = batched_at.stats()
    assert stats["requests"] == stats["batches"] == math.ceil(len(corpus) / 7)
    assert alone_at.stats()["requests"] == len(corpus) - 1  # the unreadable one is not sent


def _save(engine, licences) -> None:
    save_licences(engine, licences, now=NOW)


def _clients(url: str, count: int, **settings) -> list[OutboxClient]:
    chosen = Settings(soap_url=url, **{"soap_timeout": 5.0, **settings})
    return [OutboxClient(chosen) for _ in range(count)]


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> datetime:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


def test_the_outbox_delivers_in_batches_each_certificate_once(engine, customs_simulator):
    _save(engine, list(synth.licences(120, seed=42)))
    certify_pending(engine, now=NOW)

    report = deliver_pending(engine, _clients(customs_simulator.url, 2, soap_batch_size=20))

    assert (report.delivered, report.duplicate, report.failed, report.still_pending) == (
        120,
        0,
        0,
        0,
    )
    received = customs_simulator.received()
    assert len({r["message_id"] for r in received}) == len(received) == 120
    rows = outbox_of(engine)
    assert all(r["status"] == "delivered" and r["attempts"] == 1 for r in rows)
    assert {r["receipt_id"] for r in rows} == {r["receipt_id"] for r in received}
    stats = customs_simulator.stats()
    assert stats["batches"] == stats["requests"]
    assert 120 / 20 <= stats["requests"] < 120 / 2  # many certificates per call


def test_a_licence_with_two_versions_waiting_keeps_its_order_beside_batches(
    engine, customs_simulator
):
    chemicals = chemicals_licence()
    later = replace(chemicals, version=chemicals.version + 1, status=LicenceStatus.VALID)
    _save(engine, [*synth.licences(60, seed=49), chemicals, later])
    certify_pending(engine, now=NOW)

    report = deliver_pending(engine, _clients(customs_simulator.url, 1, soap_batch_size=50))

    assert (report.delivered, report.failed, report.still_pending) == (62, 0, 0)
    received = customs_simulator.received()
    versions = [r["version"] for r in received if r["reference"] == chemicals.number]
    assert versions == [chemicals.version, later.version]
    stats = customs_simulator.stats()
    assert stats["batches"] >= 1 and stats["requests"] < 62


def test_a_batch_that_fails_as_a_whole_is_retried_and_a_lost_answer_is_a_duplicate(
    engine, customs_simulator_factory
):
    simulator = customs_simulator_factory(next=2, kinds=["http503", "drop_after_store"])
    _save(engine, list(synth.licences(64, seed=43)))
    certify_pending(engine, now=NOW)
    clock = Clock()

    report = deliver_pending(
        engine,
        _clients(simulator.url, 1, soap_batch_size=8),
        now_fn=clock,
        sleep=clock.sleep,
        retry_within_run_seconds=3600,
    )

    # 64 certificates in 8 batches of 8: the first batch got a 503, the second was stored but
    # its answer lost; their 16 certificates went again (one call each: a small backlog).
    assert (report.failed, report.still_pending) == (0, 0)
    assert report.delivered + report.duplicate == 64 and report.duplicate == 8
    assert report.retried == 16
    rows = outbox_of(engine)
    assert sorted(r["attempts"] for r in rows) == [1] * 48 + [2] * 16
    assert all(r["status"] == "delivered" for r in rows)
    assert len(simulator.received()) == 64
    assert simulator.stats()["requests"] == 8 + 16


def test_a_batch_has_its_certificates_timeout_each(engine, customs_simulator_factory):
    # The receiver takes 0.8 s to answer the first two requests; the bridge's timeout is 0.4 s
    # for one certificate. Those requests are batches of 8, which may take 3.2 s: answered,
    # nothing retried. (A single call that slow times out: test_soap_client.)
    simulator = customs_simulator_factory(next=2, kinds=["timeout"], slow_seconds=0.8)
    _save(engine, list(synth.licences(40, seed=44)))
    certify_pending(engine, now=NOW)

    report = deliver_pending(
        engine, _clients(simulator.url, 1, soap_batch_size=8, soap_timeout=0.4)
    )

    assert (report.delivered, report.retried, report.failed, report.still_pending) == (
        40,
        0,
        0,
        0,
    )
    assert all(r["attempts"] == 1 for r in outbox_of(engine))
    stats = simulator.stats()
    assert stats["injected_timeout"] == 2 and stats["batches"] == stats["requests"] == 5


def test_the_retry_budget_ends_a_batch_of_transient_failures_naming_the_reason(
    engine, customs_simulator_factory
):
    simulator = customs_simulator_factory(rate=1.0, kinds=["http503"])
    _save(engine, list(synth.licences(32, seed=44)))
    certify_pending(engine, now=NOW)

    report = deliver_pending(
        engine,
        _clients(simulator.url, 1, soap_batch_size=10),
        retry_budget=timedelta(0),
        retry_within_run_seconds=0,
    )

    assert (report.delivered, report.failed, report.still_pending) == (0, 32, 0)
    assert simulator.stats()["requests"] == 4  # four batches of eight (four calls in flight)
    for _, _, why in report.failures:
        assert why.startswith("gave up after 0 s of transient failures (1 attempts")
        assert "HTTP 503" in why


def test_a_receiver_on_contract_1_0_gets_one_call_per_certificate(
    engine, customs_simulator_factory
):
    simulator = customs_simulator_factory(contract="1.0")
    _save(engine, list(synth.licences(40, seed=45)))
    certify_pending(engine, now=NOW)
    clients = _clients(simulator.url, 1, soap_batch_size=50)

    report = deliver_pending(engine, clients)

    assert (report.delivered, report.failed, report.still_pending) == (40, 0, 0)
    assert clients[0].batching is False
    stats = simulator.stats()
    # One SubmitCertificates answered UNKNOWN_OPERATION, then one call per certificate.
    assert (stats["requests"], stats["refused"], stats.get("batches", 0)) == (41, 1, 0)
    assert all(r["attempts"] == 1 for r in outbox_of(engine))
    # What the client heard: a permanent fault naming the operation the receiver lacks.
    fresh = CustomsClient(CustomsEndpoint(simulator.url))
    document = outbox_of(engine)[0]["document"].encode()
    with pytest.raises(DeliveryError, match="UNKNOWN_OPERATION") as refused:
        fresh.submit_certificates([(_message_id("x"), document)], NOW)
    assert refused.value.transient is False and fresh.batching is False


def test_batches_carry_ws_security_and_a_wrong_password_refuses_each_certificate(
    engine, customs_simulator_factory
):
    simulator = customs_simulator_factory(credentials=("bridge", "s3cret-batch"))
    _save(engine, list(synth.licences(32, seed=46)))
    certify_pending(engine, now=NOW)

    wrong = deliver_pending(
        engine,
        _clients(simulator.url, 1, soap_username="bridge", soap_password="wrong"),
    )
    assert (wrong.delivered, wrong.failed) == (0, 32)
    assert all("AUTHENTICATION_FAILED" in why for _, _, why in wrong.failures)
    assert simulator.received() == []

    again = retry_failed(engine, all_failed=True, actor="test", now=datetime.now(UTC))
    assert len(again.requeued) == 32
    right = deliver_pending(
        engine,
        _clients(simulator.url, 1, soap_username="bridge", soap_password="s3cret-batch"),
    )
    assert (right.delivered, right.failed) == (32, 0)
    # Four batches refused whole, then each certificate alone; then four batches accepted.
    assert (simulator.stats()["requests"], simulator.stats()["batches"]) == (4 + 32 + 4, 4)


def test_the_batch_size_setting_is_checked():
    assert batch_size_of(Settings(soap_batch_size=1)) == 1
    for wrong in (0, 1001, -3):
        with pytest.raises(ConfigError, match="ELBRIDGE_SOAP_BATCH_SIZE"):
            batch_size_of(Settings(soap_batch_size=wrong))
    assert OutboxClient(Settings(soap_batch_size=1)).batching is False


def _get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as answer:
            return answer.status, answer.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def test_the_simulator_serves_the_1_0_wsdl_and_the_1_5_one_beside_it(
    customs_simulator_factory, tmp_path
):
    simulator = customs_simulator_factory()
    status, old = _get(f"{simulator.url}?wsdl")
    assert status == 200 and b"SubmitCertificates" not in old
    status, new = _get(f"{simulator.url}?wsdl=1.5")
    assert status == 200 and b'name="SubmitCertificates"' in new
    client = zeep.Client(f"{simulator.url}?wsdl=1.5")
    certificate = etree.fromstring(build_certificate(next(iter(synth.licences(1, seed=47)))))
    reply = client.service.SubmitCertificates(
        SentAt=NOW,
        Sender="ELBRIDGE",
        Submission=[{"MessageId": _message_id("zeep"), "_value_1": certificate}],
    )
    assert [(o.MessageId, o.Acknowledgement.Status) for o in reply] == [
        (_message_id("zeep"), "ACCEPTED")
    ]
    only_old = customs_simulator_factory(contract="1.0")
    assert _get(f"{only_old.url}?wsdl=1.5")[0] == 404
    assert _get(f"{only_old.url}?wsdl")[1] == old.replace(
        simulator.url.encode(), only_old.url.encode()
    )


def test_xmllint_validates_a_submit_certificates_request(tmp_path, development_authority):
    xmllint = shutil.which("xmllint")
    if xmllint is None:
        pytest.fail("xmllint is not installed: run scripts/setup.sh (package libxml2-utils)")
    request = etree.Element(
        f"{{{MESSAGES_NAMESPACE}}}SubmitCertificates", nsmap={"m": MESSAGES_NAMESPACE}
    )
    etree.SubElement(request, f"{{{MESSAGES_NAMESPACE}}}SentAt").text = "2026-12-06T09:00:00Z"
    etree.SubElement(request, f"{{{MESSAGES_NAMESPACE}}}Sender").text = "ELBRIDGE"
    for n, licence in enumerate(synth.licences(3, seed=48)):
        submission = etree.SubElement(request, f"{{{MESSAGES_NAMESPACE}}}Submission")
        etree.SubElement(submission, f"{{{MESSAGES_NAMESPACE}}}MessageId").text = f"m-{n}"
        signed = development_authority.sign(build_certificate(licence))
        submission.append(etree.fromstring(signed))
    path = tmp_path / "batch.xml"
    path.write_bytes(etree.tostring(request, xml_declaration=True, encoding="UTF-8"))
    schema = SCHEMAS_DIR / BATCH_MESSAGES_SCHEMA_FILE
    checked = subprocess.run(
        [xmllint, "--noout", "--nonet", "--schema", str(schema), str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert checked.returncode == 0, checked.stderr
    # The same request with a certificate's document code broken is refused.
    path.write_bytes(path.read_bytes().replace(b"<DocumentCode>", b"<DocumentCode>Q", 1))
    refused = subprocess.run(
        [xmllint, "--noout", "--nonet", "--schema", str(schema), str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert refused.returncode != 0 and "DocumentCode" in refused.stderr


def test_batches_go_over_mutual_tls_and_a_tls_failure_stops_the_run_with_nothing_attempted(
    engine, customs_simulator_factory, tls_ca
):
    server, admin = tls_ca.server(), tls_ca.client("test-admin")
    customs = customs_simulator_factory(
        tls_cert=server.cert,
        tls_key=server.key,
        client_ca=tls_ca.ca_file,
        trust=TlsTrust(ca=server.ca, cert=admin.cert, key=admin.key),
    )
    _save(engine, list(synth.licences(40, seed=50)))
    certify_pending(engine, now=NOW)

    # Without the client certificate: TLS refused, no batch counts as an attempt.
    with pytest.raises(DeliveryStopped) as stopped:
        deliver_pending(engine, [OutboxClient(settings_for(customs.url, ca=tls_ca.ca_file))])
    assert stopped.value.cause.code == "tls-client-refused"
    assert "40 message(s) stay pending, their attempts untouched" in str(stopped.value)
    assert all((r["status"], r["attempts"]) == ("pending", 0) for r in outbox_of(engine))

    client = tls_ca.client("elbridge")
    settings = settings_for(customs.url, ca=tls_ca.ca_file, client=client, soap_batch_size=50)
    report = deliver_pending(engine, [OutboxClient(settings)])
    assert (report.delivered, report.failed, report.still_pending) == (40, 0, 0)
    assert len(customs.received()) == 40
    assert customs.stats()["batches"] == 4  # 40 certificates, four calls in flight
    assert [c["subject"].split(",")[0] for c in customs.callers()] == ["CN=elbridge"]

"""Signed certificates (contract 1.4): the bridge signs every certificate it queues with the
issuing authority's key, and the customs simulator, trusting that authority, accepts it as
signed and refuses it unsigned, altered by one byte, or signed by anyone else, storing
nothing. Two trusted authorities at once let the authority roll its key over. Real ledger
(SQLite/PostgreSQL), real simulator subprocess over HTTP, real zeep client; keys are made
here, in the test's folder."""

from __future__ import annotations

import base64
import logging
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from bridge.adapters.signing import (
    CertificateSigner,
    TrustedAuthorities,
    _make_development_authority,
    development_certificate_file,
    development_signer,
    load_signer,
)
from bridge.adapters.soap.client import CustomsClient, CustomsEndpoint
from bridge.adapters.store.licences import save_licence
from bridge.adapters.store.outbox import outbox_rows
from bridge.core.certificate import build_certificate, certificate_problems, parse_certificate
from bridge.core.errors import ConfigError, DeliveryError
from bridge.core.xmlsafe import parse_xml
from bridge.services.config import Settings
from bridge.services.outbox import CustomsClient as OutboxClient
from bridge.services.outbox import certify_pending, deliver_pending, outbox_summary
from bridge.services.signing import certificate_signer
from tests.fixtures_soap import chemicals_licence, global_licence, individual_licence

NOW = datetime.now(UTC).replace(microsecond=0)  # authority certificates are checked against it
SENT_AT = NOW


def _authority(
    folder: Path,
    name: str,
    *,
    kind: str = "ec",
    passphrase: str | None = None,
    not_after: datetime | None = None,
) -> tuple[Path, Path]:
    """An issuing authority's signing key and self-signed certificate as PEM files."""
    folder.mkdir(parents=True, exist_ok=True)
    key = (
        rsa.generate_private_key(65537, 2048)
        if kind == "rsa"
        else ec.generate_private_key(ec.SECP256R1())
    )
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "DE"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Bundesamt fuer Wirtschaft (BAFA)"),
            x509.NameAttribute(NameOID.COMMON_NAME, name),
        ]
    )
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - timedelta(days=400))
        .not_valid_after(not_after or NOW + timedelta(days=365))
        .sign(key, hashes.SHA256())
    )
    encryption = (
        serialization.BestAvailableEncryption(passphrase.encode())
        if passphrase
        else serialization.NoEncryption()
    )
    key_file, cert_file = folder / f"{name}.key", folder / f"{name}.pem"
    key_file.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption)
    )
    key_file.chmod(0o600)
    cert_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    return key_file, cert_file


@pytest.fixture
def authority(tmp_path: Path) -> tuple[CertificateSigner, Path]:
    """BAFA's current signing key (ECDSA P-256) and the certificate customs trust."""
    key, cert = _authority(tmp_path / "authority", "BAFA certificate signing 2026")
    return load_signer(key, cert), cert


@pytest.fixture
def trusting_simulator(customs_simulator_factory, authority):
    """A simulator that trusts the authority and nobody else."""
    return customs_simulator_factory(trusted_authorities=[authority[1]])


def _client(url: str) -> CustomsClient:
    return CustomsClient(CustomsEndpoint(url, timeout=10.0))


def _refusal(simulator, message_id: str, xml: bytes, *, stored: int = 0) -> DeliveryError:
    """Customs' refusal of `xml`; the simulator still holds only the `stored` certificates it
    held before."""
    with pytest.raises(DeliveryError) as refused:
        _client(simulator.url).submit_certificate(message_id, xml, SENT_AT)
    assert refused.value.transient is False  # sending it unchanged cannot help
    assert len(simulator.received()) == stored  # nothing stored
    return refused.value


def _flip(text: bytes, old: bytes, new: bytes) -> bytes:
    changed = text.replace(old, new, 1)
    assert changed != text and len(changed) == len(text)
    return changed


# ------------------------------------------------------------------- signed by the bridge


def test_a_certificate_signed_by_the_bridge_verifies_and_reads_as_the_licence(authority):
    signer, cert = authority
    licence = chemicals_licence()
    signed = signer.sign(build_certificate(licence))
    assert certificate_problems(signed) == []  # the bridge's own validation admits it
    assert parse_certificate(signed) == licence
    trusted = TrustedAuthorities.from_files([cert])
    assert trusted.verify(parse_xml(signed)).subject == signer.certificate.subject
    assert signed.rstrip().endswith(b"</ds:Signature></Certificate>")


def test_the_bridge_validation_names_a_signature_that_breaks_the_signature_schema(authority):
    signed = authority[0].sign(build_certificate(individual_licence()))
    start, end = signed.index(b"<ds:SignedInfo>"), signed.index(b"</ds:SignedInfo>")
    broken = signed[:start] + signed[end + len(b"</ds:SignedInfo>") :]  # no SignedInfo
    problems = certificate_problems(broken)
    assert problems and "/Certificate/Signature/SignatureValue" in problems[0].path
    assert "SignedInfo" in problems[0].reason


def test_the_outbox_signs_each_certificate_once_and_customs_accept_it(
    engine, development_authority, signing_customs_simulator
):
    # What the demo does: no key configured, the development authority signs, customs trust it.
    signer, trusting_simulator = development_authority, signing_customs_simulator
    with engine.begin() as conn:
        for licence in (individual_licence(), global_licence()):
            save_licence(conn, licence, source="test", now=NOW, explicit_version=True)
    assert certify_pending(engine, now=NOW, signer=signer).certified == 2
    with engine.connect() as conn:
        queued = {row["licence_number"]: row["document"] for row in outbox_rows(conn)}
    assert all("<ds:Signature" in document for document in queued.values())

    report = deliver_pending(engine, OutboxClient(Settings(soap_url=trusting_simulator.url)))
    assert (report.delivered, report.failed) == (2, 0)
    received = {row["reference"]: row for row in trusting_simulator.received()}
    assert set(received) == set(queued)
    for reference, row in received.items():
        # Customs hold the very bytes signed: the signature still verifies there.
        assert row["document"] == queued[reference]
    assert outbox_summary(engine) == {"pending": 0, "delivered": 2, "failed": 0}


def test_an_rsa_key_with_a_passphrase_from_a_file_signs_rsa_sha256(tmp_path, monkeypatch):
    key, cert = _authority(tmp_path, "BAFA RSA 2026", kind="rsa", passphrase="s3cret phrase")
    secret = tmp_path / "passphrase"
    secret.write_text("s3cret phrase\n")
    monkeypatch.setenv("ELBRIDGE_SIGNING_KEY_PASSWORD_FILE", str(secret))
    signer = certificate_signer(Settings(signing_key_file=str(key), signing_cert_file=str(cert)))
    signed = signer.sign(build_certificate(individual_licence()))
    assert b"xmldsig-more#rsa-sha256" in signed
    TrustedAuthorities.from_files([cert]).verify(parse_xml(signed))


# -------------------------------------------------------------------------------- refusals


def test_a_certificate_altered_by_one_byte_is_refused_by_customs(authority, trusting_simulator):
    signed = authority[0].sign(build_certificate(individual_licence()))
    altered = _flip(signed, b'unitCode="NAR">120<', b'unitCode="NAR">121<')
    assert certificate_problems(altered) == []  # still a valid certificate, only not authentic
    refused = _refusal(trusting_simulator, "altered-1", altered)
    assert "SIGNATURE_REFUSED" in str(refused)
    assert "certificate refused: digest mismatch" in str(refused)


def test_a_signature_value_altered_by_one_byte_is_refused(authority, trusting_simulator):
    signed = authority[0].sign(build_certificate(individual_licence()))
    start = signed.index(b"<ds:SignatureValue>") + len(b"<ds:SignatureValue>")
    value = bytearray(base64.b64decode(signed[start : signed.index(b"</ds:SignatureValue>")]))
    value[10] ^= 0x01
    tampered = (
        signed[:start]
        + base64.b64encode(bytes(value))
        + signed[signed.index(b"</ds:SignatureValue>") :]
    )
    refused = _refusal(trusting_simulator, "tampered-1", tampered)
    assert "certificate refused: signature invalid" in str(refused)


def test_an_unsigned_certificate_is_refused_when_trust_is_configured(trusting_simulator):
    refused = _refusal(trusting_simulator, "unsigned-1", build_certificate(individual_licence()))
    assert "certificate refused: not signed" in str(refused)


def test_a_certificate_signed_by_an_untrusted_authority_is_refused_naming_it(
    tmp_path, trusting_simulator
):
    key, cert = _authority(tmp_path / "impostor", "Not BAFA at all")
    signed = load_signer(key, cert).sign(build_certificate(individual_licence()))
    refused = _refusal(trusting_simulator, "impostor-1", signed)
    assert "certificate refused: signed by an authority not trusted here" in str(refused)
    assert "CN=Not BAFA at all" in str(refused)


def test_a_certificate_signed_with_an_expired_authority_certificate_is_refused(
    tmp_path, customs_simulator_factory
):
    key, cert = _authority(tmp_path / "old", "BAFA 2024", not_after=NOW - timedelta(days=1))
    with pytest.raises(ConfigError, match="not now"):  # the bridge will not sign with it
        load_signer(key, cert)
    loaded = serialization.load_pem_private_key(key.read_bytes(), password=None)
    signer = CertificateSigner(loaded, x509.load_pem_x509_certificate(cert.read_bytes()))
    simulator = customs_simulator_factory(trusted_authorities=[cert])
    refused = _refusal(simulator, "expired-1", signer.sign(build_certificate(individual_licence())))
    assert "certificate refused: the signer's certificate" in str(refused)


def test_without_trusted_authorities_the_simulator_accepts_unsigned(customs_simulator):
    # As before 1.4, and as a receiver that has enrolled no authority yet.
    answer = _client(customs_simulator.url).submit_certificate(
        "plain-1", build_certificate(individual_licence()), SENT_AT
    )
    assert answer.status == "ACCEPTED"


# -------------------------------------------------------------------------------- rotation


def test_two_trusted_authorities_at_once_accept_both_keys_during_a_rollover(
    tmp_path, authority, customs_simulator_factory
):
    old_signer, old_cert = authority
    key, new_cert = _authority(tmp_path / "next", "BAFA certificate signing 2027", kind="rsa")
    new_signer = load_signer(key, new_cert)
    both = customs_simulator_factory(trusted_authorities=[old_cert, new_cert])
    client = _client(both.url)
    before = old_signer.sign(build_certificate(individual_licence()))
    after = new_signer.sign(build_certificate(individual_licence(version=2)))
    assert client.submit_certificate("rollover-1", before, SENT_AT).status == "ACCEPTED"
    assert client.submit_certificate("rollover-2", after, SENT_AT).status == "ACCEPTED"
    assert [row["version"] for row in both.received()] == [1, 2]

    # Once the old certificate is withdrawn, what the old key signs is refused.
    only_new = customs_simulator_factory(trusted_authorities=[new_cert])
    refused = _refusal(only_new, "rollover-3", before)
    assert "CN=BAFA certificate signing 2026" in str(refused)


def test_trusted_authorities_may_come_from_the_environment_as_a_path_list(
    tmp_path, authority, customs_simulator_factory
):
    key, second = _authority(tmp_path / "second", "BAFA certificate signing 2027")
    listed = os.pathsep.join([str(authority[1]), str(second)])
    simulator = customs_simulator_factory(environment={"ELBRIDGE_SIM_TRUSTED_AUTHORITIES": listed})
    signed = load_signer(key, second).sign(build_certificate(individual_licence()))
    assert _client(simulator.url).submit_certificate("env-1", signed, SENT_AT).status == "ACCEPTED"
    unsigned = build_certificate(individual_licence(version=2))
    assert "not signed" in str(_refusal(simulator, "env-2", unsigned, stored=1))


def test_a_trusted_authority_file_that_cannot_be_read_stops_the_simulator_saying_which(
    tmp_path, customs_simulator_factory
):
    missing = tmp_path / "no-such-authority.pem"
    with pytest.raises(RuntimeError) as failed:
        customs_simulator_factory(trusted_authorities=[missing])
    assert f"--trusted-authority={missing}: cannot read" in str(failed.value)


# ------------------------------------------------------------------------ key configuration


def test_without_a_configured_key_the_development_authority_signs_and_warns_once(tmp_path, caplog):
    settings = Settings(home=tmp_path / "home")
    with caplog.at_level(logging.WARNING, logger="bridge.adapters.signing"):
        first = certificate_signer(settings)
        again = certificate_signer(settings)
    assert first.certificate == again.certificate  # made once, then reused
    warnings = [r for r in caplog.records if "development authority" in r.getMessage()]
    assert len(warnings) == 1
    key_file = tmp_path / "home" / "keys" / "development-authority" / "signing-key.pem"
    assert key_file.stat().st_mode & 0o777 == 0o600
    assert first.certificate_file == development_certificate_file(tmp_path / "home" / "keys")
    assert "PRIVATE KEY" not in caplog.text


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"signing_key_file": "KEY"}, "ELBRIDGE_SIGNING_CERT_FILE is not"),
        ({"signing_key_file": "KEY", "signing_cert_file": "OTHER"}, "is not the key of"),
        ({"signing_key_file": "missing", "signing_cert_file": "CERT"}, "cannot read"),
        ({"signing_key_file": "CERT", "signing_cert_file": "CERT"}, "not a PEM private key"),
    ],
)
def test_a_signing_key_that_cannot_be_used_is_a_configuration_error(tmp_path, change, message):
    key, cert = _authority(tmp_path / "a", "A")
    _, other = _authority(tmp_path / "b", "B")
    files = {"KEY": str(key), "CERT": str(cert), "OTHER": str(other)}
    settings = Settings(
        **{name: files.get(value, str(tmp_path / value)) for name, value in change.items()}
    )
    with pytest.raises(ConfigError, match=message) as error:
        certificate_signer(settings)
    assert "BEGIN" not in str(error.value)  # names files, never prints key material


def test_an_encrypted_key_without_its_passphrase_is_a_configuration_error(tmp_path, monkeypatch):
    key, cert = _authority(tmp_path, "locked", passphrase="right")
    monkeypatch.delenv("ELBRIDGE_SIGNING_KEY_PASSWORD", raising=False)
    monkeypatch.delenv("ELBRIDGE_SIGNING_KEY_PASSWORD_FILE", raising=False)
    settings = Settings(signing_key_file=str(key), signing_cert_file=str(cert))
    with pytest.raises(ConfigError, match="no passphrase was given"):
        certificate_signer(settings)
    monkeypatch.setenv("ELBRIDGE_SIGNING_KEY_PASSWORD", "wrong")
    with pytest.raises(ConfigError, match="passphrase is wrong") as error:
        certificate_signer(settings)
    assert "wrong" not in str(error.value).replace("passphrase is wrong", "")


def test_two_processes_making_the_development_authority_at_once_keep_one(tmp_path):
    # Both found no key and made one: the first rename wins, the second's pair is dropped
    # whole (no mixed pair, no staging folder left behind).
    folder = tmp_path / "keys"
    first = development_signer(folder)
    _make_development_authority(folder / "development-authority")
    second = development_signer(folder)
    assert first.certificate == second.certificate
    assert [p.name for p in folder.iterdir()] == ["development-authority"]

"""The contract loads and holds in validators other than the bridge's own (lxml and xmlschema):
libxml2's command line (`xmllint --schema`) and Java's JAXP with its default settings, which
caps maxOccurs at 5000 (jdk.xml.maxOccurLimit). Java also verifies the bridge's signatures with
the JDK's own XMLSignatureFactory, so a Java customs system can check a certificate's
authenticity without our code (tests/system/java/ContractValidator.java)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
from lxml import etree

from bridge.adapters.signing import development_certificate_file, development_signer
from bridge.adapters.soap import MESSAGES_NAMESPACE
from bridge.core.certificate import build_certificate
from bridge.core.paths import SCHEMAS_DIR
from tests.fixtures_soap import chemicals_licence, individual_licence

JAVA_SOURCE = Path(__file__).parent / "java" / "ContractValidator.java"
SCHEMA_FILES = sorted(SCHEMAS_DIR.glob("*.xsd"))
CONTRACT_FILES = SCHEMA_FILES + sorted(SCHEMAS_DIR.glob("*.wsdl"))
CERTIFICATE_XSD = SCHEMAS_DIR / "certex-certificate-1.0.xsd"
MESSAGES_XSD = SCHEMAS_DIR / "certex-messages-1.0.xsd"
JAXP_MAX_OCCURS = 5000  # jdk.xml.maxOccurLimit's default


@pytest.fixture(scope="module")
def samples(tmp_path_factory) -> dict[str, Path]:
    """Certificates as the bridge sends them (signed by a development authority made here),
    the same unsigned, one altered after signing, and a SubmitCertificate carrying one."""
    folder = tmp_path_factory.mktemp("contract-samples")
    signer = development_signer(folder / "keys")
    unsigned = build_certificate(individual_licence())
    signed = signer.sign(unsigned)
    files = {
        "unsigned": unsigned,
        "signed": signed,
        "signed-unicode": signer.sign(build_certificate(chemicals_licence())),
        "altered": signed.replace(b'unitCode="NAR">120<', b'unitCode="NAR">121<', 1),
        "submit": _submit_certificate(signed),
    }
    assert files["altered"] != signed
    paths = {name: folder / f"{name}.xml" for name in files}
    for name, data in files.items():
        paths[name].write_bytes(data)
    paths["authority"] = development_certificate_file(folder / "keys")
    return paths


def _submit_certificate(certificate: bytes) -> bytes:
    """A SubmitCertificate body element around `certificate`, as a SOAP toolkit puts it in."""
    message = etree.Element(
        f"{{{MESSAGES_NAMESPACE}}}SubmitCertificate", nsmap={"m": MESSAGES_NAMESPACE}
    )
    for name, text in (
        ("MessageId", "6f1c1a52-3c55-5d6e-9d0e-8c1a4e2f7b10"),
        ("SentAt", "2026-12-06T09:00:00Z"),
        ("Sender", "ELBRIDGE"),
    ):
        etree.SubElement(message, f"{{{MESSAGES_NAMESPACE}}}{name}").text = text
    message.append(etree.fromstring(certificate))
    return etree.tostring(message, xml_declaration=True, encoding="UTF-8")


# ------------------------------------------------------------------------------- the bound


@pytest.mark.parametrize("contract", CONTRACT_FILES, ids=lambda path: path.name)
def test_no_max_occurs_above_what_jaxp_allows(contract: Path) -> None:
    text = contract.read_text(encoding="utf-8")
    bounds = [int(value) for value in re.findall(r'maxOccurs="([0-9]+)"', text)]
    assert all(bound <= JAXP_MAX_OCCURS for bound in bounds), (contract.name, bounds)


def test_the_line_bound_is_kept_by_unique_line_numbers_of_five_digits() -> None:
    # maxOccurs="unbounded" on Line: the unique LineNumber of 1..99999 still bounds the lines.
    xs = {"xs": "http://www.w3.org/2001/XMLSchema"}
    schema = etree.parse(str(CERTIFICATE_XSD))
    (unique,) = schema.xpath("//xs:element[@name='Certificate']/xs:unique", namespaces=xs)
    assert unique.find("xs:field", xs).get("xpath") == "c:LineNumber"
    (bound,) = schema.xpath(
        "//xs:simpleType[@name='LineNumberType']//xs:maxInclusive/@value", namespaces=xs
    )
    assert bound == "99999"


# ---------------------------------------------------------------------------------- xmllint


def _xmllint() -> str:
    found = shutil.which("xmllint")
    if found is None:
        pytest.fail("xmllint is not installed: run scripts/setup.sh (package libxml2-utils)")
    return found


def _xmllint_schema(schema: Path, document: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [_xmllint(), "--noout", "--nonet", "--schema", str(schema), str(document)],
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize("sample", ["unsigned", "signed", "signed-unicode"])
def test_xmllint_validates_certificates_signed_or_not(samples, sample: str) -> None:
    checked = _xmllint_schema(CERTIFICATE_XSD, samples[sample])
    assert checked.returncode == 0, checked.stderr
    assert "validates" in checked.stderr


def test_xmllint_validates_a_submit_certificate_carrying_a_signed_certificate(samples) -> None:
    checked = _xmllint_schema(MESSAGES_XSD, samples["submit"])
    assert checked.returncode == 0, checked.stderr


def test_xmllint_refuses_a_signature_out_of_its_place(samples, tmp_path: Path) -> None:
    # The signature is the certificate's last element; anywhere else the schema says no.
    root = etree.parse(str(samples["signed"])).getroot()
    signature = root[-1]
    root.insert(0, signature)
    moved = tmp_path / "moved.xml"
    moved.write_bytes(etree.tostring(root))
    checked = _xmllint_schema(CERTIFICATE_XSD, moved)
    assert checked.returncode != 0
    assert "Signature" in checked.stderr


# ------------------------------------------------------------------------------------- JAXP


@pytest.fixture(scope="module")
def java(tmp_path_factory) -> list[str]:
    """The command that runs ContractValidator, compiled for this run; skipped without a JDK."""
    javac, java = shutil.which("javac"), shutil.which("java")
    if javac is None or java is None:
        pytest.skip("no JDK found (javac and java not on PATH): the JAXP checks need one")
    classes = tmp_path_factory.mktemp("java-classes")
    subprocess.run(
        [javac, "-d", str(classes), str(JAVA_SOURCE)], check=True, capture_output=True, timeout=120
    )
    return [java, "-cp", str(classes), "ContractValidator"]


def _run(command: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(command, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("schema", SCHEMA_FILES, ids=lambda path: path.name)
def test_every_schema_loads_in_java_jaxp_with_default_settings(java, schema: Path) -> None:
    checked = _run([*java, "schema", str(schema)])
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"loaded {schema}" in checked.stdout


def test_jaxp_validates_certificates_and_the_message_carrying_one(java, samples) -> None:
    documents = [samples[name] for name in ("unsigned", "signed", "signed-unicode")]
    checked = _run([*java, "schema", str(CERTIFICATE_XSD), *map(str, documents)])
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert checked.stdout.count("valid ") == 3
    message = _run([*java, "schema", str(MESSAGES_XSD), str(samples["submit"])])
    assert message.returncode == 0, message.stdout + message.stderr


def test_jaxp_refuses_a_schema_with_the_old_bound(java, tmp_path: Path) -> None:
    # What 1.3 published: maxOccurs="99999" on Line is over JAXP's limit, so Java could not
    # load the contract. Shows the check above would catch the bound coming back.
    for name in ("certex-certificate-1.0.xsd", "xmldsig-core-schema.xsd"):
        shutil.copy(SCHEMAS_DIR / name, tmp_path / name)
    old = tmp_path / "certex-certificate-1.0.xsd"
    text = old.read_text(encoding="utf-8")
    old.write_text(
        text.replace(
            'name="Line" type="c:LineType" maxOccurs="unbounded"',
            'name="Line" type="c:LineType" maxOccurs="99999"',
        ),
        encoding="utf-8",
    )
    assert old.read_text(encoding="utf-8") != text
    checked = _run([*java, "schema", str(old)])
    assert checked.returncode == 1
    assert "refused:" in checked.stdout and "5,000" in checked.stdout


def test_java_verifies_the_bridge_signature_against_the_trusted_authority(java, samples) -> None:
    checked = _run([*java, "verify", str(samples["authority"]), str(samples["signed"])])
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "verified" in checked.stdout and "development authority" in checked.stdout


def test_java_refuses_a_certificate_altered_after_signing(java, samples) -> None:
    checked = _run([*java, "verify", str(samples["authority"]), str(samples["altered"])])
    assert checked.returncode == 1
    assert "digest mismatch" in checked.stdout


def test_java_refuses_an_unsigned_certificate(java, samples) -> None:
    checked = _run([*java, "verify", str(samples["authority"]), str(samples["unsigned"])])
    assert checked.returncode == 1
    assert "refused: not signed" in checked.stdout

"""XML Signatures on certificates, with signxml: the issuing authority's key signs every
certificate the bridge sends, and a receiver checks the signature against the authority
certificates it trusts.

The signature is enveloped and covers the whole certificate: Reference URI="", transforms
enveloped-signature and Exclusive C14N 1.0, digest SHA-256, signed RSA-SHA256 (an RSA key of
2048 bits or more) or ECDSA-SHA256 (an EC key), KeyInfo carrying the authority's X.509
certificate. The signed certificate is again Exclusive C14N 1.0, so it is carried and stored
byte for byte; it is signed once, when it is queued, and a resend carries the same bytes.

Trust is by pinning: a receiver lists the authority certificates it accepts (two at once while
the authority rolls its key over), and a signature counts only when the certificate in its
KeyInfo is one of them, unexpired, and the signature verifies with its key.

A development authority (`development_signer`) stands in where no key is configured: a P-256
key and a self-signed certificate made once under the bridge's home, never for production."""

from __future__ import annotations

import base64
import contextlib
import logging
import os
import shutil
import tempfile
import threading
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID
from lxml import etree
from signxml import (
    CanonicalizationMethod,
    DigestAlgorithm,
    SignatureConfiguration,
    SignatureMethod,
    XMLSigner,
    XMLVerifier,
)
from signxml.algorithms import SignatureConstructionMethod
from signxml.exceptions import InvalidCertificate, InvalidDigest, InvalidInput, InvalidSignature

from bridge.core.certificate import MAX_CERTIFICATE_BYTES
from bridge.core.errors import BridgeError, ConfigError
from bridge.core.xmlsafe import parse_xml

log = logging.getLogger(__name__)

SIGNATURE_NAMESPACE = "http://www.w3.org/2000/09/xmldsig#"
_NS = {"ds": SIGNATURE_NAMESPACE}
_SIGNATURE = f"{{{SIGNATURE_NAMESPACE}}}Signature"
MIN_RSA_BITS = 2048
# What a certificate's signature may be made with; anything else (SHA-1, HMAC, DSA) is refused.
ACCEPTED_METHODS = frozenset({SignatureMethod.RSA_SHA256, SignatureMethod.ECDSA_SHA256})
_EXPECTED = SignatureConfiguration(
    require_x509=True,
    location="./",  # a child of the Certificate itself: enveloped, and the only place looked at
    expect_references=1,
    signature_methods=ACCEPTED_METHODS,
    digest_algorithms=frozenset({DigestAlgorithm.SHA256}),
)
# The transforms a reference may name: what the bridge writes (enveloped, then Exclusive C14N)
# and the plain canonicalisations; never one that could leave part of the certificate out.
_TRANSFORMS = frozenset(
    {
        SignatureConstructionMethod.enveloped.value,
        CanonicalizationMethod.EXCLUSIVE_XML_CANONICALIZATION_1_0.value,
        CanonicalizationMethod.CANONICAL_XML_1_0.value,
        CanonicalizationMethod.CANONICAL_XML_1_1.value,
    }
)
DEVELOPMENT_FOLDER = "development-authority"
DEVELOPMENT_KEY = "signing-key.pem"
DEVELOPMENT_CERTIFICATE = "signing-cert.pem"
DEVELOPMENT_SUBJECT = "eLicensing bridge development authority (not for production)"


class SignatureRefused(BridgeError, ValueError):
    """A certificate whose signature does not make it authentic here; the message says why."""


def describe(certificate: x509.Certificate) -> str:
    """`CN=...,O=...,C=DE (serial 0x1a2b..., SHA-256 ab:cd:...)`: who, and which certificate."""
    fingerprint = certificate.fingerprint(hashes.SHA256()).hex(":")
    return (
        f"{certificate.subject.rfc4514_string()} (serial {certificate.serial_number:#x},"
        f" SHA-256 {fingerprint})"
    )


# ------------------------------------------------------------------------------------ signing


class CertificateSigner:
    """Signs certificates with one authority key and its X.509 certificate. Safe to share
    between threads (a new signxml signer per signature)."""

    def __init__(
        self,
        key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey,
        certificate: x509.Certificate,
        *,
        certificate_file: Path | None = None,
    ) -> None:
        self._key = key
        self.certificate = certificate
        self.certificate_file = certificate_file
        if isinstance(key, rsa.RSAPrivateKey):
            self.method = SignatureMethod.RSA_SHA256
        else:
            self.method = SignatureMethod.ECDSA_SHA256
        self._chain = [certificate]

    @property
    def subject(self) -> str:
        return self.certificate.subject.rfc4514_string()

    def sign(self, xml: bytes) -> bytes:
        """`xml` (a certificate, or any document) with an enveloped signature over all of it as
        its root's last child, as Exclusive C14N 1.0 in UTF-8."""
        root = parse_xml(xml, max_bytes=MAX_CERTIFICATE_BYTES, what="the certificate to sign")
        signer = XMLSigner(
            method=SignatureConstructionMethod.enveloped,
            signature_algorithm=self.method,
            digest_algorithm=DigestAlgorithm.SHA256,
            c14n_algorithm=CanonicalizationMethod.EXCLUSIVE_XML_CANONICALIZATION_1_0,
        )
        signed = signer.sign(root, key=self._key, cert=self._chain)
        return etree.tostring(signed, method="c14n", exclusive=True)


def _read(path: Path, variable: str, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as error:
        raise ConfigError(f"{variable}={path}: cannot read the {what} ({error.strerror})") from None


def load_certificate(path: Path | str, variable: str) -> x509.Certificate:
    """The first X.509 certificate in the PEM file `path` (named by `variable` in messages)."""
    path = Path(path).expanduser()
    data = _read(path, variable, "certificate")
    try:
        return x509.load_pem_x509_certificate(data)
    except ValueError:
        raise ConfigError(f"{variable}={path}: not a PEM X.509 certificate") from None


def load_signer(
    key_file: Path | str,
    cert_file: Path | str,
    *,
    passphrase: str | None = None,
    now: datetime | None = None,
) -> CertificateSigner:
    """The signer of the PEM key in `key_file` (encrypted with `passphrase`, or not) and its
    certificate in `cert_file`. A ConfigError names the file and the reason when the key cannot
    be read, is not RSA of 2048 bits or more or EC, does not belong to the certificate, or the
    certificate is not valid at `now` (never the key or the passphrase themselves)."""
    key_path, cert_path = Path(key_file).expanduser(), Path(cert_file).expanduser()
    key_variable, cert_variable = "ELBRIDGE_SIGNING_KEY_FILE", "ELBRIDGE_SIGNING_CERT_FILE"
    data = _read(key_path, key_variable, "signing key")
    password = passphrase.encode("utf-8") if passphrase else None
    try:
        key = serialization.load_pem_private_key(data, password=password)
    except TypeError:  # encrypted without a passphrase, or a passphrase for a plain key
        raise ConfigError(
            f"{key_variable}={key_path}: the key is encrypted and no passphrase was given"
            " (ELBRIDGE_SIGNING_KEY_PASSWORD or _PASSWORD_FILE)"
            if password is None
            else f"{key_variable}={key_path}: a passphrase was given but the key is not encrypted"
        ) from None
    except ValueError:
        raise ConfigError(
            f"{key_variable}={key_path}: not a PEM private key, or the passphrase is wrong"
        ) from None
    if isinstance(key, rsa.RSAPrivateKey):
        if key.key_size < MIN_RSA_BITS:
            raise ConfigError(
                f"{key_variable}={key_path}: an RSA key of {key.key_size} bits; certificates are"
                f" signed with {MIN_RSA_BITS} bits or more"
            )
    elif not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ConfigError(
            f"{key_variable}={key_path}: a {type(key).__name__}; certificates are signed with an"
            " RSA or an EC (ECDSA) key"
        )
    certificate = load_certificate(cert_path, cert_variable)
    if certificate.public_key() != key.public_key():
        raise ConfigError(
            f"{key_variable}={key_path} is not the key of the certificate in {cert_variable}="
            f"{cert_path} ({certificate.subject.rfc4514_string()})"
        )
    now = now or datetime.now(UTC)
    if not certificate.not_valid_before_utc <= now <= certificate.not_valid_after_utc:
        raise ConfigError(
            f"{cert_variable}={cert_path}: the signing certificate"
            f" {certificate.subject.rfc4514_string()} is valid from"
            f" {certificate.not_valid_before_utc:%Y-%m-%d %H:%M} to"
            f" {certificate.not_valid_after_utc:%Y-%m-%d %H:%M} UTC, not now: customs would"
            " refuse every certificate signed with it"
        )
    return CertificateSigner(key, certificate, certificate_file=cert_path)


# ------------------------------------------------------------------- the development authority

_warned: set[Path] = set()
_warned_lock = threading.Lock()


def development_certificate_file(folder: Path) -> Path:
    """Where the development authority's certificate is (or will be) under `folder`: what a
    simulator trusts to accept the development signatures."""
    return Path(folder) / DEVELOPMENT_FOLDER / DEVELOPMENT_CERTIFICATE


def development_signer(folder: Path) -> CertificateSigner:
    """The development authority under `folder` (made on first use: a P-256 key, mode 0600,
    and a self-signed certificate valid ten years, in `folder`/development-authority/). Logged
    once per process as a WARNING: certificates it signs are refused by customs that trust
    only the real authority."""
    authority = Path(folder) / DEVELOPMENT_FOLDER
    if not (authority / DEVELOPMENT_KEY).is_file():
        _make_development_authority(authority)
    signer = load_signer(authority / DEVELOPMENT_KEY, authority / DEVELOPMENT_CERTIFICATE)
    with _warned_lock:
        if authority not in _warned:
            _warned.add(authority)
            log.warning(
                "signing certificates with the development authority key in %s, not an issuing"
                " authority's: set ELBRIDGE_SIGNING_KEY_FILE and ELBRIDGE_SIGNING_CERT_FILE in"
                " production",
                authority,
            )
    return signer


def _make_development_authority(authority: Path) -> None:
    # Made in a private folder beside it and renamed into place whole: two processes starting
    # at once both make one, one rename wins, and nobody ever reads half a key pair.
    authority.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".development-authority-", dir=authority.parent))
    try:
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name(
            [
                x509.NameAttribute(NameOID.COMMON_NAME, DEVELOPMENT_SUBJECT),
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, "eLicensing bridge"),
            ]
        )
        now = datetime.now(UTC)
        certificate = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(minutes=5))
            .not_valid_after(now + timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=True,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=False,
                    crl_sign=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .sign(key, hashes.SHA256())
        )
        key_pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        descriptor = os.open(staging / DEVELOPMENT_KEY, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "wb") as key_out:
            key_out.write(key_pem)
        (staging / DEVELOPMENT_CERTIFICATE).write_bytes(
            certificate.public_bytes(serialization.Encoding.PEM)
        )
        with contextlib.suppress(OSError):  # another process renamed its own first: use that
            staging.rename(authority)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


# --------------------------------------------------------------------------------- verifying


class TrustedAuthorities:
    """The authority certificates a receiver accepts signatures from (PEM, pinned: the very
    certificate in a signature's KeyInfo must be one of them). Safe to share between threads."""

    def __init__(self, certificates: Iterable[x509.Certificate]) -> None:
        self._by_der = {
            certificate.public_bytes(serialization.Encoding.DER): certificate
            for certificate in certificates
        }

    @classmethod
    def from_files(
        cls, paths: Iterable[Path | str], variable: str = "--trusted-authority"
    ) -> TrustedAuthorities:
        """Every certificate in the PEM files `paths` (a file may hold several); a ConfigError
        names a file that cannot be read or holds none."""
        certificates = []
        for path in paths:
            path = Path(path).expanduser()
            data = _read(path, variable, "authority certificate")
            try:
                found = x509.load_pem_x509_certificates(data)
            except ValueError:
                raise ConfigError(f"{variable}={path}: no PEM X.509 certificate in it") from None
            certificates.extend(found)
        return cls(certificates)

    def __len__(self) -> int:
        return len(self._by_der)

    def subjects(self) -> list[str]:
        return [describe(certificate) for certificate in self._by_der.values()]

    def verify(self, certificate: etree._Element) -> x509.Certificate:
        """The trusted authority certificate `certificate`'s enveloped signature was made with.
        Raises SignatureRefused saying why not: not signed, more than one signature, no X.509
        certificate in it, signed by an authority not trusted here (named), an expired
        authority certificate, a digest mismatch (the certificate was altered after signing),
        a signature value that does not verify, an algorithm or reference not accepted."""
        signatures = certificate.findall(_SIGNATURE)
        if not signatures:
            raise SignatureRefused("not signed")
        if len(signatures) > 1:
            raise SignatureRefused(f"{len(signatures)} signatures; one enveloped signature is made")
        signature = signatures[0]
        signer = _signer_certificate(signature)
        trusted = self._by_der.get(signer.public_bytes(serialization.Encoding.DER))
        if trusted is None:
            raise SignatureRefused(f"signed by an authority not trusted here: {describe(signer)}")
        _check_reference(signature)
        try:
            XMLVerifier().verify(certificate, x509_cert=trusted, expect_config=_EXPECTED)
        except InvalidDigest:
            raise SignatureRefused(
                "digest mismatch: the certificate was altered after it was signed"
            ) from None
        except InvalidCertificate as error:
            raise SignatureRefused(
                f"the signer's certificate {describe(trusted)} is not valid: {error}"
            ) from None
        except InvalidSignature:
            raise SignatureRefused(
                f"signature invalid: the signature value does not verify with the key of"
                f" {describe(trusted)}"
            ) from None
        except (InvalidInput, etree.DocumentInvalid) as error:
            raise SignatureRefused(f"the signature is not one accepted here: {error}") from None
        return trusted


def _signer_certificate(signature: etree._Element) -> x509.Certificate:
    text = signature.findtext("ds:KeyInfo/ds:X509Data/ds:X509Certificate", namespaces=_NS)
    if not text or not text.strip():
        raise SignatureRefused(
            "the signature carries no X.509 certificate of its signer"
            " (KeyInfo/X509Data/X509Certificate)"
        )
    try:
        return x509.load_der_x509_certificate(base64.b64decode("".join(text.split())))
    except ValueError:
        raise SignatureRefused(
            "the X.509 certificate in the signature's KeyInfo cannot be read"
        ) from None


def _check_reference(signature: etree._Element) -> None:
    """One reference, to the whole certificate (URI=""), through enveloped-signature and
    canonicalisation only: a signature over part of a certificate authenticates nothing."""
    references = signature.findall("ds:SignedInfo/ds:Reference", namespaces=_NS)
    if len(references) != 1 or references[0].get("URI") != "":
        uris = ", ".join(repr(reference.get("URI")) for reference in references) or "none"
        raise SignatureRefused(
            f'the signature must have one reference to the whole certificate (URI=""), not {uris}'
        )
    algorithms = [
        transform.get("Algorithm")
        for transform in references[0].iterfind("ds:Transforms/ds:Transform", namespaces=_NS)
    ]
    if SignatureConstructionMethod.enveloped.value not in algorithms or not set(algorithms) <= (
        _TRANSFORMS
    ):
        raise SignatureRefused(
            "the signature's transforms must be enveloped-signature and a canonicalisation,"
            f" not {', '.join(str(a) for a in algorithms) or 'none'}"
        )

"""A throwaway certificate authority made at test time (trustme): server certificates for
127.0.0.1/localhost, client certificates by identity, expired ones and a second, untrusted CA.
Keys live in the test's tmp_path and nowhere else; nothing here is committed."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import trustme


@dataclass(frozen=True)
class PemFiles:
    """One certificate and its key as PEM files, with the CA bundle that vouches for it."""

    cert: Path  # the certificate chain (leaf first)
    key: Path
    ca: Path


class TestCA:
    """A certificate authority writing PEM files under `folder`."""

    __test__ = False  # not a test class

    def __init__(self, folder: Path, name: str = "elbridge test CA") -> None:
        self.folder = folder
        self.name = name
        self.ca = trustme.CA(organization_name=name)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.ca_file = self.folder / f"{_slug(name)}-ca.pem"
        self.ca.cert_pem.write_to_path(str(self.ca_file))

    def issue(
        self,
        *identities: str,
        common_name: str | None = None,
        organization: str | None = None,
        not_before: dt.datetime | None = None,
        not_after: dt.datetime | None = None,
        label: str | None = None,
    ) -> PemFiles:
        """A leaf certificate for `identities` (host names, IP addresses or e-mail addresses as
        subjectAltName), valid from `not_before` to `not_after` (default: now to a year on)."""
        leaf = self.ca.issue_cert(
            *identities,
            common_name=common_name,
            organization_name=organization,
            not_before=not_before,
            not_after=not_after,
        )
        stem = _slug(label or common_name or (identities[0] if identities else "leaf"))
        cert, key = self.folder / f"{stem}.crt", self.folder / f"{stem}.key"
        leaf.cert_chain_pems[0].write_to_path(str(cert))
        for extra in leaf.cert_chain_pems[1:]:
            extra.write_to_path(str(cert), append=True)
        leaf.private_key_pem.write_to_path(str(key))
        key.chmod(0o600)
        return PemFiles(cert=cert, key=key, ca=self.ca_file)

    def server(self) -> PemFiles:
        """A server certificate for the addresses tests connect to."""
        return self.issue("127.0.0.1", "localhost", common_name="localhost", label="server")

    def client(self, identity: str, **options) -> PemFiles:
        """A client certificate naming `identity` as its common name and DNS subjectAltName."""
        return self.issue(
            identity, common_name=identity, label=options.pop("label", identity), **options
        )

    def expired(self, identity: str) -> PemFiles:
        now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
        return self.issue(
            identity,
            common_name=identity,
            not_before=now - dt.timedelta(days=30),
            not_after=now - dt.timedelta(days=1),
            label=f"{identity}-expired",
        )


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-." else "-" for c in text).strip("-") or "x"


@pytest.fixture
def tls_ca(tmp_path: Path) -> TestCA:
    """The test's own CA (files under tmp_path/tls)."""
    return TestCA(tmp_path / "tls")


@pytest.fixture
def other_ca(tmp_path: Path) -> TestCA:
    """A second CA that nothing trusts: its certificates must be refused."""
    return TestCA(tmp_path / "tls-other", name="elbridge untrusted CA")


@pytest.fixture
def tls_ca_factory(tmp_path: Path) -> Callable[[str], TestCA]:
    """More CAs by name (key rotation: two authorities at once)."""

    def make(name: str) -> TestCA:
        return TestCA(tmp_path / f"tls-{_slug(name)}", name=name)

    return make

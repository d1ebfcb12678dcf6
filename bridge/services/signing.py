"""Which key signs the certificates: the issuing authority's, as the settings name it
(signing_key_file and signing_cert_file, PEM; a passphrase from ELBRIDGE_SIGNING_KEY_PASSWORD
or the file ELBRIDGE_SIGNING_KEY_PASSWORD_FILE names), else the development authority under
the bridge's home (made on first use, logged as a WARNING). Every certificate is signed
either way, so customs configured to trust the development key exercise the same path as
production."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from bridge.adapters.signing import (
    CertificateSigner,
    development_signer,
    load_signer,
)
from bridge.core.errors import ConfigError
from bridge.services.config import Settings, environment_value


def keys_folder(settings: Settings) -> Path:
    """Where the development authority lives: `home`/keys."""
    return settings.home / "keys"


def certificate_signer(settings: Settings, *, now: datetime | None = None) -> CertificateSigner:
    """The signer of every certificate sent. A ConfigError when only one of the key and the
    certificate is configured, or when they cannot be used (see load_signer)."""
    key_file, cert_file = settings.signing_key_file, settings.signing_cert_file
    if key_file and cert_file:
        return load_signer(
            key_file, cert_file, passphrase=environment_value("signing_key_password"), now=now
        )
    if key_file or cert_file:
        given, missing = (
            ("ELBRIDGE_SIGNING_KEY_FILE", "ELBRIDGE_SIGNING_CERT_FILE")
            if key_file
            else ("ELBRIDGE_SIGNING_CERT_FILE", "ELBRIDGE_SIGNING_KEY_FILE")
        )
        raise ConfigError(f"{given} is set but {missing} is not: a signing key needs both")
    return development_signer(keys_folder(settings))

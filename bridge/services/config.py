"""The one configuration loader. Settings come from ELBRIDGE_* environment variables over
embedded defaults; Airflow tasks pass Connection values as overrides (see
bridge/entrypoints/airflow_wiring.py).

Defaults run everything on this machine: a SQLite ledger and folders under `home`, mosquitto on
127.0.0.1:1883, the customs simulator on 127.0.0.1:8088."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from bridge.adapters.mqtt.options import PROTOCOLS as MQTT_PROTOCOLS
from bridge.adapters.mqtt.options import MqttOptions
from bridge.core.errors import ConfigError
from bridge.core.paths import MAPPINGS_DIR


@dataclass(frozen=True)
class Settings:
    home: Path = field(default_factory=lambda: Path.cwd() / "var")
    # empty: sqlite file under home; not in repr (a URL can hold the password)
    database_url: str = field(default="", repr=False)
    # MQTT (declarations in, results out)
    mqtt_host: str = "127.0.0.1"
    mqtt_port: int = 1883
    mqtt_username: str | None = None
    mqtt_password: str | None = field(default=None, repr=False)
    # "5" (MQTT v5, shared subscriptions) or "3.1.1" (brokers and gateways that speak only that)
    mqtt_protocol: str = "5"
    # TLS to the broker: on when a CA file is given (the broker's certificate and host name are
    # checked against it); a client certificate and key for brokers that require one.
    mqtt_ca_file: str = ""
    mqtt_cert_file: str = ""
    mqtt_key_file: str = ""
    mqtt_client_id: str = "elbridge-writeoff"
    mqtt_topic: str = "customs/declarations/events"
    # Consumers sharing one MQTT v5 shared subscription ($share/<group>/<topic>) split the
    # events between them, each to one; empty: this consumer takes every event.
    mqtt_shared_group: str = ""
    mqtt_result_topic: str = "customs/declarations/results"  # one result per event (QoS 1)
    mqtt_session_expiry: int = 7 * 24 * 3600
    batch_size: int = 500
    # How long a batch waits for more messages after its first: a busy topic fills batches
    # without waiting; a quiet one commits each message within this (W4: p99 latency).
    batch_wait_ms: int = 20
    max_message_bytes: int = 2 * 1024 * 1024
    # SOAP (certificates out)
    soap_url: str = "http://127.0.0.1:8088/certex"
    soap_username: str | None = None
    soap_password: str | None = field(default=None, repr=False)
    # TLS to customs: the CA bundle the server certificate is checked against (empty: the
    # system's), and the client certificate and key for mutual TLS.
    soap_ca_file: str = ""
    soap_cert_file: str = ""
    soap_key_file: str = ""
    soap_timeout: float = 10.0
    soap_max_attempts: int = 8
    # Certificates in flight at once, each licence's messages still in order (one zeep client
    # and connection per sender); customs deduplicate by MessageId, so a resend is harmless.
    soap_senders: int = 4
    # National document codes a deployment reads as dual-use licences, "9104=individual,..."
    national_document_codes: str = ""
    # Where the national mappings are (ELBRIDGE_MAPPINGS_DIR): one or more folders separated by
    # os.pathsep, each with its *.yaml mappings and optionally reference/control-lists.yaml;
    # empty: the project's own mappings/.
    mappings_dir: str = ""
    sender_id: str = "ELBRIDGE"
    # The issuing authority's signing key and X.509 certificate (PEM): every certificate sent
    # to customs carries an enveloped XML Signature made with them.
    signing_key_file: str = ""
    signing_cert_file: str = ""
    # The bridge's HTTP services (query service, customs simulator, console): TLS when a
    # certificate and key are given; client certificates required and checked against
    # http_client_ca when it is given.
    http_tls_cert: str = ""
    http_tls_key: str = ""
    http_client_ca: str = ""
    http_read_timeout: float = 15.0  # seconds a client may take to send a request
    http_max_body_bytes: int = 4 * 1024 * 1024  # refused before reading
    http_max_concurrency: int = 64  # requests served at once; more wait or are refused
    # Who may ask the query service what (identities -> customs offices / member states).
    query_access_file: str = ""

    @property
    def inbox(self) -> Path:
        return self.home / "inbox"

    @property
    def ledger_url(self) -> str:
        return self.database_url or f"sqlite:///{self.home / 'ledger.db'}"

    @property
    def wsdl_url(self) -> str:
        return f"{self.soap_url}?wsdl"

    def with_overrides(self, **values: Any) -> Settings:
        known = {f.name for f in fields(self)}
        unknown = set(values) - known
        if unknown:
            raise ConfigError(f"unknown settings: {', '.join(sorted(unknown))}")
        return replace(self, **{k: v for k, v in values.items() if v is not None})


def _coerce(name: str, kind: Any, raw: str) -> Any:
    try:
        if kind in (int, "int"):
            return int(raw)
        if kind in (float, "float"):
            return float(raw)
        if kind in (Path, "Path"):
            return Path(raw).expanduser()
    except ValueError:
        raise ConfigError(f"ELBRIDGE_{name.upper()}={raw!r} is not a valid {kind}") from None
    return raw


# What a consumer process needs to know to take the same stream into the same ledger.
CONSUMER_SETTINGS = (
    "home",
    "database_url",
    "mqtt_host",
    "mqtt_port",
    "mqtt_protocol",
    "mqtt_ca_file",
    "mqtt_cert_file",
    "mqtt_key_file",
    "mqtt_username",
    "mqtt_password",  # a child's environment only; settings_env's result is never printed
    "mqtt_client_id",
    "mqtt_topic",
    "mqtt_shared_group",
    "mqtt_result_topic",
    "batch_size",
    "batch_wait_ms",
)


def settings_env(settings: Settings, names: Iterable[str] = CONSUMER_SETTINGS) -> dict[str, str]:
    """The ELBRIDGE_<FIELD> variables that give a child process these settings (what
    `load_settings` reads back), for the fields named; a field without a value is left out."""
    env = {}
    for name in names:
        value = getattr(settings, name)
        if value is not None:
            env[f"ELBRIDGE_{name.upper()}"] = str(value)
    return env


def secret_from_file(variable: str, path: str) -> str:
    """The value held in the file `path` (named by `variable`), without its final newline; a
    ConfigError naming the variable and the file when it cannot be read (never the value)."""
    try:
        return Path(path).expanduser().read_text(encoding="utf-8").rstrip("\r\n")
    except OSError as exc:
        raise ConfigError(f"{variable}={path}: cannot read the file ({exc.strerror})") from None


def environment_value(name: str, environ: Mapping[str, str] | None = None) -> str | None:
    """ELBRIDGE_<NAME> from the environment, or else the content of the file named by
    ELBRIDGE_<NAME>_FILE (how secrets are handed over without putting them in the environment:
    Docker/Kubernetes secrets, systemd credentials); None when neither is set."""
    environ = os.environ if environ is None else environ
    variable = f"ELBRIDGE_{name.upper()}"
    raw = environ.get(variable)
    if raw is not None and raw != "":
        return raw
    path = environ.get(f"{variable}_FILE")
    if path:
        return secret_from_file(f"{variable}_FILE", path)
    return None


def load_settings(**overrides: Any) -> Settings:
    """Settings from the environment (ELBRIDGE_<FIELD>, or ELBRIDGE_<FIELD>_FILE naming a file
    that holds the value), then `overrides`."""
    values: dict[str, Any] = {}
    for f in fields(Settings):
        raw = environment_value(f.name)
        if raw is not None:
            values[f.name] = _coerce(f.name, f.type, raw)
    return Settings(**values).with_overrides(**overrides)


def mapping_dirs(settings: Settings) -> tuple[Path, ...]:
    """The folders the national mappings are read from, in order: ELBRIDGE_MAPPINGS_DIR's, or
    the project's own mappings/ when it is not set."""
    folders = [part for part in settings.mappings_dir.split(os.pathsep) if part.strip()]
    if not folders:
        return (MAPPINGS_DIR,)
    return tuple(Path(folder.strip()).expanduser() for folder in folders)


def mqtt_options(settings: Settings) -> MqttOptions:
    """The MQTT adapters' options (broker, login, TLS, protocol, the consumer's session) from
    the settings; a ConfigError naming the settings that do not go together."""
    protocol = settings.mqtt_protocol.strip()
    if protocol not in MQTT_PROTOCOLS:
        raise ConfigError(
            f"ELBRIDGE_MQTT_PROTOCOL={settings.mqtt_protocol!r}: use {' or '.join(MQTT_PROTOCOLS)}"
        )
    if settings.mqtt_shared_group and protocol != "5":
        raise ConfigError(
            f"ELBRIDGE_MQTT_SHARED_GROUP={settings.mqtt_shared_group!r} needs MQTT 5 (shared"
            f" subscriptions), but ELBRIDGE_MQTT_PROTOCOL={protocol}"
        )
    if (settings.mqtt_cert_file or settings.mqtt_key_file) and not settings.mqtt_ca_file:
        raise ConfigError(
            "ELBRIDGE_MQTT_CERT_FILE/ELBRIDGE_MQTT_KEY_FILE are set but ELBRIDGE_MQTT_CA_FILE is"
            " not: TLS to the broker is on only with a CA file to check its certificate against"
        )
    return MqttOptions(
        host=settings.mqtt_host,
        port=settings.mqtt_port,
        username=settings.mqtt_username,
        password=settings.mqtt_password,
        client_id=settings.mqtt_client_id,
        topic=settings.mqtt_topic,
        shared_group=settings.mqtt_shared_group,
        session_expiry=settings.mqtt_session_expiry,
        batch_size=settings.batch_size,
        protocol=protocol,
        ca_file=settings.mqtt_ca_file,
        cert_file=settings.mqtt_cert_file,
        key_file=settings.mqtt_key_file,
    )

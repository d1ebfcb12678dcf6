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
    # How long a message is retried while customs cannot take it (503, no answer, connection
    # refused), counted from its first failure; only then does it fail (docs/reliability.md).
    # The wait between attempts doubles from half a second up to the cap.
    soap_retry_budget_hours: float = 48.0
    soap_backoff_cap_seconds: float = 600.0
    # Certificates in flight at once, each licence's messages still in order (one zeep client
    # and connection per sender); customs deduplicate by MessageId, so a resend is harmless.
    soap_senders: int = 4
    # Certificates per SubmitCertificates call (contract 1.5), each with its own outcome; 1: one
    # SubmitCertificate per certificate. A receiver that speaks only 1.0 gets single calls.
    soap_batch_size: int = 50
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
    # The authority console (docs/console.md): its users (TOML; empty: HOME/console/users.toml),
    # the secret its session cookies are signed with (empty: made once, kept in
    # HOME/console/secret), how long a login lasts, and how near its end a licence counts as
    # expiring soon.
    console_users_file: str = ""
    console_secret: str = field(default="", repr=False)
    console_session_hours: float = 8.0
    console_expiring_days: int = 30
    # The address people open the console at when Airflow or a proxy stands in front of it
    # (e.g. https://airflow.example/elbridge-console/): its origin may post the console's forms,
    # and an https address makes the session cookie Secure.
    console_public_url: str = ""
    # Health and metrics (docs/health-and-metrics.md): seconds each dependency check (ledger,
    # broker, customs) may take; the hours of deliveries the latency percentiles cover; the
    # bearer token /ready and /metrics ask for (empty: they answer anyone who reaches them).
    health_timeout: float = 3.0
    health_latency_window_hours: float = 24.0
    metrics_token: str = field(default="", repr=False)
    # What operators see in Airflow (docs/operations.md): a certificate failed, or pending longer
    # than this, keeps the delivery DAG red; how long one scheduled run of the write-off DAG
    # consumes; where the daily reports go (empty: HOME/reports) and their files' mode (octal,
    # group-readable by default).
    undelivered_alarm_minutes: int = 60
    declaration_run_minutes: float = 60.0
    reports_dir: str = ""
    reports_mode: str = "0640"

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
        if kind in (bool, "bool"):
            return _flag(raw)
        if kind in (int, "int"):
            return int(raw)
        if kind in (float, "float"):
            return float(raw)
        if kind in (Path, "Path"):
            return Path(raw).expanduser()
    except ValueError:
        raise ConfigError(f"ELBRIDGE_{name.upper()}={raw!r} is not a valid {kind}") from None
    return raw


def _flag(raw: str) -> bool:
    words = {"1": True, "true": True, "yes": True, "on": True}
    words |= {"0": False, "false": False, "no": False, "off": False}
    try:
        return words[raw.strip().lower()]
    except KeyError:
        raise ValueError(raw) from None


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


def load_settings(settings_file: str | Path | None = None, **overrides: Any) -> Settings:
    """Settings from, highest first: `overrides` (command-line flags, Airflow Connections), the
    environment (ELBRIDGE_<FIELD>, or ELBRIDGE_<FIELD>_FILE naming a file that holds the value),
    the TOML settings file (`settings_file`, else the one ELBRIDGE_SETTINGS_FILE names), the
    defaults. A ConfigError names what is wrong and where."""
    return load_settings_with_sources(settings_file, overrides)[0]


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


# The settings file and where each value came from -----------------------------------------

SETTINGS_FILE_VARIABLE = "ELBRIDGE_SETTINGS_FILE"


def is_secret(name: str) -> bool:
    """Whether a setting holds a secret (kept out of repr, masked when shown)."""
    return not next(f for f in fields(Settings) if f.name == name).repr


def read_settings_file(path: str | Path) -> dict[str, Any]:
    """The settings a TOML file gives, converted to their types: keys are the settings' names
    (`mqtt_host = "broker.example"`); `<name>_file` instead names a file holding the value, as
    ELBRIDGE_<NAME>_FILE does. A ConfigError names the file and the key that is wrong (an
    unknown key, a value of the wrong type, a file that is not TOML)."""
    import tomllib

    path = Path(path).expanduser()
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"settings file {path}: cannot read it ({exc.strerror})") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"settings file {path}: not TOML: {exc}") from None
    kinds = {f.name: f.type for f in fields(Settings)}
    values: dict[str, Any] = {}
    for key, value in raw.items():
        name = key
        if key not in kinds and key.endswith("_file") and key[: -len("_file")] in kinds:
            name = key[: -len("_file")]
            if not isinstance(value, str):
                raise ConfigError(f"settings file {path}: {key} must name a file (a string)")
            value = secret_from_file(f"{key} in settings file {path}", value)
        elif key not in kinds:
            raise ConfigError(
                f"settings file {path}: unknown setting {key!r}{_did_you_mean(key, kinds)};"
                " docs/settings.md lists them"
            )
        if name in values:
            raise ConfigError(f"settings file {path}: {name} is given twice ({key})")
        values[name] = _from_toml(path, key, kinds[name], value)
    return values


def _did_you_mean(key: str, names: Iterable[str]) -> str:
    import difflib

    close = difflib.get_close_matches(key, list(names), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _from_toml(path: Path, key: str, kind: Any, value: Any) -> Any:
    kind = str(getattr(kind, "__name__", kind))
    wrong = ConfigError(f"settings file {path}: {key} = {value!r} is not a valid {kind}")
    if isinstance(value, dict | list):
        raise wrong
    if isinstance(value, str) and kind in ("int", "float", "bool"):
        try:
            return _coerce(key, kind, value)
        except ConfigError:
            raise wrong from None
    if kind == "bool":
        if not isinstance(value, bool):
            raise wrong
        return value
    if isinstance(value, bool):
        raise wrong
    if kind == "int":
        if not isinstance(value, int):
            raise wrong
        return value
    if kind == "float":
        if not isinstance(value, int | float):
            raise wrong
        return float(value)
    if kind == "Path":
        if not isinstance(value, str):
            raise wrong
        return Path(value).expanduser()
    # Text settings: a number written without quotes (mqtt_protocol = 5) means its text.
    if not isinstance(value, str | int | float):
        raise wrong
    return value if isinstance(value, str) else str(value)


def load_settings_with_sources(
    settings_file: str | Path | None = None,
    overrides: Mapping[str, Any] | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    override_source: str = "given",
) -> tuple[Settings, dict[str, str]]:
    """The settings (as `load_settings`) and, per setting, where its value came from:
    "default", "settings file PATH", "ELBRIDGE_X", "ELBRIDGE_X_FILE (PATH)" or
    `override_source` (e.g. the flag)."""
    environ = os.environ if environ is None else environ
    overrides = dict(overrides or {})
    values: dict[str, Any] = {}
    sources = {f.name: "default" for f in fields(Settings)}
    chosen = settings_file or environ.get(SETTINGS_FILE_VARIABLE) or None
    if chosen:
        shown = Path(chosen).expanduser()
        for name, value in read_settings_file(shown).items():
            values[name] = value
            sources[name] = f"settings file {shown}"
    for f in fields(Settings):
        raw = environment_value(f.name, environ)
        if raw is None:
            continue
        values[f.name] = _coerce(f.name, f.type, raw)
        variable = f"ELBRIDGE_{f.name.upper()}"
        if environ.get(variable):
            sources[f.name] = variable
        else:
            sources[f.name] = f"{variable}_FILE ({environ[f'{variable}_FILE']})"
    settings = Settings(**values).with_overrides(**overrides)
    for name, value in overrides.items():
        if value is not None:
            sources[name] = override_source if isinstance(override_source, str) else name
    return settings, sources


def shown_value(name: str, value: Any) -> str:
    """A setting's value as it may be printed: secrets masked (a database URL keeps everything
    but its password), the empty value as ""."""
    if value is None or value == "":
        return ""
    if name == "database_url":
        from sqlalchemy.engine import make_url

        try:
            return make_url(str(value)).render_as_string(hide_password=True)
        except Exception:  # an unparsable URL is masked whole, never shown
            return "********"
    if is_secret(name):
        return "********"
    return str(value)

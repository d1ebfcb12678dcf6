"""What tasks need from Airflow: Settings from the operator's Connections, a ledger engine, and
JSON-able summaries of service reports for XCom.

Import this module only inside task functions: it reaches the secrets backends, and DAG parsing
must stay light. Precedence, lowest first: embedded defaults, ELBRIDGE_* environment variables,
the Variable `elbridge_settings` (a JSON object of non-secret settings), the Connections
`elbridge_ledger`, `elbridge_mqtt`, `elbridge_customs_soap`. Every one of them is optional;
Connections may come from the metadata DB or from AIRFLOW_CONN_* variables (JSON or URI).
Secrets live in Connections, never in code or Variables."""

from __future__ import annotations

import dataclasses
import enum
import os
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.engine import URL

from bridge.core.errors import ConfigError
from bridge.services.config import Settings, load_settings

LEDGER_CONN_ID = "elbridge_ledger"
MQTT_CONN_ID = "elbridge_mqtt"
SOAP_CONN_ID = "elbridge_customs_soap"
SETTINGS_VARIABLE = "elbridge_settings"

# Airflow spells some URI schemes its own way; SQLAlchemy wants the dialect name.
_DIALECTS = {"postgres": "postgresql", "postgresql": "postgresql", "mysql": "mysql"}
_LISTED_ITEMS = 50  # XCom is for summaries; the full story is in the ledger and the task log


def settings_from_airflow() -> Settings:
    """Settings for a task: environment, then the `elbridge_settings` Variable, then whichever of
    the three Connections exist. Raises ConfigError naming the Connection or key that is wrong."""
    overrides: dict[str, Any] = dict(_variable_overrides())
    if (conn := _connection(LEDGER_CONN_ID)) is not None:
        overrides["database_url"] = ledger_url_from(conn)
    if (conn := _connection(MQTT_CONN_ID)) is not None:
        overrides.update(mqtt_overrides(conn))
    if (conn := _connection(SOAP_CONN_ID)) is not None:
        overrides.update(soap_overrides(conn))
    return load_settings(**overrides)


def ledger_url_from(conn: Any) -> str:
    """The ledger's SQLAlchemy URL from a Connection: a full URL in `host` (any conn type), a
    sqlite Connection whose path is in `schema` or `host`, or a server Connection (postgres...)
    built from host, port, login, password and schema (the database name)."""
    host = conn.host or ""
    if "://" in host:
        return host
    conn_type = (conn.conn_type or "").lower()
    if conn_type == "sqlite":
        path = conn.schema or host
        if not path:
            raise ConfigError(f"Connection {LEDGER_CONN_ID}: a sqlite ledger needs a file path")
        return f"sqlite:///{path}"
    if conn_type not in _DIALECTS:
        raise ConfigError(
            f"Connection {LEDGER_CONN_ID}: conn_type {conn_type or '(none)'!r} with host "
            f"{host!r}; give the full database URL as the host, or use a sqlite/postgres Connection"
        )
    url = URL.create(
        drivername=_DIALECTS[conn_type],
        username=conn.login or None,
        password=conn.password or None,
        host=host or None,
        port=conn.port or None,
        database=conn.schema or None,
    )
    return url.render_as_string(hide_password=False)


def mqtt_overrides(conn: Any) -> dict[str, Any]:
    """Broker address and credentials from a Connection; extras `client_id`, `topic`,
    `protocol` ("5" or "3.1.1"), and for TLS `ca_file` (TLS on), `cert_file`, `key_file`
    (paths on the worker)."""
    extra = _extra(conn, MQTT_CONN_ID)
    host = conn.host or None
    if host and "://" in host:
        raise ConfigError(f"Connection {MQTT_CONN_ID}: host must be a host name, got {host!r}")
    return {
        "mqtt_host": host,
        "mqtt_port": int(conn.port) if conn.port else None,
        "mqtt_username": conn.login or None,
        "mqtt_password": conn.password or None,
        "mqtt_client_id": extra.get("client_id"),
        "mqtt_topic": extra.get("topic"),
        "mqtt_protocol": str(extra["protocol"]) if "protocol" in extra else None,
        "mqtt_ca_file": extra.get("ca_file"),
        "mqtt_cert_file": extra.get("cert_file"),
        "mqtt_key_file": extra.get("key_file"),
    }


def soap_overrides(conn: Any) -> dict[str, Any]:
    """The customs service's endpoint URL and credentials from a Connection: either the whole
    URL in `host`, or scheme (conn_type http/https), host, port and path (`schema`); extras
    `timeout` (seconds), `max_attempts`, and for TLS `ca_file` (the CA bundle customs'
    certificate is checked against), `cert_file` and `key_file` (the client certificate and
    key for mutual TLS), paths on the workers."""
    extra = _extra(conn, SOAP_CONN_ID)
    host = conn.host or ""
    if "://" in host:
        url: str | None = host
    elif host:
        scheme = "https" if (conn.conn_type or "").lower() == "https" else "http"
        netloc = f"{host}:{conn.port}" if conn.port else host
        path = (conn.schema or "").strip("/")
        url = f"{scheme}://{netloc}/{path}" if path else f"{scheme}://{netloc}"
    else:
        url = None
    return {
        "soap_url": url,
        "soap_username": conn.login or None,
        "soap_password": conn.password or None,
        "soap_timeout": float(extra["timeout"]) if "timeout" in extra else None,
        "soap_max_attempts": int(extra["max_attempts"]) if "max_attempts" in extra else None,
        "soap_ca_file": extra.get("ca_file"),
        "soap_cert_file": extra.get("cert_file"),
        "soap_key_file": extra.get("key_file"),
    }


@contextmanager
def ledger(settings: Settings) -> Iterator[Engine]:
    """An engine on the ledger for the length of one task, disposed afterwards."""
    from bridge.adapters.store.db import make_engine

    engine = make_engine(settings.ledger_url)
    try:
        yield engine
    finally:
        engine.dispose()


def count(value: Any) -> int:
    """A report field as a number: counts stay counts, collections count their items."""
    if value is None:
        return 0
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    if isinstance(value, Mapping | list | tuple | set | frozenset):
        return len(value)
    raise TypeError(f"cannot count a {type(value).__name__}")


def totals(reports: Iterable[Any], names: Iterable[str]) -> dict[str, int]:
    """Per name, the sum over `reports` of that field (reports without the field add nothing)."""
    reports = list(reports)
    return {
        name: sum(count(getattr(report, name)) for report in reports if hasattr(report, name))
        for name in names
    }


def summarise(value: Any) -> Any:
    """`value` as plain JSON data for XCom: dataclasses and named tuples become dicts, Decimals
    exact strings, paths and dates strings; long lists are cut to their first items plus a count
    of the rest."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, enum.Enum):
        return summarise(value.value)
    if isinstance(value, Decimal):
        return f"{value:f}"
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Path):
        return str(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: summarise(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if hasattr(value, "_asdict"):
        return summarise(value._asdict())
    if isinstance(value, Mapping):
        return {str(k): summarise(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        items = [summarise(item) for item in list(value)[:_LISTED_ITEMS]]
        if len(value) > _LISTED_ITEMS:
            items.append(f"... and {len(value) - _LISTED_ITEMS} more")
        return items
    return str(value)


def customs_senders(settings: Settings) -> list[Any]:
    """One SOAP client to customs per sending thread (`soap_senders`, at least one)."""
    from bridge.services.outbox import CustomsClient

    return [CustomsClient(settings) for _ in range(max(1, settings.soap_senders))]


def write_reconciliation_reports(settings: Settings, day: str) -> dict[str, Any]:
    """Write the ledger's reconciliation as reports/<day>/reconciliation.csv and .json under
    the bridge's home; returns the day, both paths and the summary (lines, over-used lines)."""
    from bridge.adapters.store.reconciliation import reconciliation_rows
    from bridge.core.reconcile import render, summary

    with ledger(settings) as engine, engine.connect() as conn:
        rows = reconciliation_rows(conn)
    folder = settings.home / "reports" / day
    csv_file = write_report(folder / "reconciliation.csv", render(rows, "csv"))
    json_file = write_report(folder / "reconciliation.json", render(rows, "json"))
    return {"date": day, "csv": str(csv_file), "json": str(json_file), **summary(rows)}


def write_report(path: Path, text: str) -> Path:
    """Write `text` to `path` atomically: readers see the old file or the new one, never half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, partial = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        os.replace(partial, path)
    except BaseException:
        Path(partial).unlink(missing_ok=True)
        raise
    return path


def _connection(conn_id: str) -> Any | None:
    from airflow.sdk import Connection
    from airflow.sdk.exceptions import AirflowNotFoundException

    try:
        return Connection.get(conn_id)
    except AirflowNotFoundException:
        return None


def _extra(conn: Any, conn_id: str) -> dict[str, Any]:
    extra = conn.extra_dejson
    if not isinstance(extra, dict):
        raise ConfigError(f"Connection {conn_id}: extra must be a JSON object")
    return extra


def _variable_overrides() -> dict[str, Any]:
    from airflow.sdk import Variable

    raw = Variable.get(SETTINGS_VARIABLE, default=None, deserialize_json=True)
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ConfigError(f"Variable {SETTINGS_VARIABLE} must be a JSON object of settings")
    kinds = {f.name: f.type for f in dataclasses.fields(Settings)}
    overrides: dict[str, Any] = {}
    for name, value in raw.items():
        if "password" in name:
            raise ConfigError(
                f"Variable {SETTINGS_VARIABLE}: {name!r} is a secret; put it in its Connection"
            )
        if name not in kinds:
            raise ConfigError(f"Variable {SETTINGS_VARIABLE}: unknown setting {name!r}")
        overrides[name] = _coerce(name, str(kinds[name]), value)
    return overrides


def _coerce(name: str, kind: str, value: Any) -> Any:
    if value is None:
        return None
    try:
        if kind == "Path":
            return Path(str(value)).expanduser()
        if kind == "int":
            return int(value)
        if kind == "float":
            return float(value)
    except (TypeError, ValueError):
        raise ConfigError(
            f"Variable {SETTINGS_VARIABLE}: {name}={value!r} is not a valid {kind}"
        ) from None
    return str(value)

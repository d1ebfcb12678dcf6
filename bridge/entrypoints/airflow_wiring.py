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
import logging
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.engine import URL

from bridge.adapters.report_files import folder_mode, make_folder, write_atomically
from bridge.core.errors import ConfigError
from bridge.services.config import Settings, load_settings

LEDGER_CONN_ID = "elbridge_ledger"
MQTT_CONN_ID = "elbridge_mqtt"
SOAP_CONN_ID = "elbridge_customs_soap"
SETTINGS_VARIABLE = "elbridge_settings"

# Airflow spells some URI schemes its own way; SQLAlchemy wants the dialect name.
_DIALECTS = {"postgres": "postgresql", "postgresql": "postgresql", "mysql": "mysql"}
_LISTED_ITEMS = 50  # XCom is for summaries; the full story is in the ledger and the task log
# A long drain is cut in slices so that what went wrong shows in the task log within a minute.
DRAIN_SLICE_SECONDS = 60.0


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
    `timeout` (seconds), `retry_budget_hours` and `backoff_cap_seconds` (how long and how
    patiently a message is retried), and for TLS `ca_file` (the CA bundle customs'
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
        "soap_retry_budget_hours": (
            float(extra["retry_budget_hours"]) if "retry_budget_hours" in extra else None
        ),
        "soap_backoff_cap_seconds": (
            float(extra["backoff_cap_seconds"]) if "backoff_cap_seconds" in extra else None
        ),
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


def fail_on_problems(problems: Mapping[str, int], where: str) -> dict[str, int]:
    """The counts of `problems` (a task summary's `problems`), when all are zero; else push
    them as the XCom `problems` and raise AirflowFailException (not retried: running again
    changes nothing) naming each count and the task `where` the WARNING lines with the reasons
    are, so the run shows red."""
    from bridge.entrypoints.airflow_findings import COUNT_KEYS, MORE

    labels = {key: MORE[kind][0] for kind, key in COUNT_KEYS.items()}
    found = [f"{labels.get(key, key)}: {n}" for key, n in problems.items() if n]
    if found:
        _fail(
            f"this run needs a person: {', '.join(found)}; the reasons are the WARNING lines"
            f" in the log of {where} (everything else went through)",
            dict(problems),
        )
    return dict(problems)


def check_undelivered(settings: Settings, log: logging.Logger) -> dict[str, Any]:
    """The certificates failed, or pending longer than ELBRIDGE_UNDELIVERED_ALARM_MINUTES
    (bridge.services.outbox.undelivered), one WARNING line each; when there is any, their
    counts are pushed as the XCom `problems` and AirflowFailException is raised, so that every
    run stays red until customs have them."""
    from bridge.entrypoints.airflow_findings import log_findings, undelivered_findings
    from bridge.services.outbox import undelivered

    minutes = settings.undelivered_alarm_minutes
    now = datetime.now(UTC)
    with ledger(settings) as engine:
        rows = undelivered(engine, now=now, older_than=timedelta(minutes=minutes))
    log_findings(log, undelivered_findings(rows, now))
    failed = sum(1 for row in rows if row["status"] == "failed")
    summary = {
        "alarm_minutes": minutes,
        "undelivered": len(rows),
        "certificates": sum(1 for row in rows if row["kind"] == "certificate"),
        "failed": failed,
        "pending_too_long": len(rows) - failed,
    }
    if rows:
        _fail(
            f"{len(rows)} message(s) not at customs: {failed} failed, {len(rows) - failed}"
            f" pending for more than {minutes} min (the WARNING lines above say which and why);"
            " `elbridge outbox list` shows them, `elbridge outbox retry` sends failed ones again",
            summary,
        )
    return summary


def _fail(message: str, problems: dict[str, Any]) -> None:
    from airflow.sdk import get_current_context
    from airflow.sdk.exceptions import AirflowFailException

    # A failed task returns nothing: the counts go to XCom explicitly, for the API and the UI.
    get_current_context()["ti"].xcom_push(key="problems", value=problems)
    raise AirflowFailException(message)


def drain_declarations(
    settings: Settings,
    engine: Engine,
    findings: Any,
    *,
    seconds: float,
    idle_seconds: float | None = None,
    slice_seconds: float = DRAIN_SLICE_SECONDS,
    stop: threading.Event | None = None,
) -> Any:
    """Consume declaration events for up to `seconds` (or until the topic has been quiet for
    `idle_seconds`, when given), and hand every refused write-off and quarantined message the
    ledger recorded meanwhile to `findings` (an airflow_findings.FindingsLog) as it goes: in
    slices of at most `slice_seconds`, each a `consume` of its own (the broker keeps the
    persistent session's messages between them). SIGTERM ends the slice in hand, then the
    drain. Returns the ConsumeReport summed over the slices."""
    from bridge.adapters.store.db import utcnow
    from bridge.entrypoints.airflow_findings import consumer_findings
    from bridge.services.consumer import ConsumeReport, consume

    stop = stop or threading.Event()
    total = ConsumeReport()
    deadline = time.monotonic() + seconds
    while not stop.is_set():
        left = deadline - time.monotonic()
        if left <= 0:
            break
        since = utcnow()
        if idle_seconds is not None:  # drain until quiet: one consume, it stops by itself
            part = consume(settings, engine, idle_seconds=idle_seconds, max_seconds=left, stop=stop)
        else:
            part = consume(settings, engine, max_seconds=min(slice_seconds, left), stop=stop)
        _add_report(total, part)
        if part.messages:  # a document refused in an applied message is a finding too
            findings.add(consumer_findings(engine, since))
        if idle_seconds is not None:
            break
    return total


def _add_report(total: Any, part: Any) -> None:
    for f in dataclasses.fields(total):
        setattr(total, f.name, getattr(total, f.name) + getattr(part, f.name))


def reports_folder(settings: Settings) -> Path:
    """Where the daily reports go: ELBRIDGE_REPORTS_DIR, else HOME/reports."""
    return (
        Path(settings.reports_dir).expanduser()
        if settings.reports_dir
        else settings.home / "reports"
    )


def reports_mode(settings: Settings) -> int:
    """The report files' mode from ELBRIDGE_REPORTS_MODE (octal, e.g. 0640); a ConfigError
    naming the setting when it is not a file mode its owner can read and write (the reports
    are rewritten in place; bridge.services.reports.file_mode holds the same rule)."""
    raw = settings.reports_mode.strip()
    try:
        mode = int(raw, 8)
    except ValueError:
        mode = -1
    if not 0 <= mode <= 0o777 or mode & 0o600 != 0o600:
        raise ConfigError(
            f"ELBRIDGE_REPORTS_MODE={settings.reports_mode!r}: give an octal file mode the owner"
            " can read and write, e.g. 0640 (the group reads) or 0600 (only the owner)"
        )
    return mode


def write_reconciliation_reports(settings: Settings, day: str) -> dict[str, Any]:
    """Write the ledger's reconciliation as <reports>/<day>/data/reconciliation.csv and .json
    (plain machine-readable files, `,` and `.`, for other tools; the pages people open are the
    reports of bridge.services.reports); returns the day, both paths and the summary (lines,
    over-used lines)."""
    from bridge.adapters.store.reconciliation import reconciliation_rows
    from bridge.core.reconcile import render, summary

    with ledger(settings) as engine, engine.connect() as conn:
        rows = reconciliation_rows(conn)
    mode = reports_mode(settings)
    # Beside the day's reports for people (bridge.services.reports), not among them: theirs
    # are spreadsheet CSV (`;`, `,` decimals), these are for programs.
    folder = reports_folder(settings) / day / "data"
    csv_file = write_report(folder / "reconciliation.csv", render(rows, "csv"), mode)
    json_file = write_report(folder / "reconciliation.json", render(rows, "json"), mode)
    return {"date": day, "csv": str(csv_file), "json": str(json_file), **summary(rows)}


def publish_daily_reports(settings: Settings, day: date) -> dict[str, Any]:
    """The day's reports for people (bridge.services.reports: the console's pages as static
    HTML, xlsx and CSV) under <reports>/<day>/ with the configured mode; returns the day, the
    folder and the files written."""
    from bridge.services.reports import write_reports

    mode = reports_mode(settings)
    folder = reports_folder(settings) / day.isoformat()
    with ledger(settings) as engine:
        files = write_reports(engine, folder, day=day, now=datetime.now(UTC), mode=mode)
    return {"date": day.isoformat(), "folder": str(folder), "files": [str(f) for f in files]}


def write_report(path: Path, text: str, mode: int = 0o640) -> Path:
    """Write `text` to `path` atomically (readers see the old file or the new one, never half),
    with `mode`; folders made on the way get the matching `folder_mode`."""
    make_folder(path.parent, folder_mode(mode))
    return write_atomically(path, text.encode("utf-8"), mode)


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

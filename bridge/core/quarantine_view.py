"""The quarantine as an operator sees it: what of a quarantined envelope can be read, a preview
safe for a terminal, and the list, one message and the replays rendered as a table, CSV or JSON.
Plain data and text only: the store reads the rows (bridge.adapters.store.ledger), the replay is
bridge.services.quarantine.

Everything shown comes from a message the bridge could not read, so none of it is trusted: no
member is shown unless it has the type the envelope contract gives it, every text is cut to a
length, and characters a terminal would act on (controls, escapes, bidirectional overrides,
lone surrogates) are shown as escapes."""

from __future__ import annotations

import csv
import io
import json
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from bridge.core.declaration_header import DeclarationHeader, read_header
from bridge.core.errors import Problem
from bridge.core.quarantine import QUARANTINED, QuarantinedMessage, Replayed

FORMATS = ("table", "csv", "json")
TEXT_LIMIT = 200  # characters of any one member shown
REASON_WIDTH = 90  # characters of the first reason in a table row
PREVIEW_CHARS = 400


@dataclass(frozen=True, slots=True)
class EnvelopeView:
    """The members of a quarantined envelope that could be read, each only when it has its
    contract type (docs/envelope.md), and the header of the declaration it carries."""

    message_id: str | None = None
    mrn: str | None = None
    event: str | None = None
    declaration_version: int | None = None
    event_time: str | None = None
    country: str | None = None
    payload_format: str | None = None
    declaration_bytes: int | None = None
    declaration: DeclarationHeader | None = None

    @property
    def best_mrn(self) -> str | None:
        """The envelope's MRN, else the declaration's own ID."""
        return self.mrn or (self.declaration.mrn if self.declaration else None)


def read_envelope_members(payload: bytes, *, max_bytes: int) -> EnvelopeView:
    """What of the envelope in `payload` can be read, however broken the rest is."""
    if len(payload) > max_bytes:
        return EnvelopeView()
    try:
        document = json.loads(payload.decode("utf-8", "surrogateescape"))
    except (ValueError, RecursionError):
        return EnvelopeView()
    if not isinstance(document, dict):
        return EnvelopeView()

    def text(name: str) -> str | None:
        value = document.get(name)
        return safe_text(value, TEXT_LIMIT) if isinstance(value, str) and value else None

    version = document.get("declaration_version")
    declaration = document.get("payload")
    header = None
    size = None
    if isinstance(declaration, str):
        data = declaration.encode("utf-8", "surrogatepass")
        size = len(data)
        header = read_header(data, max_bytes=max_bytes)
    return EnvelopeView(
        message_id=text("message_id"),
        mrn=text("mrn"),
        event=text("event"),
        declaration_version=version
        if isinstance(version, int) and not isinstance(version, bool)
        else None,
        event_time=text("event_time"),
        country=text("country"),
        payload_format=text("payload_format"),
        declaration_bytes=size,
        declaration=header,
    )


def safe_text(text: str, limit: int, *, multiline: bool = False) -> str:
    """`text` cut to `limit` characters, with every character a terminal would act on or hide
    (controls, format characters such as bidirectional overrides, lone surrogates, unassigned
    code points) written as a Python escape; newlines and tabs kept when `multiline`."""
    shown = []
    for char in text[:limit]:
        if multiline and char in "\n\t":
            shown.append(char)
        elif unicodedata.category(char) in ("Cc", "Cf", "Cs", "Co", "Cn"):
            shown.append(char.encode("unicode_escape", "backslashreplace").decode("ascii"))
        else:
            shown.append(char)
    cut = "…" if len(text) > limit else ""
    return "".join(shown) + cut


def preview(payload: bytes, chars: int = PREVIEW_CHARS) -> str:
    """The start of the message as text safe to print: invalid UTF-8 as \\x escapes."""
    head = payload[: chars * 4].decode("utf-8", "backslashreplace")
    shown = safe_text(head, chars, multiline=True)
    if len(head) > chars or len(payload) > chars * 4:
        return shown + f"\n(the first {chars} characters of {len(payload)} bytes)"
    return shown


# Renderings -----------------------------------------------------------------------------------

LIST_COLUMNS = (
    ("id", "id"),
    ("received at", "received_at"),
    ("topic", "topic"),
    ("message id", "message_id"),
    ("MRN", "mrn"),
    ("event", "event"),
    ("state", "state"),
    ("first reason", "first_reason"),
)

REPLAY_COLUMNS = (
    ("id", "quarantine_id"),
    ("message id", "message_id"),
    ("MRN", "mrn"),
    ("event", "event"),
    ("outcome", "outcome"),
    ("result id", "result_id"),
    ("detail", "detail"),
)


def list_record(message: QuarantinedMessage, view: EnvelopeView) -> dict[str, Any]:
    """One quarantined message as a row of the list."""
    reasons = message.reasons
    return {
        "id": message.id,
        "received_at": message.received_at,
        "topic": safe_text(message.topic or "", TEXT_LIMIT) or None,
        "message_id": view.message_id
        or (safe_text(message.message_id, TEXT_LIMIT) if message.message_id else None),
        "mrn": view.best_mrn,
        "event": view.event or (str(view.declaration.event or "") if view.declaration else None),
        "state": message.state,
        "replayed_at": message.replayed_at,
        "replay_outcome": message.replay_outcome,
        "replayed_by": message.replayed_by,
        "first_reason": safe_text(str(reasons[0]), 2000) if reasons else "unreadable",
        "reasons": len(reasons),
    }


def message_record(
    message: QuarantinedMessage, view: EnvelopeView, *, key: str, preview_chars: int
) -> dict[str, Any]:
    """Everything about one quarantined message, for `show`."""
    header = view.declaration
    return {
        "id": message.id,
        "received_at": message.received_at,
        "topic": safe_text(message.topic or "", TEXT_LIMIT) or None,
        "quarantine_key": key,
        "payload_bytes": len(message.payload),
        "envelope": {
            "message_id": view.message_id,
            "mrn": view.mrn,
            "event": view.event,
            "declaration_version": view.declaration_version,
            "event_time": view.event_time,
            "country": view.country,
            "payload_format": view.payload_format,
            "declaration_bytes": view.declaration_bytes,
        },
        "declaration": None
        if header is None
        else {
            "function_code": header.function_code,
            "type_code": header.type_code,
            "event": None if header.event is None else str(header.event),
            "id": header.mrn,
            "lrn": header.lrn,
            "country": header.country,
        },
        "reasons": [_problem_record(p) for p in message.problems],
        "state": message.state,
        "replayed_at": message.replayed_at,
        "replays": message.replays,
        "replay_outcome": message.replay_outcome,
        "replayed_by": message.replayed_by,
        "replay_result_id": message.replay_result_id,
        "replay_reasons": [_problem_record(p) for p in message.replay_problems],
        "preview": preview(message.payload, preview_chars),
    }


def replay_record(replayed: Replayed) -> dict[str, Any]:
    reasons = [_problem_record(p) for p in replayed.problems]
    detail = replayed.detail
    if replayed.already:
        detail = f"replayed before ({replayed.outcome}): nothing done"
    elif replayed.problems:
        detail = safe_text(str(replayed.problems[0]), 2000)
    return {
        "quarantine_id": replayed.quarantine_id,
        "message_id": replayed.message_id,
        "mrn": replayed.mrn,
        "event": replayed.event,
        "outcome": replayed.outcome,
        "already": replayed.already,
        "result_id": replayed.result_id,
        "detail": detail,
        "reasons": reasons,
    }


def render_list(records: Sequence[Mapping[str, Any]], fmt: str = "table") -> str:
    open_ = sum(1 for r in records if str(r["state"]).startswith(QUARANTINED))
    footer = f"{len(records)} message(s): {open_} quarantined, {len(records) - open_} replayed"
    return _render(records, LIST_COLUMNS, fmt, name="quarantined", footer=footer)


def render_replays(
    records: Sequence[Mapping[str, Any]], fmt: str = "table", *, footer: str = ""
) -> str:
    return _render(records, REPLAY_COLUMNS, fmt, name="replayed", footer=footer)


def render_message(record: Mapping[str, Any], fmt: str = "table") -> str:
    """One message for `show`: JSON, or sections of text."""
    if fmt == "json":
        return json.dumps(_json_value(record), indent=2) + "\n"
    out = [f"quarantined message {record['id']}"]
    for label, key in (
        ("received at", "received_at"),
        ("topic", "topic"),
        ("state", "state"),
        ("replayed at", "replayed_at"),
        ("replays", "replays"),
        ("replay result id", "replay_result_id"),
        ("quarantine key", "quarantine_key"),
        ("payload", "payload_bytes"),
    ):
        value = record.get(key)
        if value not in (None, 0, ""):
            suffix = " bytes" if key == "payload_bytes" else ""
            out.append(f"  {label + ':':<18}{_cell(value)}{suffix}")
    envelope = {k: v for k, v in record["envelope"].items() if v is not None}
    out.append("envelope (members that could be read):")
    out += [f"  {k + ':':<21}{_cell(v)}" for k, v in envelope.items()] or ["  (none)"]
    if record["declaration"]:
        out.append("declaration header:")
        for key, value in record["declaration"].items():
            if value is not None:
                out.append(f"  {key + ':':<21}{_cell(value)}")
    for title, key in (("reasons", "reasons"), ("reasons at the last replay", "replay_reasons")):
        if record[key]:
            out.append(f"{title}:")
            for number, reason in enumerate(record[key], 1):
                where = " ".join(part for part in (reason["source"], reason["path"]) if part)
                out.append(f"  {number}. [{reason['code']}] {where or '(whole message)'}")
                out.append(f"     {reason['reason']}")
                if reason["value"] is not None:
                    out.append(f"     got: {reason['value']}")
    out.append("preview:")
    out += [f"  | {line}" for line in str(record["preview"]).split("\n")]
    return "\n".join(out) + "\n"


def _problem_record(problem: Problem) -> dict[str, Any]:
    return {
        "code": safe_text(problem.code, TEXT_LIMIT),
        "path": safe_text(problem.path, TEXT_LIMIT),
        "source": safe_text(problem.source, TEXT_LIMIT),
        "reason": safe_text(problem.reason, 2000),
        "value": None if problem.value is None else safe_text(problem.value, TEXT_LIMIT),
    }


def _render(
    records: Sequence[Mapping[str, Any]],
    columns: Sequence[tuple[str, str]],
    fmt: str,
    *,
    name: str,
    footer: str,
) -> str:
    if fmt == "json":
        return json.dumps({name: [_json_value(r) for r in records]}, indent=2) + "\n"
    if fmt == "csv":
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow([key for _, key in columns])
        for record in records:
            writer.writerow([_csv_value(record.get(key)) for _, key in columns])
        return out.getvalue()
    if fmt != "table":
        raise ValueError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    cells = [[heading for heading, _ in columns]]
    for record in records:
        row = [_cell(record.get(key)) for _, key in columns]
        row[-1] = _cut(row[-1], REASON_WIDTH)
        cells.append(row)
    widths = [max(len(line[i]) for line in cells) for i in range(len(columns))]
    lines = []
    for index, line in enumerate(cells):
        lines.append("  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip())
        if index == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines) + ("\n\n" + footer if footer else "") + "\n"


def _cut(text: str, width: int) -> str:
    first = text.split("\n", 1)[0]
    return first if len(first) <= width else first[: width - 1] + "…"


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    return str(value)


def _csv_value(value: Any) -> str:
    return value.isoformat() if isinstance(value, datetime) else _cell(value)


def _json_value(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Mapping):
        return {key: _json_value(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_json_value(item) for item in value]
    return value

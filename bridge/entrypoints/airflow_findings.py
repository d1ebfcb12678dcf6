"""What an operator must look at after a task, as readable lines for the task log.

A finding names what happened (a rejected national record, an unreadable file, a quarantined
message, a refused write-off, an undelivered certificate), which record or message, and why:
one WARNING line each, at most `LINES_PER_KIND` lines of a kind and then one line saying how
many more there are and where the full list is. The counts go to the task's XCom summary.

Nothing here decides anything: the findings are read from what the services reported or from
what the ledger recorded while the task ran."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, select

from bridge.core.errors import Problem

LINES_PER_KIND = 20  # a task log stays readable; the ledger and the console keep the rest
REASONS_PER_LINE = 12  # a record with more is rewritten, not corrected
REASON_CHARS = 300

REJECTED_RECORD = "rejected national record"
UNREADABLE_FILE = "unreadable national file"
WAITING_FILE = "national file waiting for its mapping"
BROKEN_MAPPING = "broken mapping"
QUARANTINED_MESSAGE = "quarantined message"
REFUSED_WRITE_OFF = "refused write-off"
UNDELIVERED_CERTIFICATE = "undelivered certificate"
UNDELIVERED_STATUS = "undelivered status update"

# For the "and N more" line: the kind in the plural, and where the whole list is.
MORE = {
    REJECTED_RECORD: (
        "rejected national records",
        "the console's Operations page, or the ledger's `reject` table",
    ),
    UNREADABLE_FILE: ("unreadable national files", "inbox/failed/, each with its .reason.txt"),
    WAITING_FILE: ("national files waiting for their mapping", "the inbox"),
    BROKEN_MAPPING: ("broken mappings", "the mappings folders"),
    QUARANTINED_MESSAGE: (
        "quarantined messages",
        "`elbridge quarantine list`, or the console's Operations page",
    ),
    REFUSED_WRITE_OFF: (
        "refused write-offs",
        "the console's licence pages, or the ledger's `refusal` table",
    ),
    UNDELIVERED_CERTIFICATE: (
        "undelivered certificates",
        "`elbridge outbox list`, or the console's Operations page",
    ),
    UNDELIVERED_STATUS: (
        "undelivered status updates",
        "`elbridge outbox list`, or the console's Operations page",
    ),
}


# The key of each kind's count in a task's XCom summary (its `problems`).
COUNT_KEYS = {
    REJECTED_RECORD: "rejected_records",
    UNREADABLE_FILE: "unreadable_files",
    WAITING_FILE: "files_waiting_for_mapping",
    BROKEN_MAPPING: "broken_mappings",
    QUARANTINED_MESSAGE: "quarantined_messages",
    REFUSED_WRITE_OFF: "refused_write_offs",
    UNDELIVERED_CERTIFICATE: "undelivered_certificates",
    UNDELIVERED_STATUS: "undelivered_status_updates",
}


def problem_counts(counts: Mapping[str, int], kinds: Iterable[str]) -> dict[str, int]:
    """The counts of `kinds` under their XCom keys, zero included (a summary names them all)."""
    return {COUNT_KEYS[kind]: counts.get(kind, 0) for kind in kinds}


@dataclass(frozen=True)
class Finding:
    """One thing an operator must look at: `kind` (what), `subject` (which), `reason` (why)."""

    kind: str
    subject: str
    reason: str

    def line(self) -> str:
        return f"{self.kind}: {self.subject}: {self.reason}"


class FindingsLog:
    """Findings logged as they come, one WARNING line each, at most `per_kind` lines of a kind
    over the whole task; `finish` adds the "and N more" lines. `counts` holds every finding."""

    def __init__(self, log: logging.Logger, *, per_kind: int = LINES_PER_KIND) -> None:
        self.log = log
        self.per_kind = per_kind
        self.counts: Counter[str] = Counter()

    def add(self, findings: Iterable[Finding]) -> None:
        for finding in findings:
            self.counts[finding.kind] += 1
            if self.counts[finding.kind] <= self.per_kind:
                self.log.warning("%s", finding.line())

    def finish(self) -> dict[str, int]:
        for kind, total in self.counts.items():
            if total > self.per_kind:
                plural, where = MORE.get(kind, (f"{kind}s", "the ledger"))
                self.log.warning(
                    "... and %d more %s (%d in all): see %s",
                    total - self.per_kind,
                    plural,
                    total,
                    where,
                )
        return dict(self.counts)


def log_findings(
    log: logging.Logger, findings: Iterable[Finding], *, per_kind: int = LINES_PER_KIND
) -> dict[str, int]:
    """Log each finding as one WARNING line, at most `per_kind` of a kind followed by one line
    naming how many more there are and where to read them; the count of each kind."""
    logged = FindingsLog(log, per_kind=per_kind)
    logged.add(findings)
    return logged.finish()


def reasons(problems: Iterable[Any], *, within: str = "", limit: int = REASONS_PER_LINE) -> str:
    """Problems (bridge.core.errors.Problem or plain text) as one readable clause; where a
    problem is placed inside the record `within` names, only the place inside it is shown."""
    texts = [_one_line(_problem_text(p, within)) for p in problems]
    shown = "; ".join(texts[:limit]) or "no reason recorded"
    if len(texts) > limit:
        shown += f"; and {len(texts) - limit} more reason(s)"
    return shown


def _problem_text(problem: Any, within: str) -> str:
    if not isinstance(problem, Problem):
        return str(problem)
    source = problem.source
    if within and source.startswith(within):
        source = source[len(within) :].lstrip(". ")
    where = " ".join(part for part in (source, problem.path) if part) or "(record)"
    got = f" (got {problem.value!r})" if problem.value is not None else ""
    return f"{where}: {problem.reason}{got}"


def ingest_findings(reports: Iterable[Any], inbox: Path) -> list[Finding]:
    """From the ingest reports (bridge.services.ingest.IngestReport): every rejected record
    with all its reasons, every file set aside as unreadable (or left waiting in the inbox for
    its mapping), every mapping that could not be loaded."""
    found: list[Finding] = []
    for report in reports:
        if report.kind == "mapping":
            found.append(Finding(BROKEN_MAPPING, report.file, _one_line(report.failure or "")))
            continue
        if report.failure is not None:
            if (inbox / report.file).exists():  # a file only a broken mapping claims waits
                found.append(Finding(WAITING_FILE, report.file, _one_line(report.failure)))
            else:
                subject = f"{report.file} (moved to {inbox / 'failed'})"
                found.append(Finding(UNREADABLE_FILE, subject, _one_line(report.failure)))
            continue
        for record in report.rejects:
            number = record.number or "(no licence number)"
            subject = f"{number} at {record.source} (mapping {report.mapping})"
            found.append(
                Finding(REJECTED_RECORD, subject, reasons(record.problems, within=record.source))
            )
    return found


def consumer_findings(engine: Engine, since: datetime) -> list[Finding]:
    """What the ledger recorded from `since` on: every refused write-off (one per document) and
    every quarantined message, oldest first."""
    from bridge.services.quarantine import Selection, list_quarantined

    found = [_refusal_finding(row) for row in refusals_since(engine, since)]
    for row in list_quarantined(engine, Selection(since=since)):
        subject = (
            f"message {row['message_id'] or '(no id)'}, MRN {row['mrn'] or '-'}"
            f" (quarantine #{row['id']}: `elbridge quarantine show {row['id']}`)"
        )
        why = _one_line(row["first_reason"])
        if row["reasons"] > 1:
            why += f"; and {row['reasons'] - 1} more reason(s)"
        found.append(Finding(QUARANTINED_MESSAGE, subject, why))
    return found


def refusals_since(engine: Engine, since: datetime) -> list[Mapping[str, Any]]:
    """The refusal rows recorded from `since` on, oldest first."""
    from bridge.adapters.store.schema import refusal

    query = select(refusal).where(refusal.c.at >= since).order_by(refusal.c.id)
    with engine.connect() as conn:
        return [row._mapping for row in conn.execute(query)]


def _refusal_finding(row: Mapping[str, Any]) -> Finding:
    line = f" line {row['line_number']}" if row["line_number"] is not None else ""
    subject = (
        f"MRN {row['mrn'] or '-'} item {row['goods_item']}: {row['document_code'] or '-'}"
        f" {_one_line(row['document_ref'] or '-', 80)}{line}"
        f" (message {row['message_id'] or '-'})"
    )
    return Finding(REFUSED_WRITE_OFF, subject, f"{row['code']}: {_one_line(row['reason'])}")


def undelivered_findings(rows: Sequence[Mapping[str, Any]], now: datetime) -> list[Finding]:
    """Messages customs should have and do not (bridge.services.outbox.undelivered: failed,
    or pending too long): which licence version, since when, and the last error."""
    found = []
    for row in rows:
        kind = UNDELIVERED_CERTIFICATE if row["kind"] == "certificate" else UNDELIVERED_STATUS
        subject = f"licence {row['licence']} version {row['version']} (outbox #{row['id']})"
        state = row["status"] + (f" ({row['failure']})" if row.get("failure") else "")
        since = row["since"]
        if isinstance(since, datetime):
            state += f", queued {_duration(now - since)} ago"
        error = _one_line(row["last_error"] or "not sent yet")
        found.append(Finding(kind, subject, f"{state}: {error}"))
    return found


def _duration(span: timedelta) -> str:
    minutes = max(0, int(span.total_seconds() // 60))
    if minutes < 120:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def _one_line(text: str, limit: int = REASON_CHARS) -> str:
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"

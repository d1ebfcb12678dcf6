"""What `elbridge demo` tells, in words a licensing officer or an operator reads: which Airflow
run did the work (found through Airflow's API, not assumed), the national records rejected with
every reason, what became of each declaration's documents ("1 of 3 documents refused, 2 written
off"), the reconciliation of the lines that moved, and the next steps. Plain text built from
what the ledger and Airflow say; nothing here decides anything."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bridge.adapters.store.rejects import StoredReject
from bridge.adapters.store.status import MessageDocuments
from bridge.core.reconcile import ReconciliationRow
from bridge.entrypoints.airflow_standalone import StandaloneError

EVENT_ORDER = {"released": 0, "amended": 1, "invalidated": 2}
# The tasks of the project's DAGs that fail on purpose so that a run shows red, and what that
# red means in each (dags/*.py docstrings, docs/operations.md).
VERDICTS = {
    "licences_to_customs": {
        "report_problems": "national records were rejected or files set aside (the WARNING"
        " lines of ingest_national_files say which and why)",
        "check_undelivered_certificates": "certificates failed, or pending too long",
        "fail_if_a_step_failed": "a processing step failed",
    },
    "declarations_to_writeoffs": {
        "report_problems": "write-offs were refused or messages quarantined (the WARNING lines"
        " of drain_declaration_events say which and why)",
    },
}


def plural(count: int, word: str, words: str | None = None) -> str:
    return f"{count} {word if count == 1 else (words or word + 's')}"


# --------------------------------------------------------------------------- declarations


def message_wording(message: MessageDocuments) -> str:
    """What became of one declaration message, in words: "written off (3 documents)", "1 of 3
    documents refused, 2 written off", "ignored: no dual-use licence quoted"..."""
    outcome, event = message.outcome, message.event or ""
    total = message.moved + message.refused
    if outcome == "refused":
        if message.moved == 0:
            return f"refused: {plural(total, 'document')}, nothing written off"
        moved = "written off" if event == "released" else "applied"
        return f"{message.refused} of {plural(total, 'document')} refused, {message.moved} {moved}"
    if outcome == "applied":
        if event == "invalidated":
            return f"{plural(message.moved, 'write-off')} reversed"
        if event == "amended":
            return f"{plural(message.moved, 'document')} adjusted"
        return f"written off ({plural(message.moved, 'document')})"
    explained = {
        "ignored": "ignored: it quotes no dual-use licence (or the MRN was invalidated)",
        "quarantined": "quarantined: unreadable, kept with its reasons",
        "duplicate": "duplicate: processed before, nothing changed",
        "stale": "stale: older than the version the ledger holds, nothing changed",
        "held": "held: an amendment waiting for its release",
    }
    return explained.get(outcome, outcome)


def declaration_lines(
    messages: Sequence[MessageDocuments], refusals: Sequence[dict[str, Any]]
) -> list[str]:
    """One line per declaration message, by MRN and in the order of the declaration's life,
    each refused document below its message with the rule's code and reason."""
    by_message: dict[str, list[dict[str, Any]]] = {}
    for refusal in refusals:
        by_message.setdefault(refusal.get("message_id") or "", []).append(refusal)
    ordered = sorted(
        messages, key=lambda m: (m.mrn or "", EVENT_ORDER.get(m.event or "", 9), m.message_id)
    )
    lines = []
    for message in ordered:
        lines.append(f"  {message.mrn or '-'}  {message.event or '-'}: {message_wording(message)}")
        for refusal in sorted(
            by_message.get(message.message_id, []), key=lambda r: r["goods_item"] or 0
        ):
            lines.append(
                f"      refused item {refusal['goods_item']} {refusal['document_code']}"
                f" {refusal['document_ref']}: {refusal['code']}: {refusal['reason']}"
            )
    return lines


# --------------------------------------------------------------------------- rejects


def reject_lines(rejects: Sequence[StoredReject]) -> list[str]:
    """Each rejected national record (its file and place) with every reason."""
    lines = []
    for stored in rejects:
        lines.append(f"  {stored.source} ({stored.format}):")
        for problem in stored.problems:
            where = f"{problem.path}: " if problem.path else ""
            lines.append(f"    - {where}{problem.reason}")
    return lines


# --------------------------------------------------------------------------- reconciliation


def _number(value: Any) -> str:
    return "" if value is None else f"{value:f}"


def reconciliation_lines(rows: Sequence[ReconciliationRow]) -> list[str]:
    """The lines that moved, narrow enough for a terminal: licence, line, unit, authorised,
    written off, remaining, movements."""
    moved = [row for row in rows if row.movements]
    width = max([len("licence"), *(len(row.licence_number) for row in moved)])
    header = (
        f"  {'licence':<{width}}  line  unit  {'authorised':>10}  {'written off':>11}"
        f"  {'remaining':>9}  moves"
    )
    lines = [header, "  " + "-" * (len(header) - 2)]
    for row in moved:
        lines.append(
            f"  {row.licence_number:<{width}}  {row.line_number:>4}  {row.unit or '':<4}"
            f"  {_number(row.authorised_quantity):>10}  {_number(row.written_off_quantity):>11}"
            f"  {_number(row.remaining_quantity):>9}  {row.movements:>5}"
        )
    return lines


# --------------------------------------------------------------------------- Airflow runs


@dataclass(frozen=True)
class RunSeen:
    """One Airflow run as the API shows it: id, type (manual, scheduled), state, its tasks'
    states, and the XCom summary of the task that tells what it did."""

    dag_id: str
    run_id: str
    run_type: str
    state: str
    tasks: dict[str, str | None]
    summary: dict[str, Any]

    @property
    def verdicts(self) -> list[str]:
        """Why the run is red, from the verdict tasks that failed."""
        return [
            f"{task} failed: {meaning}"
            for task, meaning in VERDICTS.get(self.dag_id, {}).items()
            if self.tasks.get(task) == "failed"
        ]


def runs_seen(
    airflow: Any, dag_id: str, summary_task: str, *, finished_only: bool = True
) -> list[RunSeen]:
    """The DAG's runs (newest first) with their task states and the summary XCom of
    `summary_task` ({} when it has none), read through Airflow's REST API."""
    seen = []
    for run in airflow.dag_runs(dag_id):
        if finished_only and run["state"] not in ("success", "failed"):
            continue
        run_id = run["dag_run_id"]
        tasks = airflow.task_states(dag_id, run_id)
        summary: dict[str, Any] = {}
        if tasks.get(summary_task) in ("success", "failed"):
            try:
                found = airflow.task_result(dag_id, run_id, summary_task)
            except StandaloneError:  # no XCom: the task failed before it returned
                found = None
            summary = found if isinstance(found, dict) else {}
        seen.append(
            RunSeen(dag_id, run_id, run.get("run_type") or "", run["state"], tasks, summary)
        )
    return seen


def licences_run_lines(worked: Sequence[RunSeen], idle: int) -> list[str]:
    """The licences DAG's runs that ingested files: what they read, rejected and delivered."""
    lines = []
    for run in worked:
        counts = run.summary
        lines.append(
            f"licences_to_customs run {run.run_id} ({run.run_type}) did the work:"
            f" {plural(int(counts.get('files', 0)), 'file')} read,"
            f" {counts.get('new', 0)} new licences, {counts.get('new_version', 0)} new versions,"
            f" {plural(int(counts.get('rejected', 0)), 'record')} rejected; run {run.state}"
        )
        lines.extend(f"  red because {verdict}" for verdict in run.verdicts)
    if idle:
        lines.append(f"  ({plural(idle, 'other run')} of licences_to_customs found nothing to do)")
    return lines


def declarations_run_lines(worked: Sequence[RunSeen], idle: int) -> list[str]:
    """The declarations DAG's runs that processed events, with their counts."""
    lines = []
    for run in worked:
        counts = run.summary
        shown = ", ".join(
            f"{counts.get(name, 0)} {name}"
            for name in ("applied", "refused", "ignored", "quarantined", "duplicates")
            if counts.get(name)
        )
        lines.append(
            f"declarations_to_writeoffs run {run.run_id} ({run.run_type}) did the work:"
            f" {plural(int(counts.get('messages', 0)), 'message')} ({shown or 'none'}); run"
            f" {run.state}"
        )
        lines.extend(f"  red because {verdict}" for verdict in run.verdicts)
    if idle:
        lines.append(
            f"  ({plural(idle, 'idle run')} of declarations_to_writeoffs: nothing arrived,"
            " record_writeoffs skipped)"
        )
    return lines


def ingested_files(run: RunSeen) -> int:
    return int(run.summary.get("files") or 0)


def processed_messages(run: RunSeen) -> int:
    return int(run.summary.get("messages") or 0)


def split_runs(
    runs: Sequence[RunSeen], did_work: Callable[[RunSeen], int]
) -> tuple[list[RunSeen], int]:
    """The runs that did some work (oldest first) and how many did none."""
    worked = [run for run in runs if did_work(run)]
    idle = sum(1 for run in runs if not did_work(run))
    return list(reversed(worked)), idle


# --------------------------------------------------------------------------- next steps


def shown_home(home: Path) -> str:
    """The home as the user would type it: relative to the current folder when inside it."""
    try:
        relative = home.resolve().relative_to(Path.cwd().resolve())
    except ValueError:
        return str(home)
    return str(relative) if str(relative) != "." else "."


def next_steps(home: Path, reports: Path | None, settings_file: Path) -> list[str]:
    where = shown_home(home)
    quoted = where if " " not in where else f"'{where}'"
    shown = shown_home(settings_file)
    settings = shown if " " not in shown else f"'{shown}'"
    commands = [
        (f"elbridge reconcile --home {quoted}", "authorised, written off, remaining"),
        (f"elbridge reconcile --home {quoted} --refusals", "the refused write-offs and why"),
        (f"elbridge quarantine list --home {quoted}", "messages that could not be read"),
        (
            f"elbridge status --settings {settings}",
            "health, backlog, what needs a person (the file names the demo's broker and customs)",
        ),
    ]
    width = max(len(command) for command, _ in commands)
    steps = ["Next steps (the demo's ledger is in its own folder: name it with --home):"]
    steps += [f"  {command:<{width}}   {what}" for command, what in commands]
    if reports is not None:
        steps.append(f"  the reports to open: {shown_home(reports)}{os.sep} (HTML, xlsx, CSV)")
    return steps

"""The operations pages: national records rejected at ingest (per file, every reason), the
quarantine (reasons, the message's bytes to download, replay through today's rules) and the
outbox (certificates and status updates for customs, sent again on request). Replaying and
retrying are an officer's acts, recorded with their name; auditors see everything."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from bridge.core.console_tables import OUTBOX, QUARANTINE, REJECTS
from bridge.core.errors import Rejected
from bridge.core.tables import Table
from bridge.entrypoints.console.exports import Export, table_context
from bridge.entrypoints.console.render import (
    OFFICER,
    READERS,
    NavEntry,
    actor,
    day_range,
    flash,
    form,
    ledger,
    not_found,
    now,
    page_url,
    render,
    require_role,
    settings,
)
from bridge.services.operations import (
    QUARANTINE_STATES,
    outbox_table,
    quarantine_table,
    rejected_records,
)
from bridge.services.outbox import retry_failed
from bridge.services.quarantine import Selection, replay, show_quarantined

OUTBOX_STATUSES = ("pending", "delivered", "failed")
MAX_ID = 2**63 - 1  # the largest id a ledger holds (BIGINT; SQLite's INTEGER)


def _page(request: Request, template: str, context: dict) -> Response:
    return render(
        request,
        template,
        {**context, **table_context(request)},
    )


# --------------------------------------------------------------------------- rejects


def _rejects_query(request: Request) -> dict[str, str]:
    return {k: request.query_params.get(k, "") for k in ("file", "mapping")}


@require_role(*READERS)
def rejects_page(request: Request) -> Response:
    query = _rejects_query(request)
    found = rejected_records(ledger(request), file=query["file"], mapping=query["mapping"])
    return _page(request, "ops_rejects.html", {"rejected": found, "query": query})


def _rejects_export(request: Request) -> Table:
    query = _rejects_query(request)
    return rejected_records(ledger(request), file=query["file"], mapping=query["mapping"]).table()


# --------------------------------------------------------------------------- quarantine


def _quarantine_query(request: Request) -> dict[str, str]:
    query = {k: request.query_params.get(k, "") for k in ("state", "mrn", "from", "to")}
    query["state"] = query["state"] or "open"
    return query


def _quarantine(request: Request) -> Table:
    query = _quarantine_query(request)
    since, until = day_range(request)
    return quarantine_table(
        ledger(request), state=query["state"], mrn=query["mrn"], since=since, until=until
    )


@require_role(*READERS)
def quarantine_page(request: Request) -> Response:
    query = _quarantine_query(request)
    problem = None
    try:
        table = _quarantine(request)
    except ValueError as error:
        problem, table = str(error), QUARANTINE.table(())
    return _page(
        request,
        "ops_quarantine.html",
        {
            "table": table,
            "query": query,
            "states": QUARANTINE_STATES,
            "problem": problem,
            "message_link": lambda row: page_url(request, "ops_quarantine_message", id=row["id"]),
            "replayable": lambda row: str(row.get("state", "")).startswith("quarantined"),
        },
    )


def _quarantined(request: Request) -> tuple[dict, bytes] | None:
    quarantine_id = request.path_params["id"]
    if not 0 < quarantine_id <= MAX_ID:
        return None
    return show_quarantined(ledger(request), quarantine_id)


@require_role(*READERS)
def quarantine_message(request: Request) -> Response:
    found = _quarantined(request)
    if found is None:
        return not_found(request, f"there is no quarantined message {request.path_params['id']}")
    record, payload = found
    return _page(
        request,
        "ops_quarantine_message.html",
        {"message": record, "payload_bytes": len(payload)},
    )


@require_role(*READERS)
def quarantine_payload(request: Request) -> Response:
    quarantine_id = request.path_params["id"]
    found = _quarantined(request)
    if found is None:
        return not_found(request, f"there is no quarantined message {quarantine_id}")
    _, payload = found
    # The bytes exactly as they arrived, never shown inline: they are whatever a sender sent.
    suffix = "json" if payload.lstrip()[:1] == b"{" else "bin"
    return Response(
        payload,
        media_type="application/octet-stream",
        headers={
            "content-disposition": f'attachment; filename="quarantine-{quarantine_id}.{suffix}"',
            "cache-control": "no-store",
        },
    )


def _ids(request: Request) -> list[int]:
    """The message ids a form chose; ValueError naming one that is no id."""
    ids = []
    for text in form(request).getlist("id"):
        try:
            number = int(str(text).strip())
        except ValueError:
            number = 0
        # Checked here: a number no ledger column holds would be an error of the database.
        if not 0 < number <= MAX_ID:
            raise ValueError(f"{str(text)[:40]!r} is not the number of a message")
        ids.append(number)
    return ids


@require_role(OFFICER)
def quarantine_replay(request: Request) -> Response:
    back = str(form(request).get("back") or "")
    target = back if back.startswith(page_url(request, "ops_quarantine")) else None
    target = target or page_url(request, "ops_quarantine")
    try:
        ids = _ids(request)
    except ValueError as error:
        flash(request, str(error), "problem")
        return RedirectResponse(target, 303)
    if not ids:
        flash(request, "choose the messages to replay first", "problem")
        return RedirectResponse(target, 303)
    dry_run = form(request).get("dry_run") == "1"
    report = replay(
        ledger(request),
        settings(request),
        Selection(ids=tuple(ids)),
        dry_run=dry_run,
        now=lambda: now(request),
        actor=actor(request),
    )
    found = {r.quarantine_id for r in report.replayed}
    unknown = [str(i) for i in dict.fromkeys(ids) if i not in found]
    if report.replayed:
        flash(request, report.describe())
    if unknown:
        flash(request, f"there is no quarantined message {', '.join(unknown)}", "problem")
    return RedirectResponse(target, 303)


# --------------------------------------------------------------------------- outbox


def _outbox_query(request: Request) -> dict[str, str]:
    return {k: request.query_params.get(k, "") for k in ("status", "licence")}


def _outbox(request: Request) -> Table:
    query = _outbox_query(request)
    if query["status"] and query["status"] not in OUTBOX_STATUSES:
        raise ValueError(f"status {query['status']!r}: choose {', '.join(OUTBOX_STATUSES)}")
    return outbox_table(
        ledger(request), status=query["status"], licence=query["licence"], now=now(request)
    )


@require_role(*READERS)
def outbox_page(request: Request) -> Response:
    query = _outbox_query(request)
    problem = None
    try:
        table = _outbox(request)
    except (ValueError, Rejected) as error:
        problem, table = str(error), OUTBOX.table(())
    return _page(
        request,
        "ops_outbox.html",
        {
            "table": table,
            "query": query,
            "statuses": OUTBOX_STATUSES,
            "problem": problem,
            "retryable": lambda row: row.get("status") == "failed",
        },
    )


@require_role(OFFICER)
def outbox_retry(request: Request) -> Response:
    target = page_url(request, "ops_outbox", {"status": form(request).get("status") or None})
    try:
        ids = _ids(request)
    except ValueError as error:
        flash(request, str(error), "problem")
        return RedirectResponse(target, 303)
    # "Every failed message" wins over a selection made on the way.
    every_failed = form(request).get("all_failed") == "1"
    if not ids and not every_failed:
        flash(request, "choose the failed messages to send again first", "problem")
        return RedirectResponse(target, 303)
    try:
        report = retry_failed(
            ledger(request),
            ids=None if every_failed else ids,
            all_failed=every_failed,
            actor=actor(request),
            now=now(request),
        )
    except Rejected as refused:
        reasons = "; ".join(
            " ".join(str(x) for x in (p.path, p.value) if x) + f": {p.reason}"
            if p.path or p.value
            else p.reason
            for p in refused.problems
        )
        flash(request, f"{refused.summary}: {reasons}" if reasons else refused.summary, "problem")
        return RedirectResponse(target, 303)
    parts = [f"{len(report.requeued)} message(s) queued to be sent again"]
    parts += [f"message {row['id']} left as it is: {row['why']}" for row in report.skipped]
    flash(request, "; ".join(parts), "notice" if report.requeued else "problem")
    return RedirectResponse(target, 303)


exports = [
    Export(REJECTS, _rejects_export, "ops_rejects"),
    Export(QUARANTINE, _quarantine, "ops_quarantine"),
    Export(OUTBOX, _outbox, "ops_outbox"),
]

routes = [
    Route("/operations/rejects", rejects_page, methods=["GET"], name="ops_rejects"),
    Route("/operations/quarantine", quarantine_page, methods=["GET"], name="ops_quarantine"),
    Route(
        "/operations/quarantine/replay",
        quarantine_replay,
        methods=["POST"],
        name="ops_quarantine_replay",
    ),
    Route(
        "/operations/quarantine/{id:int}",
        quarantine_message,
        methods=["GET"],
        name="ops_quarantine_message",
    ),
    Route(
        "/operations/quarantine/{id:int}/payload",
        quarantine_payload,
        methods=["GET"],
        name="ops_quarantine_payload",
    ),
    Route("/operations/outbox", outbox_page, methods=["GET"], name="ops_outbox"),
    Route("/operations/outbox/retry", outbox_retry, methods=["POST"], name="ops_outbox_retry"),
]
nav = [NavEntry("Operations", "ops_rejects", order=40)]

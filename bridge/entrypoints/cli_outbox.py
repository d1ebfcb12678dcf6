"""`elbridge outbox list|retry`: what waits for customs, what failed and why, and sending failed
messages again (bridge.services.outbox; docs/reliability.md, "The outbox")."""

from __future__ import annotations

import argparse
import getpass
from datetime import UTC, datetime, timedelta
from typing import Any

from bridge.core.errors import Problem, Rejected
from bridge.entrypoints.cli_output import Column, open_ledger, reporter
from bridge.entrypoints.exit_codes import Exit

DEFAULT_LIMIT = 200  # rows shown unless --limit says otherwise
_ERROR_CHARS = 160  # of the last error, in the table (the JSON has it whole)


def add_outbox_commands(subparsers: argparse._SubParsersAction) -> None:
    """Add `outbox list` and `outbox retry` to the `elbridge` command tree."""
    outbox = subparsers.add_parser(
        "outbox",
        help="the certificates and status updates for customs: list them, send failed ones again",
        description="The outbox holds every certificate and status update for customs until"
        " customs acknowledge it. A message customs cannot take now (customs down, HTTP 503, no"
        " answer) stays pending and is tried again for ELBRIDGE_SOAP_RETRY_BUDGET_HOURS (48 by"
        " default); one customs refuse, or whose budget is spent, is failed until someone sends"
        " it again with `elbridge outbox retry`.",
    )
    actions = outbox.add_subparsers(dest="outbox_command", required=True, metavar="ACTION")

    listing = actions.add_parser(
        "list",
        help="the outbox's messages, newest first: status, attempts, first failure, next"
        " attempt, last error, age",
        description="The outbox's messages, newest first. Exit status 4 when the list shows"
        " failed messages.",
    )
    listing.add_argument(
        "--status", choices=("pending", "failed", "delivered"), help="only messages in this state"
    )
    listing.add_argument("--licence", metavar="NUMBER", help="only this licence's messages")
    listing.add_argument(
        "--limit",
        type=_limit,
        default=DEFAULT_LIMIT,
        metavar="N",
        help=f"show at most N messages (default {DEFAULT_LIMIT}; 0: all)",
    )
    listing.set_defaults(func=cmd_outbox_list)

    retry = actions.add_parser(
        "retry",
        help="send failed messages again (by id, by licence, or all failed ones)",
        description="Make failed messages pending again, with the whole retry budget: the next"
        " delivery run (`elbridge sync`, or the licences_to_customs DAG) sends them. Who did it"
        " and when is recorded with each message. Exit status 0 when every message asked for is"
        " pending again (or none had failed), 4 when some are and others are not, 3 when none"
        " could be (each reason is told).",
    )
    which = retry.add_mutually_exclusive_group(required=True)
    which.add_argument(
        "--id",
        dest="ids",
        type=int,
        nargs="+",
        metavar="ID",
        help="these messages (the id column of `elbridge outbox list`)",
    )
    which.add_argument("--licence", metavar="NUMBER", help="every failed message of this licence")
    which.add_argument("--all-failed", action="store_true", help="every failed message")
    retry.add_argument(
        "--actor",
        metavar="WHO",
        help="who sends them again, as recorded (default: your login name)",
    )
    retry.set_defaults(func=cmd_outbox_retry)


def _limit(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{value} is below 0")
    return value


def cmd_outbox_list(args: argparse.Namespace) -> int:
    """0; 4 when the list shows failed messages."""
    from bridge.services.outbox import outbox_listing, outbox_summary

    out = reporter(args)
    engine = open_ledger(args)
    now = datetime.now(UTC)
    rows = outbox_listing(
        engine, status=args.status, licence=args.licence, limit=args.limit or None, now=now
    )
    counts = outbox_summary(engine)
    out.emit({"messages": rows, "counts": counts, "at": now})
    out.table(
        [
            Column("id", "id", numeric=True),
            Column("licence", "licence"),
            Column("v", "version", numeric=True),
            Column("kind", "kind"),
            Column("status", "state"),
            Column("attempts", "attempts", numeric=True),
            Column("first failure", "first_failure"),
            Column("next attempt", "next_attempt"),
            Column("age", "age"),
            Column("last error", "error"),
        ],
        [_displayed(row, now) for row in rows],
        footer=_footer(rows, counts, args),
    )
    failed = sum(1 for row in rows if row["status"] == "failed")
    if failed:
        out.warn(
            f"{failed} failed message(s) shown: `elbridge outbox retry --id ID` (or --licence,"
            " --all-failed) sends them again once the cause is dealt with"
        )
        return Exit.PARTIAL
    return Exit.OK


def cmd_outbox_retry(args: argparse.Namespace) -> int:
    """0 all asked for pending again (or nothing had failed); 4 some; 3 none (reasons told)."""
    from bridge.services.outbox import retry_failed

    out = reporter(args)
    actor = args.actor if args.actor is not None else _login_name()
    now = datetime.now(UTC)
    report = retry_failed(
        open_ledger(args),
        ids=args.ids,
        licence=args.licence,
        all_failed=args.all_failed,
        actor=actor,
        now=now,
    )
    out.emit({"actor": actor, "at": now, "requeued": report.requeued, "skipped": report.skipped})
    for row in report.requeued:
        out.say(f"pending again: {_which(row)} (it had failed: {row['failure'] or 'failed'})")
    for row in report.skipped:
        out.warn(f"not sent again: {_which(row)}: {row['why']}")
    if report.requeued:
        out.say(
            f"{len(report.requeued)} message(s) pending again, recorded as sent again by {actor}"
            f" at {now:%Y-%m-%d %H:%M:%S} UTC; the next delivery run (`elbridge sync` or the"
            " licences_to_customs DAG) sends them"
        )
    elif not report.skipped:
        out.say("no failed messages: nothing to send again")
    if report.skipped:
        return Exit.PARTIAL if report.requeued else Exit.REFUSED
    return Exit.OK


def _login_name() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no login name where the command runs (a container, say)
        raise Rejected(
            [Problem("cannot tell who you are; name yourself with --actor", "actor", code="usage")],
            "nothing sent again",
        ) from None


def _which(row: dict[str, Any]) -> str:
    what = "certificate" if row["kind"] == "certificate" else "status update"
    return f"message {row['id']} ({what} of licence {row['licence']} version {row['version']})"


def _displayed(row: dict[str, Any], now: datetime) -> dict[str, Any]:
    from bridge.services.outbox_sending import span_text

    state = row["status"]
    if row["failure"]:
        state = f"{state} ({row['failure']})"
    error = " ".join(str(row["last_error"] or "").split())
    if len(error) > _ERROR_CHARS:
        error = error[: _ERROR_CHARS - 1] + "…"
    next_attempt = row["next_attempt_at"]
    return {
        "id": row["id"],
        "licence": row["licence"],
        "version": row["version"],
        "kind": row["kind"],
        "state": state,
        "attempts": row["attempts"],
        "first_failure": _moment(row["first_failed_at"]),
        "next_attempt": (
            (
                f"in {span_text(next_attempt - now)}"
                if next_attempt - now >= timedelta(seconds=1)
                else "now"
            )
            if next_attempt is not None
            else None
        ),
        "age": span_text(timedelta(seconds=row["age_seconds"])),
        "error": error,
    }


def _moment(moment: datetime | None) -> str | None:
    return None if moment is None else f"{moment.astimezone(UTC):%Y-%m-%d %H:%M} UTC"


def _footer(rows: list[dict[str, Any]], counts: dict[str, int], args: argparse.Namespace) -> str:
    total = sum(counts.values())
    shown = f"{len(rows)} message(s) shown"
    if args.limit and len(rows) == args.limit:
        shown += f" (at most {args.limit}: --limit 0 shows all)"
    return (
        f"{shown}; the outbox holds {total}: {counts['pending']} pending,"
        f" {counts['failed']} failed, {counts['delivered']} delivered"
    )

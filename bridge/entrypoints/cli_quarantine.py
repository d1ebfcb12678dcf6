"""`elbridge quarantine list|show|replay`: the operator's view of the messages the bridge could
not read, and their replay through the rules of the day once the cause is fixed. Wiring only:
arguments to bridge.services.quarantine (which owns each transaction), results to
bridge.core.quarantine_view's renderers. docs/quarantine.md is the operator's page.

Reporting, errors and exit statuses follow bridge/entrypoints/cli_output.py: `list` is a report
(0); `replay` exits 4 (PARTIAL) while a message it replayed is still quarantined."""

from __future__ import annotations

import argparse
import json
from datetime import UTC, date, datetime, time, timedelta
from functools import partial
from pathlib import Path

from bridge.entrypoints.cli_output import Column, open_ledger, read_settings, reporter
from bridge.entrypoints.exit_codes import Exit


def _moment(text: str, *, end_of_day: bool) -> datetime:
    """A day (YYYY-MM-DD: its start, or with `end_of_day` the next day's start) or an ISO 8601
    time (UTC when it names no zone)."""
    try:
        if len(text) == 10:
            day = date.fromisoformat(text)
            moment = datetime.combine(day, time(), tzinfo=UTC)
            return moment + timedelta(days=1) if end_of_day else moment
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is neither a day (YYYY-MM-DD) nor an ISO 8601 time"
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _filters(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--since",
        type=partial(_moment, end_of_day=False),
        help="received from this day (YYYY-MM-DD) or time (ISO 8601, UTC by default)",
    )
    parser.add_argument(
        "--until",
        type=partial(_moment, end_of_day=True),
        help="received up to this day (included) or before this time",
    )
    parser.add_argument("--mrn", help="only this MRN (the envelope's, else the declaration's ID)")


def _format(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--format", choices=("table", "csv", "json"), default="table", help="json: as --json"
    )


def add_quarantine_commands(subparsers: argparse._SubParsersAction) -> None:
    """Add `quarantine list|show|replay` to the `elbridge` command set."""
    quarantine = subparsers.add_parser(
        "quarantine",
        help="messages the bridge could not read: list, show, replay after a fix",
        description="Declaration events the bridge could not read are kept byte for byte with"
        " every reason. List and inspect them; once the cause is fixed (a rule, a code table, a"
        " setting, a licence that arrived), replay them through today's rules, exactly once.",
    )
    actions = quarantine.add_subparsers(dest="quarantine_command", required=True, metavar="ACTION")

    listing = actions.add_parser(
        "list", help="quarantined messages: id, received at, topic, ids, state, first reason"
    )
    _filters(listing)
    listing.add_argument(
        "--open", action="store_true", help="only those still quarantined (not settled by a replay)"
    )
    _format(listing)
    listing.add_argument("--output", help="write to this file instead of standard output")
    listing.set_defaults(func=cmd_list)

    show = actions.add_parser(
        "show", help="one message: every reason with its path, its envelope, a safe preview"
    )
    show.add_argument("id", type=int, help="the quarantine id (see `quarantine list`)")
    show.add_argument(
        "--preview", type=int, default=400, metavar="CHARS", help="characters of preview"
    )
    show.add_argument("--save", help="write the message, byte for byte, to this file")
    show.set_defaults(func=cmd_show)

    replay = actions.add_parser(
        "replay",
        help="apply quarantined messages through today's rules, once each, and record how",
        description="Each message named is read and applied as a live one (one transaction"
        " each); its outcome is recorded on its quarantine row and its result published to the"
        " result topic. A message replayed before is left alone; one still unreadable stays"
        " quarantined with today's reasons.",
    )
    replay.add_argument("ids", nargs="*", type=int, help="quarantine ids (see `quarantine list`)")
    replay.add_argument("--all", action="store_true", help="every message the filters select")
    _filters(replay)
    replay.add_argument(
        "--dry-run",
        action="store_true",
        help="say what a replay would do now, in a transaction rolled back: nothing changes",
    )
    replay.add_argument(
        "--no-publish",
        action="store_true",
        help="leave the results pending for the consumer's relay (sent on its next start)",
    )
    _format(replay)
    replay.set_defaults(func=cmd_replay)


def _selection(args: argparse.Namespace, *, ids: list[int] | None = None):
    from bridge.services.quarantine import Selection

    return Selection(
        ids=tuple(ids) if ids else None, since=args.since, until=args.until, mrn=args.mrn
    )


LIST_COLUMNS = (
    Column("id", "id", numeric=True),
    Column("received at", "received_at"),
    Column("topic", "topic"),
    Column("message id", "message_id"),
    Column("MRN", "mrn"),
    Column("event", "event"),
    Column("state", "state"),
    Column("first reason", "first_reason"),
)

REPLAY_COLUMNS = (
    Column("id", "quarantine_id", numeric=True),
    Column("message id", "message_id"),
    Column("MRN", "mrn"),
    Column("event", "event"),
    Column("outcome", "outcome"),
    Column("result id", "result_id"),
    Column("detail", "detail"),
)


def _footer(rendered_table: str) -> str:
    # The core's table ends with its one-line summary; the terminal gets rich's table.
    return rendered_table.rstrip("\n").rsplit("\n", 1)[-1]


def cmd_list(args: argparse.Namespace) -> int:
    """A report: 0 whatever it lists."""
    from bridge.core.quarantine_view import render_list
    from bridge.services.quarantine import list_quarantined

    out = reporter(args)
    records = list_quarantined(open_ledger(args), _selection(args), open_only=args.open)
    fmt = "json" if out.json else args.format
    if args.output:
        Path(args.output).write_text(render_list(records, fmt), encoding="utf-8")
        out.note(f"wrote {len(records)} messages to {args.output}")
        out.emit({"messages": len(records), "output": args.output})
    elif fmt == "json":
        out.json = True  # --format json is --json: one document on standard output
        out.emit(json.loads(render_list(records, "json")))
    elif fmt == "table":
        out.table(LIST_COLUMNS, records, footer=_footer(render_list(records, "table")))
    else:
        out.write(render_list(records, fmt))
    return Exit.OK


def cmd_show(args: argparse.Namespace) -> int:
    """1 when there is no such message."""
    from bridge.core.quarantine_view import render_message
    from bridge.services.quarantine import show_quarantined

    out = reporter(args)
    found = show_quarantined(open_ledger(args), args.id, preview_chars=max(args.preview, 0))
    if found is None:
        out.error(f"no quarantined message {args.id} (see `elbridge quarantine list`)")
        return Exit.FAILURE
    record, payload = found
    out.emit(json.loads(render_message(record, "json")))
    out.write(render_message(record, "table"))
    if args.save:
        Path(args.save).write_bytes(payload)
        out.note(f"wrote the message ({len(payload)} bytes) to {args.save}")
    return Exit.OK


def cmd_replay(args: argparse.Namespace) -> int:
    """4 when a message replayed is still quarantined, 2 when none was named."""
    from bridge.core.quarantine_view import render_replays, replay_record
    from bridge.services.quarantine import replay

    out = reporter(args)
    if not (args.ids or args.all or args.since or args.until or args.mrn):
        out.error("name the messages: ids, --all, or --since/--until/--mrn")
        return Exit.USAGE
    report = replay(
        open_ledger(args),
        read_settings(args),
        _selection(args, ids=args.ids),
        publish=not args.no_publish,
        dry_run=args.dry_run,
    )
    records = [replay_record(r) for r in report.replayed]
    fmt = "json" if out.json else args.format
    rendered = render_replays(records, fmt, footer=report.describe())
    if fmt == "json":
        out.json = True  # --format json is --json: one document on standard output
        out.emit(json.loads(rendered))
    elif fmt == "table":
        out.table(REPLAY_COLUMNS, records, footer=report.describe())
    else:
        out.write(rendered)
    return Exit.PARTIAL if report.still_quarantined else Exit.OK

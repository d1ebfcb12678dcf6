"""`elbridge quarantine list|show|replay`: the operator's view of the messages the bridge could
not read, and their replay through the rules of the day once the cause is fixed. Wiring only:
arguments to bridge.services.quarantine (which owns each transaction), results to
bridge.core.quarantine_view's renderers. docs/quarantine.md is the operator's page.

cli.py hooks these in and hands over how to read the settings and open the ledger from the
global options, so that settings are read one way only."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from datetime import UTC, date, datetime, time, timedelta
from functools import partial
from pathlib import Path
from typing import Any

ReadSettings = Callable[[argparse.Namespace], Any]  # args -> Settings
OpenLedger = Callable[[argparse.Namespace], Any]  # args -> SQLAlchemy Engine


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
    parser.add_argument("--format", choices=("table", "csv", "json"), default="table")
    parser.add_argument(
        "--json", dest="format", action="store_const", const="json", help="same as --format json"
    )


def add_quarantine_commands(
    subparsers: argparse._SubParsersAction, *, read_settings: ReadSettings, open_ledger: OpenLedger
) -> None:
    """Add `quarantine list|show|replay` to the `elbridge` command set."""
    quarantine = subparsers.add_parser(
        "quarantine",
        help="messages the bridge could not read: list, show, replay after a fix",
        description="Declaration events the bridge could not read are kept byte for byte with"
        " every reason. List and inspect them; once the cause is fixed (a rule, a code table, a"
        " setting, a licence that arrived), replay them through today's rules, exactly once.",
    )
    actions = quarantine.add_subparsers(dest="quarantine_command", required=True, metavar="ACTION")
    wiring = {"read_settings": read_settings, "open_ledger": open_ledger}

    listing = actions.add_parser(
        "list", help="quarantined messages: id, received at, topic, ids, state, first reason"
    )
    _filters(listing)
    listing.add_argument(
        "--open", action="store_true", help="only those still quarantined (not settled by a replay)"
    )
    _format(listing)
    listing.add_argument("--output", help="write to this file instead of standard output")
    listing.set_defaults(func=partial(cmd_list, **wiring))

    show = actions.add_parser(
        "show", help="one message: every reason with its path, its envelope, a safe preview"
    )
    show.add_argument("id", type=int, help="the quarantine id (see `quarantine list`)")
    show.add_argument(
        "--preview", type=int, default=400, metavar="CHARS", help="characters of preview"
    )
    show.add_argument("--json", action="store_true", help="as JSON")
    show.add_argument("--save", help="write the message, byte for byte, to this file")
    show.set_defaults(func=partial(cmd_show, **wiring))

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
    replay.set_defaults(func=partial(cmd_replay, **wiring))


def _selection(args: argparse.Namespace, *, ids: list[int] | None = None):
    from bridge.services.quarantine import Selection

    return Selection(
        ids=tuple(ids) if ids else None, since=args.since, until=args.until, mrn=args.mrn
    )


def cmd_list(
    args: argparse.Namespace, *, read_settings: ReadSettings, open_ledger: OpenLedger
) -> int:
    """Exit status 1 when a message listed is still quarantined, else 0."""
    from bridge.core.quarantine_view import render_list
    from bridge.services.quarantine import list_quarantined

    records = list_quarantined(open_ledger(args), _selection(args), open_only=args.open)
    text = render_list(records, args.format)
    if args.output:
        Path(args.output).write_text(text, encoding="utf-8")
        print(f"wrote {len(records)} messages to {args.output}")
    else:
        sys.stdout.write(text)
    return 1 if any(str(r["state"]).startswith("quarantined") for r in records) else 0


def cmd_show(
    args: argparse.Namespace, *, read_settings: ReadSettings, open_ledger: OpenLedger
) -> int:
    from bridge.core.quarantine_view import render_message
    from bridge.services.quarantine import show_quarantined

    found = show_quarantined(open_ledger(args), args.id, preview_chars=max(args.preview, 0))
    if found is None:
        print(f"elbridge quarantine show: no quarantined message {args.id}", file=sys.stderr)
        return 1
    record, payload = found
    sys.stdout.write(render_message(record, "json" if args.json else "table"))
    if args.save:
        Path(args.save).write_bytes(payload)
        print(f"wrote the message ({len(payload)} bytes) to {args.save}", file=sys.stderr)
    return 0


def cmd_replay(
    args: argparse.Namespace, *, read_settings: ReadSettings, open_ledger: OpenLedger
) -> int:
    """Exit status 1 when a message replayed is still quarantined, 2 when none was named."""
    from bridge.core.quarantine_view import render_replays, replay_record
    from bridge.services.quarantine import replay

    if not (args.ids or args.all or args.since or args.until or args.mrn):
        print(
            "elbridge quarantine replay: name the messages: ids, --all, or --since/--until/--mrn",
            file=sys.stderr,
        )
        return 2
    report = replay(
        open_ledger(args),
        read_settings(args),
        _selection(args, ids=args.ids),
        publish=not args.no_publish,
        dry_run=args.dry_run,
    )
    records = [replay_record(r) for r in report.replayed]
    sys.stdout.write(render_replays(records, args.format, footer=report.describe()))
    return 1 if report.still_quarantined else 0

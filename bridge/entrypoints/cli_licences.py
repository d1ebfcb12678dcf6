"""`elbridge licence ...` (the licensing authority's lifecycle commands) and `elbridge
query-service serve` (the query service customs call). Wiring only: arguments to
bridge.services.licence_status and bridge.entrypoints.query_service.

Reporting, errors and exit statuses follow bridge/entrypoints/cli_output.py; a status change
the lifecycle refuses exits 3 (REFUSED) with the reason."""

from __future__ import annotations

import argparse
from datetime import UTC, date, datetime
from functools import partial
from typing import Any

from bridge.entrypoints.cli_output import Column, open_ledger, read_settings, reporter
from bridge.entrypoints.exit_codes import Exit
from bridge.entrypoints.http_serving import add_tls_arguments

_ACTION_HELP = {
    "suspend": "suspend a valid licence: nothing may be written off it until reinstated",
    "reinstate": "lift a suspension: the licence is valid again",
    "revoke": "revoke a licence for good",
    "annul": "annul a licence for good (as if never valid)",
}


def _day(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date (YYYY-MM-DD)") from None


def _moment(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a date or time (YYYY-MM-DD or YYYY-MM-DDTHH:MM)"
        ) from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def add_licence_commands(subparsers: argparse._SubParsersAction) -> None:
    """Add `licence suspend|reinstate|revoke|annul NUMBER --reason --actor`, `licence
    expire-due [--today]` and `licence events NUMBER` to the `elbridge` command set."""
    licence = subparsers.add_parser(
        "licence",
        help="licence lifecycle: suspend, reinstate, revoke, annul, expire (customs are told)",
        description="Status changes of a licence by the licensing authority, and expiry at the"
        " end of validity. Each change is audited (who, why, when) and reaches customs as a"
        " certificate status update over SOAP with the next `elbridge sync`.",
    )
    actions = licence.add_subparsers(dest="licence_command", required=True, metavar="ACTION")
    for action, text in _ACTION_HELP.items():
        parser = actions.add_parser(action, help=text)
        parser.add_argument("number", help="licence number")
        parser.add_argument("--reason", required=True, help="why (mandatory, sent to customs)")
        parser.add_argument("--actor", required=True, help="who (mandatory): the person's identity")
        parser.set_defaults(func=partial(cmd_licence_action, action=action))
    expire = actions.add_parser(
        "expire-due", help="expire every licence whose validity ended before today"
    )
    expire.add_argument("--today", type=_day, help="the day to expire against (default: today)")
    expire.set_defaults(func=cmd_expire_due)
    events = actions.add_parser("events", help="a licence's status changes: who, why, when")
    events.add_argument("number", help="licence number")
    events.set_defaults(func=cmd_licence_events)


def add_query_service_commands(subparsers: argparse._SubParsersAction) -> None:
    """Add `query-service serve [--host] [--port] [--path]` and `query-service audit
    [--since] [--identity]` (also spelt `query ...`) to the `elbridge` command set."""
    query = subparsers.add_parser(
        "query-service",
        aliases=["query"],
        help="the SOAP query service customs call (CheckAvailability, ListSupportingDocuments)",
    )
    actions = query.add_subparsers(dest="query_command", required=True, metavar="ACTION")
    serve = actions.add_parser("serve", help="serve it over HTTP until stopped (?wsdl served)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8089, help="0 picks a free port")
    serve.add_argument("--path", default="/certex-query", help="where the service listens")
    serve.add_argument(
        "--access-file", help="who may ask what (TOML; default ELBRIDGE_QUERY_ACCESS_FILE)"
    )
    serve.add_argument(
        "--allow-anonymous",
        action="store_true",
        help="without an access file, answer anyone even on a non-loopback address",
    )
    add_tls_arguments(serve)
    serve.set_defaults(func=cmd_query_serve)
    audit = actions.add_parser(
        "audit", help="who asked the query service what, when, and what came of it"
    )
    audit.add_argument("--since", type=_moment, help="from this date or time on (UTC)")
    audit.add_argument("--identity", help="only this identity's questions (the access file's)")
    audit.add_argument("--limit", type=int, help="only the last N questions")
    audit.set_defaults(func=cmd_query_audit)


def cmd_licence_action(args: argparse.Namespace, *, action: str) -> int:
    from bridge.core.lifecycle import AuthorityAction
    from bridge.services.licence_status import apply_authority_action

    out = reporter(args)
    status = apply_authority_action(
        open_ledger(args),
        args.number,
        AuthorityAction(action),
        reason=args.reason,
        actor=args.actor,
        now=datetime.now(UTC),
    )
    out.say(f"licence {args.number} is {status}; customs get the status update on the next sync")
    out.emit({"licence": args.number, "action": action, "status": str(status)})
    return Exit.OK


def cmd_expire_due(args: argparse.Namespace) -> int:
    from bridge.services.licence_status import expire_due

    out = reporter(args)
    now = datetime.now(UTC)
    expired = expire_due(open_ledger(args), args.today or now.date(), now)
    if expired:
        out.say(f"expired {len(expired)} licences: {', '.join(expired)}")
    else:
        out.say("no licence to expire")
    out.emit({"expired": list(expired)})
    return Exit.OK


EVENT_COLUMNS = (
    Column("at", "at"),
    Column("version", "version", numeric=True),
    Column("from", "from_status"),
    Column("to", "to_status"),
    Column("by", "actor"),
    Column("why", "reason"),
)


def cmd_licence_events(args: argparse.Namespace) -> int:
    from bridge.adapters.store.licence_events import licence_events

    out = reporter(args)
    engine = open_ledger(args)
    with engine.connect() as conn:
        events = [dict(event) for event in licence_events(conn, args.number)]
    out.emit({"licence": args.number, "events": events})
    if not events:
        out.say(f"licence {args.number}: no status change recorded")
    else:
        out.table(EVENT_COLUMNS, events, footer=f"licence {args.number}: {len(events)} changes")
    return Exit.OK


def cmd_query_serve(args: argparse.Namespace) -> int:
    from bridge.entrypoints.http_serving import serving_options_from
    from bridge.entrypoints.query_service import serve_query_service

    settings = read_settings(args)
    options = serving_options_from(args, settings=settings)
    serve_query_service(
        args.host,
        args.port,
        settings.ledger_url,
        path=args.path,
        options=options,
        access_file=args.access_file,
        allow_anonymous=args.allow_anonymous,
    )
    return Exit.OK


def cmd_query_audit(args: argparse.Namespace) -> int:
    from bridge.adapters.store.db import make_engine
    from bridge.adapters.store.query_audit import query_audit_entries

    out = reporter(args)
    engine = make_engine(read_settings(args).ledger_url)
    try:
        with engine.connect() as conn:
            entries = query_audit_entries(
                conn, since=args.since, identity=args.identity, limit=args.limit
            )
    finally:
        engine.dispose()
    out.emit({"questions": [_audit_record(entry) for entry in entries]})
    if not entries:
        out.say("no question to the query service recorded")
    for entry in entries:  # one line each, as a log reads: easy to search
        out.say(_audit_line(entry))
    return Exit.OK


def _audit_record(entry: Any) -> dict[str, Any]:
    from dataclasses import asdict, is_dataclass

    if is_dataclass(entry):
        return asdict(entry)
    return dict(entry._asdict()) if hasattr(entry, "_asdict") else dict(vars(entry))


def _audit_line(entry: Any) -> str:
    """when  who (how, from where)  what about  outcome: why"""
    how = f"{entry.authentication} {entry.credential or ''}".strip()
    where = f", {entry.client_address}" if entry.client_address else ""
    about = [entry.operation]
    if entry.licence_number:
        about.append(f"licence {entry.licence_number}")
    if entry.holder_eori:
        about.append(f"holder {entry.holder_eori}")
    outcome = entry.outcome if entry.code is None else f"{entry.outcome} {entry.code}"
    why = f": {entry.reason}" if entry.reason else ""
    who = entry.identity or "(not identified)"
    return (
        f"{entry.at.isoformat(timespec='seconds')}  {who} ({how}{where})  {' '.join(about)}"
        f"  {outcome}{why}"
    )

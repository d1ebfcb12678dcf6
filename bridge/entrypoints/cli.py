"""`elbridge`: every step of the bridge from the command line, without Airflow.

Settings come from ELBRIDGE_* environment variables (see bridge/services/config.py); the global
options below override them. Exit status: 0 done, 1 done but something needs attention (rejected
records, failed deliveries, refusals are reported, not hidden), 2 usage or configuration error."""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from pathlib import Path

from bridge.core.errors import BridgeError
from bridge.entrypoints.cli_audit import add_audit_commands
from bridge.entrypoints.cli_authority import (
    add_authority_commands,
    add_reconcile_views,
    show_view,
    wants_view,
)
from bridge.entrypoints.cli_licences import add_licence_commands, add_query_service_commands
from bridge.entrypoints.cli_quarantine import add_quarantine_commands
from bridge.entrypoints.http_serving import add_admin_token_argument, add_tls_arguments
from bridge.services.config import Settings, load_settings


def _settings(args: argparse.Namespace) -> Settings:
    overrides = {}
    if args.home:
        overrides["home"] = Path(args.home).expanduser().resolve()
    if args.database_url:
        overrides["database_url"] = args.database_url
    return load_settings(**overrides)


def _engine(settings: Settings):
    from bridge.adapters.store.db import make_engine

    return make_engine(settings.ledger_url)


def cmd_ingest(args: argparse.Namespace) -> int:
    from bridge.services.ingest import ingest_file, ingest_inbox

    settings = _settings(args)
    engine = _engine(settings)
    if args.inbox or not args.files:
        reports = ingest_inbox(engine, Path(args.inbox or settings.inbox))
    else:
        reports = [ingest_file(engine, Path(f), mapping_name=args.mapping) for f in args.files]
    rejected = 0
    for report in reports:
        print(report.describe() if hasattr(report, "describe") else report)
        rejected += report.rejected
    if not reports:
        print("nothing to ingest")
    return 1 if rejected else 0


def cmd_sync(args: argparse.Namespace) -> int:
    from bridge.services.outbox import CustomsClient, certify_pending, deliver_pending
    from bridge.services.signing import certificate_signer

    settings = _settings(args)
    engine = _engine(settings)
    certified = certify_pending(engine, now=datetime.now(UTC), signer=certificate_signer(settings))
    print(f"certify: {certified}")
    if args.certify_only:
        return 0
    senders = [CustomsClient(settings) for _ in range(max(1, settings.soap_senders))]
    report = deliver_pending(engine, senders, retry_within_run_seconds=args.retry_seconds)
    print(f"deliver: {report}")
    return 1 if report.failed else 0


def cmd_consume(args: argparse.Namespace) -> int:
    from bridge.services.consumer import consume
    from bridge.services.mqtt_endpoints import open_session

    settings = _settings(args)
    # A refusal (TLS, login: BrokerRefused, a ConfigError) is told by main(); a broker that did
    # not answer in time is one line too, not a traceback.
    try:
        if args.open_session:
            open_session(settings)
            print(f"session {settings.mqtt_client_id} subscribed to {settings.mqtt_topic}")
            return 0
        engine = _engine(settings)
        report = consume(
            settings,
            engine,
            idle_seconds=None if args.follow else args.idle,
            max_seconds=args.max_seconds,
        )
    except ConnectionError as error:
        print(f"elbridge consume: {error}", file=sys.stderr)
        return 1
    print(f"consume: {report}")
    return 0


def cmd_reconcile(args: argparse.Namespace) -> int:
    from bridge.adapters.store.reconciliation import reconciliation_rows
    from bridge.core.reconcile import render

    settings = _settings(args)
    engine = _engine(settings)
    if wants_view(args):
        return show_view(args, engine)
    with engine.connect() as conn:
        rows = reconciliation_rows(conn, args.licence)
    text = render(rows, args.format)
    if args.output:
        Path(args.output).write_text(text, encoding="utf-8")
        print(f"wrote {len(rows)} lines to {args.output}")
    else:
        sys.stdout.write(text)
    return 1 if any(row.over_used for row in rows) else 0


def cmd_sim_serve(args: argparse.Namespace) -> int:
    from bridge.entrypoints.customs_sim.app import serve
    from bridge.entrypoints.http_serving import serving_options

    settings = _settings(args)
    store = Path(args.store) if args.store else settings.home / "customs-sim" / "received.db"
    options = serving_options(
        args.host,
        args.port,
        tls_cert=args.tls_cert,
        tls_key=args.tls_key,
        client_ca=args.client_ca,
        settings=settings,
    )
    serve(
        args.host,
        args.port,
        store,
        admin_token=args.admin_token,
        options=options,
        trusted_authority_files=args.trusted_authority,
    )
    return 0


def cmd_sim_publish(args: argparse.Namespace) -> int:
    """Exit status 1 when --check found a file the bridge would quarantine (nothing sent)."""
    from bridge.services.customs_events import (
        VersionBook,
        check_events,
        events_for_files,
        publish_events,
    )

    settings = _settings(args)
    event_time = datetime.fromisoformat(args.event_time) if args.event_time else datetime.now(UTC)
    if event_time.tzinfo is None:
        event_time = event_time.replace(tzinfo=UTC)
    book = VersionBook(
        Path(args.versions) if args.versions else settings.home / "customs-sim" / "versions.json"
    )
    events = events_for_files(
        [Path(path) for path in args.files],
        event_time=event_time,
        event=args.event,
        mrn=args.mrn,
        version=args.version,
        country=args.country,
        versions=book,
        as_message=args.as_message,
        without_event=args.without_event,
    )
    if args.check:
        verdicts = check_events(settings, events)
        for verdict in verdicts:
            print(verdict.describe())
        refused = [v for v in verdicts if v.quarantined]
        if refused:
            print(f"nothing sent: the bridge would quarantine {len(refused)} of {len(events)}")
            return 1
    sent = publish_events(settings, [event.message for event in events])
    if not args.as_message:
        book.save()  # only what was sent counts
    for event in events:
        print(f"sent {event.path} as {event.message_id}: {event.how}")
    print(f"published {sent} declaration events to {settings.mqtt_topic}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from bridge.entrypoints.demo import run_demo

    return run_demo(
        home=Path(args.home).expanduser().resolve() if args.home else None,
        exit_when_done=args.exit_when_done,
        with_airflow=not args.no_airflow,
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="elbridge",
        description="eLicensing bridge: national dual-use licences to customs certificates,"
        " customs declarations to licence write-offs, and their reconciliation.",
    )
    parser.add_argument("--home", help="working folder (ledger, inbox, reports); default ./var")
    parser.add_argument("--database-url", help="ledger database URL (default: SQLite in home)")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    ingest = commands.add_parser(
        "ingest", help="read national licence files into the ledger (rejects kept with reasons)"
    )
    ingest.add_argument("files", nargs="*", help="national licence files; none = the inbox")
    ingest.add_argument("--mapping", help="mapping name in mappings/ (default: by file name)")
    ingest.add_argument("--inbox", help="ingest every new file of this folder, then move it")
    ingest.set_defaults(func=cmd_ingest)

    sync = commands.add_parser(
        "sync", help="build certificates for new licence versions and push them over SOAP"
    )
    sync.add_argument("--certify-only", action="store_true", help="build, do not send")
    sync.add_argument(
        "--retry-seconds", type=float, default=10.0, help="time to retry transient failures"
    )
    sync.set_defaults(func=cmd_sync)

    consume = commands.add_parser(
        "consume", help="write off licences from customs declaration events (MQTT)"
    )
    consume.add_argument(
        "--idle", type=float, default=5.0, help="stop after this many seconds without messages"
    )
    consume.add_argument("--max-seconds", type=float, help="stop after this long in any case")
    consume.add_argument("--follow", action="store_true", help="keep consuming until stopped")
    consume.add_argument(
        "--open-session",
        action="store_true",
        help="only create the persistent session (run once before customs start publishing)",
    )
    consume.set_defaults(func=cmd_consume)

    reconcile = commands.add_parser(
        "reconcile", help="authorised, written off and remaining per licence line"
    )
    reconcile.add_argument("--format", choices=("table", "csv", "json"), default="table")
    reconcile.add_argument("--licence", help="only this licence")
    reconcile.add_argument("--output", help="write to this file instead of standard output")
    add_reconcile_views(reconcile)
    reconcile.set_defaults(func=cmd_reconcile)
    add_authority_commands(commands, open_ledger=lambda args: _engine(_settings(args)))
    add_licence_commands(commands, open_ledger=lambda args: _engine(_settings(args)))
    add_query_service_commands(commands, ledger_url=lambda args: _settings(args).ledger_url)
    add_quarantine_commands(
        commands, read_settings=_settings, open_ledger=lambda args: _engine(_settings(args))
    )
    add_audit_commands(
        commands, read_settings=_settings, open_ledger=lambda args: _engine(_settings(args))
    )

    sim = commands.add_parser(
        "customs-sim", help="the customs single window simulator (SOAP server, event publisher)"
    )
    sim_commands = sim.add_subparsers(dest="sim_command", required=True, metavar="ACTION")
    serve = sim_commands.add_parser("serve", help="serve the certificate SOAP service over HTTP")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8088)
    serve.add_argument("--store", help="SQLite file for received certificates")
    add_tls_arguments(serve)
    add_admin_token_argument(serve)
    serve.add_argument(
        "--trusted-authority",
        action="append",
        default=[],
        metavar="PEM",
        help="an authority certificate whose signatures are accepted (repeat for a key rollover;"
        " default: ELBRIDGE_SIM_TRUSTED_AUTHORITIES; none: signatures not required)",
    )
    serve.set_defaults(func=cmd_sim_serve)
    publish = sim_commands.add_parser(
        "publish", help="publish WCO DEC-DMS declaration files as declaration events"
    )
    publish.add_argument(
        "files", nargs="+", help="WCO DEC-DMS XML files, sent as they are (bad ones too)"
    )
    publish.add_argument(
        "--event",
        choices=("released", "amended", "invalidated"),
        help="the event to announce (default: what FunctionCode/TypeCode say: 9 released,"
        " 13 with INV invalidated, other 13 amended)",
    )
    publish.add_argument(
        "--without-event",
        action="store_true",
        help="leave the event out of the envelope, as customs systems that cannot set it do",
    )
    publish.add_argument("--mrn", help="MRN (default: Declaration/ID, else derived from LRN)")
    publish.add_argument(
        "--version",
        type=int,
        help="declaration version (default: 1 for an original, then counted per MRN in the"
        " order files are first sent, remembered in --versions)",
    )
    publish.add_argument(
        "--versions", help="file of versions counted per MRN (default: HOME/customs-sim/)"
    )
    publish.add_argument("--country", help="the envelope's country (ISO 3166 alpha-2)")
    publish.add_argument("--event-time", help="ISO 8601 time of the event (default: now)")
    publish.add_argument(
        "--check",
        action="store_true",
        help="read each message as the bridge will first; send nothing if it would quarantine one",
    )
    publish.add_argument(
        "--as-message",
        action="store_true",
        help="each file is the whole MQTT message (an envelope made by hand), sent as it is",
    )
    publish.set_defaults(func=cmd_sim_publish)

    demo = commands.add_parser(
        "demo", help="the whole chain on this machine: broker, simulator, Airflow, samples"
    )
    demo.add_argument(
        "--exit-when-done", action="store_true", help="stop everything once the demo has run"
    )
    demo.add_argument(
        "--no-airflow", action="store_true", help="run the steps directly instead of via DAGs"
    )
    demo.set_defaults(func=cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except BridgeError as error:
        print(f"elbridge {args.command}: {error}", file=sys.stderr)
        return 2 if isinstance(error, ValueError) else 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())

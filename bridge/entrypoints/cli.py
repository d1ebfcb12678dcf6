"""`elbridge`: every step of the bridge from the command line, without Airflow.

Settings come from the defaults, a TOML settings file (--settings or ELBRIDGE_SETTINGS_FILE),
ELBRIDGE_* environment variables and the global options, each over the one before
(docs/settings.md). How commands report, fail and exit is bridge/entrypoints/cli_output.py's
convention; the exit statuses are bridge/entrypoints/exit_codes.py's (docs/cli.md)."""

from __future__ import annotations

import argparse
import sys
import threading
import time
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bridge.entrypoints.cli_audit import add_audit_commands
from bridge.entrypoints.cli_authority import (
    RECONCILE_COLUMNS,
    add_authority_commands,
    add_reconcile_views,
    reconcile_footer,
    show_view,
    wants_view,
)
from bridge.entrypoints.cli_config import add_config_commands, version_text
from bridge.entrypoints.cli_console import add_console_commands
from bridge.entrypoints.cli_licences import add_licence_commands, add_query_service_commands
from bridge.entrypoints.cli_outbox import add_outbox_commands
from bridge.entrypoints.cli_output import (
    Parser,
    global_value,
    install_global_options,
    logging_for_the_command,
    open_ledger,
    read_settings,
    reporter,
    run_command,
)
from bridge.entrypoints.cli_quarantine import add_quarantine_commands
from bridge.entrypoints.cli_status import add_status_commands
from bridge.entrypoints.exit_codes import Exit
from bridge.entrypoints.http_serving import add_admin_token_argument, add_tls_arguments


def cmd_ingest(args: argparse.Namespace) -> int:
    """4 when a record was rejected or a file or mapping could not be read (kept, reported)."""
    from bridge.services.ingest import ingest_file, ingest_inbox

    out = reporter(args)
    settings = read_settings(args)
    engine = open_ledger(args)
    if args.inbox or not args.files:
        inbox = Path(args.inbox or settings.inbox)
        with out.progress(f"ingest {inbox}") as advance:
            reports = ingest_inbox(engine, inbox, progress=advance)
    else:
        reports = []
        for name in args.files:
            with out.progress(f"ingest {Path(name).name}") as advance:
                reports.append(
                    ingest_file(engine, Path(name), mapping_name=args.mapping, progress=advance)
                )
    totals = {
        key: sum(getattr(report, key) for report in reports)
        for key in ("new", "new_version", "unchanged", "stale", "rejected")
    }
    unread = [report for report in reports if report.failure is not None]
    out.emit(
        {
            "files": [asdict(report) for report in reports],
            "totals": {**totals, "files": len(reports), "not_read": len(unread)},
        }
    )
    for report in reports:
        out.say(report.describe())
    if not reports:
        out.say("nothing to ingest")
    if totals["rejected"] or unread:
        out.warn(
            f"{totals['rejected']} records rejected, {len(unread)} files or mappings not read"
            " (kept with their reasons)"
        )
        return Exit.PARTIAL
    return Exit.OK


class _WatchedSender:
    """A customs client whose calls are counted for the progress bar, and whose transient
    failures are told as warnings while the run retries (each reason once, then how many)."""

    def __init__(self, client: Any, watch: _DeliveryWatch) -> None:
        self._client = client
        self._watch = watch

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)  # whatever else the outbox reads of the client

    def submit_certificate(self, *call: Any, **named: Any) -> Any:
        return self._watch.call(self._client.submit_certificate, call, named)

    def update_certificate_status(self, *call: Any, **named: Any) -> Any:
        return self._watch.call(self._client.update_certificate_status, call, named)

    def submit_certificates(self, *call: Any, **named: Any) -> Any:
        """A batch (contract 1.5): each certificate's outcome counted as a single call's."""
        from bridge.core.errors import DeliveryError

        try:
            outcomes = self._client.submit_certificates(*call, **named)
        except DeliveryError as error:
            if error.transient:
                self._watch.failed(error.reason)
            raise  # refused whole for good: each certificate is then sent alone and counted
        for outcome in outcomes:
            if isinstance(outcome, DeliveryError) and outcome.transient:
                self._watch.failed(outcome.reason)
            else:
                self._watch.settled()
        return outcomes


class _DeliveryWatch:
    def __init__(self, out: Any, advance: Any, total: int) -> None:
        self.out, self.advance, self.total = out, advance, total
        self.lock = threading.Lock()
        self.done = 0
        self.failures: dict[str, int] = {}

    def call(self, send: Any, call: tuple, named: dict) -> Any:
        from bridge.core.errors import DeliveryError

        try:
            answer = send(*call, **named)
        except DeliveryError as error:
            if error.transient:
                self.failed(error.reason)
                raise
            self.settled()  # refused for good: settled, though not delivered
            raise
        self.settled()
        return answer

    def settled(self) -> None:
        with self.lock:
            self.done += 1
            self.advance(min(self.done, self.total), self.total)

    def failed(self, reason: str) -> None:
        with self.lock:
            seen = self.failures.get(reason, 0)
            self.failures[reason] = seen + 1
        if seen == 0:
            self.out.warn(f"customs did not take a message, retrying: {reason}")
        elif (seen + 1) % 10 == 0:
            self.out.warn(f"still retrying: {seen + 1} calls failed so far: {reason}")


def cmd_sync(args: argparse.Namespace) -> int:
    """4 when certificates are left undelivered (failed, or pending for a later run)."""
    from bridge.adapters.store import outbox as outbox_store
    from bridge.services.outbox import CustomsClient, certify_pending, deliver_pending
    from bridge.services.signing import certificate_signer

    out = reporter(args)
    settings = read_settings(args)
    engine = open_ledger(args)
    signer = certificate_signer(settings)
    with out.progress("build certificates") as advance:
        certified = certify_pending(engine, now=datetime.now(UTC), signer=signer, progress=advance)
    out.say(f"certify: {certified}")
    for number, version, why in certified.problems:
        out.warn(f"licence {number} v{version}: certificate not sent: {_one_line(why)}")
    if args.certify_only:
        out.emit({"certify": asdict(certified), "deliver": None})
        return Exit.PARTIAL if certified.invalid else Exit.OK
    with engine.connect() as conn:
        waiting = outbox_store.count_by_status(conn)[outbox_store.PENDING]
    with out.progress("deliver to customs", total=waiting or None) as advance:
        watch = _DeliveryWatch(out, advance, max(waiting, 1))
        senders = [
            _WatchedSender(CustomsClient(settings), watch)
            for _ in range(max(1, settings.soap_senders))
        ]

        def wait(seconds: float) -> None:
            if watch.failures:  # customs failing: say why the run waits (else only backoff)
                pending = _pending(engine)
                out.warn(f"{pending} messages wait for customs; next try in {seconds:.1f} s")
            time.sleep(seconds)

        report = deliver_pending(
            engine, senders, retry_within_run_seconds=args.retry_seconds, sleep=wait
        )
    out.say(f"deliver: {report}")
    out.emit({"certify": asdict(certified), "deliver": asdict(report)})
    if report.failed or report.still_pending or certified.invalid:
        out.warn(
            f"certificates left undelivered: {report.failed} failed, {report.still_pending}"
            f" still pending{'' if not certified.invalid else f', {certified.invalid} invalid'}"
        )
        for number, version, why in report.failures:
            out.warn(f"licence {number} v{version}: {_one_line(why)}")
        return Exit.PARTIAL
    return Exit.OK


def _pending(engine: Any) -> int:
    from bridge.adapters.store import outbox as outbox_store

    with engine.connect() as conn:
        return outbox_store.count_by_status(conn)[outbox_store.PENDING]


def _one_line(text: str) -> str:
    return "; ".join(part.strip() for part in str(text).splitlines() if part.strip())


def cmd_consume(args: argparse.Namespace) -> int:
    """4 when messages were quarantined, 3 when declarations were refused by the rules."""
    from bridge.services.consumer import consume
    from bridge.services.mqtt_endpoints import open_session

    out = reporter(args)
    settings = read_settings(args)
    if args.open_session:
        open_session(settings)
        out.say(f"session {settings.mqtt_client_id} subscribed to {settings.mqtt_topic}")
        out.emit({"session": settings.mqtt_client_id, "topic": settings.mqtt_topic})
        return Exit.OK
    engine = open_ledger(args)
    report = consume(
        settings,
        engine,
        idle_seconds=None if args.follow else args.idle,
        max_seconds=args.max_seconds,
    )
    out.say(f"consume: {report}")
    out.emit(asdict(report))
    if report.quarantined:
        out.warn(f"{report.quarantined} messages quarantined: see `elbridge quarantine list`")
        return Exit.PARTIAL
    if report.refused:
        out.warn(f"{report.refused} write-offs refused: see `elbridge reconcile --refusals`")
        return Exit.REFUSED
    return Exit.OK


def cmd_reconcile(args: argparse.Namespace) -> int:
    """A report: 0 whatever it shows (over-used lines are marked and counted)."""
    from bridge.adapters.store.reconciliation import reconciliation_rows
    from bridge.core.reconcile import as_records, render, summary

    out = reporter(args)
    engine = open_ledger(args)
    if out.json:
        args.format = "json"
    elif args.format == "json" and not args.output:
        out.json = True  # --format json is --json: one document on standard output
    if wants_view(args):
        return show_view(args, engine)
    with engine.connect() as conn:
        rows = reconciliation_rows(conn, args.licence)
    if args.output:
        Path(args.output).write_text(render(rows, args.format), encoding="utf-8")
        out.note(f"wrote {len(rows)} lines to {args.output}")
        out.emit({"summary": summary(rows), "output": args.output})
    elif args.format == "table":
        out.table(RECONCILE_COLUMNS, as_records(rows), footer=reconcile_footer(rows))
    elif args.format == "json":
        out.emit({"summary": summary(rows), "lines": as_records(rows)})
    else:
        out.write(render(rows, args.format))
    return Exit.OK


def cmd_sim_serve(args: argparse.Namespace) -> int:
    from bridge.entrypoints.customs_sim.app import serve
    from bridge.entrypoints.http_serving import serving_options_from

    settings = read_settings(args)
    store = Path(args.store) if args.store else settings.home / "customs-sim" / "received.db"
    options = serving_options_from(args, settings=settings)
    serve(
        args.host,
        args.port,
        store,
        admin_token=args.admin_token,
        options=options,
        trusted_authority_files=args.trusted_authority,
    )
    return Exit.OK


def cmd_sim_publish(args: argparse.Namespace) -> int:
    """3 when --check found a file the bridge would quarantine (nothing sent)."""
    from bridge.services.customs_events import (
        VersionBook,
        check_events,
        events_for_files,
        publish_events,
    )

    out = reporter(args)
    settings = read_settings(args)
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
    checked = []
    if args.check:
        verdicts = check_events(settings, events)
        for verdict in verdicts:
            out.say(verdict.describe())
            checked.append({"verdict": verdict.describe(), "quarantined": verdict.quarantined})
        refused = [v for v in verdicts if v.quarantined]
        if refused:
            out.say(f"nothing sent: the bridge would quarantine {len(refused)} of {len(events)}")
            out.emit({"checked": checked, "sent": []})
            return Exit.REFUSED
    sent = publish_events(settings, [event.message for event in events])
    if not args.as_message:
        book.save()  # only what was sent counts
    for event in events:
        out.say(f"sent {event.path} as {event.message_id}: {event.how}")
    out.say(f"published {sent} declaration events to {settings.mqtt_topic}")
    out.emit(
        {
            "checked": checked,
            "topic": settings.mqtt_topic,
            "sent": [
                {"file": event.path, "message_id": event.message_id, "how": event.how}
                for event in events
            ],
        }
    )
    return Exit.OK


def cmd_demo(args: argparse.Namespace) -> int:
    from bridge.entrypoints.demo import run_demo

    home = global_value(args, "home")
    return run_demo(
        home=Path(home).expanduser().resolve() if home else None,
        exit_when_done=args.exit_when_done,
        with_airflow=not args.no_airflow,
    )


class _Version(argparse.Action):
    """--version: the release and the contracts it speaks, computed only when asked."""

    def __init__(self, option_strings, dest=argparse.SUPPRESS, **kwargs) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        print(version_text())
        parser.exit()


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="elbridge",
        description="eLicensing bridge: national dual-use licences to customs certificates,"
        " customs declarations to licence write-offs, and their reconciliation.",
        epilog="Exit status: 0 done, 1 failed, 2 usage or configuration error, 3 refused by the"
        " rules, 4 partly done (records rejected, certificates left undelivered). docs/cli.md",
    )
    parser.add_argument(
        "--version", action=_Version, help="the release, its contracts and ledger schema"
    )
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
    add_authority_commands(commands)
    add_licence_commands(commands)
    add_query_service_commands(commands)
    add_quarantine_commands(commands)
    add_audit_commands(commands)
    add_config_commands(commands)
    add_console_commands(commands)
    add_status_commands(commands)
    add_outbox_commands(commands)

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
    install_global_options(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one `elbridge` command line; its exit status (bridge/entrypoints/exit_codes.py)."""
    args = build_parser().parse_args(argv)
    verbosity, quiet = int(global_value(args, "verbose") or 0), bool(global_value(args, "quiet"))
    with logging_for_the_command(verbosity, quiet):
        return run_command(args)


if __name__ == "__main__":
    sys.exit(main())

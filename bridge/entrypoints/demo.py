"""`elbridge demo`: the whole chain on this machine, on embedded defaults, told as a story.

Starts its own mosquitto and customs simulator on free 127.0.0.1 ports, then Airflow standalone
with the project's DAGs; drops the sample national licence files in the inbox and lets the
licences DAG certify and deliver them; publishes the real WCO DEC-DMS sample declarations as
events for the write-off DAG; writes the day's reports; starts the authority console with a
demo officer. Then it tells what happened: which Airflow run did the work (asked through
Airflow's API), the national records rejected with every reason, what became of each
declaration's documents, the reconciliation, where to look next, and last the console's address
and login.

Everything it starts lives under its home folder, each in its own process group, and is stopped
when the demo ends: at once with --exit-when-done, else on Ctrl-C, SIGTERM or SIGHUP."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from bridge.core.errors import BridgeError
from bridge.core.paths import DAGS_DIR, MAPPINGS_DIR, PROJECT_ROOT
from bridge.entrypoints import demo_story as story
from bridge.services.config import Settings, load_settings

SHARED_SAMPLES = PROJECT_ROOT.parent / "shared" / "fixtures" / "wco-dec-dms" / "samples"
TT_EX010A_MRN = "24GBDIRIGZ7QLCPAA8"  # from the customs notifications published with TT_EX010a
DEMO_OFFICER = "demo-officer"
# Scheduled write-off runs of one minute, so the run that processed the demo's events finishes
# (and shows its counts) while the demo waits; deployments run an hour.
DEMO_DECLARATION_RUN_MINUTES = 1
STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP)


@dataclass(frozen=True)
class DemoEvent:
    file: str
    event: str
    mrn: str | None = None
    checked: bool = True  # customs asked CheckAvailability before releasing
    # (old, new) byte replacement making a variant of the sample, e.g. a larger quantity
    variant: tuple[bytes, bytes] | None = None


# In the order customs would send them: two releases with dual-use write-offs, one release
# without any licence (ignored), the cancellation of TT_EX010a (reverses its write-off), and a
# second shipment under TT_EX004a's licences, lodged by a customs system that did not check
# availability first: 450 kg on the X002 licence, more than the 398 kg left, so that document
# is refused while the declaration's two other documents are written off.
OVER_USE_MRN = "26GBDEMOOVERUSE001"
DEMO_EVENTS = (
    DemoEvent("TT_EX004a.xml", "released"),
    DemoEvent("TT_EX010a.xml", "released", TT_EX010A_MRN),
    DemoEvent("TT_EX001a.xml", "released"),
    DemoEvent("TT_EX010a_Cancellation.xml", "invalidated", TT_EX010A_MRN),
    DemoEvent(
        "TT_EX004a.xml",
        "released",
        OVER_USE_MRN,
        checked=False,
        variant=(b">102.00</QuantityQuantity>", b">450.00</QuantityQuantity>"),
    ),
)


def declaration_bytes(folder: Path, event: DemoEvent) -> bytes:
    """The declaration `event` sends: the sample file, or its variant."""
    data = (folder / event.file).read_bytes()
    if event.variant:
        old, new = event.variant
        if old not in data:
            raise BridgeError(f"{event.file} no longer holds {old!r}: cannot build the variant")
        data = data.replace(old, new)
    return data


def _say(text: str = "") -> None:
    print(f"[demo] {text}" if text else "", flush=True)


def _tell(lines: list[str]) -> None:
    for line in lines:
        print(line, flush=True)


def samples_dir() -> Path:
    folder = Path(os.environ.get("ELBRIDGE_DECLARATION_SAMPLES", SHARED_SAMPLES))
    missing = [e.file for e in DEMO_EVENTS if not (folder / e.file).is_file()]
    if missing:
        raise BridgeError(
            f"the WCO DEC-DMS sample declarations are not in {folder} (missing: "
            f"{', '.join(missing)}); set ELBRIDGE_DECLARATION_SAMPLES to their folder"
        )
    return folder


# --------------------------------------------------------------------------- stopping


class DemoStopped(BaseException):
    """SIGTERM or SIGHUP arrived: raised where the demo is, so that every `with` it is in stops
    what it started (a BaseException, like KeyboardInterrupt, so no handler swallows it)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


@contextmanager
def stopped_by_signals() -> Iterator[None]:
    """While inside: SIGTERM and SIGHUP stop the demo as Ctrl-C does. The first one raises
    DemoStopped; any later one is ignored so that the stopping itself is not cut short."""
    stopping: list[int] = []

    def handler(signum: int, _frame: Any) -> None:
        if stopping:
            return
        stopping.append(signum)
        raise DemoStopped(signum)

    previous = {signum: signal.signal(signum, handler) for signum in STOP_SIGNALS}
    try:
        yield
    finally:
        for signum in STOP_SIGNALS:
            signal.signal(signum, signal.SIG_IGN)  # stopping: no second interruption
        for signum, old in previous.items():
            signal.signal(signum, old)


def how_to_stop() -> str:
    """What stops this run. Ctrl-C only when SIGINT reaches Python: a process started with
    SIGINT ignored (a background job of a non-interactive shell, `nohup`) keeps it ignored, as
    Python and POSIX shells agree it should, and then only SIGTERM or SIGHUP stop it."""
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        return (
            "SIGTERM or SIGHUP stops everything (not Ctrl-C: this process was started with"
            " SIGINT ignored, as a shell's background job is)"
        )
    return "Ctrl-C (or SIGTERM, SIGHUP) stops everything"


def run_demo(home: Path | None, *, exit_when_done: bool, with_airflow: bool = True) -> int:
    """Run the demo (see the module's docstring); 0 when it ran to its end, 128 + the signal's
    number when SIGTERM or SIGHUP stopped it (Ctrl-C raises KeyboardInterrupt as usual, after
    everything it started has been stopped)."""
    try:
        with stopped_by_signals():
            return _run(home, exit_when_done=exit_when_done, with_airflow=with_airflow)
    except DemoStopped as stop:
        _say(f"{stop}: everything the demo started is stopped")
        return 128 + stop.signum


# --------------------------------------------------------------------------- the steps


def _reset(home: Path) -> None:
    if home.exists():
        shutil.rmtree(home)
    home.mkdir(parents=True)


def _drop_national_files(settings: Settings) -> list[Path]:
    settings.inbox.mkdir(parents=True, exist_ok=True)
    dropped = []
    for sample in sorted((MAPPINGS_DIR / "samples").iterdir()):
        if sample.is_file():
            target = settings.inbox / sample.name
            shutil.copyfile(sample, target)
            dropped.append(target)
    return dropped


def _airflow_env(settings: Settings) -> dict[str, str]:
    """The DAGs get their endpoints as Airflow Connections (here as AIRFLOW_CONN_* variables)."""
    return {
        "ELBRIDGE_HOME": str(settings.home),
        "ELBRIDGE_DECLARATION_RUN_MINUTES": str(DEMO_DECLARATION_RUN_MINUTES),
        "AIRFLOW_CONN_ELBRIDGE_LEDGER": json.dumps(
            {"conn_type": "generic", "host": settings.ledger_url}
        ),
        "AIRFLOW_CONN_ELBRIDGE_MQTT": json.dumps(
            {"conn_type": "generic", "host": settings.mqtt_host, "port": settings.mqtt_port}
        ),
        "AIRFLOW_CONN_ELBRIDGE_CUSTOMS_SOAP": json.dumps(
            {"conn_type": "http", "host": settings.soap_url}
        ),
    }


def _processed_count(engine) -> int:
    from bridge.adapters.store.schema import processed_message

    with engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(processed_message)).scalar_one()


def _wait(what: str, done: Callable[[], Any], timeout: float, pause: float = 1.0) -> Any:
    deadline = time.monotonic() + timeout
    while not (found := done()):
        if time.monotonic() > deadline:
            raise BridgeError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(pause)
    return found


def _licences_through_airflow(airflow) -> None:
    """Trigger a run (a scheduled one may come first), then wait for the run that ingested the
    files, whichever it is, and tell what it did."""
    airflow.trigger_dag("licences_to_customs")

    def ingested() -> tuple[list, int] | None:
        runs = story.runs_seen(airflow, "licences_to_customs", "ingest_national_files")
        worked, idle = story.split_runs(runs, story.ingested_files)
        return (worked, idle) if worked else None

    worked, idle = _wait("the licences DAG to ingest the files", ingested, timeout=300, pause=2)
    _tell(story.licences_run_lines(worked, idle))


def _declarations_through_airflow(airflow, published: int) -> None:
    """Wait for the write-off runs that processed the published events to finish, and tell
    what each did and why it is red when it is."""

    def processed() -> tuple[list, int] | None:
        runs = story.runs_seen(airflow, "declarations_to_writeoffs", "drain_declaration_events")
        worked, idle = story.split_runs(runs, story.processed_messages)
        done = sum(story.processed_messages(run) for run in worked)
        return (worked, idle) if done >= published else None

    worked, idle = _wait(
        "the write-off run that processed the events to finish",
        processed,
        timeout=60 * DEMO_DECLARATION_RUN_MINUTES + 240,
        pause=3,
    )
    _tell(story.declarations_run_lines(worked, idle))


def _reports(settings: Settings) -> Path | None:
    """Today's reports so far, written now the way the daily DAG writes each day's once it is
    over (its publish_reports task calls the same function); their folder."""
    from bridge.entrypoints.airflow_wiring import publish_daily_reports

    try:
        published = publish_daily_reports(settings, datetime.now(UTC).date())
    except ImportError as missing:  # the reports service is not in this build
        _say(f"reports not written: {missing}")
        return None
    return Path(published["folder"])


def _write_settings_file(settings: Settings) -> Path:
    """A settings file naming the demo's home, broker and customs simulator (their ports are
    picked at start), so that commands run beside the demo find them: `--settings FILE`."""
    values = {
        "home": str(settings.home),
        "mqtt_host": settings.mqtt_host,
        "mqtt_port": settings.mqtt_port,
        "soap_url": settings.soap_url,
    }
    lines = ["# Made by `elbridge demo` for this run: its home, broker and customs simulator."]
    lines += [f"{name} = {json.dumps(value)}" for name, value in values.items()]
    path = settings.home / "demo-settings.toml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _console(stack: ExitStack, settings: Settings) -> tuple[str, str, str]:
    """Start the authority console (`elbridge console serve`) on the demo's ledger with a demo
    officer whose password is made now; its URL, login and password."""
    from bridge.entrypoints.console.auth import OFFICER, add_user, users_file
    from bridge.entrypoints.console.process import start_console

    password = secrets.token_urlsafe(12)
    add_user(users_file(settings), DEMO_OFFICER, OFFICER, password, full_name="Demo Officer")
    environment = {"ELBRIDGE_HOME": str(settings.home)}
    if settings.database_url:
        environment["ELBRIDGE_DATABASE_URL"] = settings.database_url
    console = stack.enter_context(start_console(settings.home / "console", environment=environment))
    return console.url, DEMO_OFFICER, password


def _run(home: Path | None, *, exit_when_done: bool, with_airflow: bool) -> int:
    from bridge.adapters.mqtt.broker import start_broker
    from bridge.adapters.store.db import make_engine
    from bridge.adapters.store.reconciliation import reconciliation_rows, refusals
    from bridge.adapters.store.rejects import list_rejects
    from bridge.adapters.store.status import message_documents
    from bridge.entrypoints.customs_sim import start_simulator
    from bridge.entrypoints.customs_sim.release import check_before_release
    from bridge.entrypoints.query_service import start_query_service
    from bridge.services.consumer import consume
    from bridge.services.customs_events import envelope_for_declaration_file, publish_events
    from bridge.services.ingest import ingest_inbox
    from bridge.services.mqtt_endpoints import open_session
    from bridge.services.outbox import (
        CustomsClient,
        certify_pending,
        deliver_pending,
        outbox_summary,
    )
    from bridge.services.signing import certificate_signer

    home = home or Path.cwd() / "var" / "demo"
    declarations = samples_dir()
    _reset(home)
    settings = load_settings(home=home)
    with ExitStack() as stack:
        broker = stack.enter_context(start_broker(home / "mosquitto"))
        _say(f"mosquitto on {broker.host}:{broker.port} (persistent sessions)")
        # Every certificate is signed (the development authority under home/keys unless
        # ELBRIDGE_SIGNING_KEY_FILE names the real one) and customs trust only that signer.
        signer = certificate_signer(settings)
        simulator = stack.enter_context(
            start_simulator(home / "customs-sim", trusted_authorities=[signer.certificate_file])
        )
        _say(f"customs verify certificate signatures by {signer.subject}")
        _say(f"customs single window simulator at {simulator.url} (WSDL: {simulator.url}?wsdl)")
        settings = settings.with_overrides(
            mqtt_host=broker.host, mqtt_port=broker.port, soap_url=simulator.url
        )
        engine = make_engine(settings.ledger_url)
        stack.callback(engine.dispose)
        # The broker queues events only for a session that exists: open it before anything
        # is published (and before Airflow's consumer, which then resumes it).
        open_session(settings)
        airflow = None
        if with_airflow:
            from bridge.entrypoints.airflow_standalone import start_airflow

            _say("starting Airflow standalone (about 20 s)...")
            airflow = stack.enter_context(
                start_airflow(home / "airflow", dags_folder=DAGS_DIR, env=_airflow_env(settings))
            )
            _say(f"Airflow UI at {airflow.url}")

        dropped = _drop_national_files(settings)
        _say(f"dropped {len(dropped)} national licence files in {settings.inbox}")
        print()
        if airflow:
            _licences_through_airflow(airflow)
            _wait(
                "the certificates to be delivered",
                lambda: outbox_summary(engine)["pending"] == 0,
                timeout=300,
                pause=2,
            )
        else:
            for report in ingest_inbox(engine, settings.inbox):
                name = Path(report.file).name
                if report.failure:
                    _say(f"{name}: not read: {report.failure}")
                else:
                    _say(f"{name}: {report.new} new licences, {report.rejected} rejected")
            certify_pending(engine, now=datetime.now(UTC), signer=signer)
            deliver_pending(engine, CustomsClient(settings))
        with engine.connect() as conn:
            rejects = list_rejects(conn)
        print()
        print(
            f"National records rejected: {len(rejects)}, kept in the ledger with every reason"
            " (the authority must correct them at the source):"
        )
        _tell(story.reject_lines(rejects))
        summary = outbox_summary(engine)
        print()
        _say(
            f"outbox: {summary['delivered']} certificates delivered, {summary['pending']}"
            f" pending, {summary['failed']} failed"
        )
        received = simulator.received()  # asked with the admin token made for it
        _say(f"customs simulator acknowledged {len(received)} certificates")

        query = stack.enter_context(
            start_query_service(home / "query-service", settings.ledger_url)
        )
        _say(f"the bridge's query service for customs at {query.url} (WSDL: {query.url}?wsdl)")
        envelopes = []
        sent = home / "declarations"
        sent.mkdir(exist_ok=True)
        for number, demo_event in enumerate(DEMO_EVENTS, 1):
            xml = declaration_bytes(declarations, demo_event)
            if demo_event.event == "released":
                who = "customs" if demo_event.checked else "(not asked by customs)"
                for answer in check_before_release(query.url, xml):
                    left = f"{answer.remaining_quantity} {answer.unit}" if answer.unit else "-"
                    _say(
                        f"{who} CheckAvailability {demo_event.mrn or demo_event.file}"
                        f" item {answer.goods_item} {answer.document_code} {answer.reference}:"
                        f" {'available' if answer.available else 'NOT available'}"
                        f" ({answer.code or 'ok'}; remaining {left})"
                    )
            source = sent / f"{number:02d}_{demo_event.file}"  # what customs sent, kept
            source.write_bytes(xml)
            envelopes.append(
                envelope_for_declaration_file(
                    source, event=demo_event.event, mrn=demo_event.mrn, event_time=datetime.now(UTC)
                )
            )
        before = _processed_count(engine)
        publish_events(settings, envelopes)
        _say(f"published {len(envelopes)} declaration events from {declarations}")
        if airflow:
            _wait(
                "the write-off DAG to process the declarations",
                lambda: _processed_count(engine) >= before + len(envelopes),
                timeout=300,
            )
            print()
            _declarations_through_airflow(airflow, len(envelopes))
        else:
            consume(settings, engine, idle_seconds=2.0, max_seconds=120)

        with engine.connect() as conn:
            rows = reconciliation_rows(conn)
            messages = message_documents(conn)
            refused = refusals(conn)
        print()
        print("Declaration events processed (MRN, event: what became of its documents)")
        _tell(story.declaration_lines(messages, refused))
        print()
        print("Reconciliation of the licence lines that moved (authorised against written off)")
        _tell(story.reconciliation_lines(rows))
        print()
        reports = _reports(settings)
        if reports is not None:
            _say(
                f"today's reports so far in {reports} (the daily_reconciliation DAG writes each"
                " day's after midnight UTC)"
            )
        url, login, password = _console(stack, settings)
        print()
        _tell(story.next_steps(home, reports, _write_settings_file(settings)))
        if airflow:
            print(f"Airflow UI: {airflow.url}  login: {airflow.username} / {airflow.password}")
            # The Airflow plugin serves the same console, with the same users, in Airflow.
            print(f"  the console in Airflow's menu too: {airflow.url}/elbridge-console/")
        if exit_when_done:
            print(f"Console: {url}  login: {login} / {password}")
            _say("done (--exit-when-done): stopping everything")
            return 0
        _say(f"running; {how_to_stop()}")
        print(
            f"Console: {url}  login: {login} / {password}  (a demo officer made for this run)",
            flush=True,
        )
        try:
            while True:
                signal.pause()
        except KeyboardInterrupt:
            _say("Ctrl-C: stopping everything")
            return 128 + signal.SIGINT

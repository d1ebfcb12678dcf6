"""`elbridge demo`: the whole chain on this machine, on embedded defaults.

Starts its own mosquitto and customs simulator on free 127.0.0.1 ports, then Airflow standalone
with the project's DAGs; drops the sample national licence files in the inbox and lets the
licences DAG certify and deliver them; publishes the real WCO DEC-DMS sample declarations as
events for the continuous write-off DAG; prints the reconciliation and the Airflow address and
login. Everything it starts lives under its home folder and is stopped by process group."""

from __future__ import annotations

import json
import os
import shutil
import signal
import time
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import func, select

from bridge.core.errors import BridgeError
from bridge.core.paths import DAGS_DIR, MAPPINGS_DIR, PROJECT_ROOT
from bridge.services.config import Settings, load_settings

SHARED_SAMPLES = PROJECT_ROOT.parent / "shared" / "fixtures" / "wco-dec-dms" / "samples"
TT_EX010A_MRN = "24GBDIRIGZ7QLCPAA8"  # from the customs notifications published with TT_EX010a


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
# second shipment under TT_EX004a's licence for 450 kg, lodged by a customs system that did not
# check availability first: more than the 398 kg left, so the bridge refuses it whole.
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


def _declaration_bytes(folder: Path, event: DemoEvent) -> bytes:
    data = (folder / event.file).read_bytes()
    if event.variant:
        old, new = event.variant
        if old not in data:
            raise BridgeError(f"{event.file} no longer holds {old!r}: cannot build the variant")
        data = data.replace(old, new)
    return data


def _say(text: str) -> None:
    print(f"[demo] {text}", flush=True)


def samples_dir() -> Path:
    folder = Path(os.environ.get("ELBRIDGE_DECLARATION_SAMPLES", SHARED_SAMPLES))
    missing = [e.file for e in DEMO_EVENTS if not (folder / e.file).is_file()]
    if missing:
        raise BridgeError(
            f"the WCO DEC-DMS sample declarations are not in {folder} (missing: "
            f"{', '.join(missing)}); set ELBRIDGE_DECLARATION_SAMPLES to their folder"
        )
    return folder


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


def _wait(what: str, done, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            raise BridgeError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(1)


def run_demo(home: Path | None, *, exit_when_done: bool, with_airflow: bool = True) -> int:
    from bridge.adapters.mqtt.broker import start_broker
    from bridge.adapters.store.db import make_engine
    from bridge.adapters.store.reconciliation import (
        declaration_outcomes,
        reconciliation_rows,
        refusals,
    )
    from bridge.core.reconcile import render
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
        if airflow:
            run_id = airflow.trigger_dag("licences_to_customs")
            state = airflow.wait_for_run("licences_to_customs", run_id, timeout=300)
            _say(f"DAG licences_to_customs run {run_id}: {state}")
        else:
            for report in ingest_inbox(engine, settings.inbox):
                _say(str(report))
            certify_pending(engine, now=datetime.now(UTC), signer=signer)
            deliver_pending(engine, CustomsClient(settings))
        _say(f"outbox: {outbox_summary(engine)}")
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
            xml = _declaration_bytes(declarations, demo_event)
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
        else:
            consume(settings, engine, idle_seconds=2.0, max_seconds=120)

        with engine.connect() as conn:
            rows = reconciliation_rows(conn)
            outcomes = declaration_outcomes(conn)
            refused = refusals(conn)
        print()
        print("Declaration events processed (MRN, event: outcome)")
        for mrn, event, outcome, count in outcomes:
            print(
                f"  {mrn or '-'}  {event or '-'}: {outcome}" + (f" x{count}" if count > 1 else "")
            )
        for refusal in refused:
            print(
                f"  refused {refusal['mrn']} item {refusal['goods_item']}"
                f" {refusal['document_code']} {refusal['document_ref']}:"
                f" {refusal['code']}: {refusal['reason']}"
            )
        print()
        print("Reconciliation: authorised against written off, per licence line")
        print(render(rows, "table"))
        if airflow:
            print(f"Airflow UI: {airflow.url}  login: {airflow.username} / {airflow.password}")
        if exit_when_done:
            return 0
        _say("running; press Ctrl-C to stop everything")
        try:
            signal.pause()
        except KeyboardInterrupt:
            _say("stopping")
    return 0

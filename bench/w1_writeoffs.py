"""W1 write-off throughput: declaration events through a real mosquitto into the ledger.

Limit: a bare paho consumer (MQTT v5, persistent session, QoS 1, manual ack after reading the
JSON and parsing the declaration with lxml) draining a backlog of the events. Bridge:
`bridge.services.consumer.consume` (every rule, one durable transaction per batch, acks after
commit, a result message published for every event) draining the same backlog into a ledger that
holds the licences the events quote. Both are timed from connecting to the last message.

Also, at ~20 KB: the bridge scaled out, CONSUMERS `python -m bridge.entrypoints.consumer` processes
on one MQTT v5 shared subscription (ELBRIDGE_MQTT_SHARED_GROUP), the way a deployment uses the
machine's other cores; timed from the first publish until every event is answered. Its ratio
is against the same single bare consumer."""

from __future__ import annotations

import sys
import time
from dataclasses import replace

from bench.common import Result, Run, ratio, store_known_licences
from bench.mqttload import bridge_rate, group_rate, limit_rate
from bridge.services.config import settings_env
from bridge.services.mqtt_endpoints import open_session
from bridge.testkit.licences import licences as synthetic_licences
from bridge.testkit.streams import event_stream

SIZES = {
    "tiny": {"events": 300, "licences": 300},
    "small": {"events": 5000, "licences": 2000},
    "full": {"events": 30000, "licences": 5000},
}
# Issue 14's targets, per database, for one consumer; two consumers on a shared subscription
# against one bare consumer; the stretch is reported beside the target.
TARGET = {"sqlite": 0.5, "postgresql": 0.4}
TARGET_SHARED = 0.8
STRETCH = 0.7
PER_DATABASE = True
MIX = {"amendments": 0.05, "invalidations": 0.02}  # the rest are releases
CONSUMERS = 2  # processes in the scaled-out variant: one per core of the benchmark machine


def run(run: Run, database: str) -> list[Result]:
    size = SIZES[run.size]
    licences = list(synthetic_licences(size["licences"], seed=11, scale=1000))
    broker = run.broker()
    results = []
    for variant, minimal in (("~20 KB", False), ("~1 KB", True)):
        run.log(f"W1 {variant} on {database}: generating {size['events']} events")
        events = list(event_stream(licences, size["events"], seed=12, minimal=minimal, **MIX))
        envelopes = [e.envelope for e in events]
        url = run.ledger_url(database, "w1")
        engine = run.engine(url)
        store_known_licences(engine, licences)
        settings = run.settings(broker, url)
        timeout = 60 + size["events"] / 50
        run.log(f"W1 {variant} on {database}: limit")
        limit = limit_rate(settings, envelopes, timeout=timeout)
        run.log(f"W1 {variant} on {database}: bridge")
        bridge, report = bridge_rate(settings, engine, envelopes, timeout=timeout)
        engine.dispose()
        results.append(
            _result(
                f"W1 write-offs {variant}",
                database,
                bridge,
                limit,
                settings,
                events=len(envelopes),
                mean_bytes=sum(map(len, envelopes)) // len(envelopes),
                write_offs=sum(len(e.write_offs) for e in events),
                licences=len(licences),
                report={
                    "applied": report.applied,
                    "refused": report.refused,
                    "ignored": report.ignored,
                    "quarantined": report.quarantined,
                    "duplicates": report.duplicates,
                    "batches": report.batches,
                    "results": report.results,
                },
            )
        )
        if not minimal:
            results.append(_scaled_out(run, database, broker, licences, envelopes, limit, timeout))
    return results


def _scaled_out(
    run: Run,
    database: str,
    broker,
    licences: list,
    envelopes: list[bytes],
    limit: dict,
    timeout: float,
) -> Result:
    """The same events through CONSUMERS consumer processes sharing one subscription, into a
    ledger of their own (the same licences)."""
    url = run.ledger_url(database, "w1s")
    store_known_licences(run.engine(url), licences)
    settings = run.settings(broker, url, mqtt_shared_group="w1")
    children = []
    for n in range(CONSUMERS):
        own = replace(settings, mqtt_client_id=f"{settings.mqtt_client_id}-{n}")
        open_session(own)
        log = run.folder(f"w1-consumer-{n}") / "out.log"
        env = settings_env(own)
        children.append(
            (
                run.process(
                    [sys.executable, "-m", "bridge.entrypoints.consumer"], env=env, log=log
                ),
                log,
            )
        )
    _wait_connected(children)
    run.log(f"W1 ~20 KB on {database}: {CONSUMERS} consumers on a shared subscription")
    group = group_rate(settings, envelopes, children, timeout=timeout)
    return _result(
        f"W1 write-offs ~20 KB, {CONSUMERS} consumers",
        database,
        group,
        limit,
        settings,
        target=TARGET_SHARED,
        note=f"{CONSUMERS} processes, MQTT v5 shared subscription; limit: 1 bare consumer",
        events=len(envelopes),
        consumers=CONSUMERS,
    )


def _result(
    workload: str,
    database: str,
    bridge: dict,
    limit: dict,
    settings,
    note: str = "",
    target: float | None = None,
    **details,
) -> Result:
    """A W1 row: the bridge's rate against the bare consumer's, with the run's details; the
    target is one consumer's on that database unless given."""
    share = ratio(bridge["rate"], limit["rate"])
    if target is None:
        target = TARGET[database]
        if share is not None and share >= STRETCH:
            note = f"{note}; stretch {STRETCH} met".lstrip("; ")
    return Result(
        workload=workload,
        database=database,
        bridge=bridge["rate"],
        bridge_unit="msg/s",
        limit=limit["rate"],
        limit_unit="msg/s",
        ratio=share,
        target=f"ratio >= {target}",
        met=share is not None and share >= target,
        seconds=bridge["seconds"] + limit["seconds"],
        note=note,
        details=details
        | {
            "batch_size": settings.batch_size,
            "batch_wait_ms": settings.batch_wait_ms,
            "limit_seconds": limit["seconds"],
            "bridge_seconds": bridge["seconds"],
            "publish_seconds": bridge["publish_seconds"],
        },
    )


def _wait_connected(children: list, timeout: float = 60.0) -> None:
    """Until every consumer process has logged its connection (so its share of the group's
    subscription exists before anything is published)."""
    deadline = time.monotonic() + timeout
    while not all("connected" in log.read_text(errors="replace") for _, log in children):
        for child, log in children:
            if child.poll() is not None:
                raise RuntimeError(f"a W1 consumer exited: {log.read_text()[-2000:]}")
        if time.monotonic() > deadline:
            raise TimeoutError("the W1 consumers did not connect")
        time.sleep(0.05)

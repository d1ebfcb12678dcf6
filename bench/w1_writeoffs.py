"""W1 write-off throughput: declaration events through a real mosquitto into the ledger.

Limit: a bare paho consumer (MQTT v5, persistent session, QoS 1, manual ack after reading the
JSON and parsing the declaration with lxml) draining a backlog of the events. Bridge:
`bridge.consumer.consume` (every rule, one durable transaction per batch, acks after commit,
a result message published for every event) draining the same backlog into a ledger that holds
the licences the events quote. Both are timed from connecting to the last message."""

from __future__ import annotations

from bench.common import Result, Run, ratio, store_known_licences
from bench.mqttload import bridge_rate, limit_rate
from bridge.testkit import synth

SIZES = {
    "tiny": {"events": 300, "licences": 300},
    "small": {"events": 5000, "licences": 2000},
    "full": {"events": 30000, "licences": 5000},
}
TARGET = 0.7
PER_DATABASE = True
MIX = {"amendments": 0.05, "invalidations": 0.02}  # the rest are releases


def run(run: Run, database: str) -> list[Result]:
    size = SIZES[run.size]
    licences = list(synth.licences(size["licences"], seed=11, scale=1000))
    broker = run.broker()
    results = []
    for variant, minimal in (("~20 KB", False), ("~1 KB", True)):
        run.log(f"W1 {variant} on {database}: generating {size['events']} events")
        events = list(synth.event_stream(licences, size["events"], seed=12, minimal=minimal, **MIX))
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
        share = ratio(bridge["rate"], limit["rate"])
        results.append(
            Result(
                workload=f"W1 write-offs {variant}",
                database=database,
                bridge=bridge["rate"],
                bridge_unit="msg/s",
                limit=limit["rate"],
                limit_unit="msg/s",
                ratio=share,
                target=f"ratio >= {TARGET}",
                met=share is not None and share >= TARGET,
                seconds=bridge["seconds"] + limit["seconds"],
                details={
                    "events": len(envelopes),
                    "mean_bytes": sum(map(len, envelopes)) // len(envelopes),
                    "write_offs": sum(len(e.write_offs) for e in events),
                    "licences": len(licences),
                    "batch_size": settings.batch_size,
                    "batch_wait_ms": settings.batch_wait_ms,
                    "report": {
                        "applied": report.applied,
                        "refused": report.refused,
                        "ignored": report.ignored,
                        "quarantined": report.quarantined,
                        "duplicates": report.duplicates,
                        "batches": report.batches,
                        "results": report.results,
                    },
                    "limit_seconds": limit["seconds"],
                    "bridge_seconds": bridge["seconds"],
                    "publish_seconds": bridge["publish_seconds"],
                },
            )
        )
    return results

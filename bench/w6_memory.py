"""W6 memory: the consumer's resident set across many messages.

The standalone consumer (`python -m bridge.entrypoints.consumer`, its own process) takes a long
stream of declaration events (generated while it runs, published with at most a few thousand waiting
in the broker); its RSS is read from /proc every so many answered messages. Target: under 150 MB and
flat, i.e. at the end no more than 10% above what it was a quarter of the way in (once caches and
pools have filled). The "limit" column shows that quarter-way figure."""

from __future__ import annotations

import sys
import time

import paho.mqtt.client as mqtt

from bench.common import Result, Run, rss_mb, store_known_licences
from bench.mqttload import ResultWatcher
from bridge.adapters.processes import stop_group
from bridge.services.config import settings_env
from bridge.services.mqtt_endpoints import open_session
from bridge.testkit.licences import licences as synthetic_licences
from bridge.testkit.streams import event_stream

SIZES = {"tiny": 1000, "small": 30000, "full": 1_000_000}
CEILING_MB = 150
GROWTH = 1.10
SAMPLES = 40
IN_FLIGHT = 4000  # published but not yet answered, at most
PER_DATABASE = True


def run(run: Run, database: str) -> list[Result]:
    n = SIZES[run.size]
    licences = list(synthetic_licences(5000, seed=61, scale=1000))
    broker = run.broker()
    url = run.ledger_url(database, "w6")
    engine = run.engine(url)
    store_known_licences(engine, licences)
    engine.dispose()
    settings = run.settings(broker, url)
    open_session(settings)
    counter = ResultWatcher(settings)
    publisher = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    publisher.max_inflight_messages_set(0)
    publisher.connect(settings.mqtt_host, settings.mqtt_port, keepalive=30)
    publisher.loop_start()
    child = run.process(
        [sys.executable, "-m", "bridge.entrypoints.consumer"],
        env=settings_env(settings),
        log=run.folder("w6-consumer") / "out.log",
    )
    samples: list[tuple[int, float, float]] = []  # (answered, seconds, RSS MB)
    every = max(1, n // SAMPLES)
    next_sample = every
    started = time.perf_counter()
    published = 0
    try:
        stream = event_stream(licences, n, seed=62, amendments=0.05, invalidations=0.02)
        run.log(f"W6 on {database}: {n} messages through the consumer (pid {child.pid})")
        for event in stream:
            while published - counter.count >= IN_FLIGHT:
                if child.poll() is not None:
                    raise RuntimeError(f"the consumer exited with {child.returncode}")
                time.sleep(0.01)
            publisher.publish(settings.mqtt_topic, event.envelope, qos=1)
            published += 1
            while counter.count >= next_sample:
                samples.append((counter.count, time.perf_counter() - started, rss_mb(child.pid)))
                next_sample += every
        deadline = time.monotonic() + 120
        while counter.count < n and time.monotonic() < deadline:
            if counter.count >= next_sample:
                samples.append((counter.count, time.perf_counter() - started, rss_mb(child.pid)))
                next_sample += every
            time.sleep(0.05)
        samples.append((counter.count, time.perf_counter() - started, rss_mb(child.pid)))
    finally:
        publisher.disconnect()
        publisher.loop_stop()
        counter.close()
        stop_group(child)
    if counter.count < n:
        raise AssertionError(f"W6: {counter.count} of {n} messages answered")
    elapsed = time.perf_counter() - started
    quarter = next(rss for answered, _, rss in samples if answered >= n // 4)
    end = samples[-1][2]
    peak = max(rss for _, _, rss in samples)
    met = peak < CEILING_MB and end <= quarter * GROWTH
    return [
        Result(
            workload="W6 consumer memory",
            database=database,
            bridge=peak,
            bridge_unit="MB max RSS",
            limit=quarter,
            limit_unit="MB at 25%",
            ratio=end / quarter,
            target=f"< {CEILING_MB} MB, end <= {GROWTH:g} x 25%",
            met=met,
            seconds=elapsed,
            note=f"{n:,} messages at {n / elapsed:,.0f}/s; end {end:.0f} MB",
            details={"messages": n, "samples": samples, "rate": n / elapsed},
        )
    ]

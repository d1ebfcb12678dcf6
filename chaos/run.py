"""One fault-injection run: start everything, drive the stream while injecting the faults,
wait for the bridge to settle, check it against the oracle, stop everything.

The faults are planned from the seed at fractions of the stream (as the ledger records it, so
the plan lands at the same places on a fast or a slow machine) and carried out one at a time
by the run's main loop, which meanwhile watches the ledger's progress and restarts a consumer
that died on its own (recorded as a crash: a failed check)."""

from __future__ import annotations

import contextlib
import random
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

from bridge.adapters.mqtt.broker import Broker, broker_config, free_port, mosquitto_executable
from bridge.adapters.store.db import engine_url, make_engine, utcnow
from bridge.adapters.store.licences import save_licence
from bridge.core.model import Licence, LicenceStatus
from bridge.entrypoints.customs_sim import KNOWN_FAULT_KINDS, SimulatorProcess, start_simulator
from bridge.services.config import Settings, settings_env
from bridge.services.licence_status import change_status
from bridge.services.mqtt_endpoints import open_session
from bridge.testkit.customs_traffic_stream import traffic_stream
from bridge.testkit.licences import licences as synthetic_licences
from bridge.testkit.streams import BAD_KINDS, HOSTILE_KINDS
from chaos import checks
from chaos.faults import (
    CONSUMER_APPLICATION,
    ConsumerSupervisor,
    LedgerOutage,
    PostgresRefusal,
    PostgresSessionProbe,
    SqliteLock,
    SqliteWriterProbe,
    SyncScheduler,
    TransactionProbe,
    count_in_log,
    wait_until,
)
from chaos.oracle import Oracle
from chaos.sizes import Size
from chaos.stream import ResultListener, StreamPublisher

# The outbox's backoff cap (ELBRIDGE_SOAP_BACKOFF_CAP_SECONDS) and a margin: a retry scheduled
# within it is a delivery waiting its turn, not a stalled bridge.
RETRY_WAIT_LIMIT = Settings().soap_backoff_cap_seconds + 30.0

SCALE = 1000  # licence ceilings this many times their usual size: the stream never runs dry
SOAP_TIMEOUT = 0.4  # the bridge's SOAP timeout in the run; a "timeout" answer comes later
SLOW_ANSWER = 0.8
SQLITE_BUSY_TIMEOUT = 30.0  # how long the bridge's SQLite connections wait for a lock
UNAVAILABLE = "ledger unavailable"
AUTHORITY = "chaos-licensing-officer"  # what the consumer logs while it waits for the ledger


@dataclass
class Planned:
    """One thing the run does: when (a fraction of the stream recorded, or a moment), what."""

    what: str  # kill, restart-broker, outage, end-outage, outage-kill, licences, kill-sync
    progress: float | None = None
    at: float | None = None  # seconds into the run
    mode: str = ""  # of a kill: transaction (inside a ledger transaction) or random
    wave: int = 0


@dataclass
class Timeline:
    """What was done, when, and what was seen: the run's figures."""

    events: list[dict[str, Any]] = field(default_factory=list)

    def add(self, at: float, what: str, **details: Any) -> dict[str, Any]:
        entry = {"at": round(at, 2), "what": what, **details}
        self.events.append(entry)
        return entry

    def of(self, what: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e["what"] == what]


class ChaosRun:
    def __init__(
        self,
        size: Size,
        database: str,
        seed: int,
        workdir: Path,
        log: Callable[[str], None],
    ) -> None:
        self.size = size
        self.database = database
        self.seed = seed
        self.workdir = workdir
        self.say = log
        self.rng = random.Random(f"chaos:{seed}")
        self.timeline = Timeline()
        self.stack = contextlib.ExitStack()
        self.started = time.monotonic()
        self.recorded = 0  # processed_message rows, as last seen
        self.observed_at = 0.0
        self.last_progress = time.monotonic()
        self.outage: LedgerOutage | None = None
        self.outage_entry: dict[str, Any] | None = None
        self.pending_licences: list[list[Licence]] = []
        self.expected_status: dict[str, str] = {}  # what the authority made of late licences

    def clock(self) -> float:
        return time.monotonic() - self.started

    # ----------------------------------------------------------------------------- setup

    def _folder(self, name: str) -> Path:
        path = self.workdir / name
        path.mkdir(parents=True, exist_ok=True)
        return path

    def _broker(self) -> Broker:
        folder = self._folder("mosquitto")
        port = free_port()
        # Persistence on: a restart keeps every session and the QoS 1 messages queued in it.
        config = broker_config(folder, port, autosave_interval=30)
        (folder / "mosquitto.conf").write_text(config, encoding="utf-8")
        broker = Broker(folder, port, mosquitto_executable())
        self.stack.callback(broker.stop)
        return broker.start()

    def _ledger_url(self) -> str:
        if self.database == "sqlite":
            return f"sqlite:///{self._folder('ledger') / 'ledger.db'}"
        from bridge.adapters.pgcluster import start_cluster

        self.say("starting a throwaway PostgreSQL cluster")
        cluster = start_cluster()
        self.stack.callback(cluster.stop)
        return cluster.create_database("chaos_ledger")

    def _simulator(self) -> SimulatorProcess:
        simulator = start_simulator(
            self._folder("customs"),
            rate=self.size.soap_fault_rate,
            kinds=list(KNOWN_FAULT_KINDS),
            slow_seconds=SLOW_ANSWER,
            seed=self.seed,
        )
        self.stack.callback(simulator.stop)
        return simulator

    def _monitor_engine(self, url: str) -> Engine:
        """The run's own reads of the ledger: quick to give up while it is away."""
        if make_url(url).get_backend_name() == "sqlite":
            engine = make_engine(url)
        else:
            make_engine(url).dispose()  # the ledger's tables, as the bridge creates them
            engine = create_engine(
                engine_url(url), pool_pre_ping=True, connect_args={"connect_timeout": 2}
            )
        self.stack.callback(engine.dispose)
        return engine

    # ------------------------------------------------------------------------------- run

    def execute(self) -> dict[str, Any]:
        with self.stack:
            return self._execute()

    def _execute(self) -> dict[str, Any]:
        size = self.size
        tag = uuid.uuid4().hex[:8]
        self.say(f"{size.name} on {self.database}, seed {self.seed}: starting the parts")
        self.broker = self._broker()
        url = self._ledger_url()
        self.url = url
        self.engine = self._monitor_engine(url)
        self.simulator = self._simulator()
        settings = Settings(
            home=self._folder("home"),
            database_url=url,
            mqtt_host=self.broker.host,
            mqtt_port=self.broker.port,
            mqtt_client_id=f"elbridge-chaos-{tag}",
            mqtt_topic=f"chaos/{tag}/declarations",
            mqtt_result_topic=f"chaos/{tag}/results",
            batch_size=size.batch_size,
            batch_wait_ms=50,
            soap_url=self.simulator.url,
            soap_timeout=SOAP_TIMEOUT,
        )
        self.settings = settings
        licences = list(
            synthetic_licences(
                size.traded_licences + size.late_licences, seed=self.seed, scale=SCALE
            )
        )
        traded, late = licences[: size.traded_licences], licences[size.traded_licences :]
        waves = max(1, size.late_waves)
        self.pending_licences = [late[i::waves] for i in range(waves)]
        oracle = Oracle.for_licences(licences)
        self.oracle = oracle

        # Licences the declarations quote: in the ledger, and their certificates delivered to
        # customs (under the same 30% faults) before customs can accept a declaration.
        self._save_licences(traded)
        self.sync = SyncScheduler(self._sync_env(), self._folder("logs") / "sync.log", self.clock)
        self.stack.callback(self.sync.stop)
        self.sync.start()
        failing = f"{size.soap_fault_rate:.0%} of calls fail"
        self.say(f"delivering {len(traded)} certificates to customs ({failing})")
        phase_one = time.monotonic()
        if not wait_until(lambda: self._outbox_settled(len(traded), failed_ok=False), 600, 0.5):
            raise RuntimeError("the traded licences' certificates were not delivered in 10 min")
        self.timeline.add(
            self.clock(), "certificates-ready", seconds=round(time.monotonic() - phase_one, 1)
        )

        open_session(settings)  # the consumer's session exists before customs publish
        self.listener = ResultListener(settings).start()
        self.stack.callback(self.listener.stop)
        self.consumer = ConsumerSupervisor(
            self._consumer_env(), self._folder("logs") / "consumer.log", self.clock
        )
        self.stack.callback(self.consumer.stop)
        self.consumer.start()
        self.probe = self._probe()
        self.stack.callback(self.probe.close)
        events = traffic_stream(
            traded,
            size.events,
            seed=self.seed + 1,
            partial_amendments=size.partial_amendments,
            irrelevant=size.irrelevant,
            duplicates=size.duplicates,
            reorder=size.reorder,
            amendments=size.amendments,
            invalidations=size.invalidations,
            bad=size.bad,
            minimal=True,
            full_share=size.full_share,
            bad_kinds=BAD_KINDS + HOSTILE_KINDS,
        )
        self.publisher = StreamPublisher(
            settings,
            events,
            oracle,
            rate=size.rate,
            backlog=size.backlog,
            recorded=lambda: self.recorded,
        )
        self.stack.callback(self.publisher.stop)
        plan = self._plan()
        self.say(f"streaming {size.events:,} events; {len(plan)} faults and arrivals planned")
        stream_started = time.monotonic()
        self.publisher.start()
        settled = self._drive(plan, oracle, len(licences))
        stream_seconds = time.monotonic() - stream_started

        # A consumer started a moment ago is still starting: let it publish what is pending.
        wait_until(lambda: self.clock() - self.consumer.started_at > 5, 10, step=0.1)
        self.say("stopping the delivery runs, the publisher and the consumer (SIGTERM)")
        self.sync.stop()
        self.publisher.stop()
        self.consumer.stop()
        self.say("checking against the oracle")
        results = [
            checks.balances(self.engine, oracle),
            checks.write_offs_once(self.engine, oracle),
            checks.events_once(self.engine, oracle),
            checks.quarantine_exact(self.engine, oracle),
            checks.nothing_unacknowledged(settings, wait=3.0),
            checks.results_published(self.engine, self.listener, oracle),
            checks.certificates_once(self.engine, self.simulator.store_path),
            checks.status_updates_once(self.engine, self.simulator.store_path),
            checks.licence_statuses(
                self.engine, oracle, [x.number for x in licences], self.expected_status
            ),
            self._no_crash(),
        ]
        figures = self._figures(oracle, stream_seconds, settled)
        results.append(self._faults_as_planned(figures))
        return {"checks": results, "figures": figures, "timeline": self.timeline.events}

    # ----------------------------------------------------------------------- the plan

    def _plan(self) -> list[Planned]:
        size, rng = self.size, self.rng
        plan = []
        kills = max(0, size.consumer_kills - 1)  # one more comes during the outage
        for index in range(kills):
            mode = "transaction" if index % 2 == 0 else "random"
            plan.append(Planned("kill", progress=rng.uniform(0.05, 0.9), mode=mode))
        for _ in range(size.broker_restarts - 1):  # and one during the outage
            plan.append(Planned("restart-broker", progress=rng.uniform(0.1, 0.85)))
        plan.append(Planned("outage", progress=rng.uniform(0.25, 0.6)))
        for wave in range(len(self.pending_licences)):
            share = (wave + 1) / (len(self.pending_licences) + 1)
            plan.append(Planned("licences", progress=0.8 * share, wave=wave))
        return plan

    def _due(self, plan: list[Planned]) -> Planned | None:
        now = self.clock()
        fraction = self.recorded / self.size.events
        for item in sorted(
            plan, key=lambda p: (p.at if p.at is not None else 1e9, p.progress or 0)
        ):
            if item.at is not None and item.at <= now:
                return item
        if self.outage is not None:
            return None  # one fault at a time; the outage's own kill comes by the clock
        progressed = [p for p in plan if p.progress is not None and p.progress <= fraction]
        if progressed:
            return min(progressed, key=lambda p: p.progress or 0)
        if self.recorded >= self.oracle.expected_processed and self.publisher.finished.is_set():
            # The whole stream is in and the plan asked for more than it had: now.
            return min(
                (p for p in plan if p.progress is not None),
                key=lambda p: p.progress or 0,
                default=None,
            )
        return None

    def _drive(self, plan: list[Planned], oracle: Oracle, licence_versions: int) -> bool:
        """Carry out the plan while the bridge works; True once everything settled."""
        last_outbox = 0.0
        settled_outbox = False
        while True:
            self._observe()
            crash = self.consumer.check()
            if crash is not None:
                self.say(f"consumer {crash.pid} ended on its own ({crash.returncode}): restarted")
                self.timeline.add(crash.at, "consumer-crash", pid=crash.pid, code=crash.returncode)
            if self.publisher.error is not None:
                raise RuntimeError(f"the customs publisher failed: {self.publisher.error!r}")
            item = self._due(plan)
            if item is not None:
                plan.remove(item)
                if not self._carry_out(item, plan):
                    plan.append(item)  # the ledger was away: again in a moment
                    item.at = self.clock() + 1.0
                continue
            if time.monotonic() - last_outbox > 1.0:
                last_outbox = time.monotonic()
                settled_outbox = self._outbox_settled(licence_versions)
            done = (
                not plan
                and self.outage is None
                and self.publisher.finished.is_set()
                and self.recorded >= oracle.expected_processed
                and settled_outbox
                and not self.listener.missing(oracle.valid_ids)
            )
            if done:
                self.timeline.add(self.clock(), "settled", recorded=self.recorded)
                return True
            if time.monotonic() - self.last_progress > self.size.drain_timeout:
                if self._retry_scheduled():
                    # A delivery waits out its backoff (up to the outbox's cap, longer than
                    # the drain timeout after many injected faults): that is not a stall.
                    time.sleep(0.5)
                    continue
                self.say("no progress for a long time: checking what there is")
                self.timeline.add(self.clock(), "stalled", recorded=self.recorded)
                return False
            time.sleep(0.05)

    def _observe(self) -> None:
        if time.monotonic() - self.observed_at < 0.2:
            return  # a count of a table of 100,000 rows is not free
        self.observed_at = time.monotonic()
        try:
            with self.engine.connect() as conn:
                recorded = conn.execute(text("SELECT count(*) FROM processed_message")).scalar_one()
        except DBAPIError:
            return  # the ledger is away: nothing new
        if recorded != self.recorded:
            self.recorded = recorded
            self.last_progress = time.monotonic()
            entry = self.outage_entry
            if entry is not None and "ended_at" in entry and "resumed_after" not in entry:
                entry["resumed_after"] = round(self.clock() - entry["ended_at"], 2)

    # ------------------------------------------------------------------------ the faults

    def _carry_out(self, item: Planned, plan: list[Planned]) -> bool:
        if item.what == "kill":
            self._kill(item.mode)
        elif item.what == "outage-kill":
            self._kill("during outage")
        elif item.what == "restart-broker":
            self._restart_broker()
        elif item.what == "outage":
            self._begin_outage(plan)
        elif item.what == "end-outage":
            self._end_outage()
        elif item.what == "licences":
            if not self._issue_licences(item.wave):
                return False
            if item.wave < self.size.sync_kills:
                plan.append(Planned("kill-sync", at=self.clock() + self.rng.uniform(1.5, 3.0)))
        elif item.what == "kill-sync":
            self._kill_sync()
        return True

    def _kill(self, mode: str) -> None:
        seen_open = None
        if mode == "transaction":
            seen_open = wait_until(self.probe.open, 10.0, step=0.002)
        elif mode == "random":
            time.sleep(self.rng.uniform(0.0, 0.5))
        published, recorded = self.publisher.published, self.recorded
        pid = self.consumer.kill()
        self.timeline.add(
            self.clock(),
            "consumer-kill",
            pid=pid,
            mode=mode,
            in_transaction=seen_open,
            published=published,
            recorded=recorded,
        )
        self.say(f"SIGKILL consumer {pid} ({mode}) at {recorded:,} recorded")
        time.sleep(self.rng.uniform(0.2, 1.0))
        self.consumer.start()

    def _restart_broker(self) -> None:
        queued = self.publisher.expected - self.recorded
        self.broker.stop()
        down = self.rng.uniform(0.3, 1.5)
        time.sleep(down)
        self.broker.start()
        self.timeline.add(
            self.clock(), "broker-restart", down_seconds=round(down, 2), queued_about=queued
        )
        self.say(f"restarted mosquitto ({queued:,} messages waiting for the ledger)")

    def _begin_outage(self, plan: list[Planned]) -> None:
        if self.database == "sqlite":
            path = Path(make_url(self.url).database or "")
            outage: LedgerOutage = SqliteLock(path)
        else:
            outage = PostgresRefusal(self.url)
        seconds = self.size.outage_seconds[self.database]
        self.observed_at = 0.0
        self._observe()
        waits_before = count_in_log(self.consumer.log, UNAVAILABLE)
        outage.begin()
        self.observed_at = 0.0
        self._observe()  # SQLite still reads (WAL): what the consumer committed before the lock
        self.outage = outage
        now = self.clock()
        self.outage_entry = self.timeline.add(
            now,
            "ledger-outage",
            how=outage.description,
            planned_seconds=seconds,
            recorded=self.recorded,
            consumer_waits_before=waits_before,
        )
        self.say(f"ledger unavailable for {seconds:.0f} s ({outage.description})")
        plan.append(Planned("end-outage", at=now + seconds))
        if self.database == "sqlite" and seconds > SQLITE_BUSY_TIMEOUT + 2:
            # After the busy timeout: the consumer has met the outage as an error by then.
            kill_at = now + seconds - self.rng.uniform(1.0, min(2.0, seconds - SQLITE_BUSY_TIMEOUT))
        else:
            kill_at = now + seconds * self.rng.uniform(0.35, 0.6)
        plan.append(Planned("outage-kill", at=kill_at))
        if self.size.broker_restarts:
            # Messages pile up in the broker meanwhile, and the consumer holds some unacked.
            plan.append(Planned("restart-broker", at=now + seconds * self.rng.uniform(0.3, 0.5)))

    def _end_outage(self) -> None:
        assert self.outage is not None and self.outage_entry is not None
        self.outage.end()
        if isinstance(self.outage, PostgresRefusal):
            self.outage_entry["sessions_terminated"] = self.outage.terminated
            self.outage.dispose()
        self.outage = None
        entry = self.outage_entry
        entry["ended_at"] = self.clock()
        entry["seconds"] = round(entry["ended_at"] - entry["at"], 2)
        entry["recorded_at_end"] = self.recorded
        waits = count_in_log(self.consumer.log, UNAVAILABLE) - entry["consumer_waits_before"]
        entry["consumer_waits_logged"] = waits
        self.say(f"ledger back after {entry['seconds']:.1f} s; the consumer logged {waits} waits")

    def _issue_licences(self, wave: int) -> bool:
        """New licences arrive from the authorities while the stream runs, and the authority
        suspends some licences of earlier waves (reinstating one), which customs must hear of
        through status updates. One transaction: after an outage it is all done again."""
        batch = self.pending_licences[wave]
        earlier = sorted(x.number for w in range(wave) for x in self.pending_licences[w])
        suspended = sorted(self.rng.sample(earlier, min(3, len(earlier))))
        reinstated = suspended[:1]
        try:
            with self.engine.begin() as conn:
                for item in batch:
                    save_licence(conn, item, source="chaos", now=utcnow(), explicit_version=False)
                for number, status in [
                    *((n, LicenceStatus.SUSPENDED) for n in suspended),
                    *((n, LicenceStatus.VALID) for n in reinstated),
                ]:
                    change_status(
                        conn,
                        number,
                        status,
                        reason=f"chaos wave {wave}",
                        actor=AUTHORITY,
                        now=utcnow(),
                    )
        except DBAPIError:
            return False
        for number in suspended:
            self.expected_status[number] = "suspended"
        for number in reinstated:
            self.expected_status[number] = "valid"
        self.timeline.add(
            self.clock(),
            "licences-issued",
            wave=wave,
            licences=len(batch),
            suspended=suspended,
            reinstated=reinstated,
        )
        return True

    def _kill_sync(self) -> None:
        pid = None
        deadline = time.monotonic() + 10
        while pid is None and time.monotonic() < deadline:
            pid = self.sync.kill_running()
            if pid is None:
                time.sleep(0.05)
        self.timeline.add(self.clock(), "sync-kill", pid=pid)
        if pid is not None:
            self.say(f"SIGKILL certificate delivery run {pid}")

    # ----------------------------------------------------------------------- the ledger

    def _save_licences(self, batch: list[Licence]) -> None:
        for start in range(0, len(batch), 200):
            with self.engine.begin() as conn:
                for item in batch[start : start + 200]:
                    save_licence(conn, item, source="chaos", now=utcnow(), explicit_version=False)

    def _outbox_settled(self, licence_versions: int, *, failed_ok: bool = True) -> bool:
        """Every licence version's certificate delivered (or failed for good, which the checks
        then report) and nothing pending; with `failed_ok` False a failed one is an error."""
        try:
            with self.engine.connect() as conn:
                counts = dict(
                    conn.execute(
                        text(
                            "SELECT status, count(*) FROM outbox WHERE kind = 'certificate'"
                            " GROUP BY status"
                        )
                    ).all()
                )
                pending = conn.execute(
                    text("SELECT count(*) FROM outbox WHERE status = 'pending'")
                ).scalar_one()
        except DBAPIError:
            return False
        if counts.get("failed") and not failed_ok:
            raise RuntimeError(f"certificates failed for good: {counts}")
        done = counts.get("delivered", 0) + counts.get("failed", 0)
        return done >= licence_versions and not pending

    def _retry_scheduled(self) -> bool:
        """Whether a pending outbox message has its next attempt scheduled within the outbox's
        backoff cap (bridge.services.outbox.deliver_pending): the next sync run will try it."""
        try:
            with self.engine.connect() as conn:
                due = conn.execute(
                    text("SELECT min(next_attempt_at) FROM outbox WHERE status = 'pending'")
                ).scalar_one()
        except DBAPIError:
            return False
        if due is None:
            return False
        if isinstance(due, str):
            due = datetime.fromisoformat(due)
        if due.tzinfo is None:
            due = due.replace(tzinfo=UTC)
        # Past due by more than a minute: the sync runs (every few seconds) no longer take it.
        wait = due - utcnow()
        return timedelta(seconds=-60) < wait < timedelta(seconds=RETRY_WAIT_LIMIT)

    # ---------------------------------------------------------------------- environment

    def _probe(self) -> TransactionProbe:
        if self.database == "sqlite":
            return SqliteWriterProbe(
                Path(make_url(self.url).database or ""), lambda: self.consumer.pid
            )
        return PostgresSessionProbe(self.url)

    def _consumer_env(self) -> dict[str, str]:
        s = self.settings
        url = s.database_url
        if self.database == "postgresql":  # so the probe can tell its session from others
            url = make_url(url).update_query_dict({"application_name": CONSUMER_APPLICATION})
            url = url.render_as_string(hide_password=False)
        return settings_env(replace(s, database_url=url))

    def _sync_env(self) -> dict[str, str]:
        s = self.settings
        return settings_env(
            s, ("home", "database_url", "soap_url", "soap_timeout", "soap_retry_budget_hours")
        )

    # -------------------------------------------------------------------------- figures

    def _no_crash(self) -> checks.Check:
        crashes = [e for e in self.consumer.exits if e.cause == "crashed"]
        figures = {
            "starts": self.consumer.starts,
            "exits": {
                c: sum(1 for e in self.consumer.exits if e.cause == c)
                for c in ("killed", "stopped", "crashed")
            },
        }
        if crashes:
            first = crashes[0]
            detail = (
                f"{len(crashes)} consumer exits the suite did not cause; first: pid {first.pid}"
                f" code {first.returncode} at {first.at:.1f} s: ...{first.log_tail[-600:]}"
            )
            return checks.Check("consumer never crashed", False, detail, figures)
        detail = f"{self.consumer.starts} consumer starts; each end a kill or the final stop"
        return checks.Check("consumer never crashed", True, detail, figures)

    def _figures(self, oracle: Oracle, stream_seconds: float, settled: bool) -> dict[str, Any]:
        stats = self.simulator.stats()
        injected = {
            k.removeprefix("injected_"): v for k, v in stats.items() if k.startswith("injected_")
        }
        requests = stats.get("requests", 0)
        kills = self.timeline.of("consumer-kill")
        outage = (self.timeline.of("ledger-outage") or [{}])[0]
        return {
            "events": self.size.events,
            "messages_published": self.publisher.published,
            "stream": dict(sorted(oracle.kinds.items())),
            "valid_messages": len(oracle.valid_ids),
            "unreadable_messages": len(oracle.bad_payloads),
            "consumer_kills": len(kills),
            "consumer_kills_in_transaction": sum(1 for k in kills if k.get("in_transaction")),
            "consumer_starts": self.consumer.starts,
            "broker_restarts": len(self.timeline.of("broker-restart")),
            "outage_seconds": outage.get("seconds", 0.0),
            "outage": outage,
            "soap_requests": requests,
            "soap_faults": sum(injected.values()),
            "soap_fault_share": round(sum(injected.values()) / requests, 3) if requests else 0.0,
            "soap_faults_by_kind": injected,
            "soap_answers": {k: v for k, v in stats.items() if not k.startswith("injected_")},
            "sync_runs": self.sync.runs,
            "sync_kills": sum(1 for e in self.sync.exits if e.cause == "killed"),
            "sync_failed_runs": sum(1 for e in self.sync.exits if e.cause == "crashed"),
            "stream_seconds": round(stream_seconds, 1),
            "settled": settled,
        }

    def _faults_as_planned(self, figures: dict[str, Any]) -> checks.Check:
        size = self.size
        wanted = {
            "consumer_kills": size.consumer_kills,
            "broker_restarts": size.broker_restarts,
            "sync_kills": size.sync_kills,
        }
        problems = [
            f"{name} {figures[name]} < {n}" for name, n in wanted.items() if figures[name] < n
        ]
        planned = size.outage_seconds[self.database]
        if figures["outage_seconds"] < planned:
            problems.append(f"ledger outage {figures['outage_seconds']} s < {planned} s")
        share = figures["soap_fault_share"]
        if not size.soap_fault_rate - 0.1 <= share <= size.soap_fault_rate + 0.1:
            problems.append(f"SOAP fault share {share} far from {size.soap_fault_rate}")
        missing = [k for k in KNOWN_FAULT_KINDS if not figures["soap_faults_by_kind"].get(k)]
        if missing:
            problems.append(f"SOAP fault kinds never injected: {missing}")
        if not figures["settled"]:
            problems.append("the bridge did not settle (see the timeline)")
        if problems:
            return checks.Check("faults as planned", False, "; ".join(problems), {})
        f = figures
        detail = (
            f"{f['consumer_kills']} consumer kills ({f['consumer_kills_in_transaction']} inside a"
            f" ledger transaction), {f['broker_restarts']} broker restarts, ledger away"
            f" {f['outage_seconds']:.0f} s, {f['soap_faults']:,} SOAP faults in"
            f" {f['soap_requests']:,} calls ({share:.0%}), {f['sync_kills']} delivery runs killed"
        )
        return checks.Check("faults as planned", True, detail, {})

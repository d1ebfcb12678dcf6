"""`elbridge outbox list|retry` as operators run them: a real `elbridge` process on a ledger
(SQLite and PostgreSQL) whose outbox holds a delivered, a waiting and two failed certificates,
made by the real delivery against the real customs simulator; JSON documents, tables, one-line
errors and exit statuses (0 ok, 2 usage, 3 refused, 4 partly done)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from bridge.adapters.store.db import make_engine, utcnow
from bridge.adapters.store.licences import save_licence
from bridge.adapters.store.outbox import outbox_rows
from bridge.entrypoints.customs_sim import SimulatorProcess
from bridge.services.config import Settings
from bridge.services.outbox import CustomsClient, certify_pending, deliver_pending
from tests.fixtures_soap import chemicals_licence, global_licence, individual_licence

ELBRIDGE = [sys.executable, "-m", "bridge.entrypoints.cli"]
DELIVERED = individual_licence().number
INVALID = "FR-SBDU-G-2026-0042"  # its holder EORI breaks the certificate contract
FAILED = "PL/DU/2026/000321"  # customs answered 503, and the retry budget was 0
WAITING = "DE-EA-2026-009999"  # queued, not sent yet


@dataclass
class Ledger:
    url: str
    home: Path
    simulator: SimulatorProcess
    ids: dict[str, int]  # licence -> its certificate's outbox id

    def run(self, *args: str, columns: int = 120) -> subprocess.CompletedProcess:
        env = {**os.environ, "COLUMNS": str(columns), "ELBRIDGE_SOAP_URL": self.simulator.url}
        env.pop("ELBRIDGE_SETTINGS_FILE", None)
        return subprocess.run(
            [*ELBRIDGE, "--home", str(self.home), "--database-url", self.url, *args],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
            env=env,
        )

    def json(self, *args: str, status: int) -> dict:
        done = self.run(*args, "--json")
        assert done.returncode == status, (done.returncode, done.stdout, done.stderr)
        return json.loads(done.stdout)


@pytest.fixture
def ledger(ledger_url, tmp_path, customs_simulator, development_authority) -> Ledger:
    engine = make_engine(ledger_url)

    def queue(*licences):
        with engine.begin() as conn:
            for licence in licences:
                save_licence(conn, licence, source="test", now=utcnow(), explicit_version=True)
        certify_pending(engine, now=utcnow(), signer=development_authority)

    queue(individual_licence(), global_licence(holder_eori="FR 1234"))
    client = CustomsClient(Settings(soap_url=customs_simulator.url))
    assert deliver_pending(engine, client).delivered == 1
    customs_simulator.set_faults(rate=1.0, kinds=["http503"])
    queue(chemicals_licence())
    broke = CustomsClient(Settings(soap_url=customs_simulator.url, soap_retry_budget_hours=0))
    assert deliver_pending(engine, broke, retry_within_run_seconds=0).failed == 1
    customs_simulator.set_faults()
    queue(individual_licence(number=WAITING))
    with engine.connect() as conn:
        ids = {row["licence_number"]: row["id"] for row in outbox_rows(conn)}
    engine.dispose()
    return Ledger(ledger_url, tmp_path / "home", customs_simulator, ids)


def test_outbox_list_json_has_every_message_and_exits_4_while_some_failed(ledger):
    done = ledger.run("outbox", "list", "--json")
    assert done.returncode == 4, done.stderr
    document = json.loads(done.stdout)
    assert document["counts"] == {"pending": 1, "delivered": 1, "failed": 2}
    messages = {m["licence"]: m for m in document["messages"]}
    assert [m["id"] for m in document["messages"]] == sorted(ledger.ids.values(), reverse=True)
    assert (messages[DELIVERED]["status"], messages[DELIVERED]["attempts"]) == ("delivered", 1)
    assert (messages[INVALID]["status"], messages[INVALID]["failure"]) == ("failed", "invalid")
    assert "EORI" in messages[INVALID]["last_error"]
    failed = messages[FAILED]
    assert (failed["status"], failed["failure"], failed["attempts"]) == ("failed", "budget", 1)
    assert failed["last_error"].startswith("gave up after 0 s of transient failures")
    assert failed["first_failed_at"] and failed["next_attempt_at"] is None
    assert messages[WAITING]["status"] == "pending" and messages[WAITING]["next_attempt_at"]
    assert all(m["age_seconds"] >= 0 for m in document["messages"])
    assert "2 failed message(s) shown" in done.stderr  # the warning, on standard error

    pending = ledger.json("outbox", "list", "--status", "pending", status=0)
    assert [m["licence"] for m in pending["messages"]] == [WAITING]
    one = ledger.json("outbox", "list", "--licence", DELIVERED, status=0)
    assert [m["id"] for m in one["messages"]] == [ledger.ids[DELIVERED]]


def test_outbox_list_prints_a_table_that_fits_the_terminal(ledger):
    done = ledger.run("outbox", "list", columns=100)
    assert done.returncode == 4, done.stderr
    lines = done.stdout.splitlines()
    assert max(len(line) for line in lines) <= 100
    text = " ".join(done.stdout.split())
    for shown in ("failed (budget)", "failed (invalid)", "delivered", FAILED, "HTTP 503"):
        assert shown in text
    assert lines[-1] == "4 message(s) shown; the outbox holds 4: 1 pending, 2 failed, 1 delivered"


def test_outbox_retry_sends_failed_ones_again_and_says_why_not_the_others(ledger):
    nothing = ledger.run("outbox", "retry", "--id", "999999")
    assert nothing.returncode == 2
    assert nothing.stderr.strip().splitlines() == [
        "elbridge outbox retry: nothing sent again; id: no such message in the outbox"
        " (got '999999')"
    ]
    assert ledger.run("outbox", "retry", "--licence", "XX-NONE").returncode == 2
    usage = ledger.run("outbox", "retry")
    assert usage.returncode == 2 and "--id --licence --all-failed" in usage.stderr

    refused = ledger.json("outbox", "retry", "--id", str(ledger.ids[INVALID]), status=3)
    assert refused["requeued"] == []
    ((skipped),) = refused["skipped"]
    assert skipped["licence"] == INVALID and skipped["why"].startswith("never sent")

    both = [str(ledger.ids[FAILED]), str(ledger.ids[DELIVERED])]
    partly = ledger.json("outbox", "retry", "--id", *both, "--actor", "alice", status=4)
    assert [m["licence"] for m in partly["requeued"]] == [FAILED]
    assert [m["why"] for m in partly["skipped"]] == ["delivered already: customs acknowledged it"]
    assert partly["actor"] == "alice"
    (again,) = ledger.json("outbox", "list", "--licence", FAILED, status=0)["messages"]
    assert (again["status"], again["attempts"], again["retried_by"]) == ("pending", 0, "alice")
    assert again["retried_at"] == partly["at"]

    sent = ledger.run("sync", "--retry-seconds", "0")
    assert sent.returncode == 0, sent.stderr
    assert sorted(r["reference"] for r in ledger.simulator.received()) == sorted(
        [DELIVERED, FAILED, WAITING]
    )
    left = ledger.json("outbox", "list", "--status", "failed", status=4)
    assert [m["licence"] for m in left["messages"]] == [INVALID]
    rest = ledger.json("outbox", "retry", "--all-failed", status=3)
    assert rest["requeued"] == [] and [m["licence"] for m in rest["skipped"]] == [INVALID]

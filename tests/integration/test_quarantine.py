"""The operator's quarantine end to end: real bad messages quarantined by the consumer on real
mosquitto, listed and shown through `elbridge quarantine`, the cause fixed, then replayed
through today's rules: the ledger moves once, a second replay changes nothing, a message still
bad stays quarantined with its reasons. SQLite and PostgreSQL."""

from __future__ import annotations

import json
import threading
from dataclasses import replace

import pytest
from sqlalchemy import func, select

from bridge.adapters.store.reconciliation import reconciliation_rows
from bridge.adapters.store.schema import movement, processed_message, quarantine
from bridge.core.envelope import mrn_from_lrn
from bridge.entrypoints.cli import main
from bridge.services.config import Settings, settings_env
from bridge.services.consumer import consume
from bridge.services.customs_events import envelope_for_declaration_file, publish_events
from bridge.services.quarantine import Selection, replay
from tests.fixtures_mqtt import RELEASED_AT, TT_EX010A_MRN, store_licences, tt_ex010a_licence
from tests.integration.test_results import ResultTopic

LICENCE = "GBSIEE2E350001-0001"  # what TT_EX010a writes off (document 9104): 10 kg of 250
SMALL_LIMIT = 8000  # bytes: under TT_EX010a's envelope (about 19 KB)


@pytest.fixture
def cli(mqtt_settings, monkeypatch, capsys, tmp_path):
    """`elbridge ...` in this process, on the test's ledger and broker; returns (status,
    standard output)."""
    names = ("database_url", "mqtt_host", "mqtt_port", "mqtt_client_id", "mqtt_result_topic")
    for name, value in settings_env(mqtt_settings, names).items():
        monkeypatch.setenv(name, value)

    def run(*argv: str) -> tuple[int, str]:
        capsys.readouterr()
        status = main(["--home", str(tmp_path), *argv])
        return status, capsys.readouterr().out

    return run


def _remaining(engine) -> object:
    with engine.connect() as conn:
        (line,) = reconciliation_rows(conn, LICENCE)
    return line.remaining_quantity


def _count(engine, table) -> int:
    with engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(table)).scalar_one()


def _release(wco_samples, mrn: str = TT_EX010A_MRN, **kwargs) -> bytes:
    return envelope_for_declaration_file(
        wco_samples / "TT_EX010a.xml", event="released", mrn=mrn, event_time=RELEASED_AT, **kwargs
    )


def _drain(settings, engine):
    return consume(settings, engine, idle_seconds=0.8, max_seconds=30)


def test_quarantined_until_the_limit_is_raised_then_replayed_once(
    mqtt_settings, engine, wco_samples, cli
):
    store_licences(engine, [tt_ex010a_licence()])
    strict = replace(mqtt_settings, max_message_bytes=SMALL_LIMIT)  # the setting to fix
    assert consume(strict, engine, idle_seconds=0.1).messages == 0  # the session exists
    customs = ResultTopic(mqtt_settings)
    good = _release(wco_samples)
    broken_xml = json.loads(good)
    broken_xml["message_id"] = "broken-xml-1"
    broken_xml["mrn"] = mrn_from_lrn("broken", year=2026, country="GB")
    broken_xml["payload"] = broken_xml["payload"].replace("</Declaration>", "")
    broken = json.dumps(broken_xml).encode()
    garbage = b"\x1b[31mnot JSON at all\x1b[0m"
    try:
        publish_events(strict, [good, broken, garbage])
        report = _drain(strict, engine)
        assert (report.messages, report.quarantined, report.applied) == (3, 3, 0)
        assert _remaining(engine) == 250

        # The operator looks.
        status, out = cli("quarantine", "list", "--json")
        assert status == 0  # a report (docs/cli.md: exit statuses)
        listed = json.loads(out)["quarantined"]
        print(out)
        assert [row["message_id"] for row in listed] == [
            f"{TT_EX010A_MRN}-released-v1",
            "broken-xml-1",
            None,
        ]
        assert [row["mrn"] for row in listed] == [TT_EX010A_MRN, broken_xml["mrn"], None]
        assert [row["event"] for row in listed] == ["released", "released", None]
        assert {row["state"] for row in listed} == {"quarantined"}
        assert f"over the limit of {SMALL_LIMIT}" in listed[0]["first_reason"]
        assert "not a JSON document" in listed[2]["first_reason"]
        good_id, broken_id, garbage_id = (row["id"] for row in listed)

        status, out = cli("quarantine", "list", "--mrn", TT_EX010A_MRN)
        print(out)
        assert f"{TT_EX010A_MRN}-released-v1" in out and "broken-xml-1" not in out
        assert "1 message(s): 1 quarantined, 0 replayed" in out

        status, out = cli("quarantine", "show", str(garbage_id))
        print(out)
        assert status == 0
        assert "\x1b" not in out and "\\x1b[31mnot JSON" in out  # escapes shown, not obeyed
        status, out = cli("quarantine", "show", str(good_id), "--json")
        shown = json.loads(out)
        assert shown["payload_bytes"] == len(good)
        assert shown["envelope"]["mrn"] == TT_EX010A_MRN
        assert shown["declaration"]["function_code"] == "9"
        assert shown["declaration"]["id"] is None  # TT_EX010a is lodged without its MRN
        (reason,) = shown["reasons"]
        assert f"{len(good)} bytes, over the limit of {SMALL_LIMIT}" in reason["reason"]

        # The fix: the limit back to its default (2 MiB). Replay everything.
        status, out = cli("quarantine", "replay", "--all")
        print(out)
        assert status == 4  # partly done: two are still bad
        assert _remaining(engine) == 240  # the release applied: 10 kg written off
        assert "applied 1, still quarantined 2, replayed before 0" in out
        with engine.connect() as conn:
            rows = {r.id: r for r in conn.execute(select(quarantine))}
            answered = conn.execute(
                select(processed_message).where(
                    processed_message.c.message_id == f"{TT_EX010A_MRN}-released-v1"
                )
            ).one()
        assert rows[good_id].replay_outcome == "applied"
        assert rows[good_id].replay_result_id == f"{TT_EX010A_MRN}-released-v1:result"
        assert rows[good_id].replays == 1 and rows[good_id].replayed_at is not None
        assert (answered.outcome, answered.result_state) == ("applied", "published")
        # Still bad, with the reasons of the day: the XML is broken, which the size hid.
        assert rows[broken_id].replay_outcome == "quarantined"
        assert "not well-formed" in rows[broken_id].replay_problems
        assert "over the limit" in rows[broken_id].reason  # the first reasons are kept
        assert rows[garbage_id].replay_outcome == "quarantined"

        # The result went to customs like a live one.
        results = customs.wait(1)
        assert [(r.in_reply_to, r.outcome) for r in results] == [
            (f"{TT_EX010A_MRN}-released-v1", "applied")
        ]

        # A second replay changes nothing.
        movements = _count(engine, movement)
        status, out = cli("quarantine", "replay", str(good_id), "--json")
        (again,) = json.loads(out)["replayed"]
        assert (again["outcome"], again["already"]) == ("applied", True)
        assert status == 0
        status, out = cli("quarantine", "replay", "--all")
        assert "applied" not in out.split("replay:")[1].split("still")[0]
        assert _remaining(engine) == 240 and _count(engine, movement) == movements
        with engine.connect() as conn:
            assert (
                conn.execute(
                    select(quarantine.c.replays).where(quarantine.c.id == good_id)
                ).scalar_one()
                == 1
            )
        customs.wait(1)  # no second result

        status, out = cli("quarantine", "list", "--open")
        assert "2 message(s): 2 quarantined, 0 replayed" in out

        # And the same bytes from customs again, now readable: a duplicate, nothing moves.
        publish_events(mqtt_settings, [good])
        assert _drain(mqtt_settings, engine).duplicates == 1
        assert _remaining(engine) == 240
    finally:
        customs.close()


def test_a_corrected_message_sent_meanwhile_makes_the_replay_a_duplicate(
    mqtt_settings, engine, wco_samples
):
    store_licences(engine, [tt_ex010a_licence()])
    strict = replace(mqtt_settings, max_message_bytes=SMALL_LIMIT)
    assert consume(strict, engine, idle_seconds=0.1).messages == 0
    publish_events(strict, [_release(wco_samples)])
    assert _drain(strict, engine).quarantined == 1
    # Customs send the event again after the bridge's limit was raised: applied live.
    publish_events(mqtt_settings, [_release(wco_samples)])
    assert _drain(mqtt_settings, engine).applied == 1
    assert _remaining(engine) == 240

    report = replay(engine, mqtt_settings, Selection(), publish=False)
    print(report.describe())
    ((replayed,),) = [report.replayed]
    assert (replayed.outcome, replayed.already) == ("duplicate", False)
    assert _remaining(engine) == 240 and _count(engine, movement) == 1
    assert replay(engine, mqtt_settings, Selection()).replayed[0].already


def test_a_message_the_rules_choked_on_is_applied_once_the_rule_is_fixed(
    mqtt_settings, engine, wco_samples, monkeypatch
):
    import bridge.services.consumer

    store_licences(engine, [tt_ex010a_licence()])
    assert consume(mqtt_settings, engine, idle_seconds=0.1).messages == 0
    poison = mrn_from_lrn("poison", year=2026, country="GB")
    real_apply = bridge.services.consumer.apply_declarations

    def choking_apply(conn, events, **kwargs):
        # Fault injection: a bug in the rules of the day, hit by one message only.
        if any(event.mrn == poison for event in events):
            raise RuntimeError("the rules choked")
        return real_apply(conn, events, **kwargs)

    with monkeypatch.context() as patched:
        patched.setattr(bridge.services.consumer, "apply_declarations", choking_apply)
        publish_events(mqtt_settings, [_release(wco_samples, poison), _release(wco_samples)])
        report = _drain(mqtt_settings, engine)
    assert (report.applied, report.quarantined) == (1, 1)
    assert _remaining(engine) == 240

    # The fix is deployed (the patch is gone). A dry run first: it says, and keeps nothing.
    trial = replay(engine, mqtt_settings, Selection(mrn=poison), dry_run=True)
    assert [r.outcome for r in trial.replayed] == ["applied"]
    assert _remaining(engine) == 240
    with engine.connect() as conn:
        assert conn.execute(select(quarantine.c.replayed_at)).scalar_one() is None

    done = replay(engine, mqtt_settings, Selection(mrn=poison), publish=False)
    print(done.describe())
    assert [r.outcome for r in done.replayed] == ["applied"] and done.pending == 1
    assert _remaining(engine) == 230
    # Left pending, the result goes out with the consumer's relay on its next start.
    with engine.connect() as conn:
        states = conn.execute(
            select(processed_message.c.result_state).where(
                processed_message.c.message_id == f"{poison}-released-v1"
            )
        ).scalar_one()
    assert states == "pending"
    assert consume(mqtt_settings, engine, idle_seconds=0.3).results == 1


def test_two_replays_at_once_apply_the_message_once(mqtt_settings, engine, wco_samples):
    store_licences(engine, [tt_ex010a_licence()])
    strict = replace(mqtt_settings, max_message_bytes=SMALL_LIMIT)
    assert consume(strict, engine, idle_seconds=0.1).messages == 0
    publish_events(strict, [_release(wco_samples)])
    assert _drain(strict, engine).quarantined == 1

    reports = []
    start = threading.Barrier(2)

    def operator() -> None:
        start.wait()
        reports.append(replay(engine, mqtt_settings, Selection(), publish=False))

    threads = [threading.Thread(target=operator) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    outcomes = sorted((r.replayed[0].outcome, r.replayed[0].already) for r in reports)
    assert outcomes == [("applied", False), ("applied", True)]
    assert _remaining(engine) == 240 and _count(engine, movement) == 1


def test_a_ledger_from_before_the_replay_columns_gets_them_from_the_migrations(ledger_url):
    from sqlalchemy import inspect

    from bridge.adapters.store.db import make_engine
    from bridge.testkit.previous_release import previous_release_ledger

    columns = ("replayed_at", "replays", "replay_outcome", "replay_result_id", "replay_problems")
    older = previous_release_ledger(ledger_url)  # no migrations had run on it
    with older.begin() as conn:
        for column in columns:  # a release before the replays did not have them
            conn.exec_driver_sql(f"ALTER TABLE quarantine DROP COLUMN {column}")
        conn.execute(
            quarantine.insert().values(
                payload=b"not JSON", reason="unreadable", problems="[]", received_at=RELEASED_AT
            )
        )
    older.dispose()

    reopened = make_engine(ledger_url)
    found = {c["name"] for c in inspect(reopened).get_columns("quarantine")}
    assert set(columns) <= found
    report = replay(reopened, Settings(database_url=ledger_url), Selection())
    assert [(r.quarantine_id, r.outcome) for r in report.replayed] == [(1, "quarantined")]
    with reopened.connect() as conn:
        assert conn.execute(select(quarantine.c.replays)).scalar_one() == 1
    reopened.dispose()

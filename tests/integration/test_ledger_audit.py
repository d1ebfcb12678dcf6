"""The tamper-evident ledger (docs/ledger-audit.md): after real write-offs, manual movements and
status changes every hash chain holds and `elbridge audit verify` says so; a movement edited,
deleted or forged directly in the database, a licence event edited, a line total edited, a chain
cut short after its head was anchored: each is named, and verify exits 1."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import timedelta
from decimal import Decimal
from itertools import pairwise

import pytest
from sqlalchemy import delete, insert, select, update

from bridge.adapters.store.chain import chain_heads
from bridge.adapters.store.schema import licence_event, line_total, movement
from bridge.core.envelope import read_event
from bridge.core.ledger_chain import GENESIS, MOVEMENT, MOVEMENT_FIELDS, link_hash
from bridge.core.lifecycle import AuthorityAction
from bridge.entrypoints.cli import main
from bridge.services.authority import manual_write_off, reverse_movement
from bridge.services.config import Settings
from bridge.services.customs_events import envelope_for_declaration_file
from bridge.services.declarations import apply_declarations
from bridge.services.licence_status import apply_authority_action
from tests.fixtures_mqtt import (
    RELEASED_AT,
    TT_EX010A_MRN,
    store_licences,
    tt_ex004a_licences,
    tt_ex010a_licence,
)

SETTINGS = Settings()
OFFICER = "Jane Doe (ECJU)"
EX010A = "GBSIEE2E350001-0001"


def _event(wco_samples, name, **kwargs):
    kwargs.setdefault("event_time", RELEASED_AT)
    data = envelope_for_declaration_file(wco_samples / name, **kwargs)
    return read_event(data, max_bytes=SETTINGS.max_message_bytes)


def busy_ledger(engine, wco_samples) -> None:
    """Write-offs of two batches on three licences, a cancellation's reversal, a manual
    write-off and its reversal, a suspension and a reinstatement."""
    store_licences(engine, [*tt_ex004a_licences(), tt_ex010a_licence()])
    with engine.begin() as conn:
        events = [
            _event(wco_samples, "TT_EX004a.xml", event="released"),
            _event(wco_samples, "TT_EX010a.xml", event="released", mrn=TT_EX010A_MRN),
        ]
        apply_declarations(conn, events, now=RELEASED_AT, settings=SETTINGS)
    with engine.begin() as conn:
        cancel = _event(wco_samples, "TT_EX010a_Cancellation.xml", event="invalidated")
        apply_declarations(
            conn, [cancel], now=RELEASED_AT + timedelta(minutes=5), settings=SETTINGS
        )
    later = RELEASED_AT + timedelta(hours=1)
    written = manual_write_off(
        engine, EX010A, 1, Decimal("2.5"), "KGM", reason="shipment by post, seen on paper",
        actor=OFFICER, now=later,
    )  # fmt: skip
    reverse_movement(
        engine, written.movement_id, reason="entered twice", actor=OFFICER,
        now=later + timedelta(minutes=1),
    )  # fmt: skip
    for minutes, action in ((2, AuthorityAction.SUSPEND), (3, AuthorityAction.REINSTATE)):
        apply_authority_action(
            engine, EX010A, action, reason="end-use check", actor=OFFICER,
            now=later + timedelta(minutes=minutes),
        )  # fmt: skip


def verify(ledger_url, capsys, *extra: str) -> tuple[int, str]:
    code = main(["--database-url", ledger_url, "audit", "verify", *extra])
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def _movements(engine, number: str):
    with engine.connect() as conn:
        return conn.execute(
            select(movement).where(movement.c.licence_number == number).order_by(movement.c.id)
        ).all()


def test_real_traffic_leaves_every_chain_intact(engine, ledger_url, wco_samples, capsys):
    busy_ledger(engine, wco_samples)

    code, out = verify(ledger_url, capsys)

    assert code == 0, out
    assert "movement: 7 rows in 3 chains" in out  # 3 + 1 + reversal + manual + its reversal
    assert "licence_event: 2 rows in 1 chain\n" in out
    assert "every chain holds" in out
    rows = _movements(engine, EX010A)
    assert [r.chain_seq for r in rows] == [1, 2, 3, 4]
    assert rows[0].chain_prev == GENESIS
    assert all(later.chain_prev == before.chain_hash for before, later in pairwise(rows))
    assert [r.kind for r in rows] == ["write_off", "reversal", "manual_write_off", "reversal"]


def test_a_movement_edited_in_the_database_is_named(engine, ledger_url, wco_samples, capsys):
    busy_ledger(engine, wco_samples)
    edited = _movements(engine, EX010A)[0]
    with engine.begin() as conn:  # as someone with the database's password would
        conn.execute(update(movement).where(movement.c.id == edited.id).values(quantity=Decimal(1)))

    code, out = verify(ledger_url, capsys)

    assert code == 1
    assert (
        f"movement row {edited.id} (licence {EX010A}, sequence 1):"
        " hash does not match its content (edited)"
    ) in out
    assert "elbridge audit verify: 1 problem\n" in out


def test_a_deleted_movement_leaves_a_gap_that_is_named(engine, ledger_url, wco_samples, capsys):
    busy_ledger(engine, wco_samples)
    rows = _movements(engine, EX010A)
    with engine.begin() as conn:
        conn.execute(delete(movement).where(movement.c.id == rows[1].id))

    code, out = verify(ledger_url, capsys)

    assert code == 1
    assert (
        f"movement row {rows[2].id} (licence {EX010A}, sequence 3): sequence 2 missing (deleted)"
    ) in out


def test_a_forged_movement_is_named(engine, ledger_url, wco_samples, capsys):
    busy_ledger(engine, wco_samples)
    rows = _movements(engine, EX010A)
    # A write-off slipped in after the first one, hashed correctly by someone who read
    # docs/ledger-audit.md: it can only take the next free sequence number.
    fields = dict(rows[0]._mapping)
    fields.update(quantity=Decimal(100), message_id="forged")
    values = [fields[name] for name in MOVEMENT_FIELDS]
    seq = len(rows) + 1
    forged_hash = link_hash(MOVEMENT, seq, rows[0].chain_hash, values)
    with engine.begin() as conn:
        forged = {name: fields[name] for name in MOVEMENT_FIELDS}
        forged.update(chain_seq=seq, chain_prev=rows[0].chain_hash, chain_hash=forged_hash)
        forged_id = conn.execute(insert(movement).values(forged)).inserted_primary_key[0]
        # And one written around the bridge, with no link at all.
        bare_id = conn.execute(
            insert(movement).values({name: fields[name] for name in MOVEMENT_FIELDS})
        ).inserted_primary_key[0]

    code, out = verify(ledger_url, capsys)

    assert code == 1
    assert (
        f"movement row {forged_id} (licence {EX010A}, sequence {seq}): previous hash does not"
        f" match row {rows[-1].id} (inserted out of turn"
    ) in out
    assert (
        f"movement row {bare_id} (licence {EX010A}): not in its chain: no sequence number or"
        " hash (inserted around the bridge)"
    ) in out


def test_a_licence_event_and_a_line_total_edited_are_named(engine, ledger_url, wco_samples, capsys):
    busy_ledger(engine, wco_samples)
    with engine.begin() as conn:
        first = conn.execute(select(licence_event.c.id).order_by(licence_event.c.id)).first()[0]
        conn.execute(
            update(licence_event).where(licence_event.c.id == first).values(actor="someone else")
        )
        conn.execute(
            update(line_total)
            .where(line_total.c.licence_number == EX010A)
            .values(quantity=Decimal(99))
        )

    code, out = verify(ledger_url, capsys)

    assert code == 1
    assert f"licence_event row {first} (licence {EX010A}, sequence 1): hash does not match" in out
    assert f"line_total of licence {EX010A} line 1: quantity 99" in out
    assert "(line_total edited)" in out


def test_a_chain_cut_after_its_head_was_anchored_is_named(
    engine, ledger_url, wco_samples, capsys, tmp_path
):
    busy_ledger(engine, wco_samples)
    anchor = tmp_path / "heads.json"
    assert main(["--database-url", ledger_url, "audit", "head", "--output", str(anchor)]) == 0
    heads = json.loads(anchor.read_text())
    assert heads["chains"]["movement"][EX010A][0] == 4
    assert verify(ledger_url, capsys, "--anchor", str(anchor))[0] == 0
    last = _movements(engine, EX010A)[-1]
    with engine.begin() as conn:  # the newest movement taken away: the chain alone still holds
        conn.execute(delete(movement).where(movement.c.id == last.id))
    assert verify(ledger_url, capsys)[0] == 0

    code, out = verify(ledger_url, capsys, "--anchor", str(anchor))

    assert code == 1
    assert f"movement (licence {EX010A}): link 4, anchored, is gone" in out


def test_an_altered_anchor_file_is_refused(engine, ledger_url, wco_samples, capsys, tmp_path):
    busy_ledger(engine, wco_samples)
    anchor = tmp_path / "heads.json"
    main(["--database-url", ledger_url, "audit", "head", "--output", str(anchor)])
    heads = json.loads(anchor.read_text())
    heads["chains"]["movement"][EX010A][0] = 3
    anchor.write_text(json.dumps(heads))

    code, out = verify(ledger_url, capsys, "--anchor", str(anchor))

    assert code == 1  # verification failed, as for a broken chain (docs/cli.md)
    assert "its heads do not give its digest" in out


def test_a_batch_reads_each_licence_s_chain_head_once(engine, wco_samples):
    busy_ledger(engine, wco_samples)
    with engine.connect() as conn:
        heads = chain_heads(conn, MOVEMENT, [EX010A, "GBSIEXYK3ZZZPADR-0002", "NOT-A-LICENCE"])
    assert heads[EX010A][0] == 4
    assert heads["GBSIEXYK3ZZZPADR-0002"][0] == 1
    assert "NOT-A-LICENCE" not in heads


@pytest.mark.parametrize("table", ["movement", "licence_event"])
def test_two_rows_cannot_take_the_same_place_in_a_chain(engine, wco_samples, table):
    """The unique index on (licence_number, chain_seq): a writer that skipped the licence's
    lock conflicts (and runs again) instead of forking the chain."""
    from sqlalchemy.exc import IntegrityError

    busy_ledger(engine, wco_samples)
    chained = movement if table == "movement" else licence_event
    with engine.connect() as conn:
        row = dict(conn.execute(select(chained).order_by(chained.c.id)).first()._mapping)
    row.pop("id")
    with pytest.raises(IntegrityError), engine.begin() as conn:
        conn.execute(insert(chained).values(row))


@pytest.mark.sqlite_only
def test_the_elbridge_command_exits_1_naming_the_edited_row(engine, ledger_url, wco_samples):
    busy_ledger(engine, wco_samples)
    edited = _movements(engine, EX010A)[2]
    with engine.begin() as conn:
        conn.execute(update(movement).where(movement.c.id == edited.id).values(reason="typo"))
    command = [sys.executable, "-m", "bridge.entrypoints.cli", "--database-url", ledger_url]

    done = subprocess.run(
        [*command, "audit", "verify"], capture_output=True, text=True, timeout=60, check=False
    )

    assert done.returncode == 1, done.stderr
    assert f"movement row {edited.id} (licence {EX010A}, sequence 3): hash does not match" in (
        done.stdout
    )
    assert "elbridge audit verify: 1 problem\n" in done.stderr

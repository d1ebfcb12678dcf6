"""The ledger's schema moved by Alembic migrations (bridge.adapters.store.migrate): a new ledger
and one from the last release before migrations end with the same schema as the tables the code
declares; `elbridge db upgrade` upgrades a previous release's ledger keeping its rows, which then
verify; on PostgreSQL an owner role migrates and the bridge's runtime role writes off but may
not UPDATE or DELETE the chained and audit tables."""

from __future__ import annotations

import itertools
import subprocess
import sys
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import insert, select, update
from sqlalchemy.exc import ProgrammingError

from bridge.adapters.store.db import make_engine
from bridge.adapters.store.line_totals import line_drift
from bridge.adapters.store.migrate import (
    HEAD,
    LedgerSchemaError,
    current_revision,
    head_revision,
)
from bridge.adapters.store.migrations import baseline
from bridge.adapters.store.schema import metadata, movement, query_audit
from bridge.entrypoints.cli import main
from bridge.testkit.previous_release import previous_release_ledger
from tests.integration.test_ledger_audit import EX010A, busy_ledger, verify

OLD_AT = datetime(2025, 6, 1, 8, 0, tzinfo=UTC)
_roles = itertools.count(1)


def test_a_new_ledger_has_exactly_the_declared_schema(engine):
    with engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), metadata) == []
        assert current_revision(conn) == head_revision()


def test_the_head_known_without_alembic_is_the_head_of_the_migrations():
    assert head_revision() == HEAD


def test_a_process_opening_a_ledger_at_head_does_not_load_alembic(ledger_url):
    make_engine(ledger_url).dispose()  # created and migrated here
    probe = (
        "import sys\n"
        "from bridge.adapters.store.db import make_engine\n"
        f"make_engine({str(ledger_url)!r}).dispose()\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'alembic'))\n"
    )
    opened = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=True
    )
    assert opened.stdout.strip() == "[]"


def test_a_previous_release_s_ledger_upgrades_keeps_its_rows_and_verifies(ledger_url, capsys):
    old = previous_release_ledger(ledger_url)
    with old.begin() as conn:
        licence = baseline.metadata.tables["licence"]
        conn.execute(
            insert(licence).values(
                number="DE-OLD-1", current_version=1, type="individual", status="valid",
                issuing_member_state="DE", issuing_authority="BAFA", holder_name="Old GmbH",
                holder_eori="DE123456789012345", valid_from=OLD_AT.date(), updated_at=OLD_AT,
            )
        )  # fmt: skip
        rows = [
            ("DE-OLD-1", 1, "write_off", 4_000_000, "mrn-a"),
            ("DE-OLD-1", 2, "write_off", 1_500_000, "mrn-b"),
            ("DE-OLD-1", 1, "reversal", -4_000_000, "mrn-a"),
            ("IT-OLD-2", 1, "manual_write_off", 7_000_000, None),
        ]
        conn.execute(
            insert(baseline.metadata.tables["movement"]),
            [
                dict(licence_number=n, line_number=line, kind=kind, quantity=q, value=0, mrn=mrn,
                     actor="bridge", at=OLD_AT, contingency=None)
                for n, line, kind, q, mrn in rows
            ],
        )  # fmt: skip
        conn.execute(
            insert(baseline.metadata.tables["licence_event"]).values(
                licence_number="DE-OLD-1", version=1, from_status="valid", to_status="suspended",
                reason="check", actor="officer", at=OLD_AT,
            )
        )  # fmt: skip
    old.dispose()

    assert main(["--database-url", ledger_url, "db", "current"]) == 1
    assert "none (this release needs" in capsys.readouterr().out
    assert main(["--database-url", ledger_url, "db", "upgrade"]) == 0
    assert f"none -> {head_revision()}" in capsys.readouterr().out
    assert main(["--database-url", ledger_url, "db", "upgrade"]) == 0
    assert f"already at {head_revision()}" in capsys.readouterr().out

    engine = make_engine(ledger_url)
    with engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), metadata) == []
        kept = conn.execute(
            select(movement.c.licence_number, movement.c.kind, movement.c.quantity,
                   movement.c.chain_seq).order_by(movement.c.id)
        ).all()  # fmt: skip
        assert line_drift(conn) == []
    assert [tuple(r) for r in kept] == [
        ("DE-OLD-1", "write_off", Decimal(4), 1),
        ("DE-OLD-1", "write_off", Decimal("1.5"), 2),
        ("DE-OLD-1", "reversal", Decimal(-4), 3),
        ("IT-OLD-2", "manual_write_off", Decimal(7), 1),  # a licence the ledger does not hold
    ]
    code, out = verify(ledger_url, capsys)
    assert code == 0, out
    assert "movement: 4 rows in 2 chains" in out and "licence_event: 1 row in 1 chain\n" in out
    engine.dispose()


def test_db_history_lists_the_revisions_oldest_first(capsys):
    assert main(["db", "history"]) == 0
    lines = capsys.readouterr().out.splitlines()
    revisions = [line.split()[0] for line in lines]
    assert revisions[:5] == ["0001", "0002", "0003", "0004", "0005"]  # 0005: the retry budget
    assert revisions == sorted(revisions) and "0006" in revisions  # 0006: the alerts' state
    assert lines[-1].startswith(head_revision())


# PostgreSQL: an owner that migrates, a runtime role that appends ----------------------------


@pytest.fixture
def roles(postgres_cluster):
    """A database owned by a fresh owner role, and a fresh runtime role: (owner URL, runtime
    URL, runtime role name)."""
    n = next(_roles)
    owner, runtime = f"ledger_owner_{n}", f"ledger_runtime_{n}"
    postgres_cluster.create_role(owner)
    postgres_cluster.create_role(runtime)
    database = f"least_privilege_{n}"
    postgres_cluster.create_database(database, owner=owner)
    return (
        postgres_cluster.url_as(owner, database),
        postgres_cluster.url_as(runtime, database),
        runtime,
    )


def test_the_runtime_role_cannot_migrate_and_says_what_to_run(roles, monkeypatch):
    owner_url, runtime_url, _runtime = roles
    with pytest.raises(LedgerSchemaError) as refused:
        make_engine(runtime_url)
    message = str(refused.value)
    assert f"this release needs {head_revision()}" in message
    assert "run `elbridge db upgrade` with the owner's URL" in message

    monkeypatch.setenv("ELBRIDGE_DATABASE_OWNER_URL", owner_url)
    assert main(["db", "upgrade"]) == 0  # migrated by the owner, nothing granted yet
    with pytest.raises(LedgerSchemaError) as refused:
        make_engine(runtime_url)
    assert "may not read the ledger's schema revision" in str(refused.value)
    assert "`elbridge db grant --runtime-role NAME`" in str(refused.value)


def test_the_runtime_role_writes_off_but_cannot_rewrite_the_ledger(roles, wco_samples, capsys):
    owner_url, runtime_url, runtime = roles
    assert main(["db", "upgrade", "--url", owner_url, "--runtime-role", runtime]) == 0
    assert f"granted {runtime}" in capsys.readouterr().out

    bridge = make_engine(runtime_url)  # at head: nothing to migrate, no DDL
    busy_ledger(bridge, wco_samples)  # customs batches, manual acts, status changes
    with bridge.connect() as conn:
        assert conn.exec_driver_sql("SELECT current_user").scalar_one() == runtime
        assert conn.execute(select(movement.c.id)).all()
        assert line_drift(conn) == []  # the totals kept by the owner's triggers
    with bridge.begin() as conn:
        conn.execute(
            insert(query_audit).values(
                at=datetime.now(UTC), authentication="none", operation="CheckAvailability",
                outcome="refused",
            )
        )  # fmt: skip
    forbidden = [
        "UPDATE movement SET quantity = 0",
        "DELETE FROM movement",
        "UPDATE licence_event SET actor = 'x'",
        "DELETE FROM licence_event",
        "UPDATE query_audit SET outcome = 'answered'",
        "DELETE FROM query_audit",
        "UPDATE line_total SET quantity = 0",
        "DELETE FROM alembic_version",
        "TRUNCATE movement",
        "ALTER TABLE movement DISABLE TRIGGER ALL",
    ]
    for statement in forbidden:
        with pytest.raises(ProgrammingError) as denied, bridge.begin() as conn:
            conn.exec_driver_sql(statement)
        assert denied.value.orig.pgcode == "42501" or "must be owner" in str(denied.value), (
            statement
        )
    with bridge.begin() as conn:  # what the runtime does update, it still may
        conn.exec_driver_sql("UPDATE licence SET updated_at = now() WHERE number = %s", (EX010A,))
    bridge.dispose()

    code, out = verify(owner_url, capsys)
    assert code == 0, out
    owner = make_engine(owner_url)  # the owner may: the audit then names it
    with owner.begin() as conn:
        conn.execute(update(movement).where(movement.c.licence_number == EX010A).values(value=1))
    owner.dispose()
    code, out = verify(owner_url, capsys)
    assert code == 1 and "hash does not match its content (edited)" in out


@pytest.mark.sqlite_only
def test_grants_are_for_postgresql_only(ledger_url, capsys):
    make_engine(ledger_url).dispose()
    assert main(["db", "grant", "--url", ledger_url, "--runtime-role", "bridge"]) == 1
    assert "a sqlite ledger has none" in capsys.readouterr().err

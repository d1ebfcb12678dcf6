"""A ledger made by the last release before migrations (no alembic_version table) is recognised
and brought to this release's schema by the migrations when it is opened: the columns later
releases added appear, bounded text columns made unbounded are widened, its rows are kept."""

from __future__ import annotations

from sqlalchemy import inspect, text

from bridge.adapters.store.db import make_engine
from bridge.adapters.store.migrate import current_revision, head_revision, upgrade
from bridge.testkit.previous_release import previous_release_ledger


def _columns(engine, table: str) -> dict[str, object]:
    return {c["name"]: c["type"] for c in inspect(engine).get_columns(table)}


def test_an_older_ledger_gets_the_new_columns_and_keeps_its_rows(ledger_url):
    engine = previous_release_ledger(ledger_url)
    with engine.begin() as conn:
        # What an older release created: no record_bytes, references bounded at 70.
        conn.exec_driver_sql("ALTER TABLE reject DROP COLUMN record_bytes")
        # Nor the declaration acted on (issue 11): a declaration released before it has none.
        conn.exec_driver_sql("ALTER TABLE declaration DROP COLUMN acted_on")
        conn.exec_driver_sql(
            "INSERT INTO declaration (mrn, version, event, invalidated, updated_at) "
            "VALUES ('26GBOLDRELEASE0001', 1, 'released', 0, CURRENT_TIMESTAMP)"
        )
        if conn.dialect.name == "postgresql":
            conn.exec_driver_sql("ALTER TABLE refusal ALTER COLUMN document_ref TYPE VARCHAR(70)")
        conn.exec_driver_sql(
            "INSERT INTO reject (source, format, record, problems, at) "
            "VALUES ('old.csv:2', 'de_bafa_legacy', 'x;y', '[]', CURRENT_TIMESTAMP)"
        )
    engine.dispose()
    old = make_engine(ledger_url, create=False)
    assert "record_bytes" not in _columns(old, "reject")
    assert current_revision(old) is None
    old.dispose()

    reopened = make_engine(ledger_url)
    assert current_revision(reopened) == head_revision()
    assert "record_bytes" in _columns(reopened, "reject")
    assert "acted_on" in _columns(reopened, "declaration")
    assert {"chain_seq", "chain_prev", "chain_hash"} <= set(_columns(reopened, "movement"))
    with reopened.begin() as conn:
        assert conn.exec_driver_sql("SELECT record FROM reject").scalar_one() == "x;y"
        assert conn.exec_driver_sql("SELECT mrn, acted_on FROM declaration").one() == (
            "26GBOLDRELEASE0001",
            None,
        )
        long_reference = "R" * 200
        conn.execute(
            text(
                "INSERT INTO refusal (code, reason, document_ref, at) "
                "VALUES ('bad-reference', 'long', :ref, CURRENT_TIMESTAMP)"
            ),
            {"ref": long_reference},
        )
        assert conn.exec_driver_sql("SELECT document_ref FROM refusal").scalar_one() == (
            long_reference
        )
    # Run again, it has nothing left to do.
    assert upgrade(reopened) == (head_revision(), head_revision())
    reopened.dispose()

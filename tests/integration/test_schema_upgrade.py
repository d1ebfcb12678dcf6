"""A ledger made by an earlier release is brought up to this schema in place when it is opened:
the columns this release added appear, and bounded text columns made unbounded are widened."""

from __future__ import annotations

from sqlalchemy import inspect, text

from bridge.adapters.store.db import make_engine, upgrade_schema


def _columns(engine, table: str) -> dict[str, object]:
    return {c["name"]: c["type"] for c in inspect(engine).get_columns(table)}


def test_an_older_ledger_gets_the_new_columns_and_keeps_its_rows(ledger_url):
    engine = make_engine(ledger_url)
    with engine.begin() as conn:
        # What the previous release created: no record_bytes, references bounded at 70.
        conn.exec_driver_sql("ALTER TABLE reject DROP COLUMN record_bytes")
        if conn.dialect.name == "postgresql":
            conn.exec_driver_sql("ALTER TABLE refusal ALTER COLUMN document_ref TYPE VARCHAR(70)")
        conn.exec_driver_sql(
            "INSERT INTO reject (source, format, record, problems, at) "
            "VALUES ('old.csv:2', 'de_bafa_legacy', 'x;y', '[]', CURRENT_TIMESTAMP)"
        )
    engine.dispose()
    assert "record_bytes" not in _columns(make_engine(ledger_url, create=False), "reject")

    reopened = make_engine(ledger_url)
    assert "record_bytes" in _columns(reopened, "reject")
    with reopened.begin() as conn:
        assert conn.exec_driver_sql("SELECT record FROM reject").scalar_one() == "x;y"
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
    assert upgrade_schema(reopened) == []
    reopened.dispose()

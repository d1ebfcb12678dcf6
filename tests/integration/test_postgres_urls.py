"""A PostgreSQL ledger given as Airflow and libpq give it: `postgresql://` (no driver named,
which SQLAlchemy 2.1 would read as psycopg 3) and `postgres://` both open the ledger with the
driver the bridge installs."""

from __future__ import annotations

from sqlalchemy import func, select, text

from bridge.adapters.store.db import POSTGRES_DRIVER, engine_url, make_engine
from bridge.adapters.store.schema import licence


def test_urls_without_a_driver_get_the_installed_one():
    assert (
        engine_url("postgresql://u:p@db:5432/ledger").drivername == f"postgresql+{POSTGRES_DRIVER}"
    )
    assert engine_url("postgres://u:p@db/ledger").drivername == f"postgresql+{POSTGRES_DRIVER}"
    assert engine_url("postgresql+psycopg2://u@db/l").drivername == "postgresql+psycopg2"
    assert engine_url("sqlite:////srv/ledger.db").drivername == "sqlite"
    # the password survives the rewrite
    assert engine_url("postgres://u:s%40cret@db/l").password == "s@cret"


def test_plain_postgresql_and_postgres_urls_open_a_real_ledger(postgres_cluster):
    plain = postgres_cluster.create_database("ledger_plain_url")
    assert plain.startswith("postgresql://")
    for url in (plain, "postgres://" + plain.split("://", 1)[1]):
        engine = make_engine(url)
        try:
            with engine.connect() as conn:
                assert conn.execute(text("select current_database()")).scalar() == (
                    "ledger_plain_url"
                )
                assert conn.execute(select(func.count()).select_from(licence)).scalar() == 0
        finally:
            engine.dispose()

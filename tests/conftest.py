"""Shared test fixtures. Real parts only: each area's servers live in its own plugin module
(tests/fixtures_*.py), started on 127.0.0.1 free ports and stopped by the test that started them."""

from __future__ import annotations

import itertools
import os
from pathlib import Path

import pytest

from bridge.adapters.pgcluster import postgres_available, start_cluster
from bridge.adapters.store.db import make_engine

pytest_plugins = [
    "tests.fixtures_mqtt",
    "tests.fixtures_soap",
    "tests.fixtures_airflow",
    "tests.fixtures_tls",
]

PROJECT = Path(__file__).resolve().parent.parent
SHARED_FIXTURES = PROJECT.parent / "shared" / "fixtures"
WCO_SAMPLES = SHARED_FIXTURES / "wco-dec-dms" / "samples"


@pytest.fixture(scope="session")
def postgres_cluster():
    """One throwaway PostgreSQL cluster for the session; each test gets its own database."""
    if not postgres_available():
        pytest.fail(
            "PostgreSQL is not installed: run scripts/setup.sh with ELBRIDGE_WITH_POSTGRES=1"
            " (or set ELBRIDGE_TEST_DATABASES=sqlite to test on SQLite only)"
        )
    with start_cluster() as cluster:
        yield cluster


_databases = itertools.count(1)
DEFAULT_DATABASES = "sqlite,postgresql"


def pytest_generate_tests(metafunc):
    # Ledger tests run on both databases the bridge supports; ELBRIDGE_TEST_DATABASES narrows it
    # (e.g. =sqlite where PostgreSQL is not installed).
    if "ledger_url" in metafunc.fixturenames:
        wanted = os.environ.get("ELBRIDGE_TEST_DATABASES", DEFAULT_DATABASES).split(",")
        wanted = [w.strip() for w in wanted if w.strip()]
        if metafunc.definition.get_closest_marker("sqlite_only"):
            wanted = [w for w in wanted if w == "sqlite"]
        metafunc.parametrize("ledger_url", wanted, indirect=True)


@pytest.fixture
def ledger_url(request, tmp_path: Path) -> str:
    if request.param == "postgresql":
        cluster = request.getfixturevalue("postgres_cluster")
        return cluster.create_database(f"ledger_{next(_databases)}")
    return f"sqlite:///{tmp_path / 'ledger.db'}"


@pytest.fixture
def engine(ledger_url: str):
    engine = make_engine(ledger_url)
    yield engine
    engine.dispose()


@pytest.fixture
def wco_samples() -> Path:
    if not WCO_SAMPLES.is_dir():
        pytest.fail(f"the shared WCO DEC-DMS samples are missing at {WCO_SAMPLES}")
    return WCO_SAMPLES

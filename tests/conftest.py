"""Shared test fixtures. Real parts only: each area's servers live in its own plugin module
(tests/fixtures_*.py), started on 127.0.0.1 free ports and stopped by the test that started them."""

from __future__ import annotations

from pathlib import Path

import pytest

from bridge.store.db import make_engine

pytest_plugins = [
    "tests.fixtures_mqtt",
    "tests.fixtures_soap",
    "tests.fixtures_airflow",
]

PROJECT = Path(__file__).resolve().parent.parent
SHARED_FIXTURES = PROJECT.parent / "shared" / "fixtures"
WCO_SAMPLES = SHARED_FIXTURES / "wco-dec-dms" / "samples"


@pytest.fixture
def ledger_url(tmp_path: Path) -> str:
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

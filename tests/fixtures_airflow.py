"""Airflow for tests: a private AIRFLOW_HOME with a migrated SQLite metadata DB, set before this
process imports airflow (its configuration is read once, at import), DagBags of the project's
DAG folder, and one-call DAG runs through `dag.test()` (tasks run in this process, so
monkeypatched ELBRIDGE_* and AIRFLOW_CONN_* variables reach them).

Never import airflow at the top of a test module: take the `airflow_env` fixture first."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

PROJECT = Path(__file__).resolve().parent.parent
DAGS_FOLDER = PROJECT / "dags"
PROJECT_DAG_IDS = frozenset(
    {"licences_to_customs", "declarations_to_writeoffs", "daily_reconciliation"}
)


def airflow_settings(home: Path, dags_folder: Path = DAGS_FOLDER) -> dict[str, str]:
    """The environment that gives an Airflow process its own home, DB and DAG folder."""
    return {
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(dags_folder),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
    }


@pytest.fixture(scope="session")
def airflow_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """AIRFLOW_HOME for the session, with the metadata DB migrated; yields the home."""
    home = tmp_path_factory.mktemp("airflow-home")
    if "airflow" in sys.modules and os.environ.get("AIRFLOW_HOME") != str(home):
        pytest.fail(
            "airflow was imported before the airflow_env fixture set AIRFLOW_HOME; import it "
            "inside tests that use airflow_env, never at the top of a test module"
        )
    patch = pytest.MonkeyPatch()
    for name, value in airflow_settings(home).items():
        patch.setenv(name, value)
    from airflow.utils import db

    db.initdb()  # what `airflow db migrate` does: dag.test() needs the metadata tables
    yield home
    patch.undo()


def build_dagbag(dag_folder: Path = DAGS_FOLDER) -> Any:
    """A fresh DagBag of `dag_folder` (take `airflow_env` first). Use `bag.dags[dag_id]`:
    `get_dag()` would consult the metadata DB."""
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=dag_folder)


@pytest.fixture(scope="session")
def dagbag(airflow_env: Path) -> Any:
    """The project's DAGs, parsed once per session; do not change them (see `run_dag`)."""
    return build_dagbag()


@dataclass
class DagTestRun:
    """One finished `dag.test()` run: its state, and per task its state and return value."""

    state: str
    logical_date: Any
    task_states: dict[str, str | None] = field(default_factory=dict)
    results: dict[str, Any] = field(default_factory=dict)


def run_dag(dag_id: str, *, retries: int = 0, **test_kwargs: Any) -> DagTestRun:
    """Run `dag_id` once with `dag.test()` from a fresh parse (take `airflow_env` first).

    Retries default to 0: a failing task would otherwise wait out its real retry delays."""
    dag = build_dagbag().dags[dag_id]
    for task in dag.tasks:
        task.retries = retries
    dag_run = dag.test(**test_kwargs)
    task_instances = dag_run.get_task_instances()
    return DagTestRun(
        state=str(dag_run.state),
        logical_date=dag_run.logical_date,
        task_states={ti.task_id: ti.state and str(ti.state) for ti in task_instances},
        results={ti.task_id: ti.xcom_pull(task_ids=ti.task_id) for ti in task_instances},
    )

#!/usr/bin/env bash
# Installs everything, then runs the whole test suite (lint included) against real mosquitto,
# a real SOAP server over HTTP, real databases and real Airflow. Extra args go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
ELBRIDGE_WITH_POSTGRES=1 bash scripts/setup.sh
export PATH="$PWD/.venv/bin:$PATH"
echo "== ruff"
ruff check .
ruff format --check .
echo "== lint-imports (the layers, pyproject.toml [tool.importlinter])"
lint-imports --no-logo
# One pytest worker per core (at most 4: the Airflow tests take about 1 GiB each); every test
# starts its own servers on free ports in its own directories, so workers share nothing.
# `bash scripts/test.sh -n 0` runs them in this one process.
echo "== pytest (the 25 slowest tests listed at the end: the suite should stay under 20 minutes)"
python -m pytest -p no:cacheprovider -n auto --maxprocesses=4 --durations=25 "$@"

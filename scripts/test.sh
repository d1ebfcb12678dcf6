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
echo "== pytest (the 25 slowest tests listed at the end: the suite should stay near 20 minutes)"
python -m pytest -p no:cacheprovider --durations=25 "$@"

#!/usr/bin/env bash
# Installs everything, then runs the main job on embedded defaults: `elbridge demo`
# (SQLite ledger, local mosquitto, the customs simulator, Airflow standalone).
# Extra args go to `elbridge demo`, e.g. --exit-when-done.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export PATH="$PWD/.venv/bin:$PATH"
exec elbridge demo "$@"

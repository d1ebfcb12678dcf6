#!/usr/bin/env bash
# Installs everything the bridge needs on a fresh Debian machine (run as root, or with sudo
# available): mosquitto through apt when missing, then a venv in .venv from the pinned lock.
# Idempotent: a second run only checks.
set -euo pipefail
cd "$(dirname "$0")/.."

apt_install() {
  if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; else SUDO=; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "$@" >/dev/null
}

if ! command -v mosquitto >/dev/null 2>&1 && [ ! -x /usr/sbin/mosquitto ]; then
  echo "setup: installing mosquitto (apt)"
  apt_install mosquitto
fi
# PostgreSQL is optional for the bridge (SQLite is the default) and used by the test suite.
if [ "${ELBRIDGE_WITH_POSTGRES:-0}" = 1 ] && ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  echo "setup: installing postgresql (apt)"
  apt_install postgresql
fi

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv"
  "$PY" -m venv .venv
fi
stamp=.venv/.lock-sha
want=$(sha256sum requirements.lock pyproject.toml | sha256sum | cut -c1-64)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "setup: installing pinned dependencies (requirements.lock)"
  .venv/bin/pip install -q --disable-pip-version-check -r requirements.lock 2>&1 | grep -v "^WARNING: Location" || true
  .venv/bin/python -c "import airflow, zeep, paho.mqtt, lxml, sqlalchemy" # the install must have worked
  .venv/bin/pip install -q --disable-pip-version-check --no-deps -e . 2>&1 | grep -v "^WARNING: Location" || true
  echo "$want" > "$stamp"
fi
echo "setup: ready (.venv/bin/elbridge)"

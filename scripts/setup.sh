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
# The production stack's services and the test suite's tools (ELBRIDGE_WITH_POSTGRES=1, what
# scripts/test.sh and scripts/deploy-local.sh ask for): PostgreSQL (SQLite is the default
# ledger), Redis (Airflow's Celery broker), xmllint (a second, independent schema validator),
# Chromium (the console's browser tests drive Debian's build through Playwright: Playwright's own
# browser download is not used).
if [ "${ELBRIDGE_WITH_POSTGRES:-0}" = 1 ]; then
  missing=()
  ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing+=(postgresql)
  command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
  command -v xmllint >/dev/null 2>&1 || missing+=(libxml2-utils)
  [ -x /usr/bin/chromium ] || missing+=(chromium)
  if [ ${#missing[@]} -gt 0 ]; then
    echo "setup: installing ${missing[*]} (apt)"
    apt_install "${missing[@]}"
  fi
  # An independent SOAP stack for the contract tests: node-soap in tests/node, pinned by its
  # package-lock.json (tests/integration/test_node_soap_peer.py; skipped where no Node.js is).
  if command -v npm >/dev/null 2>&1; then
    node_want=$(sha256sum tests/node/package-lock.json | cut -c1-64)
    if [ "$(cat tests/node/node_modules/.lock-sha 2>/dev/null)" != "$node_want" ]; then
      echo "setup: installing tests/node (npm ci: node-soap)"
      npm ci --prefix tests/node --no-audit --no-fund --silent
      echo "$node_want" > tests/node/node_modules/.lock-sha
    fi
  fi
fi

# Profiling (ELBRIDGE_WITH_PROFILING=1): valgrind, which counted the instructions per licence and
# per message quoted in docs/performance.md (py-spy comes with the pinned Python packages).
if [ "${ELBRIDGE_WITH_PROFILING:-0}" = 1 ] && ! command -v valgrind >/dev/null 2>&1; then
  echo "setup: installing valgrind (apt)"
  apt_install valgrind
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

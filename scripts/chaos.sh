#!/usr/bin/env bash
# The fault-injection suite (chaos/): kills, broker restarts, SOAP faults and a ledger outage
# while a generated declaration stream runs, then checks against an independent oracle.
#   bash scripts/chaos.sh --size tiny|small|full [--database sqlite|postgresql] [--seed N]
#                         [--json out.json] [--workdir DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
exec .venv/bin/python -m chaos "$@"

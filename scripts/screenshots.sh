#!/usr/bin/env bash
# Screenshots of the authority console's main pages into docs/screenshots/ (referenced from
# README.md and docs/console.md): the browser tests' console (the demo's sample data, Debian's
# Chromium through Playwright), photographed by tests/browser/test_console_screenshots.py.
# Run after a change to the console's pages; commit the PNGs it writes.
set -euo pipefail
cd "$(dirname "$0")/.."
folder="${1:-docs/screenshots}"
mkdir -p "$folder"
ELBRIDGE_SCREENSHOTS="$(cd "$folder" && pwd)" \
    .venv/bin/python -m pytest -q -p no:cacheprovider tests/browser/test_console_screenshots.py
ls -l "$folder"/console-*.png

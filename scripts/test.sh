#!/usr/bin/env bash
# The test command: install everything the suite needs on a fresh Debian machine, then run
# the linters and the whole suite against real Redis and PostgreSQL servers.
# Extra arguments go to pytest (e.g. scripts/test.sh -k risk).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh test
PY="${PYTHON:-python3}"
"$PY" -m ruff check .
"$PY" -m ruff format --check .
exec "$PY" -m pytest "$@"

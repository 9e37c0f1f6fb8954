#!/usr/bin/env bash
# The test command: install everything the suite needs into ./.venv on a fresh Debian
# machine (Redis, PostgreSQL 15, chromium + chromedriver, prometheus), then run the linters
# and the whole suite against real servers it starts itself.
# Extra arguments go to pytest (e.g. scripts/test.sh -k risk).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh test
VENV="${CDB_VENV:-.venv}"
# as `source .venv/bin/activate` would: `cdb`, `ruff`, `pytest` of the virtualenv first
export VIRTUAL_ENV="$PWD/$VENV" PATH="$PWD/$VENV/bin:$PATH"
printf '\n==> ruff\n'
python -m ruff check .
python -m ruff format --check .
printf '\n==> pytest %s\n' "$*"
exec python -m pytest "$@"

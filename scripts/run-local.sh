#!/usr/bin/env bash
# Install into ./.venv, then run the whole pipeline locally: paper trading, synthetic feed,
# private Redis and PostgreSQL under ./.cdb. Ctrl-C stops everything. Extra arguments go
# to `cdb up` (e.g. --feed live for the exchange's real prices, still paper trading).
# From a second shell: source .venv/bin/activate && cdb status
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
VENV="${CDB_VENV:-.venv}"
# As root, PostgreSQL runs as the 'postgres' user, which must be able to enter the data
# directory; a checkout under /root is private, so keep the data where it can.
if [ "$(id -u)" -eq 0 ] && [ -z "${CDB_DATA_DIR:-}" ] && ! runuser -u postgres -- test -x "$PWD"; then
  export CDB_DATA_DIR=/var/lib/claire-de-binare
  echo "note: the postgres user cannot enter $PWD; data and logs go to $CDB_DATA_DIR"
fi
printf '\n==> starting the bot: cdb up %s\n' "$*"
exec "$VENV/bin/python" -m cdb up "$@"

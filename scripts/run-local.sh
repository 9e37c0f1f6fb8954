#!/usr/bin/env bash
# Install, then run the whole pipeline locally: paper trading, synthetic feed, private
# Redis and PostgreSQL under ./.cdb. Ctrl-C stops everything. Extra arguments go to `cdb up`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
exec "${PYTHON:-python3}" -m cdb up "$@"

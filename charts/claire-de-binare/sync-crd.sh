#!/usr/bin/env bash
# Copy the repository's CRD (crds/tradingbot.yaml, generated from the operator's model by
# the operator's own tooling) into the chart, which templates it from files/crds/.
# tests/test_chart_crd.py fails while the two copies differ.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
src="$here/../../crds/tradingbot.yaml"
dst="$here/files/crds/tradingbot.yaml"
if [ ! -s "$src" ]; then
  echo "sync-crd.sh: $src is missing; generate it first (see docs/operator.md)" >&2
  exit 1
fi
mkdir -p "$(dirname "$dst")"
cp "$src" "$dst"
echo "copied crds/tradingbot.yaml -> charts/claire-de-binare/files/crds/tradingbot.yaml"

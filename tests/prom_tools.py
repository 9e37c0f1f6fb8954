"""Prometheus' own tools for the tests: promtool, the prometheus server, prometheus-operator's CRDs.

promtool and prometheus come from Debian's ``prometheus`` package (scripts/install.sh installs
it); a missing binary is an error, never a skip. prometheus-operator's CRDs (the schema a
PrometheusRule or ServiceMonitor is validated against) are read where the machine keeps them
(``CDB_PROMETHEUS_OPERATOR_CRDS``, default ``/work/shared/data/prometheus-operator``), never
copied into the repository.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

CRD_DIR = Path(
    os.environ.get("CDB_PROMETHEUS_OPERATOR_CRDS", "/work/shared/data/prometheus-operator")
)
_CRD_FILES = {
    "PrometheusRule": "monitoring.coreos.com_prometheusrules.yaml",
    "ServiceMonitor": "monitoring.coreos.com_servicemonitors.yaml",
}


def binary(name: str) -> str:
    """Path of ``promtool`` or ``prometheus`` (Debian's package)."""
    found = shutil.which(name) or (
        f"/usr/bin/{name}" if Path(f"/usr/bin/{name}").exists() else None
    )
    if not found:
        raise RuntimeError(f"{name} missing: apt-get install prometheus (scripts/install.sh test)")
    return found


def operator_crd(kind: str) -> dict[str, Any]:
    """prometheus-operator's CRD of ``kind``; skips when the machine does not hold it."""
    path = CRD_DIR / _CRD_FILES[kind]
    if not path.exists():
        pytest.skip(
            f"prometheus-operator CRDs not found in {CRD_DIR} (CDB_PROMETHEUS_OPERATOR_CRDS)"
        )
    return yaml.safe_load(path.read_text())

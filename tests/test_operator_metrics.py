"""The operator's own metrics endpoint (``cdb-operator --metrics-port``, on by default in the
chart): it serves what values.yaml and docs/operator.md say it does."""

from __future__ import annotations

import subprocess
import sys
import urllib.request

from cdb.localservers import free_port, wait_for_port


def test_the_metrics_port_serves_the_operators_metrics():
    port = free_port()
    code = (
        "import time\n"
        "from cdb_operator import metrics\n"
        "metrics.observe_breaker('trading', 'paper', {'engaged': True})\n"
        f"metrics.serve({port})\n"
        "time.sleep(60)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code])
    try:
        wait_for_port(port, timeout=20)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
            text = resp.read().decode()
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    assert 'cdb_operator_reconciles_total{outcome="ok"} 0.0' in text
    assert "cdb_operator_reconcile_seconds_bucket" in text
    assert 'cdb_operator_breaker_engaged{name="paper",namespace="trading"} 1.0' in text
    assert "process_resident_memory_bytes" in text and "python_info" in text


def test_a_deleted_bot_leaves_no_breaker_series():
    """Otherwise CdbBotNotScraped would fire for it until the operator restarts."""
    from prometheus_client import REGISTRY, generate_latest

    from cdb_operator import metrics

    metrics.observe_breaker("gone-ns", "gone", {"engaged": False, "controlId": "c1"})
    assert 'name="gone"' in generate_latest(REGISTRY).decode()
    metrics.forget("gone-ns", "gone")
    metrics.forget("gone-ns", "gone")  # twice: no error
    assert 'name="gone"' not in generate_latest(REGISTRY).decode()

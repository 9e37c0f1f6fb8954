"""Series that must exist from start-up, at 0, before the first event (so ``rate`` and
``increase`` see it and the dashboard and alerts have something to read), and the standard
collectors. The services' full /metrics are checked against a real Prometheus in
test_monitoring_live.py."""

from __future__ import annotations

from types import SimpleNamespace

from prometheus_client import CollectorRegistry, generate_latest

from cdb.bus import BusStats
from cdb.execution.metrics import STATUSES, ExecutionMetrics
from cdb.metrics import register_standard
from cdb.runtime import _BusCollector


def text(registry: CollectorRegistry) -> str:
    return generate_latest(registry).decode()


def test_bus_counters_exist_at_zero_for_the_streams_a_service_reads_and_writes():
    runtime = SimpleNamespace(
        bus=SimpleNamespace(stats=BusStats()),
        service=SimpleNamespace(name="risk", streams=("control", "signals")),
        redis_ok=True,
    )
    registry = CollectorRegistry()
    registry.register(_BusCollector(runtime))
    out = text(registry)
    for stream in ("control", "signals"):
        assert f'cdb_events_consumed_total{{stream="{stream}"}} 0.0' in out
        assert f'cdb_events_dead_lettered_total{{stream="{stream}"}} 0.0' in out
    for stream in ("orders", "alerts", "health"):
        assert f'cdb_events_produced_total{{stream="{stream}"}} 0.0' in out
    assert "cdb_redis_up 1.0" in out
    assert "service=" not in out  # the target labels name the service
    runtime.bus.stats.add(runtime.bus.stats.dead_lettered, "signals", 2)
    assert 'cdb_events_dead_lettered_total{stream="signals"} 2.0' in text(registry)


def test_execution_counts_every_status_from_zero():
    registry = CollectorRegistry()
    ExecutionMetrics(registry, "USDT")
    out = text(registry)
    assert set(STATUSES) == {"FILLED", "PARTIALLY_FILLED", "REJECTED", "ERROR", "CANCELLED"}
    for status in STATUSES:
        assert f'cdb_execution_orders_total{{status="{status}"}} 0.0' in out
    assert 'cdb_execution_realized_pnl{currency="USDT"} 0.0' in out


def test_standard_collectors_and_build_info():
    registry = CollectorRegistry()
    register_standard(registry)
    out = text(registry)
    assert "process_cpu_seconds_total" in out and "python_gc_objects_collected_total" in out
    assert 'cdb_build_info{python_version="' in out

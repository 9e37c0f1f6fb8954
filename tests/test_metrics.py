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


def test_risk_gauges_ratios_pnl_and_limits():
    import threading

    from cdb.risk.breaker import Breaker
    from cdb.risk.market import MarketView
    from cdb.risk.metrics import RiskCollector
    from cdb.risk.portfolio import Portfolio, Position
    from cdb.risk.rules import Limits

    market = MarketView(300)
    market.update("BTC_USDT", 110.0, 1_700_000_000)
    book = Portfolio(cash=8_000.0)
    book.positions["BTC_USDT"] = Position("BTC_USDT", 10.0, 100.0, 98.0, 1_699_999_000)
    guard = SimpleNamespace(
        lock=threading.Lock(),
        limits=Limits(max_daily_drawdown_pct=5.0, max_exposure_pct=50.0),
        market=market,
        book=book,
        day_start=10_000.0,
        day="2023-11-14",
        breaker=Breaker(kill_switch=True),
        blind={"BTC_USDT": "WARNING"},  # Watch.check_blind: held, its last price too old
    )
    registry = CollectorRegistry()
    registry.register(RiskCollector(guard))
    values = {
        s.name + str(sorted(s.labels.items())): s.value
        for m in registry.collect()
        for s in m.samples
    }
    usdt = "[('currency', 'USDT')]"
    assert values["cdb_risk_equity" + usdt] == 9_100.0  # 8 000 + 10 × 110
    assert values["cdb_risk_unrealized_pnl" + usdt] == 100.0  # 10 × (110 − 100)
    assert values["cdb_risk_daily_pnl" + usdt] == -900.0
    assert values["cdb_risk_drawdown_ratio[]"] == 0.09
    assert values["cdb_risk_drawdown_pct[]"] == 9.0  # the old name, 0–100, for one release
    assert round(values["cdb_risk_exposure_ratio[]"], 6) == round(1_100 / 9_100, 6)
    assert values["cdb_risk_limit_drawdown_ratio[]"] == 0.05
    assert values["cdb_risk_limit_exposure_ratio[]"] == 0.5
    assert values["cdb_risk_breaker_engaged[]"] == 1.0
    assert values["cdb_risk_blind_positions[]"] == 1.0
    assert values["cdb_risk_breaker_reason[('reason', 'kill_switch')]"] == 1.0
    assert values["cdb_risk_breaker_reason[('reason', 'manual')]"] == 0.0
    assert values["cdb_risk_position_value[('currency', 'USDT'), ('symbol', 'BTC_USDT')]"] == 1_100
    assert values["cdb_risk_market_data_timestamp_seconds[('symbol', 'BTC_USDT')]"] == 1.7e9

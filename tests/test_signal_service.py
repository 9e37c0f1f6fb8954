"""``cdb run signal`` as a real process on real Redis: entries in, the expected signals out."""

from __future__ import annotations

import json

import pytest
from helpers import ServiceProcess, wait_until

from cdb.events import MarketData, MarketStatus, dump_event, parse_event


def _xadd(client, event_or_raw) -> None:
    data = event_or_raw if isinstance(event_or_raw, bytes) else dump_event(event_or_raw)
    client.xadd("market_data", {"data": data})


def _signals(client) -> list:
    return [parse_event(fields[b"data"]) for _, fields in client.xrange("signals")]


@pytest.fixture
def signal_proc(redis_env, tmp_path):
    env = {**redis_env, "SIGNAL_COOLDOWN_S": "300", "LOG_LEVEL": "DEBUG", "HEALTH_INTERVAL_S": "1"}
    proc = ServiceProcess("signal", env, tmp_path).start()
    yield proc
    proc.stop()


def test_signal_process_turns_market_data_into_the_expected_signals(signal_proc, redis_client):
    t = 1_700_000_000
    md = lambda pct, vol, sym="BTC_USDT", ts=t: MarketData(  # noqa: E731
        symbol=sym, price=50_000.0, volume=vol, pct_change=pct, timestamp=ts, source="test"
    )
    _xadd(redis_client, md(5.0, 1_000_000))  # BUY, confidence 0.5
    _xadd(redis_client, md(1.0, 1_000_000, "ETH_USDT"))  # too small a move
    _xadd(redis_client, b"{not json")  # malformed: dead-lettered
    _xadd(
        redis_client,
        json.dumps(
            {"type": "market_data", "symbol": "btc-usdt", "price": 1, "volume": 1, "pct_change": 9}
        ).encode(),
    )  # invalid symbol
    _xadd(redis_client, MarketStatus(status="unreachable", timestamp=t))  # ignored
    _xadd(redis_client, md(4.0, 99_999.0, "SOL_USDT"))  # volume just below
    _xadd(redis_client, md(6.0, 1_000_000, ts=t + 60))  # BTC again within the cooldown
    _xadd(redis_client, md(3.0, 100_000, "ETH_USDT", ts=t + 120))  # exactly at both bounds
    _xadd(redis_client, md(12.0, 5_000_000, ts=t + 300))  # BTC after the cooldown

    status = wait_until(
        lambda: (s := signal_proc.status())["market_data_evaluated"] >= 6 and s,
        message="all valid market_data evaluated",
    )
    signals = wait_until(
        lambda: len(s := _signals(redis_client)) >= 3 and s, message="three signals"
    )
    assert [(s.symbol, s.side, s.confidence, s.timestamp) for s in signals] == [
        ("BTC_USDT", "BUY", 0.5, t),
        ("ETH_USDT", "BUY", 0.3, t + 120),
        ("BTC_USDT", "BUY", 1.0, t + 300),
    ]
    assert signals[0].reason == "Momentum: +5.0% (threshold 3.0%)"
    assert signals[0].price == 50_000.0 and signals[0].strategy == "momentum"

    dead = redis_client.xrange("dead_letter")
    assert len(dead) == 2
    reasons = [fields[b"reason"].decode() for _, fields in dead]
    assert "Invalid JSON" in reasons[0]
    assert reasons[1].startswith("invalid event: market_data.symbol")

    status = wait_until(
        lambda: (s := signal_proc.status())["signals_generated"] == 3 and s,
        message="status counts three signals",
    )
    assert status["market_data_evaluated"] == 6
    assert status["signals_suppressed_cooldown"] == 1
    assert status["last_signal"]["signal_id"] == signals[-1].signal_id
    assert status["last_signal"]["pct_change"] == 12.0
    assert status["dead_lettered"] == {"market_data": 2}

    metrics = signal_proc.metrics()
    assert 'cdb_signal_generated_total{side="BUY",strategy="momentum"} 3.0' in metrics
    assert "cdb_signal_suppressed_cooldown_total 1.0" in metrics
    assert "cdb_signal_market_data_evaluated_total 6.0" in metrics
    # the old names stay for one release (CHANGELOG.md)
    assert 'signals_generated_total{side="BUY",strategy="momentum"} 3.0' in metrics
    assert "signals_suppressed_cooldown_total 1.0" in metrics
    assert "signal_market_data_evaluated_total 6.0" in metrics

    # every entry was acknowledged: nothing pending in the signal group
    assert redis_client.xpending("market_data", "signal")["pending"] == 0
    # the debug log says why there was no signal, and nothing is logged per event at INFO
    log = signal_proc.log()
    assert "no signal for ETH_USDT: pct_change +1.00% within" in log
    assert "no signal for SOL_USDT: volume 99999 < minimum 100000" in log


def test_redelivered_entry_gives_the_same_signal_id(redis_env, redis_client, tmp_path):
    """A second consumer group stands in for a redelivery: same entry, same signal id."""
    event = MarketData(
        symbol="BTC_USDT",
        price=100.0,
        volume=500_000,
        pct_change=4.5,
        timestamp=1_700_000_000,
        source="test",
    )
    _xadd(redis_client, event)
    first = ServiceProcess("signal", redis_env, tmp_path).start()
    wait_until(lambda: len(_signals(redis_client)) == 1, message="first signal")
    first.stop()
    # a fresh consumer group reads the same entry again, like a redelivery after a crash
    second = ServiceProcess("signal", {**redis_env, "CDB_CONSUMER_NAME": "other"}, tmp_path)
    redis_client.xgroup_destroy("market_data", "signal")
    second.start()
    try:
        wait_until(lambda: len(_signals(redis_client)) == 2, message="second signal")
    finally:
        second.stop()
    a, b = _signals(redis_client)
    assert a.signal_id == b.signal_id
    assert a == b


def test_signal_refuses_a_bad_threshold_with_one_line(redis_env, tmp_path):
    proc = ServiceProcess("signal", {**redis_env, "SIGNAL_THRESHOLD_PCT": "0"}, tmp_path)
    proc.start(wait_healthy=False)
    assert proc.proc.wait(timeout=30) == 2
    lines = [line for line in proc.log().splitlines() if line.strip()]
    assert lines == ["configuration error: SIGNAL_THRESHOLD_PCT must be > 0, got 0"]

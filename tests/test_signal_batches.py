"""The signal service's batch handling in-process on real Redis: a strategy bug, a failed publish."""

from __future__ import annotations

import pytest
import redis

from cdb.bus import Bus
from cdb.events import MarketData, Signal, dump_event, parse_event
from cdb.settings import load_settings
from cdb.signal.service import SignalService
from cdb.signal.settings import SignalSettings


def _md(symbol: str, pct: float, ts: int) -> MarketData:
    return MarketData(
        symbol=symbol, price=10.0, volume=1e6, pct_change=pct, timestamp=ts, source="test"
    )


def _service(port: int) -> SignalService:
    client = redis.Redis(port=port, socket_timeout=2, socket_connect_timeout=1)
    bus = Bus(client, service="signal", consumer="signal-test")
    service = SignalService(load_settings(SignalSettings), bus)
    bus.subscribe(service.streams)
    return service


def _signals(client) -> list[Signal]:
    return [parse_event(f[b"data"]) for _, f in client.xrange("signals")]


class _Broken:
    name = "broken"

    def evaluate(self, md):
        if md.symbol == "BAD_USDT":
            raise ZeroDivisionError("strategy bug")
        return None


def test_a_strategy_bug_dead_letters_only_its_entry(clean_env, redis_env, redis_client):
    service = _service(int(redis_env["REDIS_PORT"]))
    service.engine.strategies.append(_Broken())
    for event in (_md("BTC_USDT", 5, 100), _md("BAD_USDT", 5, 100), _md("ETH_USDT", 6, 100)):
        redis_client.xadd("market_data", {"data": dump_event(event)})
    deliveries = service.bus.read(10, block_ms=100)
    done = []
    service.handle_batch(deliveries, done.append)
    service.bus.ack(done)
    assert [d.event.symbol for d in done] == ["BTC_USDT", "ETH_USDT"]
    assert [s.symbol for s in _signals(redis_client)] == ["BTC_USDT", "ETH_USDT"]
    [(_, dead)] = redis_client.xrange("dead_letter")
    assert dead[b"reason"] == b"handler error: ZeroDivisionError: strategy bug"
    assert redis_client.xpending("market_data", "signal")["pending"] == 0
    assert service.status()["signals_generated"] == 2


def test_a_failed_publish_redelivers_the_batch_with_the_same_signals(clean_env, own_redis):
    client = redis.Redis(port=own_redis.port)
    service = _service(own_redis.port)
    client.xadd("market_data", {"data": dump_event(_md("BTC_USDT", 5, 0))})
    done: list = []
    service.handle_batch(service.bus.read(10, block_ms=100), done.append)
    service.bus.ack(done)
    # 299 s after the first signal: suppressed; 600 s: a new signal. Without putting the
    # cooldown back, the retry would see 299 as far enough from 600 and add a signal.
    for event in (_md("BTC_USDT", 6, 299), _md("BTC_USDT", 7, 600)):
        client.xadd("market_data", {"data": dump_event(event)})
    deliveries = service.bus.read(10, block_ms=100)
    assert len(deliveries) == 2
    own_redis.stop()
    done = []
    with pytest.raises(redis.ConnectionError):
        service.handle_batch(deliveries, done.append)
    assert done == []  # nothing acknowledged
    assert service.status()["signals_generated"] == 1  # the failed one is not counted
    own_redis.start()
    service.bus.replay_pending()
    again = service.bus.read(10, block_ms=100)
    assert [d.entry_id for d in again] == [d.entry_id for d in deliveries]
    service.handle_batch(again, done.append)
    service.bus.ack(done)
    signals = _signals(redis.Redis(port=own_redis.port))
    assert [(s.timestamp, s.confidence) for s in signals] == [(0, 0.5), (600, 0.7)]
    assert service.status()["signals_generated"] == 2

"""Field report: Redis comes back without its streams or consumer groups.

A restart without persistence, ``FLUSHALL`` or a failover to an empty replica leaves
every consumer's ``XREADGROUP`` answering ``NOGROUP``. Each consumer must recreate its
group, raise an alert and read on, never exit (docs/reliability.md, "Field reports").
"""

from __future__ import annotations

import time

from helpers import ServiceProcess, wait_until
from test_risk_service import price, signal, wait_orders, world

from cdb.bus import BREAKER_KEY, HELD_KEY, Bus
from cdb.events import MarketData, dump_event, now, parse_event

__all__ = ["world"]  # the fixture, imported for the tests below


def _md(pct: float, symbol: str = "BTC_USDT") -> MarketData:
    return MarketData(symbol=symbol, price=100.0, volume=1e6, pct_change=pct, source="test")


def _alerts(client, code: str) -> list:
    out = [parse_event(f[b"data"]) for _, f in client.xrange("alerts")]
    return [a for a in out if a.code == code]


def test_bus_recreates_lost_groups_and_reads_on(redis_client):
    bus = Bus(redis_client, service="svc", consumer="c1")
    bus.subscribe(["market_data", "signals"])
    bus.publish(_md(1.0))
    assert len(bus.read(block_ms=10)) == 1
    redis_client.flushall()
    assert bus.read(block_ms=10) == []  # NOGROUP: recreated, no exception
    assert len(_alerts(redis_client, "BUS_RESET")) == 1
    groups = {g["name"].decode() for g in redis_client.xinfo_groups("market_data")}
    assert groups == {"svc"}
    bus.publish(_md(2.0))
    (delivery,) = bus.read(block_ms=10)
    assert delivery.event.pct_change == 2.0
    redis_client.delete("signals")  # one stream alone lost
    assert bus.read(block_ms=10) == []
    assert len(_alerts(redis_client, "BUS_RESET")) == 2
    assert bus.stats.resets == 2


def test_a_running_consumer_survives_flushall(redis_env, redis_client, tmp_path):
    """Input: ``cdb run signal`` running, then FLUSHALL, then a 5 % move. Before: the
    process exited on NOGROUP. Now: group recreated, BUS_RESET alert, the signal comes."""
    env = {**redis_env, "HEALTH_INTERVAL_S": "1", "SIGNAL_COOLDOWN_S": "1"}
    proc = ServiceProcess("signal", env, tmp_path).start()
    try:
        redis_client.xadd("market_data", {"data": dump_event(_md(5.0))})
        wait_until(lambda: redis_client.xlen("signals") >= 1, message="first signal")
        redis_client.flushall()
        wait_until(lambda: _alerts(redis_client, "BUS_RESET"), message="BUS_RESET alert")
        assert proc.proc is not None and proc.proc.poll() is None
        event = MarketData(
            symbol="ETH_USDT", price=10.0, volume=1e6, pct_change=6.0, source="test",
            timestamp=now(),
        )  # fmt: skip
        redis_client.xadd("market_data", {"data": dump_event(event)})
        signals = wait_until(
            lambda: [parse_event(f[b"data"]) for _, f in redis_client.xrange("signals")],
            message="a signal after the flush",
        )
        assert signals[0].symbol == "ETH_USDT"
        time.sleep(0.5)
        assert proc.proc.poll() is None
        assert proc.health()[0] == 200
    finally:
        proc.stop()


def test_the_risk_manager_survives_flushall_and_rewrites_its_mirrors(world, redis_client):
    """The risk manager reads four streams: after FLUSHALL it recreates its groups, alerts,
    keeps deciding, and writes the breaker hash and the held list again within ~10 s."""
    start, ledger = world
    r = redis_client
    proc = start()
    wait_until(lambda: r.hgetall(BREAKER_KEY), message="breaker hash")
    r.flushall()
    reset = wait_until(lambda: _alerts(r, "BUS_RESET"), message="BUS_RESET")
    assert reset[0].source == "risk" and reset[0].level == "CRITICAL"
    price(r, "BTC_USDT", 100.0)
    signal(r, "after-flush", "BTC_USDT", 0.5, 100.0)
    wait_orders(r, 1)
    wait_until(lambda: r.hgetall(BREAKER_KEY) and r.get(HELD_KEY), timeout=15, message="mirrors")
    assert proc.proc is not None and proc.proc.poll() is None

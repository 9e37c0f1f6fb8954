"""Redis at its memory limit (``maxmemory`` with ``noeviction``, what the operator asks of
an external Redis) refuses every write with ``OOM``: a service waits, NotReady, and publishes
what it owes once memory is back — it neither dies nor dead-letters the entry it was handling.
"""

from __future__ import annotations

import time

import redis
from helpers import ServiceProcess, http_get, wait_until

from cdb.events import MarketData, dump_event, parse_event


def test_a_full_redis_makes_the_signal_engine_wait_not_die_nor_drop(own_redis, tmp_path):
    client = redis.Redis(port=own_redis.port, socket_timeout=5)
    env = {**own_redis.env(), "HEALTH_INTERVAL_S": "1", "SIGNAL_COOLDOWN_S": "0"}
    signal = ServiceProcess("signal", env, tmp_path).start()
    try:
        signal.stop()  # its group exists; the strong tick waits for it
        tick = MarketData(
            symbol="BTC_USDT", price=50_000.0, volume=1e6, pct_change=5.0, source="test"
        )
        client.xadd("market_data", {"data": dump_event(tick)})
        client.config_set("maxmemory", "1")  # every write refused from here: OOM
        signal.start(wait_healthy=False)
        wait_until(
            lambda: "OutOfMemoryError" in signal.log(),
            timeout=30,
            message="the signal engine met the full Redis",
        )
        time.sleep(2)  # it keeps retrying, NotReady
        assert signal.proc.poll() is None, signal.log()[-2000:]
        status, body = http_get(signal.port, "/readyz")
        assert status == 503, body
        assert client.xlen("signals") == 0 and not client.exists("dead_letter")
        client.config_set("maxmemory", "0")  # memory back
        wait_until(lambda: client.xlen("signals") == 1, timeout=30, message="the signal")
        (entry,) = client.xrange("signals")
        assert parse_event(entry[1][b"data"]).symbol == "BTC_USDT"
        wait_until(lambda: http_get(signal.port, "/readyz")[0] == 200, message="Ready again")
        assert not client.exists("dead_letter")
        assert client.xpending("market_data", "signal")["pending"] == 0
    finally:
        client.config_set("maxmemory", "0")
        code = signal.stop()
        client.close()
    assert code == 0, signal.log()[-2000:]

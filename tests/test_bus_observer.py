"""The observer bus (cdb.bus_observer) on a real Redis: no consumer group, a position kept in
the process, a replay from the last handled entry after a failure, a warm-up window."""

from __future__ import annotations

import time

import redis

from cdb.bus import MARKET_DATA, Bus
from cdb.bus_observer import ObserverBus
from cdb.events import MarketData


def _tick(n: int) -> MarketData:
    return MarketData(symbol="BTC_USDT", price=100.0 + n, volume=1e6, pct_change=0.0)


def test_reads_in_order_replays_from_the_last_handled_and_leaves_no_group(own_redis):
    client = redis.Redis(port=own_redis.port)
    producer = Bus(client, service="feed")
    producer.publish_many([_tick(n) for n in range(3)])  # before the observer: out of window
    time.sleep(0.01)
    bus = ObserverBus(client, service="advisor", warmup_s=0)
    bus.subscribe([MARKET_DATA])
    producer.publish_many([_tick(n) for n in range(10, 15)])
    first = bus.read(count=3, block_ms=100)
    assert [d.event.price for d in first] == [110.0, 111.0, 112.0]
    bus.ack_later(first[:2])  # handled two, then a transient failure
    bus.replay_pending()
    again = bus.read(count=10, block_ms=100)
    assert [d.event.price for d in again] == [112.0, 113.0, 114.0]
    bus.ack_later(again)
    bus.flush_acks()
    assert bus.read(count=10, block_ms=50) == []
    assert client.xinfo_groups(MARKET_DATA) == []  # it never made one
    client.close()


def test_a_new_process_starts_its_warm_up_window_back(own_redis):
    client = redis.Redis(port=own_redis.port)
    producer = Bus(client, service="feed")
    producer.publish_many([_tick(n) for n in range(4)])
    time.sleep(0.01)  # entry ids are milliseconds: "from now" starts at the next one
    late = ObserverBus(client, service="advisor", warmup_s=0)
    late.subscribe([MARKET_DATA])
    warm = ObserverBus(client, service="advisor", warmup_s=60)
    warm.subscribe([MARKET_DATA])
    assert late.read(count=10, block_ms=50) == []
    assert [d.event.price for d in warm.read(count=10, block_ms=50)] == [100, 101, 102, 103]
    client.close()


def test_a_malformed_entry_is_skipped_and_counted_not_written(own_redis):
    client = redis.Redis(port=own_redis.port)
    bus = ObserverBus(client, service="advisor", warmup_s=60)
    client.xadd(MARKET_DATA, {"data": b"{nope"})
    Bus(client, service="feed").publish(_tick(1))
    bus.subscribe([MARKET_DATA])
    assert [d.event.price for d in bus.read(count=10, block_ms=50)] == [101.0]
    assert bus.stats.dead_lettered == {MARKET_DATA: 1}
    assert not client.exists("dead_letter")
    client.close()

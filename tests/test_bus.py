"""The bus on a real Redis: round trips, dead letters, redelivery, claiming, trimming."""

import json

import pytest
from test_events import GOOD

from cdb.bus import (
    DEAD_LETTER,
    MARKET_DATA,
    STREAM_OF_TYPE,
    STREAMS,
    Bus,
)
from cdb.events import EVENT_TYPES, MarketData


def make_bus(client, service="t", consumer="c1", **kw) -> Bus:
    return Bus(client, service=service, consumer=consumer, **kw)


def md(i: int, **kw) -> MarketData:
    return MarketData(
        symbol="BTC_USDT",
        price=100 + i,
        volume=1e6,
        pct_change=1.0,
        timestamp=1_700_000_000 + i,
        **kw,
    )


@pytest.mark.parametrize("type_", sorted(GOOD))
def test_every_event_type_round_trips_through_its_stream(redis_client, type_):
    bus = make_bus(redis_client)
    stream = STREAM_OF_TYPE[type_]
    bus.subscribe([stream])
    event = EVENT_TYPES[type_](**GOOD[type_])
    entry_id = bus.publish(event)
    fields = redis_client.xrange(stream)[0][1]
    assert list(fields) == [b"data"], "an entry has exactly one field, data"
    got = bus.read(block_ms=100)
    assert [(d.stream, d.entry_id, d.event) for d in got] == [(stream, entry_id, event)]
    bus.ack(got)
    assert redis_client.xpending(stream, "t")["pending"] == 0


def test_streams_are_named_as_in_the_design():
    assert STREAMS == (
        "market_data",
        "signals",
        "orders",
        "order_result",
        "alerts",
        "health",
        "control",
        "ml_signals",
    )


@pytest.mark.parametrize(
    ("payload", "reason_part"),
    [
        (b"{not json", "invalid"),
        (
            json.dumps(
                {
                    "type": "market_data",
                    "timestamp": 1,
                    "symbol": "BTC_USDT",
                    "volume": 1,
                    "pct_change": 1,
                }
            ).encode(),
            "price",
        ),
        (
            json.dumps(
                {**GOOD["market_data"], "type": "market_data", "timestamp": 1, "price": 0}
            ).encode(),
            "price",
        ),
        (
            json.dumps(
                {**GOOD["market_data"], "type": "market_data", "timestamp": 1, "symbol": "BTC-USDT"}
            ).encode(),
            "symbol",
        ),
        (
            json.dumps({**GOOD["control"], "type": "control", "timestamp": 1}).encode(),
            "does not belong",
        ),
    ],
)
def test_malformed_entry_goes_to_dead_letter_and_consumer_carries_on(
    redis_client, payload, reason_part
):
    bus = make_bus(redis_client)
    bus.subscribe([MARKET_DATA])
    bus.publish(md(1))
    bad_id = redis_client.xadd(MARKET_DATA, {"data": payload}).decode()
    bus.publish(md(2))
    got = bus.read(block_ms=100)
    assert [d.event.price for d in got] == [101, 102]
    bus.ack(got)
    dead = redis_client.xrange(DEAD_LETTER)
    assert len(dead) == 1
    fields = {k.decode(): v for k, v in dead[0][1].items()}
    assert fields["data"] == payload
    assert fields["stream"] == b"market_data"
    assert fields["entry_id"].decode() == bad_id
    assert fields["consumer"] == b"t/c1"
    assert reason_part in fields["reason"].decode()
    assert bus.stats.dead_lettered == {MARKET_DATA: 1}
    assert redis_client.xpending(MARKET_DATA, "t")["pending"] == 0, "bad entry acked, not stuck"


def test_entry_without_data_field_is_dead_lettered(redis_client):
    bus = make_bus(redis_client)
    bus.subscribe([MARKET_DATA])
    redis_client.xadd(MARKET_DATA, {"payload": b"x"})
    assert bus.read(block_ms=100) == []
    assert b"no 'data'" in redis_client.xrange(DEAD_LETTER)[0][1][b"reason"]


def test_unacked_entries_are_redelivered_to_the_same_consumer_after_restart(redis_client):
    first = make_bus(redis_client)
    first.subscribe([MARKET_DATA])
    for i in range(5):
        first.publish(md(i))
    got = first.read(count=3, block_ms=100)
    first.ack(got[:1])  # dies after acking one of three
    again = make_bus(redis_client)  # same group and consumer name: a restarted process
    again.subscribe([MARKET_DATA])
    replayed = again.read(count=10, block_ms=100)
    assert [d.entry_id for d in replayed] == [d.entry_id for d in got[1:]]
    again.ack(replayed)
    rest = again.read(count=10, block_ms=100)
    assert [d.event.price for d in rest] == [103, 104]


def test_entries_of_a_dead_consumer_are_claimed_by_another(redis_client):
    dead = make_bus(redis_client, consumer="dead", claim_idle_ms=1000)
    dead.subscribe([MARKET_DATA])
    dead.publish(md(1))
    assert len(dead.read(block_ms=100)) == 1  # read, never acked
    alive = make_bus(redis_client, consumer="alive", claim_idle_ms=1000)
    alive.subscribe([MARKET_DATA])
    assert alive.read(block_ms=100) == []  # not idle long enough yet
    alive._last_claim = 0.0
    import time

    time.sleep(1.1)
    claimed = alive.read(block_ms=100)
    assert [d.event.price for d in claimed] == [101]
    alive.ack(claimed)
    assert redis_client.xpending(MARKET_DATA, "t")["pending"] == 0


def test_groups_are_independent_and_start_with_the_backlog(redis_client):
    producer = make_bus(redis_client, service="feed")
    producer.publish(md(1))  # published before any consumer group existed
    a = make_bus(redis_client, service="signal")
    b = make_bus(redis_client, service="risk")
    for bus in (a, b):
        bus.subscribe([MARKET_DATA])
        assert [d.event.price for d in bus.read(block_ms=100)] == [101]


def test_market_data_is_trimmed_by_length(redis_client):
    bus = make_bus(redis_client, maxlen_market_data=1000)
    bus.publish_many(md(i) for i in range(5000))
    assert redis_client.xlen(MARKET_DATA) < 2500  # approximate trimming keeps ~1000


def test_publish_many_keeps_order_and_counts(redis_client):
    bus = make_bus(redis_client)
    ids = bus.publish_many(md(i) for i in range(10))
    assert ids == sorted(ids) and len(ids) == 10
    assert bus.stats.produced == {MARKET_DATA: 10}

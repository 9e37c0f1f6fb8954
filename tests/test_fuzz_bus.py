"""Hostile input at the bus: whatever arrives on a stream, the consumer never crashes, every bad
entry lands in dead_letter with a reason, and the good entries around it are still handled."""

import json

import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cdb.bus import DEAD_LETTER, MARKET_DATA, Bus
from cdb.events import MarketData, dump_event

GOOD = MarketData(symbol="BTC_USDT", price=1.0, volume=1.0, pct_change=0.0, timestamp=1)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=50),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5)
    ),
    max_leaves=20,
)

market_fields = {
    "type": st.sampled_from(["market_data", "signal", "order", "teleport", "", None, 1]),
    "timestamp": st.one_of(st.integers(), st.floats(), st.text(max_size=5), st.none()),
    "symbol": st.one_of(
        st.sampled_from(["BTC_USDT", "btc_usdt", "BTC/USDT", "_", ""]), st.text(max_size=2000)
    ),
    "price": st.one_of(st.floats(), st.integers(), st.text(max_size=5), st.none()),
    "volume": st.one_of(st.floats(), st.integers(min_value=-(10**30), max_value=10**30)),
    "pct_change": st.one_of(st.floats(), st.text(max_size=5)),
    "interval": st.sampled_from(["1m", "2m", "", "1d", None]),
}

hostile_event = st.fixed_dictionaries({}, optional=market_fields).map(
    lambda d: json.dumps(d, allow_nan=True).encode()  # NaN/Infinity literals on purpose
)
garbage = st.one_of(
    st.binary(max_size=200),
    json_values.map(lambda v: json.dumps(v, allow_nan=True).encode()),
    hostile_event,
    st.integers(min_value=1, max_value=5000).map(lambda n: b"[" * n + b"]" * n),  # deep nesting
    st.just(json.dumps({"type": "market_data", "symbol": "A" * 1_000_000}).encode()),
)


def is_valid(payload: bytes) -> bool:
    from cdb.events import parse_event

    try:
        return parse_event(payload).type == "market_data"
    except ValueError:
        return False


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(payloads=st.lists(garbage, min_size=1, max_size=8))
def test_hostile_entries_are_dead_lettered_and_good_ones_survive(redis_server, payloads):
    client = redis.Redis(port=redis_server.port)
    client.flushall()
    bus = Bus(client, service="fuzz", consumer="c")
    bus.subscribe([MARKET_DATA])
    expected_good = 0
    for payload in payloads:
        client.xadd(MARKET_DATA, {"data": dump_event(GOOD)})
        client.xadd(MARKET_DATA, {"data": payload})
        expected_good += 1 + is_valid(payload)
    handled = []
    while batch := bus.read(count=5, block_ms=10):
        handled.extend(batch)
        bus.ack(batch)
    dead = client.xrange(DEAD_LETTER)
    assert len(handled) == expected_good
    assert len(handled) + len(dead) == 2 * len(payloads), "every entry handled or dead-lettered"
    for _, fields in dead:
        assert fields[b"reason"], "every dead letter says why"
        assert fields[b"stream"] == b"market_data"
    assert client.xpending(MARKET_DATA, "fuzz")["pending"] == 0
    client.close()

"""How far an event time may lead the reader's clock: 60 s, or ``EVENT_MAX_LEAD_S``.

A replay played faster than real time and shifted to now stamps its candles ahead of the
clock; ``cdb up --feed replay`` raises the readers' limit for it (the end-to-end check:
``tests/test_local_live.py``, the replay trades). Here: the limit reaches the check
through a real Bus on real Redis, milliseconds stay refused, and the feed's replay knows
the lead it will create.
"""

from __future__ import annotations

import json

import pytest
import redis

from cdb.bus import DEAD_LETTER, MARKET_DATA, Bus
from cdb.events import now
from cdb.feed.replay import read_candles, sample_path
from cdb.feed.sources import ReplaySource


def _md(ts: int) -> bytes:
    return json.dumps(
        {"type": "market_data", "symbol": "BTC_USDT", "price": 100.0, "volume": 1e6,
         "pct_change": 1.0, "timestamp": ts, "source": "replay"}
    ).encode()  # fmt: skip


def test_a_raised_limit_accepts_a_replay_lead_and_still_refuses_milliseconds(redis_env):
    client = redis.Redis(host=redis_env["REDIS_HOST"], port=int(redis_env["REDIS_PORT"]))
    hour_ahead = now() + 3600
    strict = Bus(client, service="strict")
    lenient = Bus(client, service="lenient", max_lead_s=7 * 86_400)
    for bus in (strict, lenient):
        bus.subscribe([MARKET_DATA])
    for data in (_md(hour_ahead), _md(now() * 1000)):
        client.xadd(MARKET_DATA, {"data": data})
    assert [d.event.timestamp for d in strict.read(block_ms=100)] == []
    assert [d.event.timestamp for d in lenient.read(block_ms=100)] == [hour_ahead]
    reasons = [f[b"reason"].decode() for _, f in client.xrange(DEAD_LETTER)]
    assert sum("ahead of this reader's clock" in r for r in reasons) == 1  # strict only
    assert sum("timestamp" in r for r in reasons) == 3  # + milliseconds, refused by both


def test_the_replay_knows_how_far_its_stamps_lead():
    rows = read_candles(sample_path())
    fast = ReplaySource(rows, speed=60, shift_to_now=True, batch=10**6)
    start = 1_800_000_000.0
    fast.poll(start)  # the first event, stamped now
    end = start + (fast.times[-1] - fast.times[0]) / 60  # when the last one is due
    last = fast.poll(end).events[-1]
    assert fast.finished and last.timestamp - end == pytest.approx(fast.max_lead_s(), abs=1)
    assert fast.max_lead_s() > 3 * 3600  # the 4-hour sample at 60×: hours ahead
    assert ReplaySource(rows, speed=1, shift_to_now=True).max_lead_s() == 0
    assert ReplaySource(rows, speed=60, shift_to_now=False).max_lead_s() == 0

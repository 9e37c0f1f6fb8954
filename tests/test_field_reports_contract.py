"""Field report: impossible values in safety inputs (docs/reliability.md, "Field reports").

Every event field that feeds a safety rule is range-checked at the contract; what fails
lands in ``dead_letter`` with the reason. The kind: one impossible event must never
disable a guard for the rest of a process's life.
"""

from __future__ import annotations

import json

import pytest
from helpers import wait_until
from test_risk_service import wait_decision, world

from cdb.bus import DEAD_LETTER, Bus
from cdb.events import now

__all__ = ["world"]  # the fixture, imported for the tests below


def _md(**kw) -> dict:
    return {
        "type": "market_data",
        "symbol": "BTC_USDT",
        "price": 100.0,
        "volume": 1e6,
        "pct_change": 1.0,
        "timestamp": now(),
        "source": "test",
        **kw,
    }


IMPOSSIBLE = {
    "milliseconds": (_md(timestamp=now() * 1000), "timestamp"),
    "an hour ahead": (_md(timestamp=now() + 3600), "ahead of this reader's clock"),
    "price zero": (_md(price=0), "price"),
    "price beyond any market": (_md(price=1e300), "price"),
    "negative volume": (_md(volume=-1), "volume"),
    "fall of more than 100 %": (_md(pct_change=-150), "pct_change"),
    "billion-percent move": (_md(pct_change=1e9), "pct_change"),
    "signal from the future": (
        {
            "type": "signal",
            "signal_id": "s",
            "symbol": "BTC_USDT",
            "side": "BUY",
            "confidence": 0.5,
            "price": 100.0,
            "pct_change": 5.0,
            "reason": "r",
            "timestamp": now() * 1000,
        },
        "timestamp",
    ),
    "fill in milliseconds": (
        {
            "type": "order_result",
            "client_id": "c1",
            "symbol": "BTC_USDT",
            "side": "BUY",
            "status": "FILLED",
            "filled_quantity": 1.0,
            "avg_price": 100.0,
            "timestamp": now() * 1000,
        },
        "timestamp",
    ),
    "fill of absurd size": (
        {
            "type": "order_result",
            "client_id": "c1",
            "symbol": "BTC_USDT",
            "side": "BUY",
            "status": "FILLED",
            "filled_quantity": 1e300,
            "avg_price": 100.0,
        },
        "filled_quantity",
    ),
}
STREAM = {"market_data": "market_data", "signal": "signals", "order_result": "order_result"}


@pytest.mark.parametrize("case", sorted(IMPOSSIBLE))
def test_impossible_safety_input_is_dead_lettered_with_the_field(redis_client, case):
    raw, expected = IMPOSSIBLE[case]
    stream = STREAM[raw["type"]]
    bus = Bus(redis_client, service="reader", consumer="c")
    bus.subscribe([stream])
    redis_client.xadd(stream, {"data": json.dumps(raw)})
    assert bus.read(block_ms=10) == []
    ((_, fields),) = redis_client.xrange(DEAD_LETTER)
    assert expected in fields[b"reason"].decode(), fields[b"reason"]


def test_a_millisecond_price_time_does_not_blind_the_abnormal_move_guard(world, redis_client):
    """Input: one BTC price stamped in milliseconds, then a 20 % jump in real seconds.
    Before: the millisecond time put the symbol's move window 50,000 years ahead, so no
    later price counted and the jump paused nothing. Now: dead-lettered, the jump pauses."""
    start, ledger = world
    r = redis_client
    start()
    r.xadd("market_data", {"data": json.dumps(_md(timestamp=now() * 1000))})
    wait_until(lambda: r.xlen(DEAD_LETTER) == 1, message="dead-lettered")
    t = now()
    r.xadd("market_data", {"data": json.dumps(_md(price=100.0, timestamp=t))})
    r.xadd("market_data", {"data": json.dumps(_md(price=120.0, timestamp=t))})
    decision, rule, severity, text, _ = wait_decision(ledger, f"abnormal:BTC_USDT:{t}")
    assert (decision, rule, severity) == ("pause", "abnormal_move", "WARNING")

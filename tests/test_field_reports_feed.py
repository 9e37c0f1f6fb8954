"""Field report: the live feed with TOP_MOVERS dropped symbols still held (docs/reliability.md).

A symbol that leaves the movers list while the book holds it lost its prices, so its
stop loss could not fire. The feed now always polls the symbols the risk manager holds
(``HELD_KEY``, written by the risk manager from its book).
"""

from __future__ import annotations

import json

from test_feed_market import KLINES, MIN, T0, client_with, ticker

from cdb.bus import HELD_KEY, Bus
from cdb.events import MarketData, parse_event
from cdb.feed.live import LiveSource
from cdb.feed.service import FeedService
from cdb.feed.settings import FeedSettings


def _published(redis_client) -> list[str]:
    events = [parse_event(f[b"data"]) for _, f in redis_client.xrange("market_data")]
    return [e.symbol for e in events if isinstance(e, MarketData)]


def test_top_movers_feed_keeps_polling_a_held_symbol(redis_env, redis_client, monkeypatch):
    tickers = [ticker("BTCUSDT", "0.01", "9e9"), ticker("ETHUSDT", "0.08", "9e9")]
    client, adapter, _ = client_with(
        {"/api/v3/ticker/24hr": [(200, tickers)], "/api/v3/klines": [(200, KLINES)]}
    )
    source = LiveSource(client, symbols=[], top_movers=1, lookback_min=15)
    for key, value in redis_env.items():
        monkeypatch.setenv(key, value)
    feed = FeedService(FeedSettings(), Bus(redis_client, service="feed"), source=source)
    redis_client.set(HELD_KEY, json.dumps(["BTC_USDT"]))  # the risk manager holds BTC
    now = (T0 + 16 * MIN + 30_000) / 1000
    monkeypatch.setattr("cdb.feed.service.time.time", lambda: now)
    feed.tick()
    assert sorted(_published(redis_client)) == ["BTC_USDT", "ETH_USDT"]  # mover + held
    assert feed.status()["held_symbols"] == ["BTC_USDT"]
    assert {c["symbol"] for c in adapter.calls("/klines")} == {"BTCUSDT", "ETHUSDT"}
    # a flushed Redis (key gone) keeps the last known list until the risk manager rewrites it
    redis_client.delete(HELD_KEY)
    now += 61
    feed.tick()
    assert {c["symbol"] for c in adapter.calls("/klines")[2:]} == {"BTCUSDT", "ETHUSDT"}
    assert "BTC_USDT" in source.windows

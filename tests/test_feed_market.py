"""The exchange adapter and the live source on recorded MEXC responses — never the network.

A real ``ccxt.mexc`` object runs its whole request path (URL building, rate limiter,
HTTP status and error-body handling, parsing); only the HTTP transport underneath
is replaced by a ``requests`` adapter that answers from recorded bodies in MEXC's
spot v3 format (exchangeInfo, klines, ticker/24hr) or raises a network error.
"""

from __future__ import annotations

import json
from urllib.parse import parse_qs, urlparse

import ccxt
import pytest
import requests
from requests.adapters import BaseAdapter

from cdb.events import Alert, MarketData, MarketStatus
from cdb.exchange.errors import (
    AuthenticationFailed,
    ExchangeRejected,
    ExchangeUnavailable,
    InsufficientFunds,
    InvalidOrder,
    OrderUnknown,
    RateLimited,
    ccxt_errors,
    translate_error,
)
from cdb.exchange.market import MarketClient, from_exchange_symbol, to_exchange_symbol
from cdb.feed.live import LiveSource, Reachability
from cdb.service import TransientError

T0 = 1_704_067_200_000  # 2024-01-01T00:00Z
MIN = 60_000


def _market(symbol: str, base: str, quote: str, status: str = "1") -> dict:
    return {
        "symbol": symbol,
        "status": status,
        "baseAsset": base,
        "quoteAsset": quote,
        "baseAssetPrecision": 6,
        "quoteAssetPrecision": 2,
        "isSpotTradingAllowed": True,
        "isMarginTradingAllowed": False,
        "permissions": ["SPOT"],
        "orderTypes": ["LIMIT", "MARKET"],
        "baseSizePrecision": "0",
        "quoteAmountPrecision": "1",
        "makerCommission": "0",
        "takerCommission": "0.0005",
        "maxQuoteAmount": "2000000",
    }


EXCHANGE_INFO = {
    "timezone": "CST",
    "serverTime": T0,
    "rateLimits": [],
    "exchangeFilters": [],
    "symbols": [
        _market("BTCUSDT", "BTC", "USDT"),
        _market("ETHUSDT", "ETH", "USDT"),
        _market("PEPEUSDT", "PEPE", "USDT"),
        _market("ETHBTC", "ETH", "BTC"),
        _market("DEADUSDT", "DEAD", "USDT", status="2"),  # suspended
    ],
}
CONTRACT_DETAIL = {"success": True, "code": 0, "data": []}


def kline(i: int, o: float, c: float, base_vol: float) -> list:
    """One row as MEXC sends it: open time, OHLC and volume as strings, close time, quote vol."""
    hi, lo = max(o, c) * 1.001, min(o, c) * 0.999
    return [
        T0 + i * MIN,
        str(o),
        f"{hi:.2f}",
        f"{lo:.2f}",
        str(c),
        str(base_vol),
        T0 + (i + 1) * MIN,
        f"{base_vol * c:.2f}",
    ]


def ticker(symbol: str, pct: str, quote_volume: str) -> dict:
    return {
        "symbol": symbol,
        "priceChange": "1",
        "priceChangePercent": pct,
        "prevClosePrice": "100",
        "lastPrice": "101",
        "bidPrice": "100.9",
        "bidQty": "1",
        "askPrice": "101.1",
        "askQty": "1",
        "openPrice": "100",
        "highPrice": "102",
        "lowPrice": "99",
        "volume": "1000",
        "quoteVolume": quote_volume,
        "openTime": T0,
        "closeTime": T0 + 86_400_000,
        "count": None,
    }


class Recorded(BaseAdapter):
    """Answers each path from a queue of recorded responses; the last one repeats."""

    def __init__(self, routes: dict[str, list]) -> None:
        super().__init__()
        self.routes = routes
        self.seen: list[tuple[str, dict]] = []

    def send(self, request, **kwargs):
        url = urlparse(request.url)
        self.seen.append((url.path, {k: v[0] for k, v in parse_qs(url.query).items()}))
        queue = self.routes.get(url.path)
        if not queue:
            answer = (404, {"code": 404, "msg": "Not Found"})
        else:
            answer = queue.pop(0) if len(queue) > 1 else queue[0]
        if isinstance(answer, Exception):
            raise answer
        status, body = answer
        response = requests.Response()
        response.status_code = status
        response.reason = "OK" if status == 200 else "Error"
        response._content = json.dumps(body).encode()
        response.headers["Content-Type"] = "application/json"
        response.url = request.url
        response.request = request
        return response

    def close(self) -> None:
        pass

    def calls(self, suffix: str) -> list[dict]:
        return [q for path, q in self.seen if path.endswith(suffix)]


def client_with(routes: dict[str, list], attempts: int = 3) -> tuple[MarketClient, Recorded, list]:
    base = {
        "/api/v3/exchangeInfo": [(200, EXCHANGE_INFO)],
        "/api/v1/contract/detail": [(200, CONTRACT_DETAIL)],
    }
    adapter = Recorded({**base, **routes})
    session = requests.Session()
    session.mount("https://", adapter)
    sleeps: list[float] = []
    client = MarketClient("mexc", session=session, attempts=attempts, sleep=sleeps.append)
    client.exchange.enableRateLimit = False  # the recorded transport needs no throttle
    return client, adapter, sleeps


KLINES = [kline(i, 100.0 + i, 101.0 + i, 10.0) for i in range(17)]


# -- symbols and errors -------------------------------------------------------------------------


def test_symbol_conversion_both_ways():
    assert to_exchange_symbol("BTC_USDT") == "BTC/USDT"
    assert from_exchange_symbol("BTC/USDT") == "BTC_USDT"
    assert from_exchange_symbol("BTC/USDT:USDT") is None  # a swap: not ours
    assert from_exchange_symbol("1000PEPE/USDT") == "1000PEPE_USDT"
    with pytest.raises(ValueError):
        to_exchange_symbol("BTC/USDT")


@pytest.mark.parametrize(
    ("ccxt_exc", "ours"),
    [
        (ccxt.RequestTimeout("t"), ExchangeUnavailable),
        (ccxt.ExchangeNotAvailable("503"), ExchangeUnavailable),
        (ccxt.OnMaintenance("m"), ExchangeUnavailable),
        (ccxt.NetworkError("n"), ExchangeUnavailable),
        (ccxt.RateLimitExceeded("429"), RateLimited),
        (ccxt.DDoSProtection("ddos"), RateLimited),
        (ccxt.OrderNotFound("gone"), OrderUnknown),
        (ccxt.InsufficientFunds("poor"), InsufficientFunds),
        (ccxt.InvalidOrder("bad"), InvalidOrder),
        (ccxt.BadSymbol("sym"), InvalidOrder),
        (ccxt.AuthenticationError("key"), AuthenticationFailed),
        (ccxt.PermissionDenied("perm"), AuthenticationFailed),
        (ccxt.NotSupported("ns"), ExchangeRejected),
        (ccxt.ExchangeError("other"), ExchangeRejected),
        (TimeoutError("socket"), ExchangeUnavailable),
    ],
)
def test_ccxt_errors_translate_by_how_they_are_handled(ccxt_exc, ours):
    with pytest.raises(ours) as info, ccxt_errors():
        raise ccxt_exc
    assert type(info.value) is ours
    assert info.value.__cause__ is ccxt_exc
    assert isinstance(info.value, TransientError) == issubclass(ours, ExchangeUnavailable)


def test_programming_errors_pass_through_untranslated():
    with pytest.raises(KeyError), ccxt_errors():
        raise KeyError("bug")
    assert isinstance(translate_error(ValueError("x")), ExchangeRejected)


# -- the client on recorded responses -----------------------------------------------------------


def test_fetch_candles_from_recorded_klines():
    client, adapter, _ = client_with({"/api/v3/klines": [(200, KLINES[:3])]})
    rows = client.fetch_candles("BTC_USDT", "1m", limit=3)
    assert rows == [
        (
            T0 + i * MIN,
            100.0 + i,
            round((101.0 + i) * 1.001, 2),
            round((100.0 + i) * 0.999, 2),
            101.0 + i,
            10.0,
        )
        for i in range(3)
    ]
    assert adapter.calls("/klines") == [{"symbol": "BTCUSDT", "interval": "1m", "limit": "3"}]
    client.fetch_candles("ETH_USDT", "1m", limit=3)
    assert len(adapter.calls("/exchangeInfo")) == 1  # markets are cached


def test_garbled_candles_are_dropped():
    bad = [kline(0, 100, 101, 1), [T0 + MIN, "x", "1", "1", "1", "1"], kline(2, -5, 1, 1)]
    client, _, _ = client_with({"/api/v3/klines": [(200, bad)]})
    assert [r[0] for r in client.fetch_candles("BTC_USDT")] == [T0]


def test_unknown_symbol_is_refused_before_any_request():
    client, adapter, _ = client_with({})
    with pytest.raises(InvalidOrder, match="no spot market NOPE_USDT"):
        client.fetch_candles("NOPE_USDT")
    assert adapter.calls("/klines") == []


def test_transient_failures_are_retried_with_growing_backoff():
    client, adapter, sleeps = client_with(
        {
            "/api/v3/klines": [
                (503, {"code": 503, "msg": "Service Unavailable"}),
                requests.ConnectionError("connection reset"),
                (200, KLINES[:2]),
            ]
        }
    )
    assert len(client.fetch_candles("BTC_USDT", limit=2)) == 2
    assert len(adapter.calls("/klines")) == 3
    assert len(sleeps) == 2 and 0 < sleeps[0] <= 0.5 and 0.5 <= sleeps[1] <= 1.0


def test_a_network_that_stays_down_raises_exchange_unavailable():
    client, adapter, sleeps = client_with(
        {"/api/v3/klines": [requests.ConnectTimeout("timed out")]}, attempts=4
    )
    with pytest.raises(ExchangeUnavailable) as info:
        client.fetch_candles("BTC_USDT")
    assert isinstance(info.value.__cause__, ccxt.NetworkError)
    assert len(adapter.calls("/klines")) == 4 and len(sleeps) == 3


def test_429_is_rate_limited_and_backs_off_longer():
    client, _, sleeps = client_with(
        {"/api/v3/klines": [(429, {"code": 429, "msg": "Too Many Requests"})]}, attempts=2
    )
    with pytest.raises(RateLimited):
        client.fetch_candles("BTC_USDT")
    assert sleeps and sleeps[0] >= 0.5  # twice the normal first wait


def test_mexc_error_body_for_a_bad_symbol_is_permanent_and_not_retried():
    client, adapter, sleeps = client_with(
        {"/api/v3/klines": [(400, {"code": -1121, "msg": "Invalid symbol."})]}
    )
    with pytest.raises(InvalidOrder):
        client.fetch_candles("BTC_USDT")
    assert len(adapter.calls("/klines")) == 1 and sleeps == []


def test_top_movers_rank_active_spot_markets_of_the_quote_by_absolute_move():
    tickers = [
        ticker("BTCUSDT", "0.0173", "554877037.44"),
        ticker("ETHUSDT", "-0.05", "90000000"),
        ticker("PEPEUSDT", "0.12", "5000"),  # big move, too thin
        ticker("ETHBTC", "0.2", "99999999"),  # other quote
        ticker("DEADUSDT", "0.5", "99999999"),  # suspended market
        ticker("GHOSTUSDT", "0.9", "99999999"),  # not in exchangeInfo
    ]
    client, _, _ = client_with({"/api/v3/ticker/24hr": [(200, tickers)]})
    assert client.top_movers(2, "USDT", min_quote_volume=1_000_000) == ["ETH_USDT", "BTC_USDT"]
    assert client.top_movers(5, "USDT") == ["PEPE_USDT", "ETH_USDT", "BTC_USDT"]
    assert client.top_movers(0) == []


# -- the live source ----------------------------------------------------------------------------


def test_live_source_publishes_closed_candles_once_and_waits_for_the_next():
    # 17 candles: minutes 0..16; at 16:30 the last one is still open
    client, adapter, _ = client_with({"/api/v3/klines": [(200, KLINES)]})
    source = LiveSource(client, symbols=["BTC_USDT"], lookback_min=15)
    now = (T0 + 16 * MIN + 30_000) / 1000
    events = source.poll(now).events
    assert [type(e) for e in events] == [MarketStatus, MarketData]
    assert events[0].status == "ok" and events[0].exchange == "mexc"
    md = events[1]
    assert md.timestamp == (T0 + 16 * MIN) // 1000  # close of candle 15, the last closed one
    assert md.price == 116.0
    assert md.pct_change == pytest.approx((116.0 / 101.0 - 1) * 100)  # opens of 1..15
    assert md.volume == pytest.approx(sum(10.0 * (101.0 + i) for i in range(1, 16)))
    assert md.source == "live"
    assert adapter.calls("/klines")[0]["limit"] == "17"
    # before candle 16 has closed (+ delay) the source does not ask again
    assert source.poll(now + 20).events == []
    assert len(adapter.calls("/klines")) == 1
    # once it has closed, the source asks and publishes it
    [md16] = source.poll((T0 + 17 * MIN + 2_500) / 1000).events
    assert md16.timestamp == (T0 + 17 * MIN) // 1000 and md16.price == 117.0
    assert len(adapter.calls("/klines")) == 2
    # an exchange that has no newer candle yet gives nothing new (asked again next poll)
    assert source.poll((T0 + 18 * MIN + 2_500) / 1000).events == []
    assert len(adapter.calls("/klines")) == 3


def test_unreachable_exchange_raises_status_and_alert_then_recovers():
    client, adapter, _ = client_with({"/api/v3/klines": [(200, KLINES)]}, attempts=1)
    source = LiveSource(
        client, symbols=["BTC_USDT", "ETH_USDT"], lookback_min=15, unreachable_after_s=60
    )
    t = (T0 + 16 * MIN + 30_000) / 1000
    assert len(source.poll(t).events) == 3  # ok + one per symbol
    adapter.routes["/api/v3/klines"] = [requests.ConnectionError("no route to host")]
    later = t + 100  # a new candle is due
    assert source.poll(later).events == []
    assert source.poll(later + 30).events == []
    down = source.poll(later + 60).events
    assert [type(e) for e in down] == [MarketStatus, Alert]
    assert down[0].status == "unreachable" and "unreachable for 60s" in down[0].reason
    assert down[1].level == "CRITICAL" and down[1].code == "EXCHANGE_UNREACHABLE"
    assert source.poll(later + 90).events == []  # said once, not on every failure
    assert source.status()["exchange_status"] == "unreachable"
    recovered = [kline(i, 100.0, 100.0, 1.0) for i in range(3, 20)]
    adapter.routes["/api/v3/klines"] = [(200, recovered)]
    back = source.poll((T0 + 20 * MIN + 5_000) / 1000).events
    assert [type(e) for e in back] == [MarketStatus, Alert, MarketData, MarketData]
    assert back[0].status == "ok"
    assert back[1].level == "INFO" and back[1].code == "EXCHANGE_RECOVERED"


def test_a_rejected_symbol_is_dropped_with_a_warning_not_an_outage():
    client, adapter, _ = client_with(
        {"/api/v3/klines": [(400, {"code": -1121, "msg": "Invalid symbol."})]}
    )
    source = LiveSource(client, symbols=["BTC_USDT"], lookback_min=15)
    events = source.poll(T0 / 1000).events
    assert [(type(e), getattr(e, "code", None)) for e in events] == [
        (Alert, "FEED_SYMBOL_REJECTED")
    ]
    assert source.poll(T0 / 1000 + 100).events == []
    assert len(adapter.calls("/klines")) == 1
    assert source.reach.state == "unknown"


def test_live_source_follows_the_top_movers():
    tickers = [ticker("BTCUSDT", "0.01", "9e9"), ticker("ETHUSDT", "0.08", "9e9")]
    client, adapter, _ = client_with(
        {
            "/api/v3/ticker/24hr": [(200, tickers)],
            "/api/v3/klines": [(200, KLINES)],
        }
    )
    source = LiveSource(client, symbols=["SOL_USDT"], top_movers=1, lookback_min=15)
    events = source.poll((T0 + 16 * MIN + 30_000) / 1000).events
    assert [e.symbol for e in events if isinstance(e, MarketData)] == ["ETH_USDT"]
    assert adapter.calls("/klines")[0]["symbol"] == "ETHUSDT"
    # BTC overtakes ETH: the next refresh switches symbols and forgets ETH's candles
    adapter.routes["/api/v3/ticker/24hr"] = [
        (200, [ticker("BTCUSDT", "0.2", "9e9"), ticker("ETHUSDT", "0.08", "9e9")])
    ]
    events = source.poll((T0 + 16 * MIN + 30_000) / 1000 + 301).events
    assert [e.symbol for e in events if isinstance(e, MarketData)] == ["BTC_USDT"]
    assert set(source.windows) == {"BTC_USDT"}


def test_reachability_is_pure_and_clocked():
    r = Reachability("mexc", 10)
    assert [e.status for e in r.success(0)] == ["ok"]
    assert r.failure(1, "x") == [] and r.failure(10.9, "x") == []
    assert [e.type for e in r.failure(11, "x")] == ["market_status", "alert"]
    assert r.success(12)[1].code == "EXCHANGE_RECOVERED"
    assert r.failure(13, "y") == []  # the clock restarts after a success

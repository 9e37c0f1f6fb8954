"""Public market data from the exchange through ccxt: OHLCV candles and the top movers.

The feed's only door to the exchange. Calls are throttled by ccxt's own rate
limiter (``enableRateLimit``), transient failures are retried with exponential
backoff and jitter (tenacity), and everything that still fails leaves as one of
our errors (``cdb.exchange.errors``). Symbols cross the boundary in our form
(``BTC_USDT``); ccxt's (``BTC/USDT``) never leaves this module.
"""

from __future__ import annotations

import logging
import math
import random
import re
import time
from collections.abc import Callable
from typing import Any

import ccxt
from tenacity import RetryCallState, Retrying, retry_if_exception_type, stop_after_attempt

from cdb.exchange.errors import (
    ExchangeRejected,
    ExchangeUnavailable,
    InvalidOrder,
    RateLimited,
    ccxt_errors,
)

log = logging.getLogger(__name__)

_OUR_SYMBOL = re.compile(r"^([A-Z0-9]+)_([A-Z0-9]+)$")
_SPOT_SYMBOL = re.compile(r"^([A-Z0-9]+)/([A-Z0-9]+)$")

#: One OHLCV row as ccxt returns it: open time (Unix ms), open, high, low, close, base volume.
Ohlcv = tuple[int, float, float, float, float, float]


def to_exchange_symbol(symbol: str) -> str:
    """``BTC_USDT`` → ``BTC/USDT`` (ccxt's unified spot symbol)."""
    match = _OUR_SYMBOL.match(symbol)
    if not match:
        raise ValueError(f"not a symbol like BTC_USDT: {symbol!r}")
    return f"{match[1]}/{match[2]}"


def from_exchange_symbol(symbol: str) -> str | None:
    """``BTC/USDT`` → ``BTC_USDT``; ``None`` for what we cannot trade (``BTC/USDT:USDT`` swaps)."""
    match = _SPOT_SYMBOL.match(symbol)
    return f"{match[1]}_{match[2]}" if match else None


def _clean_rows(rows: Any, symbol: str) -> list[Ohlcv]:
    """Validate the exchange's rows: a garbled candle is dropped with a warning, never used."""
    out: list[Ohlcv] = []
    for row in rows or []:
        try:
            ts, o, h, low, c, v = row[:6]
            candle = (int(ts), float(o), float(h), float(low), float(c), float(v or 0.0))
        except (TypeError, ValueError):
            log.warning("dropped a malformed candle for %s: %r", symbol, row)
            continue
        prices = candle[1:5]
        if not all(math.isfinite(p) and p > 0 for p in prices) or not (
            math.isfinite(candle[5]) and candle[5] >= 0
        ):
            log.warning("dropped a candle with impossible values for %s: %r", symbol, row)
            continue
        out.append(candle)
    out.sort(key=lambda r: r[0])
    return out


def rebase_urls(api: Any, base: str) -> Any:
    """ccxt's ``urls["api"]`` with every URL's scheme and host replaced by ``base``'s.

    ``base`` is ``scheme://host[:port]`` (``EXCHANGE_BASE_URL``, the design's ``MEXC_BASE``):
    a mirror or a local server speaking the exchange's protocol. Paths are kept, so
    ``https://api.mexc.com/api/v1/contract`` becomes ``http://127.0.0.1:8080/api/v1/contract``.
    """
    if isinstance(api, dict):
        return {k: rebase_urls(v, base) for k, v in api.items()}
    if isinstance(api, str) and "://" in api:
        rest = api.split("://", 1)[1]
        path = rest[rest.find("/") :] if "/" in rest else ""
        return base.rstrip("/") + path
    return api


class MarketClient:
    """Read-only market data from one ccxt exchange (spot)."""

    def __init__(
        self,
        exchange_id: str = "mexc",
        *,
        timeout_ms: int = 10_000,
        attempts: int = 3,
        backoff_s: float = 0.5,
        backoff_max_s: float = 8.0,
        markets_ttl_s: float = 3600.0,
        session: Any = None,
        sleep: Callable[[float], None] = time.sleep,
        base_url: str | None = None,
    ) -> None:
        exchange_cls = getattr(ccxt, exchange_id, None)
        if not isinstance(exchange_cls, type) or not issubclass(exchange_cls, ccxt.Exchange):
            raise ValueError(f"ccxt has no exchange {exchange_id!r}")
        config: dict[str, Any] = {
            "enableRateLimit": True,
            "timeout": timeout_ms,
            "options": {"defaultType": "spot"},
        }
        if session is not None:  # tests hand in a requests.Session serving recorded responses
            config["session"] = session
        self.exchange = exchange_cls(config)
        if base_url:
            self.exchange.urls["api"] = rebase_urls(self.exchange.urls["api"], base_url)
        self.attempts = attempts
        self.backoff_s = backoff_s
        self.backoff_max_s = backoff_max_s
        self.markets_ttl_s = markets_ttl_s
        self._sleep = sleep
        self._markets_loaded_at: float | None = None

    # -- retries --------------------------------------------------------------------------------

    def _wait(self, state: RetryCallState) -> float:
        """Exponential backoff with full jitter; at least what a 429 asked for."""
        ceiling = min(self.backoff_max_s, self.backoff_s * 2 ** (state.attempt_number - 1))
        wait = ceiling * (0.5 + 0.5 * random.random())
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, RateLimited):
            wait = max(wait * 2, exc.retry_after or 0.0)
        return wait

    def _call(self, what: str, fn: Callable[[], Any]) -> Any:
        """Run one ccxt call with our errors and retries on the transient ones."""

        def once() -> Any:
            with ccxt_errors():
                return fn()

        retrying = Retrying(
            retry=retry_if_exception_type(ExchangeUnavailable),
            stop=stop_after_attempt(self.attempts),
            wait=self._wait,
            sleep=self._sleep,
            reraise=True,
            before_sleep=lambda s: log.warning(
                "%s failed (%s), attempt %d of %d",
                what,
                s.outcome.exception() if s.outcome else "?",
                s.attempt_number,
                self.attempts,
            ),
        )
        return retrying(once)

    # -- markets --------------------------------------------------------------------------------

    def load_markets(self, reload: bool = False) -> dict[str, Any]:
        """The exchange's markets, reloaded after ``markets_ttl_s`` (new listings appear)."""
        stale = (
            self._markets_loaded_at is None
            or time.monotonic() - self._markets_loaded_at > self.markets_ttl_s
        )
        if reload or stale:
            self._call("load_markets", lambda: self.exchange.load_markets(reload=True))
            self._markets_loaded_at = time.monotonic()
        return self.exchange.markets

    def _spot_market(self, symbol: str) -> dict[str, Any]:
        markets = self.load_markets()
        market = markets.get(to_exchange_symbol(symbol))
        if market is None or not market.get("spot"):
            raise InvalidOrder(f"{self.exchange.id} has no spot market {symbol}")
        return market

    def fetch_candles(self, symbol: str, timeframe: str = "1m", limit: int = 16) -> list[Ohlcv]:
        """The latest ``limit`` candles of ``symbol`` (oldest first), the last one maybe still open."""
        market = self._spot_market(symbol)
        if timeframe not in (self.exchange.timeframes or {}):
            raise ExchangeRejected(f"{self.exchange.id} has no timeframe {timeframe}")
        rows = self._call(
            f"fetch_ohlcv {symbol}",
            lambda: self.exchange.fetch_ohlcv(market["symbol"], timeframe, limit=limit),
        )
        return _clean_rows(rows, symbol)

    def top_movers(self, n: int, quote: str = "USDT", min_quote_volume: float = 0.0) -> list[str]:
        """The ``n`` active spot markets quoted in ``quote`` that moved most in 24 h (either way).

        Ranked by the absolute 24 h percentage change, then by quote volume; markets below
        ``min_quote_volume`` (24 h, in ``quote``) are skipped as too thin to trade.
        """
        if n <= 0:
            return []
        markets = self.load_markets()
        tickers = self._call("fetch_tickers", lambda: self.exchange.fetch_tickers())
        ranked: list[tuple[float, float, str]] = []
        for ccxt_symbol, ticker in (tickers or {}).items():
            market = markets.get(ccxt_symbol)
            ours = from_exchange_symbol(ccxt_symbol)
            if ours is None or market is None:
                continue
            if not market.get("spot") or market.get("active") is False:
                continue
            if market.get("quote") != quote:
                continue
            pct = ticker.get("percentage")
            volume = ticker.get("quoteVolume")
            if volume is None and ticker.get("baseVolume") is not None and ticker.get("last"):
                volume = ticker["baseVolume"] * ticker["last"]
            if pct is None or volume is None or not math.isfinite(pct):
                continue
            if volume < min_quote_volume:
                continue
            ranked.append((abs(pct), volume, ours))
        ranked.sort(key=lambda r: (-r[0], -r[1], r[2]))
        return [symbol for _, _, symbol in ranked[:n]]

    def close(self) -> None:
        """Release the HTTP session."""
        session = getattr(self.exchange, "session", None)
        if session is not None:
            session.close()

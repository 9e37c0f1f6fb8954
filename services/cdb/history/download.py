"""``fetch_ohlcv`` page by page into the local store: rate-limited, retried, resumable.

The exchange is reached only through ``cdb.exchange.market.MarketClient`` (ccxt's own
rate limiter, tenacity retries, our error types); this adds the ``since`` paging that
history needs. Each page is appended to the file as soon as it arrives, so an
interruption loses at most one page and the next run continues after the last candle.
Candles still open at the time of the request are never stored.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from cdb.exchange.market import MarketClient, _clean_rows
from cdb.feed.candles import INTERVAL_SECONDS
from cdb.history import store

PAGE = 1000  # candles per request (MEXC's and most exchanges' maximum)


class HistoryClient(MarketClient):
    """``MarketClient`` plus candles from a start time."""

    def fetch_since(self, symbol: str, timeframe: str, since_ms: int, limit: int = PAGE):
        """Up to ``limit`` candles with open time >= ``since_ms``, oldest first."""
        market = self._spot_market(symbol)
        rows = self._call(
            f"fetch_ohlcv {symbol} since {since_ms}",
            lambda: self.exchange.fetch_ohlcv(
                market["symbol"], timeframe, since=since_ms, limit=limit
            ),
        )
        return _clean_rows(rows, symbol)


@dataclass
class Outcome:
    symbol: str
    path: Path
    added: int
    first_ms: int | None
    last_ms: int | None
    resumed_from: int | None


def download_symbol(
    client: HistoryClient,
    symbol: str,
    *,
    timeframe: str,
    start_ms: int,
    end_ms: int,
    path: Path,
    progress: Callable[[int], None] | None = None,
    now_ms: Callable[[], int] = lambda: int(time.time() * 1000),
) -> Outcome:
    """Closed candles of ``[start_ms, end_ms)`` not yet in ``path``, appended page by page."""
    step = INTERVAL_SECONDS[timeframe] * 1000
    last = store.last_timestamp(path)
    since = max(start_ms, last + step) if last is not None else start_ms
    resumed = since if last is not None else None
    limit_ms = min(end_ms, now_ms() // step * step)  # the candle opening at now is still open
    added, first_new, last_new = 0, None, last
    while since < limit_ms:
        rows = client.fetch_since(symbol, timeframe, since, PAGE)
        rows = [
            r for r in rows if since <= r[0] < limit_ms and (last_new is None or r[0] > last_new)
        ]
        if not rows:
            # a gap (delisting, maintenance): skip a page's worth of time and look again
            since += PAGE * step
            if progress:
                progress(PAGE)
            continue
        added += store.append(path, symbol, rows)
        first_new = first_new if first_new is not None else rows[0][0]
        last_new = rows[-1][0]
        if progress:
            progress((last_new + step - since) // step)
        since = last_new + step
    return Outcome(symbol, path, added, first_new, last_new, resumed)

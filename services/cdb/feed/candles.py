"""Candles and the one pure transformation the feed exists for: candles → ``MarketData``.

Over the lookback window ending at the last closed candle:

* ``price`` is that candle's close;
* ``pct_change`` is ``(close_last / open_first - 1) * 100``, where ``open_first`` is the
  open of the first candle in the window (the price when the window began);
* ``volume`` is the **quote-currency** volume (e.g. USDT) summed over the window: a
  candle's own quote volume when the source has it, else ``base volume × close``.

Quote volume, because a threshold in dollars means the same for BTC and for a
token priced at 0.001. The window is chosen by time, not by count, so a missing
candle makes the window thinner, never longer; a window the data does not reach
back to the start of gives no event at all (a half window would fake a move).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Sequence
from typing import NamedTuple

from cdb.events import MarketData

INTERVAL_SECONDS: dict[str, int] = {
    "1m": 60,
    "5m": 300,
    "15m": 900,
    "30m": 1800,
    "1h": 3600,
    "4h": 14_400,
    "1d": 86_400,
}


class Candle(NamedTuple):
    """One OHLCV bar; ``open_ms`` is its open time in Unix milliseconds (ccxt's convention)."""

    open_ms: int
    open: float
    high: float
    low: float
    close: float
    volume: float  # base asset
    quote_volume: float | None = None  # quote asset, when the source reports it

    def quote(self) -> float:
        """Quote-currency volume: reported, or estimated as base volume × close."""
        return self.quote_volume if self.quote_volume is not None else self.volume * self.close


def window_candles(interval: str, lookback_min: int) -> int:
    """How many candles of ``interval`` make up the lookback window; it must divide evenly."""
    interval_s = INTERVAL_SECONDS[interval]
    lookback_s = lookback_min * 60
    if lookback_s < interval_s or lookback_s % interval_s:
        raise ValueError(
            f"SIGNAL_LOOKBACK_MIN={lookback_min} is not a whole number of {interval} candles"
        )
    return lookback_s // interval_s


def market_data_from_candles(
    symbol: str,
    candles: Sequence[Candle],
    *,
    lookback_min: int,
    interval: str = "1m",
    source: str = "live",
    timestamp: int | None = None,
) -> MarketData | None:
    """``MarketData`` for the window ending at the last of ``candles`` (all closed, oldest first).

    ``timestamp`` defaults to the last candle's close time (Unix seconds), so the same
    candles always give the same event. ``None`` when the candles do not cover the window.
    """
    if not candles:
        return None
    interval_ms = INTERVAL_SECONDS[interval] * 1000
    last = candles[-1]
    close_ms = last.open_ms + interval_ms
    window_start = close_ms - lookback_min * 60_000
    if candles[0].open_ms > window_start:
        return None  # the data starts inside the window: not enough history yet
    first_index = len(candles) - 1
    volume = 0.0
    # walk back from the end: the window is a suffix, usually short (15 candles)
    for index in range(len(candles) - 1, -1, -1):
        candle = candles[index]
        if candle.open_ms < window_start:
            break
        first_index = index
        volume += candle.quote()
    first = candles[first_index]
    return MarketData(
        timestamp=close_ms // 1000 if timestamp is None else timestamp,
        symbol=symbol,
        price=last.close,
        volume=volume,
        pct_change=(last.close / first.open - 1.0) * 100.0,
        interval=interval,
        source=source,
    )


class CandleWindow:
    """The recent candles of one symbol, enough for one lookback window (plus one)."""

    def __init__(self, size: int) -> None:
        self._candles: deque[Candle] = deque(maxlen=size + 1)

    def add(self, candle: Candle) -> bool:
        """Append a newer candle; an older or repeated one is ignored (returns False)."""
        if self._candles and candle.open_ms <= self._candles[-1].open_ms:
            return False
        self._candles.append(candle)
        return True

    def extend(self, candles: Iterable[Candle]) -> None:
        for candle in candles:
            self.add(candle)

    @property
    def candles(self) -> list[Candle]:
        return list(self._candles)

    @property
    def last_open_ms(self) -> int | None:
        return self._candles[-1].open_ms if self._candles else None

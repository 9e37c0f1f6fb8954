"""What the risk manager knows of the market: latest prices and each symbol's recent range.

This sits on the hot path (up to ~20,000 ``market_data`` events a second), so an
update is two dict writes and a few comparisons. The abnormal-move check keeps,
per symbol, the low and high of time buckets (window / 30 wide) covering the
window; the range (high − low) / low over those buckets is the "move within the
window". It is recomputed only when a new bucket starts.
"""

from __future__ import annotations

from collections import deque


class MoveWindow:
    """Low and high of one symbol's price over the last ``window_s`` seconds (bucketed)."""

    __slots__ = ("buckets", "bucket_s", "current", "hi", "lo", "span")

    def __init__(self, window_s: int) -> None:
        self.bucket_s = max(1, window_s // 30)
        self.span = window_s // self.bucket_s  # buckets older than current - span fall out
        self.buckets: deque[list[float]] = deque()
        self.current = -1
        self.lo = 0.0
        self.hi = 0.0

    def add(self, ts: int, price: float) -> float:
        """Record a price at event time ``ts``; returns the move within the window, percent."""
        bucket = ts // self.bucket_s
        if bucket == self.current:
            last = self.buckets[-1]
            if price < last[1]:
                last[1] = price
                if price < self.lo:
                    self.lo = price
            elif price > last[2]:
                last[2] = price
                if price > self.hi:
                    self.hi = price
        elif bucket > self.current:
            self.current = bucket
            self.buckets.append([bucket, price, price])
            oldest = bucket - self.span
            while self.buckets[0][0] < oldest:
                self.buckets.popleft()
            self.lo = min(b[1] for b in self.buckets)
            self.hi = max(b[2] for b in self.buckets)
        # an event older than the newest bucket (a late or replayed one) does not widen it
        return (self.hi - self.lo) / self.lo * 100.0

    def move_pct(self) -> float:
        return (self.hi - self.lo) / self.lo * 100.0 if self.lo > 0 else 0.0


class MarketView:
    """Latest price and event time per symbol, the moves, and the exchange's status."""

    def __init__(self, window_s: int) -> None:
        self.window_s = window_s
        self.prices: dict[str, float] = {}
        self.times: dict[str, int] = {}
        self.windows: dict[str, MoveWindow] = {}
        self.problem: str | None = None  # set while the feed reports the exchange not ok

    def update(self, symbol: str, price: float, ts: int) -> float:
        """Take one observation; returns the symbol's move within the window, percent."""
        self.prices[symbol] = price
        self.times[symbol] = ts
        window = self.windows.get(symbol)
        if window is None:
            window = self.windows[symbol] = MoveWindow(self.window_s)
        return window.add(ts, price)

    def move_pct(self, symbol: str) -> float:
        window = self.windows.get(symbol)
        return window.move_pct() if window is not None else 0.0

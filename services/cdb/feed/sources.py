"""The offline sources: the synthetic market and the replay of CSV files.

A source is polled by the service with the current time and answers with the
events to publish now and how long to wait before the next poll; it never
publishes itself and never sleeps, so it is tested without a clock or Redis.
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass, field
from typing import Any, Protocol

from cdb.events import Event, MarketData
from cdb.feed.candles import CandleWindow, market_data_from_candles, window_candles
from cdb.feed.synthetic import SyntheticMarket


@dataclass(slots=True)
class Poll:
    """What one poll produced: events to publish, and seconds until the next poll."""

    events: list[Event] = field(default_factory=list)
    delay: float = 0.0


class Source(Protocol):
    """The feed service's view of a source."""

    name: str

    def poll(self, now: float) -> Poll: ...

    @property
    def finished(self) -> bool:
        """True when the source will produce nothing more (a replay at its end)."""
        ...

    def status(self) -> dict[str, Any]: ...

    def close(self) -> None: ...


class SyntheticSource:
    """The synthetic market, one candle per symbol every ``period_s`` seconds, forever.

    The market's own clock is simulated (one candle interval per step); the events
    carry wall-clock timestamps, strictly increasing, so downstream staleness checks
    see fresh data whatever the speed. ``period_s = 0`` emits as fast as possible.
    Faster than one step a second the stamps run ahead of the clock (readers accept
    that up to their ``EVENT_MAX_LEAD_S``; ``cdb up`` raises it for such a feed).
    """

    name = "synthetic"

    def __init__(
        self,
        symbols: list[str],
        seed: int,
        *,
        interval: str = "1m",
        lookback_min: int = 15,
        period_s: float = 1.0,
        quote_volume: float = 5_000.0,
        batch: int = 500,
        start_prices: dict[str, float] | None = None,
    ) -> None:
        self.market = SyntheticMarket(
            symbols, seed, interval=interval, quote_volume=quote_volume, start_prices=start_prices
        )
        self.interval = interval
        self.lookback_min = lookback_min
        self.period_s = period_s
        self.steps_per_poll = 1 if period_s > 0 else max(1, batch // len(symbols))
        size = window_candles(interval, lookback_min)
        self.windows = {s: CandleWindow(size) for s in symbols}
        self.last_ts = 0
        self.steps = 0
        for _ in range(size):  # warm up: the first event already has a full window
            self._advance()

    def _advance(self) -> list[tuple[str, list]]:
        self.steps += 1
        out = []
        for symbol, candle in self.market.step():
            window = self.windows[symbol]
            window.add(candle)
            out.append((symbol, window.candles))
        return out

    def events_at(self, timestamp: int) -> list[Event]:
        """Advance one step and stamp its events with ``timestamp`` (deterministic given it)."""
        events: list[Event] = []
        for symbol, candles in self._advance():
            md = market_data_from_candles(
                symbol,
                candles,
                lookback_min=self.lookback_min,
                interval=self.interval,
                source="synthetic",
                timestamp=timestamp,
            )
            if md is not None:
                events.append(md)
        return events

    def poll(self, now: float) -> Poll:
        events: list[Event] = []
        for _ in range(self.steps_per_poll):
            self.last_ts = max(int(now), self.last_ts + 1)
            events.extend(self.events_at(self.last_ts))
        return Poll(events, self.period_s)

    @property
    def finished(self) -> bool:
        return False

    def status(self) -> dict[str, Any]:
        return {"steps": self.steps, "regimes": self.market.regimes()}

    def close(self) -> None:
        pass


class ReplaySource:
    """Candles from CSV files, in time order, as fast as possible or paced by ``speed``.

    Events carry the candle's close time, shifted by ``shift_s`` (the service sets it so
    the replay looks current when ``FEED_REPLAY_SHIFT_TO_NOW`` is on). With ``speed > 0``
    an event goes out when ``(its close time - the first close time) / speed`` seconds of
    wall time have passed since the first poll.
    """

    name = "replay"

    def __init__(
        self,
        rows: list[tuple[str, Any]],
        *,
        interval: str = "1m",
        lookback_min: int = 15,
        speed: float = 0.0,
        batch: int = 500,
        shift_to_now: bool = False,
    ) -> None:
        size = window_candles(interval, lookback_min)
        windows: dict[str, CandleWindow] = {}
        self.events: list[MarketData] = []
        for symbol, candle in rows:  # precomputed: the file is in memory anyway
            window = windows.setdefault(symbol, CandleWindow(size))
            window.add(candle)
            md = market_data_from_candles(
                symbol,
                window.candles,
                lookback_min=lookback_min,
                interval=interval,
                source="replay",
            )
            if md is not None:
                self.events.append(md)
        self.symbols = sorted(windows)
        self.times = [e.timestamp for e in self.events]
        self.speed = speed
        self.batch = batch
        self.shift_to_now = shift_to_now
        self.position = 0
        self._started: float | None = None
        self._shift = 0

    def poll(self, now: float) -> Poll:
        if self.finished:
            return Poll([], 1.0)
        if self._started is None:
            self._started = now
            if self.shift_to_now:
                self._shift = int(now) - self.times[0]
        start = self.position
        if self.speed > 0:
            due = self.times[0] + (now - self._started) * self.speed
            end = min(bisect.bisect_right(self.times, due, lo=start), start + self.batch)
        else:
            end = min(len(self.events), start + self.batch)
        self.position = end
        events: list[Event] = list(self.events[start:end])
        if self._shift:
            events = [e.model_copy(update={"timestamp": e.timestamp + self._shift}) for e in events]
        delay = 0.0
        if self.speed > 0 and end < len(self.times) and end - start < self.batch:
            wait = (self.times[end] - self.times[0]) / self.speed - (now - self._started)
            delay = max(0.0, min(wait, 1.0))  # wake at least once a second (health, stop)
        return Poll(events, delay)

    def max_lead_s(self) -> int:
        """How far, at most, an event time leads the wall clock, seconds.

        Shifted to now and played faster than real time (``speed > 1``), the stamps run
        ahead of the clock: the last one by the files' span × (1 − 1/speed). Zero otherwise.
        """
        if not self.shift_to_now or self.speed <= 1 or not self.times:
            return 0
        return math.ceil((self.times[-1] - self.times[0]) * (1 - 1 / self.speed))

    @property
    def finished(self) -> bool:
        return self.position >= len(self.events)

    def status(self) -> dict[str, Any]:
        return {
            "replayed": self.position,
            "total": len(self.events),
            "symbols": self.symbols,
            "finished": self.finished,
        }

    def close(self) -> None:
        pass

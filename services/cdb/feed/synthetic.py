"""A synthetic market: a seeded, deterministic random walk with quiet phases and momentum bursts.

Each symbol walks on its own random generator, seeded from ``(seed, symbol)``, so
the same seed gives the same candles for a symbol whatever other symbols are
configured. The walk switches between regimes — *quiet* (small moves, thin
volume), *normal*, and *bursts* up or down (a strong drift on several times the
volume) — and reverts gently to its starting price so it can run forever without
drifting to zero or to infinity. Bursts are what the momentum rule should catch;
quiet and normal phases are what it should ignore.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from cdb.feed.candles import INTERVAL_SECONDS, Candle


@dataclass(frozen=True, slots=True)
class Regime:
    """How the walk behaves for a while: drift and volatility per candle, volume multiple."""

    name: str
    drift: float  # log return per candle
    sigma: float  # standard deviation of the log return per candle
    volume: float  # multiple of the normal quote volume per candle
    min_len: int  # candles
    max_len: int


QUIET = Regime("quiet", 0.0, 0.0008, 0.3, 10, 40)
NORMAL = Regime("normal", 0.0, 0.002, 1.0, 10, 40)
BURST_UP = Regime("burst_up", 0.006, 0.003, 6.0, 8, 20)
BURST_DOWN = Regime("burst_down", -0.006, 0.003, 6.0, 8, 20)

#: What follows each regime, with weights.
TRANSITIONS: dict[str, tuple[tuple[Regime, float], ...]] = {
    "quiet": ((NORMAL, 0.6), (BURST_UP, 0.25), (BURST_DOWN, 0.15)),
    "normal": ((QUIET, 0.4), (NORMAL, 0.2), (BURST_UP, 0.25), (BURST_DOWN, 0.15)),
    "burst_up": ((QUIET, 0.5), (NORMAL, 0.5)),
    "burst_down": ((QUIET, 0.5), (NORMAL, 0.5)),
}

#: Plausible starting prices; other symbols get one drawn from their own seed.
START_PRICES = {"BTC": 60_000.0, "ETH": 3_000.0, "SOL": 150.0, "BNB": 550.0, "XRP": 0.6}

MEAN_REVERSION = 0.002  # per candle, on the log distance from the starting price


class SymbolWalk:
    """The walk of one symbol: deterministic given ``(seed, symbol)``."""

    def __init__(
        self, symbol: str, seed: int, quote_volume: float, start_price: float | None = None
    ) -> None:
        self.symbol = symbol
        self.rng = random.Random(f"{seed}/{symbol}")  # str seeds hash deterministically
        base = symbol.split("_", 1)[0]
        self.anchor = START_PRICES.get(base) or 10 ** self.rng.uniform(-2, 3)
        # ``start_price``: where a previous run left this symbol (the market continues there;
        # the mean reversion still pulls gently towards the anchor)
        self.price = start_price if start_price and start_price > 0 else self.anchor
        self.quote_volume = quote_volume
        self.regime = NORMAL
        self.left = self.rng.randint(NORMAL.min_len, NORMAL.max_len)

    def _next_regime(self) -> None:
        choices = TRANSITIONS[self.regime.name]
        self.regime = self.rng.choices([r for r, _ in choices], [w for _, w in choices])[0]
        self.left = self.rng.randint(self.regime.min_len, self.regime.max_len)

    def step(self, open_ms: int) -> Candle:
        """The next candle, opening at ``open_ms``."""
        if self.left <= 0:
            self._next_regime()
        self.left -= 1
        rng, regime = self.rng, self.regime
        pull = -MEAN_REVERSION * math.log(self.price / self.anchor)
        opened = self.price
        closed = opened * math.exp(regime.drift + pull + regime.sigma * rng.gauss(0.0, 1.0))
        wick = regime.sigma / 2
        high = max(opened, closed) * (1 + abs(rng.gauss(0.0, wick)))
        low = min(opened, closed) * (1 - min(0.5, abs(rng.gauss(0.0, wick))))
        quote = self.quote_volume * regime.volume * rng.lognormvariate(0.0, 0.3)
        self.price = closed
        return Candle(open_ms, opened, high, low, closed, quote / closed, quote)


class SyntheticMarket:
    """All symbols' walks, advanced one candle at a time on a simulated clock."""

    def __init__(
        self,
        symbols: list[str],
        seed: int,
        *,
        interval: str = "1m",
        start_ms: int = 0,
        quote_volume: float = 5_000.0,
        start_prices: dict[str, float] | None = None,
    ) -> None:
        """``start_prices``: symbol → price to start from (default: each symbol's anchor)."""
        if not symbols:
            raise ValueError("the synthetic market needs at least one symbol")
        start = start_prices or {}
        self.walks = [SymbolWalk(s, seed, quote_volume, start.get(s)) for s in symbols]
        self.interval_ms = INTERVAL_SECONDS[interval] * 1000
        self.next_open_ms = start_ms

    def step(self) -> list[tuple[str, Candle]]:
        """One candle per symbol, all opening at the same simulated time."""
        open_ms = self.next_open_ms
        self.next_open_ms += self.interval_ms
        return [(walk.symbol, walk.step(open_ms)) for walk in self.walks]

    def regimes(self) -> dict[str, str]:
        """Each symbol's current regime (shown in ``/status``)."""
        return {walk.symbol: walk.regime.name for walk in self.walks}

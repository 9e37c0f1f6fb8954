"""Features of one observation, from the ``market_data`` stream alone (pure, no I/O).

The advisor and the trainer compute features with this one class, on the same
``MarketData`` events (the trainer makes them from candles with the feed's own
``market_data_from_candles``), so what the model learnt is what it is shown live.

Windows are counted in observations of a symbol (one per closed candle), in units of
the lookback window ``W`` the feed and the momentum rule use (``SIGNAL_LOOKBACK_MIN``
in candles, 15 for 1m candles): the window itself and ``LONG_WINDOWS × W``.
Features, in order (``FEATURES``):

``pct_change``       the feed's move over the window, % (the momentum rule's input)
``log_volume``       log10(1 + quote volume over the window) (the rule's other input)
``momentum_rule``    1.0 when the momentum rule fires on this observation, else 0.0
``ret_1``            % move since the previous observation
``ret_long``         % move over the long window (LONG_WINDOWS × W observations)
``volume_ratio``     window volume / its mean over the long window's observations
``volatility``       standard deviation of the 1-step % moves over the window
``volatility_long``  the same over the long window

A symbol needs ``LONG_WINDOWS × W + 1`` observations before it is scored; a gap of more
than ``MAX_GAP_INTERVALS`` candles (or the feed restarting) starts its history again, and
an observation not newer than the last one (a redelivery) is ignored.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

from cdb.events import MarketData
from cdb.signal.strategies.momentum import Momentum

FEATURES: tuple[str, ...] = (
    "pct_change",
    "log_volume",
    "momentum_rule",
    "ret_1",
    "ret_long",
    "volume_ratio",
    "volatility",
    "volatility_long",
)
LONG_WINDOWS = 4
MAX_GAP_INTERVALS = 5


def _std(values: list[float]) -> float:
    n = len(values)
    if n < 2:
        return 0.0
    mean = sum(values) / n
    return math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))


@dataclass
class _History:
    ts: deque[int]
    price: deque[float]
    volume: deque[float]


@dataclass
class FeatureBuilder:
    """Per-symbol history → one feature vector per observation (``None`` while warming up).

    ``window`` is the lookback window in observations (``window_candles(interval,
    lookback_min)``), ``interval_s`` the candle length in seconds (for the gap rule), and
    ``rule`` the momentum rule whose decision is a feature.
    """

    window: int
    interval_s: int
    rule: Momentum
    _symbols: dict[str, _History] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.window < 1:
            raise ValueError(f"window must be >= 1 observation, got {self.window}")

    @property
    def long(self) -> int:
        """The long window, in observations."""
        return LONG_WINDOWS * self.window

    @property
    def warmup(self) -> int:
        """Observations of a symbol needed before its first feature vector."""
        return self.long + 1

    def last_timestamp(self, symbol: str) -> int | None:
        hist = self._symbols.get(symbol)
        return hist.ts[-1] if hist and hist.ts else None

    def update(self, md: MarketData) -> list[float] | None:
        """Add one observation; its features, or ``None`` (warming up, or not newer)."""
        size = self.warmup
        hist = self._symbols.get(md.symbol)
        if hist is None:
            hist = self._symbols[md.symbol] = _History(
                deque(maxlen=size), deque(maxlen=size), deque(maxlen=size)
            )
        elif hist.ts:
            if md.timestamp <= hist.ts[-1]:
                return None  # a redelivery or an older entry: already seen
            if md.timestamp - hist.ts[-1] > MAX_GAP_INTERVALS * self.interval_s:
                hist.ts.clear()
                hist.price.clear()
                hist.volume.clear()
        hist.ts.append(md.timestamp)
        hist.price.append(md.price)
        hist.volume.append(md.volume)
        if len(hist.ts) < size:
            return None
        prices = list(hist.price)
        volumes = list(hist.volume)
        steps = [(b / a - 1.0) * 100.0 for a, b in zip(prices, prices[1:], strict=False)]
        past_volume = sum(volumes[:-1]) / (len(volumes) - 1)
        return [
            md.pct_change,
            math.log10(1.0 + md.volume),
            1.0 if self.rule.evaluate(md) is not None else 0.0,
            steps[-1],
            (prices[-1] / prices[0] - 1.0) * 100.0,
            md.volume / past_volume if past_volume > 0 else 1.0,
            _std(steps[-self.window :]),
            _std(steps),
        ]

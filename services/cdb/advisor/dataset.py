"""Candles → observations → (features, label) rows, with the feed's and the rule's own code.

Each candle close becomes the ``MarketData`` event the feed would publish
(``market_data_from_candles`` over the lookback window), which goes through the
advisor's ``FeatureBuilder``. The **label** of an observation is whether buying at its
price and selling ``horizon`` observations later beats the costs:

``forward_return_pct = (price[t + horizon] / price[t] - 1) × 100 > cost_pct``

with ``cost_pct = 2 × fee_pct + min_edge_pct`` (a round trip pays the fee twice; the
default 0.1 % is the paper exchange's fee, ``PAPER_FEE_PCT``). Observations without
``horizon`` later observations have no label and are left out.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cdb.advisor.features import FEATURES, FeatureBuilder
from cdb.feed.candles import INTERVAL_SECONDS, Candle, market_data_from_candles, window_candles
from cdb.signal.strategies.momentum import Momentum


@dataclass(frozen=True)
class LabelSpec:
    """How a row is labelled: the horizon in observations and the costs to beat, in %."""

    horizon: int = 15
    fee_pct: float = 0.1
    min_edge_pct: float = 0.0

    @property
    def cost_pct(self) -> float:
        return 2 * self.fee_pct + self.min_edge_pct

    def describe(self) -> str:
        return (
            f"forward return over {self.horizon} observations > {self.cost_pct:g} % "
            f"(2 x fee {self.fee_pct:g} % + edge {self.min_edge_pct:g} %)"
        )


@dataclass(frozen=True)
class WindowSpec:
    """The feed's window: ``SIGNAL_LOOKBACK_MIN`` and the candle interval."""

    lookback_min: int = 15
    interval: str = "1m"

    @property
    def candles(self) -> int:
        return window_candles(self.interval, self.lookback_min)

    @property
    def interval_s(self) -> int:
        return INTERVAL_SECONDS[self.interval]


@dataclass
class Dataset:
    """Labelled rows in time order: ``x`` (n × features), ``y`` (0/1), and per row
    ``ts`` (Unix s), ``symbol``, ``price``, ``forward_pct`` and ``rule`` (the momentum rule
    fired)."""

    x: np.ndarray
    y: np.ndarray
    ts: np.ndarray
    symbol: np.ndarray
    price: np.ndarray
    forward_pct: np.ndarray
    rule: np.ndarray

    def __len__(self) -> int:
        return len(self.y)

    def select(self, mask: np.ndarray) -> Dataset:
        return Dataset(*(getattr(self, f)[mask] for f in self.__dataclass_fields__))


def build(
    candles: dict[str, list[Candle]], window: WindowSpec, label: LabelSpec, rule: Momentum
) -> Dataset:
    """Every labelled observation of every symbol, sorted by time then symbol."""
    rows: list[tuple] = []
    size = window.candles + 1
    for symbol, series in candles.items():
        builder = FeatureBuilder(window.candles, window.interval_s, rule)
        observed: list[tuple[int, float, list[float] | None, bool]] = []
        for i in range(len(series)):
            md = market_data_from_candles(
                symbol,
                series[max(0, i - size + 1) : i + 1],
                lookback_min=window.lookback_min,
                interval=window.interval,
                source="replay",
            )
            if md is None:
                continue
            feats = builder.update(md)
            observed.append((md.timestamp, md.price, feats, rule.evaluate(md) is not None))
        for k, (ts, price, feats, fired) in enumerate(observed[: -label.horizon or None]):
            if feats is None:
                continue
            forward = (observed[k + label.horizon][1] / price - 1.0) * 100.0
            rows.append((ts, symbol, price, forward, fired, feats))
    rows.sort(key=lambda r: (r[0], r[1]))
    n = len(rows)
    forward = np.array([r[3] for r in rows], dtype=float)
    return Dataset(
        x=np.array([r[5] for r in rows], dtype=float).reshape(n, len(FEATURES)),
        y=(forward > label.cost_pct).astype(int),
        ts=np.array([r[0] for r in rows], dtype=np.int64),
        symbol=np.array([r[1] for r in rows], dtype=object),
        price=np.array([r[2] for r in rows], dtype=float),
        forward_pct=forward,
        rule=np.array([r[4] for r in rows], dtype=bool),
    )

"""The design's momentum rule: a strong move on real volume is a BUY (optionally a SELL).

``pct_change >= SIGNAL_THRESHOLD_PCT`` and ``volume >= SIGNAL_MIN_VOLUME`` → BUY with
``confidence = min(pct_change / 10, 1.0)``; with ``SIGNAL_SELL_ENABLED`` the mirror
image (``pct_change <= -threshold``) is a SELL. Anything else is no signal, and a
debug line says which bound failed. Runs once per market_data event, so it only
compares numbers unless it fires.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from cdb.events import MarketData, Signal
from cdb.signal.settings import SignalSettings
from cdb.signal.strategy import signal_id

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Momentum:
    """The momentum rule with its bounds; ``evaluate`` is pure."""

    threshold_pct: float = 3.0
    min_volume: float = 100_000.0
    sell_enabled: bool = False
    name: str = "momentum"

    def __post_init__(self) -> None:
        if not self.threshold_pct > 0:
            raise ValueError(f"threshold_pct must be > 0, got {self.threshold_pct}")
        if not self.min_volume >= 0:
            raise ValueError(f"min_volume must be >= 0, got {self.min_volume}")

    def evaluate(self, md: MarketData) -> Signal | None:
        pct = md.pct_change
        if pct >= self.threshold_pct:
            side = "BUY"
        elif self.sell_enabled and pct <= -self.threshold_pct:
            side = "SELL"
        else:
            if log.isEnabledFor(logging.DEBUG):
                log.debug(
                    "no signal for %s: pct_change %+.2f%% within ±%.2f%%%s",
                    md.symbol,
                    pct,
                    self.threshold_pct,
                    "" if self.sell_enabled else " (only rises count; SELL disabled)",
                )
            return None
        if md.volume < self.min_volume:
            if log.isEnabledFor(logging.DEBUG):
                log.debug(
                    "no signal for %s: volume %.0f < minimum %.0f (pct_change %+.2f%%)",
                    md.symbol,
                    md.volume,
                    self.min_volume,
                    pct,
                )
            return None
        threshold = self.threshold_pct if side == "BUY" else -self.threshold_pct
        return Signal(
            timestamp=md.timestamp,
            signal_id=signal_id(self.name, md.symbol, md.timestamp),
            symbol=md.symbol,
            side=side,
            confidence=min(abs(pct) / 10.0, 1.0),
            price=md.price,
            pct_change=pct,
            volume=md.volume,
            reason=f"Momentum: {pct:+.1f}% (threshold {threshold:.1f}%)",
            strategy=self.name,
        )


def build(settings: SignalSettings) -> Momentum:
    """The rule with the bounds from the settings."""
    return Momentum(
        threshold_pct=settings.SIGNAL_THRESHOLD_PCT,
        min_volume=settings.SIGNAL_MIN_VOLUME,
        sell_enabled=settings.SIGNAL_SELL_ENABLED,
    )

"""The engine loop's logic: run every strategy on every observation, apply the cooldown, count.

No I/O here: the service reads batches and publishes what ``evaluate_batch``
returns. Counters are plain integers read by ``/status`` and ``/metrics`` at
request time, so the hot path (≥ 100,000 events/s) only adds to them.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from cdb.events import Event, MarketData, Signal
from cdb.signal.cooldown import Cooldown
from cdb.signal.strategy import Strategy

log = logging.getLogger(__name__)


class SignalEngine:
    """Strategies + cooldown + counters."""

    def __init__(self, strategies: Iterable[Strategy], cooldown_s: int) -> None:
        self.strategies = list(strategies)
        if not self.strategies:
            raise ValueError("at least one strategy is needed")
        self.cooldown = Cooldown(cooldown_s)
        self.evaluated = 0
        self.ignored = 0
        self.suppressed = 0
        self.generated: dict[tuple[str, str], int] = {}  # (strategy, side) -> count
        self.last_signal: Signal | None = None

    @property
    def signals_generated(self) -> int:
        return sum(list(self.generated.values()))  # list(): one step, safe across threads

    def evaluate(self, event: Event) -> list[Signal]:
        """Signals for one event; anything but ``market_data`` (e.g. ``market_status``) is ignored."""
        if type(event) is not MarketData:
            self.ignored += 1
            return []
        self.evaluated += 1
        out: list[Signal] = []
        for strategy in self.strategies:
            signal = strategy.evaluate(event)
            if signal is None:
                continue
            if not self.cooldown.allow((strategy.name, signal.symbol), signal.timestamp):
                self.suppressed += 1
                if log.isEnabledFor(logging.DEBUG):
                    log.debug(
                        "signal for %s suppressed: %s cooldown since %s",
                        signal.symbol,
                        strategy.name,
                        self.cooldown.last((strategy.name, signal.symbol)),
                    )
                continue
            out.append(signal)
        return out

    def published(self, signals: list[Signal]) -> None:
        """Count signals once they are on the stream (a failed publish is retried, not counted)."""
        for signal in signals:
            key = (signal.strategy, signal.side)
            self.generated[key] = self.generated.get(key, 0) + 1
        if signals:
            self.last_signal = signals[-1]

    def status(self) -> dict[str, Any]:
        """Fields for ``/status``."""
        last = self.last_signal
        return {
            "signals_generated": self.signals_generated,
            "last_signal": last.model_dump(mode="json") if last else None,
            "market_data_evaluated": self.evaluated,
            "signals_suppressed_cooldown": self.suppressed,
            "strategies": [s.name for s in self.strategies],
        }

"""The strategy interface: one market observation in, at most one signal out.

A strategy is any object with a ``name`` and ``evaluate(md) -> Signal | None``. It
must be a pure function of its settings and the event (no clock, no I/O), so a
replay gives the same signals and a redelivered entry the same ``signal_id``.
Strategies live in ``cdb.signal.strategies``, one module each, with a
``build(settings) -> Strategy`` function; ``SIGNAL_STRATEGIES`` names the modules.
"""

from __future__ import annotations

import importlib
from typing import Protocol, runtime_checkable

from cdb.events import MarketData, Signal, stable_id
from cdb.settings import SettingsError
from cdb.signal.settings import SignalSettings

STRATEGY_PACKAGE = "cdb.signal.strategies"


@runtime_checkable
class Strategy(Protocol):
    """What the engine needs from a strategy."""

    name: str

    def evaluate(self, md: MarketData) -> Signal | None:
        """A signal for this observation, or ``None`` (and a debug line saying why)."""
        ...


def signal_id(strategy: str, symbol: str, timestamp: int) -> str:
    """Deterministic id: the same market_data entry, redelivered, yields the same signal id."""
    return stable_id(strategy, symbol, timestamp)


def load_strategies(settings: SignalSettings) -> list[Strategy]:
    """Build every strategy named in ``SIGNAL_STRATEGIES``; an unknown name is a settings error."""
    strategies: list[Strategy] = []
    for name in settings.strategy_names():
        try:
            module = importlib.import_module(f"{STRATEGY_PACKAGE}.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"{STRATEGY_PACKAGE}.{name}":
                raise  # the module exists but one of its imports is missing: a real bug
            raise SettingsError(
                f"SIGNAL_STRATEGIES names unknown strategy {name!r} "
                f"(no module {STRATEGY_PACKAGE}.{name})"
            ) from None
        build = getattr(module, "build", None)
        if build is None:
            raise SettingsError(f"strategy module {module.__name__} has no build(settings)")
        strategy = build(settings)
        if not isinstance(strategy, Strategy):
            raise SettingsError(f"{module.__name__}.build() did not return a Strategy")
        strategies.append(strategy)
    return strategies

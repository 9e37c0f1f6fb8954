"""``cdb run signal``: reads ``market_data``, publishes ``signals`` (port 8001).

Built for throughput: a whole batch is evaluated in memory, its signals go out in
one pipelined round trip, and only then is the batch acknowledged (a crash in
between redelivers the entries, which give the same signal ids). No per-event
INFO logging and no database: the persistence writer stores the signals.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, ClassVar

from prometheus_client.core import CounterMetricFamily

from cdb.bus import MARKET_DATA, Bus, Delivery
from cdb.events import Signal
from cdb.service import TRANSIENT, Service
from cdb.signal.engine import SignalEngine
from cdb.signal.settings import SignalSettings
from cdb.signal.strategy import load_strategies

log = logging.getLogger(__name__)


class _SignalCollector:
    """Exports the engine's counters at scrape time."""

    def __init__(self, engine: SignalEngine) -> None:
        self.engine = engine

    def collect(self):
        counts = dict(self.engine.generated)
        for strategy in self.engine.strategies:  # the series exist from the start, at 0
            counts.setdefault((strategy.name, "BUY"), 0)
        # each under its conventional name, then its old one (an alias for one release)
        for name in ("cdb_signal_generated", "signals_generated"):
            generated = CounterMetricFamily(name, "Signals published", labels=["strategy", "side"])
            for (strategy, side), value in sorted(counts.items()):
                generated.add_metric([strategy, side], value)
            yield generated
        for name in ("cdb_signal_market_data_evaluated", "signal_market_data_evaluated"):
            yield CounterMetricFamily(
                name, "market_data events run through the strategies", value=self.engine.evaluated
            )
        for name in ("cdb_signal_suppressed_cooldown", "signals_suppressed_cooldown"):
            yield CounterMetricFamily(
                name,
                "Signals a strategy produced but the per-symbol cooldown held back",
                value=self.engine.suppressed,
            )


class SignalService(Service):
    """Momentum (and any other configured strategy) over the market_data stream."""

    name: ClassVar[str] = "signal"
    default_port: ClassVar[int] = 8001
    settings_class: ClassVar[type[SignalSettings]] = SignalSettings
    streams: ClassVar[tuple[str, ...]] = (MARKET_DATA,)

    def __init__(self, settings: SignalSettings, bus: Bus) -> None:
        super().__init__(settings, bus)
        self.engine = SignalEngine(load_strategies(settings), settings.SIGNAL_COOLDOWN_S)
        self.registry.register(_SignalCollector(self.engine))
        log.info(
            "strategies %s, threshold %.2f%%, min volume %.0f, sell %s, cooldown %ss",
            ",".join(s.name for s in self.engine.strategies),
            settings.SIGNAL_THRESHOLD_PCT,
            settings.SIGNAL_MIN_VOLUME,
            "on" if settings.SIGNAL_SELL_ENABLED else "off",
            settings.SIGNAL_COOLDOWN_S,
        )

    def handle_batch(self, deliveries: list[Delivery], done: Callable[[Delivery], None]) -> None:
        evaluate = self.engine.evaluate
        cooldown_before = self.engine.cooldown.snapshot()
        signals: list[Signal] = []
        handled: list[Delivery] = []
        for delivery in deliveries:
            try:
                found = evaluate(delivery.event)
            except TRANSIENT:
                raise
            except Exception as exc:  # a strategy bug must not block the stream
                log.exception("strategy failed on %s", delivery.entry_id)
                self.bus.dead_letter(delivery, f"handler error: {type(exc).__name__}: {exc}"[:500])
                continue
            if found:
                signals.extend(found)
            handled.append(delivery)
        if signals:
            try:  # before the ack: a failure here redelivers the batch
                self.bus.publish_many(signals)
            except BaseException:
                # The redelivered batch must meet the cooldown as it was, or it would
                # suppress its own signals; their ids are the same the second time.
                self.engine.cooldown.restore(cooldown_before)
                raise
            self.engine.published(signals)
            for signal in signals:
                log.info(
                    "signal %s %s %s conf %.2f: %s",
                    signal.signal_id,
                    signal.side,
                    signal.symbol,
                    signal.confidence,
                    signal.reason,
                )
        for delivery in handled:
            done(delivery)

    def status(self) -> dict[str, Any]:
        return self.engine.status()


SERVICE = SignalService

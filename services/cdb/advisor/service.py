"""``cdb run advisor``: reads ``market_data``, publishes ``ml_signals`` (port 8007). Shadow only.

It reads one stream and writes one: nothing it publishes goes to ``signals`` or
``orders``, and neither the risk manager nor execution reads ``ml_signals`` (the bus
dead-letters an ``ml_signal`` found on any other stream). A batch is evaluated in memory,
its ml_signals go out in one round trip, and only then is the batch acknowledged; if the
publication fails, the advisor's state is put back and the redelivered batch gives the
same signals with the same ids.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from cdb.advisor.agreement import CATEGORIES
from cdb.advisor.engine import Advisor
from cdb.advisor.linear import LinearModel, ModelError
from cdb.advisor.settings import AdvisorSettings
from cdb.bus import MARKET_DATA, Bus, Delivery
from cdb.events import MlSignal
from cdb.service import TRANSIENT, Service
from cdb.settings import SettingsError
from cdb.signal.strategies.momentum import Momentum

log = logging.getLogger(__name__)


class _AdvisorCollector:
    """Exports the advisor's counters at scrape time."""

    def __init__(self, service: AdvisorService) -> None:
        self.service = service

    def collect(self):
        a = self.service.advisor
        info = GaugeMetricFamily(
            "cdb_advisor_model_info", "The loaded model (value 1)", labels=["version", "threshold"]
        )
        info.add_metric([a.model.version, f"{a.threshold:.4f}"], 1)
        yield info
        obs = CounterMetricFamily(
            "cdb_advisor_observations", "market_data observations, by result", labels=["result"]
        )
        for result, n in sorted(a.observations.items()):
            obs.add_metric([result], n)
        yield obs
        decisions = CounterMetricFamily(
            "cdb_advisor_decisions",
            "Scored observations by agreement of model and rules (before cooldowns)",
            labels=["symbol", "agreement"],
        )
        for (symbol, cat), n in sorted(a.agreement.decisions.items()):
            decisions.add_metric([symbol, cat], n)
        if not a.agreement.decisions:
            for cat in CATEGORIES:
                decisions.add_metric(["", cat], 0)
        yield decisions
        outcomes = CounterMetricFamily(
            "cdb_advisor_outcomes",
            "Decisions whose forward return is known: hit (beat the costs) or miss",
            labels=["symbol", "agreement", "outcome"],
        )
        for (symbol, cat, outcome), n in sorted(a.agreement.outcomes.items()):
            outcomes.add_metric([symbol, cat, outcome], n)
        yield outcomes
        forward = GaugeMetricFamily(
            "cdb_advisor_forward_return_pct_sum",
            "Sum of the known forward returns (%) of decisions, by agreement",
            labels=["symbol", "agreement"],
        )
        for (symbol, cat), value in sorted(a.agreement.forward_pct_sum.items()):
            forward.add_metric([symbol, cat], value)
        yield forward
        published = CounterMetricFamily(
            "cdb_advisor_ml_signals", "ml_signal events published", labels=["symbol"]
        )
        for symbol, n in sorted(a.published_by_symbol.items()):
            published.add_metric([symbol], n)
        yield published
        yield CounterMetricFamily(
            "cdb_advisor_suppressed_cooldown",
            "ml_signals the per-symbol cooldown held back",
            value=a.suppressed,
        )


def load_model(settings: AdvisorSettings) -> LinearModel:
    """The artifact named by ``ADVISOR_MODEL_PATH``, checked against the feed's window."""
    try:
        model = LinearModel.load(Path(settings.ADVISOR_MODEL_PATH))
    except ModelError as exc:
        raise SettingsError(f"ADVISOR_MODEL_PATH {exc}") from None
    if model.lookback_min != settings.SIGNAL_LOOKBACK_MIN:
        raise SettingsError(
            f"ADVISOR_MODEL_PATH model {model.version} was trained for SIGNAL_LOOKBACK_MIN="
            f"{model.lookback_min}, but SIGNAL_LOOKBACK_MIN is {settings.SIGNAL_LOOKBACK_MIN}"
        )
    return model


class AdvisorService(Service):
    """The model in shadow mode beside the momentum rule."""

    name: ClassVar[str] = "advisor"
    default_port: ClassVar[int] = 8007
    settings_class: ClassVar[type[AdvisorSettings]] = AdvisorSettings
    streams: ClassVar[tuple[str, ...]] = (MARKET_DATA,)

    @classmethod
    def observer_warmup_s(cls, settings: AdvisorSettings) -> float:
        """An observer (read rights only, cdb.redis_acl), starting one lookback window and a
        minute back, so its features are warm at once after a restart."""
        return (settings.SIGNAL_LOOKBACK_MIN + 1) * 60.0

    def __init__(self, settings: AdvisorSettings, bus: Bus) -> None:
        super().__init__(settings, bus)
        model = load_model(settings)
        self.advisor = Advisor(
            model,
            Momentum(settings.SIGNAL_THRESHOLD_PCT, settings.SIGNAL_MIN_VOLUME),
            threshold=settings.ADVISOR_THRESHOLD or None,
            cooldown_s=settings.ADVISOR_COOLDOWN_S,
            top_features=settings.ADVISOR_TOP_FEATURES,
        )
        self.registry.register(_AdvisorCollector(self))
        log.info(
            "shadow mode: model %s (%s), threshold %.3f, label: %s",
            model.version,
            model.meta["training_data"]["hash"],
            self.advisor.threshold,
            model.meta["label"]["definition"],
        )

    def handle_batch(self, deliveries: list[Delivery], done: Callable[[Delivery], None]) -> None:
        before = self.advisor.snapshot()
        signals: list[MlSignal] = []
        handled: list[Delivery] = []
        for delivery in deliveries:
            try:
                found = self.advisor.evaluate(delivery.event)
            except TRANSIENT:
                raise
            except Exception as exc:  # a scoring bug must not block the stream
                log.exception("scoring failed on %s", delivery.entry_id)
                self.bus.dead_letter(delivery, f"handler error: {type(exc).__name__}: {exc}"[:500])
                continue
            if found is not None:
                signals.append(found)
            handled.append(delivery)
        if signals:
            try:
                self.bus.publish_many(signals)
            except BaseException:
                self.advisor.restore(before)
                raise
            self.advisor.published(signals)
            for s in signals:
                log.info(
                    "ml_signal %s %s %s p %.2f (rule %s): %s",
                    s.signal_id,
                    s.side,
                    s.symbol,
                    s.probability,
                    "agrees" if s.rule_signal else "silent",
                    ", ".join(f"{c.feature} {c.contribution:+.2f}" for c in s.contributions),
                )
        for delivery in handled:
            done(delivery)

    def status(self) -> dict[str, Any]:
        return self.advisor.status()


SERVICE = AdvisorService

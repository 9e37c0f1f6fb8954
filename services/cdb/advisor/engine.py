"""The advisor's logic per observation: features → score → agreement → maybe an ``ml_signal``.

No I/O: the service reads batches and publishes what ``evaluate`` returns. State (the
feature history, the agreement counters, the cooldown) can be snapshotted and restored,
so a batch whose publication failed is evaluated again from the same state.
"""

from __future__ import annotations

import copy
from typing import Any

from cdb.advisor.agreement import Agreement
from cdb.advisor.features import FeatureBuilder
from cdb.advisor.linear import LinearModel
from cdb.events import Event, FeatureContribution, MarketData, MlSignal, stable_id
from cdb.feed.candles import INTERVAL_SECONDS, window_candles
from cdb.signal.cooldown import Cooldown
from cdb.signal.strategies.momentum import Momentum


class Advisor:
    """One model, the rule it is compared with, and the counters ``/metrics`` exports.

    ``rule`` is the momentum rule as the signal engine runs it (the bot's settings); the
    model's own ``momentum_rule`` feature uses the rule settings it was trained with.
    """

    def __init__(
        self,
        model: LinearModel,
        rule: Momentum,
        *,
        threshold: float | None = None,
        cooldown_s: int = 300,
        top_features: int = 3,
    ) -> None:
        self.model = model
        self.rule = rule
        self.threshold = threshold or model.threshold
        self.top_features = top_features
        trained_rule = Momentum(
            float(model.meta["rule"]["threshold_pct"]), float(model.meta["rule"]["min_volume"])
        )
        self.builder = FeatureBuilder(
            window_candles(model.interval, model.lookback_min),
            INTERVAL_SECONDS[model.interval],
            trained_rule,
        )
        self.agreement = Agreement(model.horizon, model.cost_pct)
        self.cooldown = Cooldown(cooldown_s)
        self.observations: dict[str, int] = {"scored": 0, "warming_up": 0, "other_interval": 0}
        self.published_by_symbol: dict[str, int] = {}
        self.suppressed = 0
        self.last_signal: MlSignal | None = None

    def evaluate(self, event: Event) -> MlSignal | None:
        """The ml_signal for one event, if the model signals and the cooldown allows."""
        if type(event) is not MarketData:
            return None
        md = event
        if md.interval != self.model.interval:
            self.observations["other_interval"] += 1
            return None
        x = self.builder.update(md)
        if x is None:
            self.observations["warming_up"] += 1
            return None
        self.observations["scored"] += 1
        p = self.model.probability(x)
        ml = p >= self.threshold
        rule = self.rule.evaluate(md) is not None
        self.agreement.record(md.symbol, md.price, rule, ml)
        if not ml:
            return None
        if not self.cooldown.allow(md.symbol, md.timestamp):
            self.suppressed += 1
            return None
        return MlSignal(
            timestamp=md.timestamp,
            signal_id=stable_id("ml", self.model.version, md.symbol, md.timestamp),
            symbol=md.symbol,
            side="BUY",
            probability=min(max(p, 0.0), 1.0),
            threshold=self.threshold,
            model_version=self.model.version,
            price=md.price,
            rule_signal=rule,
            contributions=[
                FeatureContribution(**c) for c in self.model.explain(x, self.top_features)
            ],
        )

    def snapshot(self) -> Any:
        return copy.deepcopy(
            (self.builder._symbols, self.agreement, self.cooldown.snapshot(), self.observations)
        )

    def restore(self, state: Any) -> None:
        symbols, agreement, cooldown, observations = copy.deepcopy(state)
        self.builder._symbols = symbols
        self.agreement = agreement
        self.cooldown.restore(cooldown)
        self.observations = observations

    def published(self, signals: list[MlSignal]) -> None:
        for s in signals:
            self.published_by_symbol[s.symbol] = self.published_by_symbol.get(s.symbol, 0) + 1
        if signals:
            self.last_signal = signals[-1]

    def status(self) -> dict[str, Any]:
        last = self.last_signal
        return {
            "mode": "shadow",
            "model_version": self.model.version,
            "threshold": self.threshold,
            "observations": dict(self.observations),
            "ml_signals": sum(list(self.published_by_symbol.values())),
            "suppressed_cooldown": self.suppressed,
            "agreement": self.agreement.totals(),
            "last_ml_signal": last.model_dump(mode="json") if last else None,
        }

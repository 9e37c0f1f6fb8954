"""Agreement between the model and the rules, per symbol, and the forward outcome of each.

Pure bookkeeping, read by ``/metrics``. Every scored observation is one of ``both``,
``only_rules``, ``only_ml`` or ``neither`` (the two decisions before either side's
cooldown). A decision where at least one side signalled waits ``horizon`` further
observations of its symbol; then its forward return is known and it counts as a
``hit`` (return > the model's costs) or a ``miss``, the same label the model learnt.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

CATEGORIES = ("both", "only_rules", "only_ml", "neither")


def category(rule: bool, ml: bool) -> str:
    if rule and ml:
        return "both"
    if rule:
        return "only_rules"
    return "only_ml" if ml else "neither"


@dataclass
class Agreement:
    """Counters per (symbol, category) and per (symbol, category, outcome)."""

    horizon: int
    cost_pct: float
    decisions: dict[tuple[str, str], int] = field(default_factory=dict)
    outcomes: dict[tuple[str, str, str], int] = field(default_factory=dict)
    forward_pct_sum: dict[tuple[str, str], float] = field(default_factory=dict)
    _pending: dict[str, deque] = field(default_factory=dict)

    def record(self, symbol: str, price: float, rule: bool, ml: bool) -> str:
        """Count one observation (resolving decisions it completes); returns its category."""
        queue = self._pending.setdefault(symbol, deque())
        for item in queue:
            item[0] -= 1
        while queue and queue[0][0] <= 0:
            _, entry, cat = queue.popleft()
            forward = (price / entry - 1.0) * 100.0
            outcome = "hit" if forward > self.cost_pct else "miss"
            key = (symbol, cat, outcome)
            self.outcomes[key] = self.outcomes.get(key, 0) + 1
            self.forward_pct_sum[(symbol, cat)] = (
                self.forward_pct_sum.get((symbol, cat), 0.0) + forward
            )
        cat = category(rule, ml)
        self.decisions[(symbol, cat)] = self.decisions.get((symbol, cat), 0) + 1
        if cat != "neither":
            queue.append([self.horizon, price, cat])
        return cat

    def totals(self) -> dict[str, dict[str, int]]:
        """Per category: decisions, hits and misses over all symbols (for ``/status``)."""
        out = {c: {"decisions": 0, "hit": 0, "miss": 0} for c in CATEGORIES}
        for (_, cat), n in self.decisions.items():
            out[cat]["decisions"] += n
        for (_, cat, outcome), n in self.outcomes.items():
            out[cat][outcome] += n
        return out

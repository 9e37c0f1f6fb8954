"""The risk manager's ``/metrics``: its state, its limits and the P&L, read at scrape time.

Ratios are 0–1 (``cdb_risk_drawdown_ratio`` 0.05 = 5 %), money is in the quote asset named
by the ``currency`` label, times are Unix seconds. The limits are exported so a dashboard
or an alert compares a value with the bot's own limit (``cdb_risk_drawdown_ratio /
cdb_risk_limit_drawdown_ratio``) instead of a hard-coded figure. ``cdb_risk_drawdown_pct``
and ``cdb_risk_exposure_pct`` (0–100) remain for one release (CHANGELOG.md).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from prometheus_client.core import GaugeMetricFamily

from cdb.locks import held as lock_held
from cdb.risk import rules

if TYPE_CHECKING:
    from cdb.risk.guard import Guard

#: (decision, rule) pairs whose ``cdb_risk_decisions_total`` series exist from the start, at
#: 0: one per decision a dashboard or alert sums over (source: cdb/risk/rules.py, guard.py).
KNOWN_DECISIONS = (
    ("approve", "approved"),
    ("clip", "position"),
    ("clip", "exposure"),
    ("clip", "cash"),
    ("reject", "exposure"),
    ("reject", "open_positions"),
    ("reject", "stale_signal"),
    ("pause", "stale_market_data"),
    ("pause", "abnormal_move"),
    ("pause", "market_status"),
    ("halt", "drawdown"),
    ("halt", "kill_switch"),
    ("halt", "manual_breaker"),
    ("release", "drawdown"),
)


def _gauge(name: str, doc: str, value: float, **labels: str) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, doc, labels=list(labels))
    family.add_metric(list(labels.values()), value)
    return family


class RiskCollector:
    """Reads the guard under its lock once per scrape."""

    def __init__(self, guard: Guard) -> None:
        self.guard = guard

    def collect(self):
        g = self.guard
        limits = g.limits
        cur = {"currency": limits.quote_asset}
        with lock_held(g.lock) as got:
            if not got:  # the loop waits on a dependency: no figures rather than a stuck scrape
                return
            prices = g.market.prices
            equity = g.book.equity(prices)
            drawdown = rules.drawdown_pct(equity, g.day_start) / 100
            exposure = g.book.exposure_value(prices) / equity if equity > 0 else 0.0
            unrealized = sum(
                p.quantity * (prices.get(s, p.avg_price) - p.avg_price)
                for s, p in g.book.positions.items()
            )
            today = equity - g.day_start if g.day_start is not None else 0.0
            held = {s: g.book.mark(s, prices) for s in g.book.positions}
            times = dict(g.market.times)
            breaker = g.breaker
            engaged = breaker.engaged(g.day)
            open_positions = len(g.book.positions)
            cash = g.book.cash
            blind = len(g.blind)

        yield _gauge("cdb_risk_equity", "Cash plus positions at the latest prices", equity, **cur)
        yield _gauge("cdb_risk_cash", "Cash as the risk manager books it", cash, **cur)
        yield _gauge("cdb_risk_drawdown_ratio", "Loss since the UTC day's start, 0-1", drawdown)
        yield _gauge(
            "cdb_risk_exposure_ratio", "Positions and pending entries over equity, 0-1", exposure
        )
        yield _gauge(
            "cdb_risk_drawdown_pct", "Deprecated: cdb_risk_drawdown_ratio × 100", drawdown * 100
        )
        yield _gauge(
            "cdb_risk_exposure_pct", "Deprecated: cdb_risk_exposure_ratio × 100", exposure * 100
        )
        yield _gauge("cdb_risk_open_positions", "Open positions", open_positions)
        yield _gauge(
            "cdb_risk_blind_positions",
            "Held symbols whose last price is older than RISK_MARKET_DATA_MAX_AGE_S",
            blind,
        )
        yield _gauge("cdb_risk_breaker_engaged", "1 while the breaker is engaged", float(engaged))
        reasons = GaugeMetricFamily(
            "cdb_risk_breaker_reason",
            "1 for each cause holding the breaker (manual, kill_switch, drawdown)",
            labels=["reason"],
        )
        reasons.add_metric(["manual"], float(breaker.manual))
        reasons.add_metric(["kill_switch"], float(breaker.kill_switch))
        reasons.add_metric(["drawdown"], float(breaker.drawdown(g.day)))
        yield reasons
        yield _gauge(
            "cdb_risk_unrealized_pnl",
            "Open positions at market minus their cost",
            unrealized,
            **cur,
        )
        yield _gauge(
            "cdb_risk_daily_pnl", "Equity minus equity at the UTC day's start", today, **cur
        )
        value = GaugeMetricFamily(
            "cdb_risk_position_value",
            "Value of each held position at the latest price",
            labels=["symbol", "currency"],
        )
        for symbol, v in sorted(held.items()):
            value.add_metric([symbol, limits.quote_asset], v)
        yield value
        seen = GaugeMetricFamily(
            "cdb_risk_market_data_timestamp_seconds",
            "Event time of the latest market_data per symbol (age: time() - this)",
            labels=["symbol"],
        )
        for symbol, ts in sorted(times.items()):
            seen.add_metric([symbol], float(ts))
        yield seen
        yield from self._limits()

    def _limits(self):
        lim = self.guard.limits
        for name, doc, value in (
            (
                "cdb_risk_limit_drawdown_ratio",
                "MAX_DAILY_DRAWDOWN_PCT / 100",
                lim.max_daily_drawdown_pct / 100,
            ),
            ("cdb_risk_limit_exposure_ratio", "MAX_EXPOSURE_PCT / 100", lim.max_exposure_pct / 100),
            ("cdb_risk_limit_position_ratio", "MAX_POSITION_PCT / 100", lim.max_position_pct / 100),
            ("cdb_risk_limit_open_positions", "MAX_OPEN_POSITIONS", lim.max_open_positions),
            ("cdb_risk_limit_stop_loss_ratio", "STOP_LOSS_PCT / 100", lim.stop_loss_pct / 100),
            (
                "cdb_risk_limit_abnormal_move_ratio",
                "RISK_ABNORMAL_MOVE_PCT / 100",
                lim.abnormal_move_pct / 100,
            ),
            (
                "cdb_risk_limit_market_data_age_seconds",
                "RISK_MARKET_DATA_MAX_AGE_S",
                lim.market_data_max_age_s,
            ),
            ("cdb_risk_limit_signal_age_seconds", "RISK_SIGNAL_MAX_AGE_S", lim.signal_max_age_s),
        ):
            yield _gauge(name, f"Risk limit: {doc}", float(value))

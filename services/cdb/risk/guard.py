"""The risk manager's continuous duties and its state: breaker, day start, exits, decisions.

``Guard`` holds what the risk manager knows (book, prices, breaker, the UTC
day's starting equity) and does what must happen without a signal: trip the
breaker when equity falls past the daily limit, close positions past their stop
(or all of them once halted), roll the day, resend exits that got no answer.
``decide`` is the one way out: the decision row (and the breaker it changed) is
committed first, then the order, the alert and the breaker's mirror are published.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from prometheus_client import Counter

from cdb.bus import BREAKER_KEY, Bus
from cdb.events import Event, Order
from cdb.metrics import zero
from cdb.risk import checks, rules, views
from cdb.risk.breaker import Breaker, utc_day
from cdb.risk.market import MarketView
from cdb.risk.metrics import KNOWN_DECISIONS
from cdb.risk.portfolio import PendingOrder, Portfolio
from cdb.risk.settings import RiskSettings
from cdb.risk.state import RiskEvent, Store
from cdb.risk.watch import Watch
from cdb.service import TRANSIENT, Service

log = logging.getLogger(__name__)

#: Cash kept back from sizing for fees and slippage, so execution never lacks funds.
CASH_BUFFER = 0.01


class Guard(Watch, Service):
    """State and continuous checks shared by the handlers of ``RiskService``."""

    def __init__(self, settings: RiskSettings, bus: Bus, clock: Callable[[], float]) -> None:
        super().__init__(settings, bus)
        self.settings: RiskSettings = settings
        self.limits = settings.limits()
        self.clock = clock
        self.lock = threading.Lock()  # the HTTP thread reads what the loop writes
        self.store = Store(settings)
        self.market = MarketView(settings.RISK_ABNORMAL_MOVE_WINDOW_S)
        self.book = Portfolio(cash=settings.PAPER_START_BALANCE)
        self.breaker = Breaker()
        self.day_number = -1
        self.day = ""
        self.day_start: float | None = None
        self.paused: set[str] = set()
        self.exit_retry_at: dict[str, int] = {}
        self.restored = False
        self.restored_at = 0
        #: held symbols whose last price is older than RISK_MARKET_DATA_MAX_AGE_S → level raised
        self.blind: dict[str, str] = {}
        self._held_mirror: tuple[list[str], int] = ([], 0)  # what HELD_KEY says, and when
        self.breaker_dirty = False
        self._last_sweep = 0
        self._last_ping = 0
        self._last_figures = 0
        self.sweep_error: str | None = None
        self.decisions = Counter(
            "cdb_risk_decisions",
            "Risk decisions (risk_events rows written), by decision and rule",
            ["decision", "rule"],
            registry=self.registry,
        )
        zero(self.decisions, KNOWN_DECISIONS)

    def now(self) -> int:
        return int(self.clock())

    # -- start -----------------------------------------------------------------------------

    def restore(self) -> None:
        """Rebuild from PostgreSQL; never start from a clean slate."""
        now = self.now()
        loaded = self.store.load(now)
        self.book, self.breaker = loaded.portfolio, loaded.breaker
        self.day_number, self.day = now // 86_400, utc_day(now)
        self.day_start = None
        if loaded.day_start is not None and loaded.day_start[0] == self.day:
            self.day_start = loaded.day_start[1]
        self._roll_breaker(now)
        self.ensure_day_start(now)
        self.publish_breaker()
        self.restored_at = now
        self.restored = True

    # -- the one way out -------------------------------------------------------------------

    def decide(
        self,
        event: RiskEvent,
        order: Order | None = None,
        breaker: Breaker | None = None,
        first_only: bool = False,
    ) -> bool:
        """Commit the decision, then publish its order, alert and breaker state.

        Returns whether the row was new. ``first_only``: a decision already recorded
        under the same key publishes nothing (the caller resends the stored one).
        The log line is written after the publish, off the order's path.
        """
        inserted = self.store.record(event, breaker=breaker)
        if first_only and not inserted:
            return False
        if inserted:
            self.decisions.labels(event.decision, event.rule).inc()
        if breaker is not None:
            self.breaker = breaker
            self.breaker_dirty = True
        outgoing: list[Event] = []
        if order is not None:
            outgoing.append(order)
        if inserted and event.severity != "INFO":
            outgoing.append(views.alert_for(event))
        if self.breaker_dirty:
            self.bus.client.hset(BREAKER_KEY, mapping=self.breaker.redis_fields(self.day))
            outgoing.append(self.breaker.event(self.day))
        self.bus.publish_many(outgoing)
        self.breaker_dirty = False
        if order is not None:
            self.track(order)
        log.log(
            {"INFO": logging.INFO, "WARNING": logging.WARNING}.get(event.severity, logging.ERROR),
            "%s (%s/%s)",
            event.description,
            event.decision,
            event.rule,
        )
        return inserted

    def publish_order(self, order: Order) -> None:
        self.bus.publish(order)
        self.track(order)

    def track(self, order: Order) -> None:
        """An order in flight holds its room (entry) or blocks a second close (exit)."""
        if order.side == "BUY":
            self.reserve(order)
        else:
            self.book.exits[order.symbol] = PendingOrder(
                order.client_id,
                order.symbol,
                "SELL",
                order.quantity,
                order.price or 0.0,
                self.now(),
            )

    def reserve(self, order: Order) -> None:
        if order.client_id not in self.book.applied:
            self.book.entries[order.client_id] = PendingOrder(
                order.client_id, order.symbol, "BUY", order.quantity, order.price or 0.0, self.now()
            )

    def publish_breaker(self) -> None:
        """Mirror the breaker into the Redis hash and confirm it with a ``BreakerState``."""
        self.bus.client.hset(BREAKER_KEY, mapping=self.breaker.redis_fields(self.day))
        self.bus.publish(self.breaker.event(self.day))
        self.breaker_dirty = False

    # -- views -----------------------------------------------------------------------------

    def snapshot(self, symbol: str, now: int) -> rules.Snapshot:
        prices = self.market.prices
        pos = self.book.positions.get(symbol)
        cash = (self.book.cash - self.book.reserved()) * (1 - CASH_BUFFER)
        return rules.Snapshot(
            now=now,
            equity=self.book.equity(prices),
            day_start_equity=self.day_start,
            cash=max(0.0, cash),
            exposure_value=self.book.exposure_value(prices),
            open_positions=len(self.book.open_symbols()),
            symbol_value=self.book.symbol_value(symbol, prices),
            symbol_quantity=pos.quantity if pos else 0.0,
            exit_pending=symbol in self.book.exits,
            manual_breaker=self.breaker.manual,
            kill_switch=self.breaker.kill_switch,
            drawdown_breaker=self.breaker.drawdown(self.day),
            market_problem=self.market.problem,
            price=prices.get(symbol),
            price_ts=self.market.times.get(symbol),
            move_pct=self.market.move_pct(symbol),
        )

    def describe(self) -> dict[str, Any]:
        """The ``/status`` fields."""
        return views.status_fields(
            self.book, self.market, self.breaker, self.day, self.day_start, self.paused
        )

    # -- continuous duties -----------------------------------------------------------------

    def sweep(self) -> None:
        """Once a second between reads: day, expiries, drawdown, exits, the breaker mirror.

        A bug here must not stop the loop that obeys controls: it is logged and reported
        on /health, and the next sweep tries again. Outages (``TRANSIENT``) go up to the
        runtime, which backs off and retries."""
        try:
            self._sweep()
            self.sweep_error = None
        except TRANSIENT:
            raise
        except Exception as exc:
            log.exception("sweep failed")
            self.sweep_error = f"sweep failed: {type(exc).__name__}: {exc}"[:300]

    def _sweep(self) -> None:
        now = self.now()
        if now == self._last_sweep:
            return
        self._last_sweep = now
        if now - self._last_ping >= 10:
            self._last_ping = now
            self.store.ping()
        every = self.settings.RISK_EQUITY_HISTORY_S
        if every and now - self._last_figures >= every:
            self._last_figures = now
            self.record_figures(now)
        self.roll_day(now)
        self.ensure_day_start(now)
        for order in self.book.expire(now, self.settings.RISK_PENDING_ORDER_TTL_S):
            log.warning(
                "no result for %s %s %s after %ss: %s",
                order.side,
                order.symbol,
                order.client_id,
                self.settings.RISK_PENDING_ORDER_TTL_S,
                "room released" if order.side == "BUY" else "closing order will be resent",
            )
        self.check_drawdown(now)
        for symbol in list(self.book.positions):
            self.maybe_exit(symbol, now)
        self.check_blind(now)
        self.mirror_held(now)
        if self.breaker_dirty:
            self.publish_breaker()

    def record_figures(self, now: int) -> None:
        """Equity, drawdown and exposure (as on ``/status``) into the equity history."""
        fields = self.describe()
        figures = {
            name: fields[name]
            for name in ("equity", "drawdown_pct", "exposure_pct")
            if isinstance(fields.get(name), int | float)
        }
        if figures:
            self.store.record_figures(now, figures, {"quote": self.settings.QUOTE_ASSET})

    def roll_day(self, now: int) -> None:
        if now // 86_400 == self.day_number:
            return
        self.day_number, self.day = now // 86_400, utc_day(now)
        self.day_start = None
        self._roll_breaker(now)
        self.ensure_day_start(now)

    def _roll_breaker(self, now: int) -> None:
        rolled = self.breaker.roll_day(self.day, now)
        if rolled is not self.breaker:
            event = RiskEvent(
                f"newday:{self.day}", now, "INFO", "release", "drawdown", rolled.reason
            )
            self.decide(event, breaker=rolled)

    def ensure_day_start(self, now: int) -> None:
        """Fix the day's starting equity once every held symbol has a price."""
        if self.day_start is not None:
            return
        prices = self.market.prices
        if any(symbol not in prices for symbol in self.book.positions):
            return  # after a restart: wait for prices rather than value at cost
        equity = self.book.equity(prices)
        self.store.save_day_start(self.day, equity)
        self.day_start = equity
        log.info("equity at the start of %s: %.2f", self.day, equity)

    def check_drawdown(self, now: int) -> None:
        """Trip the breaker the moment equity is MAX_DAILY_DRAWDOWN_PCT below the day's start."""
        if self.day_start is None or self.breaker.drawdown(self.day):
            return
        equity = self.book.equity(self.market.prices)
        dd = rules.drawdown_pct(equity, self.day_start)
        if dd < self.limits.max_daily_drawdown_pct:
            return
        reason = (
            f"daily loss limit exceeded – trading halted: drawdown {dd:.2f} % ≥ limit "
            f"{self.limits.max_daily_drawdown_pct:g} % (equity {equity:,.2f} vs "
            f"{self.day_start:,.2f} at the start of {self.day})"
        )
        breaker = self.breaker.trip_drawdown(self.day, reason, now)
        context = {"equity": equity, "day_start_equity": self.day_start, "drawdown_pct": dd}
        event = RiskEvent(
            f"halt:{self.day}", now, "CRITICAL", "halt", "drawdown", reason, context=context
        )
        self.decide(event, breaker=breaker)
        for symbol in list(self.book.positions):
            self.maybe_exit(symbol, now)

    def maybe_exit(self, symbol: str, now: int) -> None:
        """Close a position past its stop, or any position while the daily breaker is tripped."""
        pos = self.book.positions.get(symbol)
        if pos is None or symbol in self.book.exits or self.breaker.kill_switch:
            return
        if self.exit_retry_at.get(symbol, 0) > now:
            return
        price = self.market.prices.get(symbol)
        if self.breaker.drawdown(self.day):
            rule, severity = "drawdown", "INFO"
            reason = f"trading halted: closing {symbol} position of {pos.quantity:g}"
        elif price is not None and rules.stop_hit(price, pos.stop_loss):
            rule, severity = "stop_loss", "WARNING"
            reason = (
                f"stop loss hit: {symbol} at {price:g} ≤ stop {pos.stop_loss:g} "
                f"(entry {pos.avg_price:g}) – closing {pos.quantity:g}"
            )
        else:
            return
        cid = self.book.exit_client_id(symbol)
        order = Order(
            client_id=cid,
            symbol=symbol,
            side="SELL",
            quantity=pos.quantity,
            price=price or pos.avg_price or None,
            reason=reason[:200],
        )
        context = {
            "quantity": pos.quantity,
            "price": order.price,
            "stop_loss": pos.stop_loss,
            "checks": checks.exit_checks(
                rule, price, pos.stop_loss, rule == "drawdown", self.limits.quote_asset
            ),
        }
        event = RiskEvent(
            f"exit:{cid}", now, severity, "exit", rule, reason, None, cid, symbol, context
        )
        self.decide(event, order)

    def pause_symbol(self, symbol: str, move: float, ts: int) -> None:
        text = (
            f"abnormal move in {symbol}: {move:.1f} % within {self.market.window_s} s "
            f"(limit {self.limits.abnormal_move_pct:g} %) – new entries paused"
        )
        event = RiskEvent(
            f"abnormal:{symbol}:{ts}",
            self.now(),
            "WARNING",
            "pause",
            "abnormal_move",
            text,
            symbol=symbol,
            context={"move_pct": move},
        )
        self.decide(event)
        self.paused.add(symbol)

    def resume_symbol(self, symbol: str, move: float, ts: int) -> None:
        text = f"{symbol} calm again ({move:.1f} % within the window): entries resumed"
        event = RiskEvent(
            f"abnormal_end:{symbol}:{ts}",
            self.now(),
            "INFO",
            "resume",
            "abnormal_move",
            text,
            symbol=symbol,
        )
        self.decide(event)
        self.paused.discard(symbol)

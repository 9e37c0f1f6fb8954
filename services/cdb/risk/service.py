"""``cdb run risk``: the risk manager's I/O — streams in, decisions, orders and alerts out.

It reads ``control`` (obeyed first), ``order_result`` (fills update its book),
``market_data`` (prices; ``market_status``) and ``signals``. Every decision is
written to ``risk_events`` before anything is published, so a redelivered signal
finds its decision and re-sends the same order (same ``client_id``) instead of
deciding again. The rules themselves are pure (``cdb.risk.rules``); exits and the
breaker's side effects live in ``cdb.risk.guard``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any, ClassVar

from cdb.bus import CONTROL, MARKET_DATA, ORDER_RESULT, SIGNALS, Bus, Delivery
from cdb.events import (
    Control,
    MarketData,
    MarketStatus,
    Order,
    OrderResult,
    Signal,
    stable_id,
)
from cdb.locks import held
from cdb.metrics import PostgresUp
from cdb.risk import checks, rules
from cdb.risk.guard import Guard
from cdb.risk.metrics import RiskCollector
from cdb.risk.portfolio import FAILED
from cdb.risk.settings import RiskSettings
from cdb.risk.state import RiskEvent

log = logging.getLogger(__name__)


class RiskService(Guard):
    """The runtime's view of the risk manager; see ``Guard`` for the state it keeps."""

    name: ClassVar[str] = "risk"
    default_port: ClassVar[int] = 8002
    settings_class: ClassVar[type[RiskSettings]] = RiskSettings
    #: control first, so an engage in the same read as a signal is obeyed before it
    streams: ClassVar[tuple[str, ...]] = (CONTROL, ORDER_RESULT, MARKET_DATA, SIGNALS)

    def __init__(
        self, settings: RiskSettings, bus: Bus, clock: Callable[[], float] = time.time
    ) -> None:
        super().__init__(settings, bus, clock)
        self._last_warnings: list[str] = []
        self.registry.register(RiskCollector(self))
        self.registry.register(PostgresUp(lambda: self.store.last_error is None))

    # -- the runtime's hooks ---------------------------------------------------------------

    def setup(self) -> None:
        with self.lock:
            self.restore()

    def handle_batch(self, deliveries: list[Delivery], done: Callable[[Delivery], None]) -> None:
        with self.lock:
            super().handle_batch(deliveries, done)

    def handle(self, delivery: Delivery) -> None:
        event = delivery.event
        if type(event) is MarketData:  # the hot path: keep it first and small
            self.on_price(event)
        elif isinstance(event, Signal):
            self.on_signal(event)
        elif isinstance(event, OrderResult):
            self.on_result(event)
        elif isinstance(event, Control):
            self.on_control(event)
        elif isinstance(event, MarketStatus):
            self.on_market_status(event)
        # BreakerState (our own confirmations on ``control``) needs nothing

    def tick(self) -> float | None:
        if self.restored:
            with self.lock:
                self.sweep()
        return None

    def status(self) -> dict[str, Any]:
        with held(self.lock) as got:
            if not got:
                return {"book": "busy: the loop is waiting on a dependency (see /readyz)"}
            return {
                **self.describe(),
                "blind_positions": {
                    s: {"level": level, "price_age_s": self.price_ages(self.now()).get(s)}
                    for s, level in self.blind.items()
                },
            }

    def health_warnings(self) -> list[str]:
        """Blind held positions, for ``/readyz``/``/health``; never waits long on the book.

        The loop holds the lock while it waits on Redis or PostgreSQL; an HTTP thread asking
        then gets the last answer instead of queueing behind it.
        """
        with held(self.lock, timeout=0.2) as got:
            if got:
                ages = self.price_ages(self.now())
                self._last_warnings = [
                    f"{level}: held {s} has no price for {ages.get(s)} s: its stop loss cannot fire"
                    for s, level in sorted(self.blind.items())
                ]
        return self._last_warnings

    def health_problems(self) -> list[str]:
        problems = []
        if self.store.last_error:
            problems.append(self.store.last_error)
        if self.sweep_error:
            problems.append(self.sweep_error)
        return problems

    def close(self) -> None:
        self.store.close()

    # -- market data -----------------------------------------------------------------------

    def on_price(self, event: MarketData) -> None:
        """A dict update; a stop and drawdown check only when the symbol is held."""
        symbol = event.symbol
        move = self.market.update(symbol, event.price, event.timestamp)
        if move > self.limits.abnormal_move_pct:
            if symbol not in self.paused:
                self.pause_symbol(symbol, move, event.timestamp)
        elif symbol in self.paused:
            self.resume_symbol(symbol, move, event.timestamp)
        if symbol in self.book.positions:
            now = self.now()
            self.check_drawdown(now)
            self.maybe_exit(symbol, now)

    def on_market_status(self, event: MarketStatus) -> None:
        now = self.now()
        key = f"market:{event.exchange}:{event.status}:{event.timestamp}"
        if event.status == "ok":
            if self.market.problem is not None:
                self.decide(
                    RiskEvent(key, now, "INFO", "resume", "market_status", "market ok: resumed")
                )
                self.market.problem = None
            return
        problem = f"{event.exchange} {event.status}" + (f": {event.reason}" if event.reason else "")
        if self.market.problem is None:
            text = f"abnormal market ({problem}) – new entries paused"
            self.decide(RiskEvent(key, now, "WARNING", "pause", "market_status", text))
        self.market.problem = problem[:150]

    # -- signals ---------------------------------------------------------------------------

    def on_signal(self, signal: Signal) -> None:
        """Decide, record the decision (one committed INSERT), then publish its order.

        A redelivered signal finds its decision row already there (the INSERT does
        nothing): the stored decision is resent, the one just computed is dropped.
        """
        key = f"signal:{signal.signal_id}"
        now = self.now()
        self.roll_day(now)
        self.check_drawdown(now)
        snap = self.snapshot(signal.symbol, now)
        decision = rules.evaluate(signal, snap, self.limits)
        client_id = None
        if decision.kind == "exit":
            client_id = self.book.exit_client_id(signal.symbol)
        elif decision.kind in ("approve", "clip"):
            client_id = stable_id(signal.signal_id)
        context = {
            "quantity": decision.quantity,
            "price": decision.price,
            "stop_loss": decision.stop_loss,
            "confidence": signal.confidence,
            "equity": round(snap.equity, 8),
            "exposure_pct": round(snap.exposure_value / snap.equity * 100, 4)
            if snap.equity > 0
            else None,
            "open_positions": snap.open_positions,
            "checks": checks.record(signal, snap, self.limits, decision),
        }
        event = RiskEvent(
            key,
            now,
            decision.severity,
            decision.kind,
            decision.rule,
            decision.reason,
            signal.signal_id,
            client_id,
            signal.symbol,
            context,
        )
        order = None
        if client_id is not None:
            order = Order(
                client_id=client_id,
                symbol=signal.symbol,
                side="SELL" if decision.kind == "exit" else "BUY",
                quantity=decision.quantity,
                price=decision.price,
                stop_loss=decision.stop_loss,
                signal_id=signal.signal_id,
                reason=decision.reason[:200],
            )
        if not self.decide(event, order, first_only=True):
            prior = self.store.find(key)  # decided before: a redelivery
            if prior is not None:
                self.resend(signal, prior)

    def resend(self, signal: Signal, prior: dict[str, Any]) -> None:
        """A redelivered signal: publish the order it already got again (same client_id)."""
        cid, ctx = prior["client_id"], prior["context"] or {}
        if cid is None or prior["decision"] not in ("approve", "clip", "exit"):
            return
        if cid in self.book.applied or cid in self.book.finished_sells:
            return  # filled or finished already: nothing to resend
        side = "SELL" if prior["decision"] == "exit" else "BUY"
        order = Order(
            client_id=cid,
            symbol=signal.symbol,
            side=side,
            quantity=ctx["quantity"],
            price=ctx.get("price"),
            stop_loss=ctx.get("stop_loss"),
            signal_id=signal.signal_id,
            reason=f"resent: {prior['rule']}"[:200],
        )
        self.publish_order(order)
        log.info("signal %s redelivered: order %s sent again", signal.signal_id, cid)

    # -- fills -----------------------------------------------------------------------------

    def on_result(self, result: OrderResult) -> None:
        pending_exit = self.book.exits.get(result.symbol)
        was_exit = pending_exit is not None and pending_exit.client_id == result.client_id
        fill = self.book.apply(result, self.limits.stop_loss_pct)
        now = self.now()
        if fill is not None:
            log.info(
                "fill %s %s %g %s @ %g (cash %.2f)",
                fill.client_id,
                fill.side,
                fill.quantity,
                fill.symbol,
                fill.price,
                self.book.cash,
            )
        partial = result.status == "PARTIALLY_FILLED" and result.symbol in self.book.positions
        if was_exit and (result.status in FAILED or partial):
            # a closing order that left part of the position open failed as much as one
            # that filled nothing: the rest is still exposed (docs/services/risk.md)
            wait = self.settings.RISK_EXIT_RETRY_S
            self.exit_retry_at[result.symbol] = now + wait
            left = self.book.positions[result.symbol].quantity if partial else None
            why = (
                f"filled {result.filled_quantity:g} only, {left:g} still held"
                if partial
                else result.error or "no reason given"
            )
            text = (
                f"closing order {result.client_id} for {result.symbol} {result.status}: "
                f"{why} – retrying in {wait} s with a new id"
            )
            self.decide(
                RiskEvent(
                    f"exit_failed:{result.client_id}",
                    now,
                    "CRITICAL",
                    "exit_failed",
                    "exit",
                    text[:500],
                    client_id=result.client_id,
                    symbol=result.symbol,
                )
            )
        if fill is not None:
            if fill.opened or fill.closed:
                self.mirror_held(now)  # the feed polls a new position from now on
            self.check_drawdown(now)
            self.maybe_exit(result.symbol, now)

    # -- control ---------------------------------------------------------------------------

    def on_control(self, control: Control) -> None:
        now = self.now()
        self.roll_day(now)
        ident = control.control_id or stable_id(control.model_dump_json())
        if self.store.find(f"control:{ident}") is not None:
            self.publish_breaker()  # seen before (a redelivery): confirm, change nothing
            return
        breaker = self.breaker.apply_control(
            control.action, control.reason, control.control_id, now, self.day
        )
        severity, text = {
            "engage_breaker": ("WARNING", "breaker engaged"),
            "kill_switch": ("CRITICAL", "kill switch engaged – no orders at all"),
            "release_breaker": ("INFO", "breaker released"),
        }[control.action]
        text = f"{text} by {control.source}" + (f": {control.reason}" if control.reason else "")
        if control.action == "release_breaker" and breaker.drawdown(self.day):
            text += " – daily loss breaker stays engaged until the next UTC day"
        event = RiskEvent(
            f"control:{ident}",
            now,
            severity,
            control.action,
            "control",
            text[:500],
            context={"control_id": control.control_id, "source": control.source},
        )
        self.decide(event, breaker=breaker)


SERVICE = RiskService

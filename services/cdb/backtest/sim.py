"""The risk manager with a simulated clock and exchange: its own handlers, no Redis, no database.

``SimRisk`` *is* a ``RiskService`` (built by its own ``__init__``, so every piece of
state the live service keeps exists here too), with only the edges to the outside
replaced: the breaker, the abnormal-market pause, exposure, position count, clipping,
stop loss and the daily drawdown at UTC day boundaries are the live code, and whatever
the live handlers gain later runs here unchanged. The edges, the methods of
``RiskService`` that touch Redis or PostgreSQL (``IO_EDGES``):

* ``decide`` records the decision (``Recorder``) and queues the order instead of
  committing a row and publishing; ``publish_order`` queues; ``publish_breaker`` keeps
  the breaker (no Redis hash, no confirmation event);
* ``mirror_held`` is a no-op: it tells the live feed which symbols to poll, and the
  candle files hold every symbol already;
* the store is ``_NoStore`` (nothing was decided before; nothing is written).

``settle`` fills queued orders with the paper exchange's pricing
(``cdb.exchange.paper.quote_fill``: ``PAPER_FEE_PCT`` and ``PAPER_SLIPPAGE_PCT``) and
hands the ``OrderResult`` back to ``on_result``, as execution would. Time is the
candles' (``now()`` is the current event time). The runtime's periodic ``sweep``
(pending-order expiry, blind-position alerts, the equity history) is not run: every
order is settled before the next event, and candles come for every symbol.
``tests/test_backtest_sim.py`` checks that every live method touching the bus or the
store directly is one of ``IO_EDGES`` (or runtime-only), so a new one cannot slip in.
"""

from __future__ import annotations

from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any

from cdb.events import Order, OrderResult
from cdb.exchange.errors import InsufficientFunds, InvalidOrder
from cdb.exchange.paper import quote_fill
from cdb.risk.breaker import Breaker
from cdb.risk.service import RiskService
from cdb.risk.settings import RiskSettings
from cdb.risk.state import RiskEvent

#: The methods of ``RiskService`` that reach Redis or PostgreSQL, all replaced by ``SimRisk``.
IO_EDGES = ("decide", "publish_order", "publish_breaker", "mirror_held")


class _NoStore:
    """The decision store of a run that persists nothing: nothing was decided before."""

    last_error = None

    def find(self, key: str) -> None:
        return None

    def save_day_start(self, day: str, equity: float) -> None:
        pass

    def record_figures(self, ts: int, figures: dict[str, float], labels: dict[str, str]) -> None:
        pass

    def ping(self) -> None:
        pass

    def close(self) -> None:
        pass


@dataclass(slots=True)
class Fill:
    """One simulated fill (quote-asset values, event time in Unix seconds)."""

    ts: int
    client_id: str
    symbol: str
    side: str
    quantity: float
    price: float
    fee: float
    rule: str  # the decision's rule: approved, position, exposure, cash, stop_loss, drawdown ...
    reason: str


@dataclass
class Recorder:
    """What a run decided: every risk decision counted, fills, breaker trips, pauses."""

    decisions: Counter = field(default_factory=Counter)
    fills: list[Fill] = field(default_factory=list)
    rejected_orders: list[dict[str, Any]] = field(default_factory=list)
    trips: list[dict[str, Any]] = field(default_factory=list)
    pauses: list[dict[str, Any]] = field(default_factory=list)
    log: list[tuple] = field(default_factory=list)  # (ts, decision, rule, symbol, client_id)
    keep_log: bool = False
    rules_by_client: dict[str, str] = field(default_factory=dict)


class SimRisk(RiskService):
    """``RiskService`` minus I/O; see the module docstring."""

    def __init__(
        self,
        settings: RiskSettings,
        market: Any,
        *,
        fee_pct: float,
        slippage_pct: float,
        recorder: Recorder,
        record_pauses: bool = True,
    ) -> None:
        self.ts = 0
        # no bus: an unreplaced method reaching for it fails loudly instead of publishing
        super().__init__(settings, None, clock=self.now)  # type: ignore[arg-type]
        self.market = market
        self.store = _NoStore()  # type: ignore[assignment]
        self.restored = True  # nothing to restore: the run starts from PAPER_START_BALANCE
        self.fee_pct = fee_pct
        self.slippage_pct = slippage_pct
        self.rec = recorder
        self.record_pauses = record_pauses
        self.orders: deque[Order] = deque()

    def now(self) -> int:
        return self.ts

    # -- I/O replaced ----------------------------------------------------------------------

    def decide(
        self,
        event: RiskEvent,
        order: Order | None = None,
        breaker: Breaker | None = None,
        first_only: bool = False,
    ) -> bool:
        """Record the decision; keep the breaker; queue the order for the simulated exchange.

        The live signature (:meth:`Guard.decide`); in simulated time every decision is new
        (nothing is redelivered), so ``first_only`` changes nothing and the answer is True.
        """
        rec = self.rec
        episode = event.event_key.startswith(("abnormal:", "abnormal_end:"))
        if episode:  # a symbol paused or resumed (a signal refused for it is a decision)
            if self.record_pauses:
                pause_event(rec, event.decision, event.symbol or "", event.ts, event.context)
        else:
            rec.decisions[(event.decision, event.rule)] += 1
            if event.decision == "halt" and event.event_key.startswith("halt:"):
                rec.trips.append(
                    {"ts": event.ts, "day": self.day, "reason": event.description, **event.context}
                )
        if rec.keep_log and not episode:  # pauses: ``rec.pauses``
            rec.log.append((event.ts, event.decision, event.rule, event.symbol, event.client_id))
        if breaker is not None:
            self.breaker = breaker
        if order is not None:
            rec.rules_by_client[order.client_id] = event.rule
            self.orders.append(order)
            self.track(order)
        return True

    def publish_order(self, order: Order) -> None:
        self.orders.append(order)
        self.track(order)

    def publish_breaker(self) -> None:
        """The breaker is ``self.breaker`` already; no Redis hash, no confirmation event."""
        self.breaker_dirty = False

    def mirror_held(self, now: int) -> None:
        """Nothing to tell: the live feed polls held symbols, the candle files hold them all."""

    def settle(self) -> None:
        """Fill every queued order now, at the latest price, and apply the results."""
        while self.orders:
            order = self.orders.popleft()
            self.on_result(self.fill(order))

    def fill(self, order: Order) -> OrderResult:
        """The paper exchange's fill (fee, slippage, cash and position checks)."""
        price = self.market.prices.get(order.symbol, order.price)
        pos = self.book.positions.get(order.symbol)
        try:
            quoted = quote_fill(
                order.side,
                order.quantity,
                price,
                self.book.cash,
                pos.quantity if pos else 0.0,
                self.fee_pct,
                self.slippage_pct,
                self.limits.quote_asset,
            )
        except (InsufficientFunds, InvalidOrder) as exc:
            self.rec.rejected_orders.append(
                {
                    "ts": self.ts,
                    "client_id": order.client_id,
                    "symbol": order.symbol,
                    "error": str(exc),
                }
            )
            return OrderResult(
                timestamp=self.ts,
                client_id=order.client_id,
                symbol=order.symbol,
                side=order.side,
                status="REJECTED",
                error=str(exc)[:500],
            )
        self.rec.fills.append(
            Fill(
                self.ts,
                order.client_id,
                order.symbol,
                order.side,
                order.quantity,
                quoted.price,
                quoted.fee,
                self.rec.rules_by_client.pop(order.client_id, ""),
                order.reason,
            )
        )
        return OrderResult(
            timestamp=self.ts,
            client_id=order.client_id,
            symbol=order.symbol,
            side=order.side,
            status="FILLED",
            filled_quantity=order.quantity,
            avg_price=quoted.price,
            fee=quoted.fee,
        )

    def equity(self) -> float:
        return self.book.equity(self.market.prices)


def pause_event(rec: Recorder, decision: str, symbol: str, ts: int, context: dict | None) -> None:
    """A pause opens an episode for the symbol; a resume closes it."""
    if decision == "pause":
        rec.pauses.append(
            {
                "symbol": symbol,
                "start": ts,
                "end": None,
                "move_pct": (context or {}).get("move_pct"),
            }
        )
    else:
        for p in reversed(rec.pauses):
            if p["symbol"] == symbol and p["end"] is None:
                p["end"] = ts
                break


class FastMarket:
    """The part of ``MarketView`` the handlers read, fed only the events that matter.

    ``update`` returns the move the chunk computed for this event (``pending_move``), the
    same figure ``MoveWindow`` gives, so skipping the other events changes nothing.
    """

    __slots__ = ("prices", "times", "moves", "problem", "window_s", "pending_move")

    def __init__(self, window_s: int) -> None:
        self.prices: dict[str, float] = {}
        self.times: dict[str, int] = {}
        self.moves: dict[str, float] = {}
        self.problem: str | None = None
        self.window_s = window_s
        self.pending_move = 0.0

    def update(self, symbol: str, price: float, ts: int) -> float:
        self.prices[symbol] = price
        self.times[symbol] = ts
        self.moves[symbol] = self.pending_move
        return self.pending_move

    def move_pct(self, symbol: str) -> float:
        return self.moves.get(symbol, 0.0)

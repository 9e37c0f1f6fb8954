"""The risk manager's picture of the book: cash, long positions, orders in flight.

Pure in-memory state. Fills are applied from ``OrderResult`` events, idempotently
by ``client_id`` (what an order's fills already added is remembered, so a
redelivered result adds only what is new); ``state.load`` builds the same
picture from PostgreSQL at start. Values are in the quote asset; fees are
taken from cash (the paper exchange and MEXC spot charge quote-asset fees on
the pairs we trade).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from cdb.events import OrderResult, stable_id

#: Quantities below this are dust: the position is treated as closed.
DUST = 1e-12
#: Statuses after which an order changes no more (execution never updates a final row).
FINAL = frozenset({"FILLED", "PARTIALLY_FILLED", "REJECTED", "ERROR", "CANCELLED"})
FAILED = frozenset({"REJECTED", "ERROR", "CANCELLED"})


@dataclass(slots=True)
class Position:
    """One long position; ``opened_ts`` seeds the client_id of its closing order."""

    symbol: str
    quantity: float
    avg_price: float
    stop_loss: float | None
    opened_ts: int


@dataclass(slots=True)
class PendingOrder:
    """An order published but not finally answered: its value is reserved."""

    client_id: str
    symbol: str
    side: str
    quantity: float
    price: float
    since: int
    filled: float = 0.0

    @property
    def open_value(self) -> float:
        return max(0.0, self.quantity - self.filled) * self.price


@dataclass(frozen=True, slots=True)
class FillApplied:
    """What one order result changed (for logs and the caller's follow-up)."""

    client_id: str
    symbol: str
    side: str
    quantity: float
    price: float
    opened: bool
    closed: bool


@dataclass
class Portfolio:
    cash: float
    positions: dict[str, Position] = field(default_factory=dict)
    #: client_id → (quantity, fee) of its fills already reflected in cash and positions
    applied: dict[str, tuple[float, float]] = field(default_factory=dict)
    entries: dict[str, PendingOrder] = field(default_factory=dict)  # by client_id
    exits: dict[str, PendingOrder] = field(default_factory=dict)  # by symbol
    #: SELL client_ids with a final result: execution never acts on them again
    finished_sells: set[str] = field(default_factory=set)

    def exit_client_id(self, symbol: str) -> str:
        """The client_id of the position's closing order.

        The same for every trigger (stop loss, breaker, SELL signal) and after a restart, so
        a position is closed by one order however many ticks see it past its stop; an id
        that already has a final result (a refused attempt, or the exit of an earlier
        position opened in the same second) is skipped, since execution never sends a
        client_id twice.
        """
        pos = self.positions[symbol]
        attempt = 0
        while True:
            cid = "x" + stable_id("exit", symbol, pos.opened_ts, attempt, length=23)
            if cid not in self.finished_sells:
                return cid
            attempt += 1

    # -- valuation -------------------------------------------------------------------------

    def mark(self, symbol: str, prices: Mapping[str, float]) -> float:
        """Value of one position at the latest price (entry price until one is known)."""
        pos = self.positions.get(symbol)
        if pos is None:
            return 0.0
        return pos.quantity * prices.get(symbol, pos.avg_price)

    def positions_value(self, prices: Mapping[str, float]) -> float:
        return sum(p.quantity * prices.get(s, p.avg_price) for s, p in self.positions.items())

    def equity(self, prices: Mapping[str, float]) -> float:
        """Cash plus positions at market: the base of drawdown and every percentage limit."""
        return self.cash + self.positions_value(prices)

    def reserved(self) -> float:
        """Cash promised to entry orders that have not filled yet."""
        return sum(o.open_value for o in self.entries.values())

    def exposure_value(self, prices: Mapping[str, float]) -> float:
        return self.positions_value(prices) + self.reserved()

    def open_symbols(self) -> set[str]:
        return set(self.positions) | {o.symbol for o in self.entries.values()}

    def symbol_value(self, symbol: str, prices: Mapping[str, float]) -> float:
        pending = sum(o.open_value for o in self.entries.values() if o.symbol == symbol)
        return self.mark(symbol, prices) + pending

    # -- orders in flight ------------------------------------------------------------------

    def expire(self, now: int, ttl_s: int) -> list[PendingOrder]:
        """Forget entries and exits that never got a result: returns those dropped."""
        dropped = [o for o in self.entries.values() if now - o.since > ttl_s]
        dropped += [o for o in self.exits.values() if now - o.since > ttl_s]
        for order in dropped:
            if order.side == "BUY":
                self.entries.pop(order.client_id, None)
            else:
                self.exits.pop(order.symbol, None)
        return dropped

    # -- fills -----------------------------------------------------------------------------

    def apply(self, result: OrderResult, stop_loss_pct: float) -> FillApplied | None:
        """Apply what is new in ``result``; a redelivered or already reflected one adds nothing."""
        fill = self._fill(result, stop_loss_pct)
        self._settle_pending(result)
        return fill

    def _fill(self, result: OrderResult, stop_loss_pct: float) -> FillApplied | None:
        done_qty, done_fee = self.applied.get(result.client_id, (0.0, 0.0))
        delta = result.filled_quantity - done_qty
        if delta <= DUST or result.avg_price <= 0:
            return None
        fee = max(0.0, result.fee - done_fee)
        self.applied[result.client_id] = (result.filled_quantity, max(result.fee, done_fee))
        price = result.avg_price
        pos = self.positions.get(result.symbol)
        opened = closed = False
        if result.side == "BUY":
            self.cash -= delta * price + fee
            if pos is None:
                pos = Position(result.symbol, 0.0, price, None, result.timestamp)
                self.positions[result.symbol] = pos
                opened = True
            total = pos.quantity + delta
            pos.avg_price = (pos.quantity * pos.avg_price + delta * price) / total
            pos.quantity = total
            pos.stop_loss = pos.avg_price * (1 - stop_loss_pct / 100.0)
        else:
            self.cash += delta * price - fee
            if pos is not None:
                pos.quantity -= delta
                if pos.quantity <= DUST * max(1.0, pos.quantity + delta):
                    del self.positions[result.symbol]
                    closed = True
        return FillApplied(
            result.client_id, result.symbol, result.side, delta, price, opened, closed
        )

    def _settle_pending(self, result: OrderResult) -> None:
        """A final result ends the reservation and uses up a closing order's client_id."""
        entry = self.entries.get(result.client_id)
        if entry is not None:
            entry.filled = max(entry.filled, result.filled_quantity)
            if result.status in FINAL:
                del self.entries[result.client_id]
        if result.side == "SELL" and result.status in FINAL:
            self.finished_sells.add(result.client_id)
        exit_order = self.exits.get(result.symbol)
        if exit_order is not None and exit_order.client_id == result.client_id:
            exit_order.filled = max(exit_order.filled, result.filled_quantity)
            if result.status in FINAL:
                del self.exits[result.symbol]

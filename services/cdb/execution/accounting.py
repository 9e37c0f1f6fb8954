"""Pure position and cash arithmetic of one fill: what a trade does to the book.

Kept free of I/O so the paper exchange, live fills and the tests share one
definition. The identity it maintains (tested): cash + quantity * mark equals the
starting cash plus realised P&L plus unrealised P&L ``quantity * (mark - avg_price)``,
because fees are realised when paid (a BUY's realised P&L is minus its fee).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Protocol

#: Quantities smaller than this fraction of the position are float dust: the position is flat.
DUST = 1e-9


@dataclass(frozen=True, slots=True)
class Book:
    """Cash and one symbol's position, as the ledger holds them."""

    cash: float
    quantity: float = 0.0
    avg_price: float = 0.0
    realized_pnl: float = 0.0


@dataclass(frozen=True, slots=True)
class TradeEffect:
    """The book after a trade and the trade's own realised P&L (fees included)."""

    book: Book
    realized_pnl: float


def apply_trade(book: Book, side: str, quantity: float, price: float, fee: float) -> TradeEffect:
    """Apply one fill of ``quantity`` at ``price`` paying ``fee`` (quote currency).

    A BUY adds to the position at a quantity-weighted average price and pays
    ``quantity * price + fee``. A SELL realises ``(price - avg_price) * sold - fee`` on the
    part the book holds; a live exchange may sell more than the book knows (coins bought
    outside the system), which earns cash but no recorded P&L.
    """
    if quantity <= 0 or price <= 0 or fee < 0:
        raise ValueError(f"bad fill: quantity={quantity} price={price} fee={fee}")
    if side == "BUY":
        new_qty = book.quantity + quantity
        avg = (book.quantity * book.avg_price + quantity * price) / new_qty
        realized = -fee
        after = replace(
            book,
            cash=book.cash - quantity * price - fee,
            quantity=new_qty,
            avg_price=avg,
            realized_pnl=book.realized_pnl + realized,
        )
        return TradeEffect(after, realized)
    if side == "SELL":
        sold = min(quantity, book.quantity)
        realized = (price - book.avg_price) * sold - fee
        new_qty = book.quantity - sold
        if new_qty <= DUST * max(book.quantity, 1e-12):
            new_qty = 0.0
        after = replace(
            book,
            cash=book.cash + quantity * price - fee,
            quantity=new_qty,
            avg_price=book.avg_price if new_qty > 0 else 0.0,
            realized_pnl=book.realized_pnl + realized,
        )
        return TradeEffect(after, realized)
    raise ValueError(f"bad side {side!r}")


class PricedOrder(Protocol):
    """What ``position_stop`` reads of an order: an ``Order`` event or a stored row."""

    side: str
    price: float | None
    stop_loss: float | None


def position_stop(order: PricedOrder, avg_price: float) -> float | None:
    """The stop loss of the position a fill of ``order`` leaves at ``avg_price`` (quote
    currency per unit), or None for a SELL (it keeps the position's stop).

    The risk manager prices a BUY's stop ``STOP_LOSS_PCT`` below the order's reference price
    (``cdb.risk.rules``) and, when the fill comes, puts the position's stop that far below
    its new *average* entry (``cdb.risk.portfolio``). The same distance, ``stop_loss /
    price``, applied here to the same average, so the stop in ``positions`` (which the risk
    manager reads at start, and the dashboard shows) is the one it trades on, after an add
    or a slipped fill too. An order without a reference price gives its stop as it is.
    """
    if order.side != "BUY" or order.stop_loss is None:
        return None
    if order.price is None or order.price <= 0:
        return order.stop_loss
    return avg_price * (order.stop_loss / order.price)

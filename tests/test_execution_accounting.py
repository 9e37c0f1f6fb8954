"""The pure arithmetic of execution: paper pricing (fee, slippage, refusals) and the book.

Property-based (hypothesis): whatever sequence of fills, cash plus position value
equals the starting cash plus realised plus unrealised P&L; slippage always works
against us; the paper exchange never accepts a BUY the cash cannot pay or a SELL
larger than the position.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cdb.exchange.errors import InsufficientFunds, InvalidOrder
from cdb.exchange.paper import quote_fill
from cdb.execution.accounting import Book, apply_trade

prices = st.floats(min_value=0.01, max_value=1e5, allow_nan=False, allow_infinity=False)
quantities = st.floats(min_value=1e-4, max_value=1e3, allow_nan=False, allow_infinity=False)
pcts = st.floats(min_value=0, max_value=5, allow_nan=False, allow_infinity=False)


def test_buy_then_sell_worked_example():
    book = Book(cash=10_000)
    buy = apply_trade(book, "BUY", 10, 100.5, 1.005)
    assert buy.book == Book(cash=8993.995, quantity=10, avg_price=100.5, realized_pnl=-1.005)
    assert buy.realized_pnl == -1.005
    more = apply_trade(buy.book, "BUY", 10, 110.5, 0)
    assert more.book.avg_price == pytest.approx(105.5)
    sell = apply_trade(more.book, "SELL", 20, 120, 2.4)
    assert sell.realized_pnl == pytest.approx((120 - 105.5) * 20 - 2.4)
    assert sell.book.quantity == 0 and sell.book.avg_price == 0
    assert sell.book.cash == pytest.approx(8993.995 - 1105 + 2400 - 2.4)


def test_bad_fills_are_refused():
    for side, qty, price, fee in (("BUY", 0, 1, 0), ("BUY", 1, -1, 0), ("SELL", 1, 1, -1)):
        with pytest.raises(ValueError):
            apply_trade(Book(cash=1), side, qty, price, fee)
    with pytest.raises(ValueError):
        apply_trade(Book(cash=1), "HOLD", 1, 1, 0)


@given(
    st.lists(st.tuples(st.booleans(), quantities, prices, pcts), min_size=1, max_size=30),
    prices,
)
def test_cash_plus_holdings_equals_start_plus_pnl(trades, mark):
    start = 1e9
    book = Book(cash=start)
    realised = 0.0
    for is_buy, qty, price, fee_pct in trades:
        side = "BUY" if is_buy or book.quantity == 0 else "SELL"
        qty = qty if side == "BUY" else min(qty, book.quantity)
        effect = apply_trade(book, side, qty, price, qty * price * fee_pct / 100)
        realised += effect.realized_pnl
        book = effect.book
        assert book.quantity >= 0
    assert book.realized_pnl == pytest.approx(realised, rel=1e-9, abs=1e-3)
    equity = book.cash + book.quantity * mark
    expected = start + realised + book.quantity * (mark - book.avg_price)
    assert equity == pytest.approx(expected, rel=1e-9, abs=1e-3)


@given(st.sampled_from(["BUY", "SELL"]), quantities, prices, pcts, pcts)
def test_slippage_and_fee_always_cost_us(side, qty, market, fee_pct, slippage_pct):
    fill = quote_fill(
        side, qty, market, cash=1e12, position=1e12, fee_pct=fee_pct, slippage_pct=slippage_pct
    )
    if side == "BUY":
        assert fill.price >= market
    else:
        assert fill.price <= market
    assert fill.fee == pytest.approx(qty * fill.price * fee_pct / 100)


@given(quantities, prices, pcts, pcts, st.floats(min_value=0, max_value=1e6))
def test_paper_never_accepts_a_buy_the_cash_cannot_pay(qty, market, fee_pct, slip, cash):
    try:
        fill = quote_fill("BUY", qty, market, cash, 0.0, fee_pct, slip)
    except InsufficientFunds as exc:
        assert "insufficient cash" in str(exc)
        assert qty * market * (1 + slip / 100) * (1 + fee_pct / 100) > cash * 0.999999
    else:
        assert qty * fill.price + fill.fee <= cash * (1 + 1e-9)


@given(quantities, quantities, prices)
def test_paper_never_sells_more_than_the_position(qty, held, market):
    if qty > held * (1 + 1e-9):
        with pytest.raises(InsufficientFunds, match="exceeds the position"):
            quote_fill("SELL", qty, market, 0.0, held, 0.1, 0.1)
    else:
        assert quote_fill("SELL", qty, market, 0.0, held, 0.1, 0.1).price > 0


def test_worked_paper_prices():
    buy = quote_fill("BUY", 10, 100, 10_000, 0, fee_pct=0.1, slippage_pct=0.5)
    assert (buy.price, buy.fee) == (pytest.approx(100.5), pytest.approx(1.005))
    sell = quote_fill("SELL", 4, 110, 0, 10, fee_pct=0.1, slippage_pct=0.5)
    assert (sell.price, sell.fee) == (pytest.approx(109.45), pytest.approx(0.4378))
    with pytest.raises(InvalidOrder):
        quote_fill("BUY", 1, 0, 10, 0, 0.1, 0.1)

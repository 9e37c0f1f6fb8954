"""Placing orders: the venue interface the execution service talks to, and its ccxt adapter.

A *venue* places an order under the caller's client order id and looks an order up
by that id. The execution service's exactly-once logic is written against this
interface only, so the paper exchange (``paper.py``) and the live exchange go
through the same code path, and the fault switch of the paper exchange exercises
the same recovery as a real timeout.

``CcxtVenue`` is the live adapter (``TRADING_MODE=live``) and the validate-only one
(``TRADING_MODE=validate``: MEXC's order-test endpoint, which checks an order and
executes nothing). It sends IOC limit orders at the reference price plus/minus a
slippage cap, so a thin book can never fill far from the price the risk manager
approved; amounts and prices are rounded with ccxt's precision helpers; it only
trades markets ccxt marks ``active``. It has no withdraw call, on purpose.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Protocol

from cdb.exchange.errors import (
    ExchangeUnavailable,
    InvalidOrder,
    OrderNotVisible,
    OrderUnknown,
    ccxt_errors,
    ccxt_module,
    translate_error,
)

if TYPE_CHECKING:
    import ccxt

Status = Literal["FILLED", "PARTIALLY_FILLED", "REJECTED", "ERROR", "CANCELLED"]

#: MEXC's answer when no order has the given id: {"code": -2013, "msg": "Order does not exist."}
MEXC_ORDER_NOT_FOUND = re.compile(r'"code"\s*:\s*-2013\b')


@dataclass(frozen=True, slots=True)
class OrderRequest:
    """What to execute: ``symbol`` in our form (``BTC_USDT``), ``price`` the reference price."""

    client_id: str
    symbol: str
    side: Literal["BUY", "SELL"]
    quantity: float
    price: float | None = None


@dataclass(frozen=True, slots=True)
class ExecutionReport:
    """The final outcome of one order at a venue (quote-currency fee)."""

    client_id: str
    status: Status
    filled_quantity: float = 0.0
    avg_price: float = 0.0
    fee: float = 0.0
    exchange_order_id: str | None = None
    error: str | None = None


class Venue(Protocol):
    """Where orders execute. Every method raises only ``cdb.exchange.errors`` exceptions."""

    mode: str

    def check(self, request: OrderRequest) -> None:
        """Raise ``InvalidOrder`` if the order can never be placed (inactive market, dust)."""

    def place(self, request: OrderRequest) -> ExecutionReport:
        """Send the order under ``request.client_id``; ``ExchangeUnavailable`` = outcome unknown."""

    def lookup(self, request: OrderRequest) -> ExecutionReport:
        """The order's final outcome by client id; ``OrderUnknown`` if the venue has no such order."""


def unified_symbol(symbol: str) -> str:
    """``BTC_USDT`` (our events) → ``BTC/USDT`` (ccxt)."""
    base, quote = symbol.split("_", 1)
    return f"{base}/{quote}"


def _is_not_found(exc: BaseException) -> bool:
    ccxt = ccxt_module()
    return isinstance(exc, ccxt.OrderNotFound) or (
        isinstance(exc, ccxt.ExchangeError) and MEXC_ORDER_NOT_FOUND.search(str(exc)) is not None
    )


def report_from_order(
    client_id: str, order: dict[str, Any], taker_fee: float | None
) -> ExecutionReport:
    """Our report for a ccxt order structure whose outcome is final.

    An order still ``open`` is not final (an IOC order closes within moments): that is
    reported as ``ExchangeUnavailable`` so the caller looks it up again later.
    """
    status = order.get("status")
    filled = float(order.get("filled") or 0.0)
    order_id = str(order.get("id")) if order.get("id") is not None else None
    if status == "open":
        raise ExchangeUnavailable(f"order {client_id} is still open at the exchange")
    if filled <= 0:
        return ExecutionReport(
            client_id, "CANCELLED", exchange_order_id=order_id, error=f"not filled ({status})"
        )
    cost = float(order.get("cost") or 0.0)
    average = float(order.get("average") or (cost / filled if cost else order.get("price") or 0))
    fee = _fee_in_quote(order, average, taker_fee, cost or filled * average)
    final: Status = "FILLED" if status == "closed" else "PARTIALLY_FILLED"
    return ExecutionReport(client_id, final, filled, average, fee, order_id)


def _fee_in_quote(
    order: dict[str, Any], price: float, taker_fee: float | None, cost: float
) -> float:
    """The fee in the quote currency; estimated from the market's taker rate when not reported."""
    fees = order.get("fees") or ([order["fee"]] if order.get("fee") else [])
    symbol = order.get("symbol") or "/"
    base = symbol.split("/")[0]
    total = 0.0
    seen = False
    for fee in fees:
        if not fee or fee.get("cost") is None:
            continue
        seen = True
        amount = float(fee["cost"])
        total += amount * price if fee.get("currency") == base else amount
    if not seen and taker_fee:
        total = cost * taker_fee
    return total


class CcxtVenue:
    """The live or validate-only venue on a ccxt exchange object (network unless fed data)."""

    def __init__(
        self, exchange: ccxt.Exchange, mode: Literal["live", "validate"], max_slippage_pct: float
    ) -> None:
        self.exchange = exchange
        self.mode = mode
        self.max_slippage_pct = max_slippage_pct

    @classmethod
    def create(
        cls,
        exchange_id: str,
        api_key: str,
        secret: str,
        mode: Literal["live", "validate"],
        max_slippage_pct: float,
        timeout_ms: int,
    ) -> CcxtVenue:
        """A spot exchange with ccxt's own rate limiter on; keys live only inside ccxt."""
        exchange_cls = getattr(ccxt_module(), exchange_id)
        exchange = exchange_cls(
            {
                "apiKey": api_key,
                "secret": secret,
                "enableRateLimit": True,
                "timeout": timeout_ms,
                "options": {"defaultType": "spot"},
            }
        )
        return cls(exchange, mode, max_slippage_pct)

    def start(self) -> None:
        """Load the markets (precision, limits, ``active``)."""
        with ccxt_errors():
            self.exchange.load_markets()

    def _market(self, symbol: str) -> dict[str, Any]:
        if not self.exchange.markets:
            self.start()
        market = self.exchange.markets.get(unified_symbol(symbol))
        if market is None:
            raise InvalidOrder(f"{symbol} is not a market of {self.exchange.id}")
        if not market.get("active"):
            raise InvalidOrder(f"{symbol} is not active on {self.exchange.id}")
        if not market.get("spot"):
            raise InvalidOrder(f"{symbol} is not a spot market")
        return market

    def _amount(self, request: OrderRequest) -> float:
        with ccxt_errors():
            amount = float(
                self.exchange.amount_to_precision(unified_symbol(request.symbol), request.quantity)
            )
        if amount <= 0:
            raise InvalidOrder(f"quantity {request.quantity} rounds to 0 on {request.symbol}")
        return amount

    def _limit_price(self, request: OrderRequest) -> float:
        if request.price is None:
            raise InvalidOrder(f"order {request.client_id} has no reference price")
        factor = 1 + self.max_slippage_pct / 100
        raw = request.price * factor if request.side == "BUY" else request.price / factor
        with ccxt_errors():
            return float(self.exchange.price_to_precision(unified_symbol(request.symbol), raw))

    def check(self, request: OrderRequest) -> None:
        self._market(request.symbol)
        self._amount(request)
        self._limit_price(request)

    def place(self, request: OrderRequest) -> ExecutionReport:
        market = self._market(request.symbol)
        amount = self._amount(request)
        price = self._limit_price(request)
        params: dict[str, Any] = {"clientOrderId": request.client_id, "timeInForce": "IOC"}
        if self.mode == "validate":
            params["test"] = True
        with ccxt_errors():
            created = self.exchange.create_order(
                market["symbol"], "limit", request.side.lower(), amount, price, params
            )
        if self.mode == "validate":
            return ExecutionReport(
                request.client_id,
                "CANCELLED",
                error="validate mode: the exchange accepted the order test; nothing was executed",
            )
        if created.get("status") in ("closed", "canceled", "expired") and created.get("filled"):
            return report_from_order(request.client_id, created, market.get("taker"))
        try:
            return self.lookup(request)  # MEXC answers a new order with its id only
        except OrderUnknown as exc:
            # acknowledged, so it exists: MEXC's order query lags its order entry
            order_id = created.get("id")
            raise OrderNotVisible(
                f"{self.exchange.id} acknowledged order {request.client_id} (id {order_id}) "
                "but does not report it yet",
                str(order_id) if order_id is not None else None,
            ) from exc

    def lookup(self, request: OrderRequest) -> ExecutionReport:
        if self.mode == "validate":
            # The order-test endpoint keeps nothing: re-testing an order is always harmless.
            raise OrderUnknown(f"validate mode keeps no order {request.client_id}")
        market = self._market(request.symbol)
        try:
            order = self.exchange.fetch_order(
                None, market["symbol"], {"clientOrderId": request.client_id}
            )
        except (ccxt_module().BaseError, TimeoutError, ConnectionError) as exc:
            if _is_not_found(exc):
                raise OrderUnknown(f"{self.exchange.id} has no order {request.client_id}") from exc
            raise translate_error(exc) from exc
        return report_from_order(request.client_id, order, market.get("taker"))

    def open_orders(self, symbols: list[str]) -> list[dict[str, Any]]:
        """Orders open at the exchange on these markets (ours: ``BTC_USDT``), as ccxt gives them.

        MEXC's spot open-orders query needs a symbol, so the caller names the markets.
        """
        out: list[dict[str, Any]] = []
        for symbol in symbols:
            if unified_symbol(symbol) not in (self.exchange.markets or {}):
                continue
            with ccxt_errors():
                out.extend(self.exchange.fetch_open_orders(unified_symbol(symbol)))
        return out

    def balances(self) -> dict[str, float]:
        """Total (free + locked) holdings per currency, for reconciling positions."""
        with ccxt_errors():
            balance = self.exchange.fetch_balance()
        totals = balance.get("total") or {}
        return {k: float(v) for k, v in totals.items() if v is not None}

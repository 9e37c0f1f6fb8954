"""The paper exchange: fills at the latest market price, with fee and slippage, in PostgreSQL.

Its order book *is* the execution ledger: a fill writes the order's status, its
trade, the position and the cash in one transaction, so "does the exchange know
client id X" is exactly "is there a trade row for X". That makes a crash
harmless: an order left ``SENT`` without a trade was never filled.

The **fault switch** lets tests make this exchange misbehave like a real one. It
is the Redis hash ``cdb:paper:fault`` (``FAULT_KEY``), read before every call:

- ``kind``: ``error`` (a 5xx: fails before filling), ``timeout`` (waits ``delay_s``,
  then fails before filling), ``timeout_after_fill`` (fills, then reports a
  timeout: the outcome-unknown case), ``rate_limit`` (a 429);
- ``remaining``: how many calls fail (each failure decrements it; 0 or absent = off);
- ``delay_s``: the wait of ``timeout`` (default 1).

Example: ``redis-cli HSET cdb:paper:fault kind timeout_after_fill remaining 1``.
It affects paper mode only and is harmless in production (no real exchange is
involved), so it needs no setting to arm it.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any, Protocol

import redis

from cdb.exchange.errors import (
    ExchangeUnavailable,
    InsufficientFunds,
    InvalidOrder,
    OrderUnknown,
    RateLimited,
)
from cdb.exchange.trading import ExecutionReport, OrderRequest

log = logging.getLogger(__name__)

FAULT_KEY = "cdb:paper:fault"
FAULT_KINDS = ("error", "timeout", "timeout_after_fill", "rate_limit")

#: A fault switch read with the fence counts for the call that follows within this long.
PREFETCH_VALID_S = 0.5

#: Relative tolerance for float noise when a SELL closes the whole position.
_TOLERANCE = 1e-9


@dataclass(frozen=True, slots=True)
class PaperFill:
    """Price and fee of a simulated fill (quote currency)."""

    price: float
    fee: float


def quote_fill(
    side: str,
    quantity: float,
    market_price: float,
    cash: float,
    position: float,
    fee_pct: float,
    slippage_pct: float,
    quote_asset: str = "USDT",
) -> PaperFill:
    """Price a market order against the book; raise ``InsufficientFunds`` when it cannot be paid.

    Slippage always works against us: a BUY fills ``slippage_pct`` above the market
    price, a SELL below it. The fee is ``fee_pct`` of the fill's value.
    """
    if quantity <= 0 or market_price <= 0:
        raise InvalidOrder(f"bad order: quantity {quantity}, price {market_price}")
    if side == "BUY":
        price = market_price * (1 + slippage_pct / 100)
        cost = quantity * price
        fee = cost * fee_pct / 100
        if cost + fee > cash * (1 + _TOLERANCE):
            raise InsufficientFunds(
                f"insufficient cash: BUY needs {cost + fee:.2f} {quote_asset}, "
                f"cash is {cash:.2f} {quote_asset}"
            )
        return PaperFill(price, fee)
    if side == "SELL":
        if quantity > position * (1 + _TOLERANCE):
            raise InsufficientFunds(
                f"insufficient position: SELL {quantity:g} exceeds the position {position:g}"
            )
        price = market_price * (1 - slippage_pct / 100)
        return PaperFill(price, quantity * price * fee_pct / 100)
    raise InvalidOrder(f"bad side {side!r}")


class Book(Protocol):
    """What the paper exchange needs of the ledger (``cdb.execution.ledger.Ledger``)."""

    quote_asset: str

    def transaction(self) -> Any: ...
    def get(self, cur: Any, client_id: str, lock: bool = False) -> Any: ...
    def find_trade(self, cur: Any, client_id: str) -> ExecutionReport | None: ...
    def lock_book(self, cur: Any, symbol: str) -> Any: ...
    def apply(self, cur: Any, order: Any, report: ExecutionReport, book: Any = None) -> None: ...
    def fill_once(self, client_id: str, symbol: str, fill: Any) -> ExecutionReport: ...


class PaperExchange:
    """A venue whose fills are rows in the ledger; see the module docstring for the fault switch."""

    mode = "paper"

    def __init__(
        self, book: Book, redis_client: redis.Redis | None, fee_pct: float, slippage_pct: float
    ) -> None:
        self.book = book
        self.redis = redis_client
        self.fee_pct = fee_pct
        self.slippage_pct = slippage_pct
        self._prefetched: tuple[dict, float] | None = None

    # -- fault switch ----------------------------------------------------------------------------

    #: the fault switch's read, sent with the single-writer fence that precedes each call;
    #: ``prefetched`` then hands its reply to that call
    FAULT_READ = ("HGETALL", FAULT_KEY)

    def prefetched(self, reply: Any) -> None:
        """The switch as read with the fence a moment ago: the next call uses it, once.

        ``reply`` is HGETALL's raw answer: a flat list of fields and values (RESP2) or a map.
        """
        if isinstance(reply, list | tuple):
            reply = dict(zip(reply[::2], reply[1::2], strict=True))
        self._prefetched = (reply or {}, time.monotonic())

    def _fault(self) -> tuple[str, float] | None:
        """Consume one armed fault, if any: (kind, delay_s).

        The switch is read before every call: with the fence's round trip when that was
        within ``PREFETCH_VALID_S`` (it always is: the fence immediately precedes each
        call), otherwise here.
        """
        if self.redis is None:
            return None
        prefetched, self._prefetched = self._prefetched, None
        if prefetched is not None and time.monotonic() - prefetched[1] < PREFETCH_VALID_S:
            fault = prefetched[0]
        else:
            fault = self.redis.hgetall(FAULT_KEY)
        if not fault:
            return None
        fields = {
            k.decode() if isinstance(k, bytes) else k: v.decode() if isinstance(v, bytes) else v
            for k, v in fault.items()
        }
        kind = fields.get("kind", "")
        if kind not in FAULT_KINDS:
            return None
        if self.redis.hincrby(FAULT_KEY, "remaining", -1) < 0:
            self.redis.hset(FAULT_KEY, "remaining", 0)
            return None
        log.warning("paper exchange fault injected: %s", kind)
        return kind, float(fields.get("delay_s") or 1.0)

    @staticmethod
    def _raise_before(kind: str, delay_s: float) -> None:
        if kind == "error":
            raise ExchangeUnavailable("paper fault: HTTP 503 service unavailable")
        if kind == "rate_limit":
            raise RateLimited("paper fault: HTTP 429 too many requests", retry_after=0.2)
        if kind == "timeout":
            time.sleep(delay_s)
            raise ExchangeUnavailable("paper fault: request timed out")
        raise ExchangeUnavailable("paper fault: response lost")

    # -- the venue -------------------------------------------------------------------------------

    def check(self, request: OrderRequest) -> None:
        if request.price is None:
            raise InvalidOrder(f"no market price for {request.symbol} and no reference price")
        if not request.symbol.endswith("_" + self.book.quote_asset):
            raise InvalidOrder(f"{request.symbol} is not quoted in {self.book.quote_asset}")

    def place(self, request: OrderRequest) -> ExecutionReport:
        """Fill the order now (or return its earlier fill: a client id is filled at most once)."""
        self.check(request)
        fault = self._fault()
        if fault and fault[0] != "timeout_after_fill":
            self._raise_before(*fault)
        filled = []

        def fill(_order: Any, held: Any) -> ExecutionReport:
            filled.append(True)
            priced = quote_fill(
                request.side,
                request.quantity,
                request.price,  # type: ignore[arg-type]  # check() made sure
                held.cash,
                held.quantity,
                self.fee_pct,
                self.slippage_pct,
                self.book.quote_asset,
            )
            return ExecutionReport(
                request.client_id,
                "FILLED",
                request.quantity,
                priced.price,
                priced.fee,
                exchange_order_id=f"paper-{request.client_id}",
            )

        try:  # a duplicate client order id gets the first fill back, never a second one
            report = self.book.fill_once(request.client_id, request.symbol, fill)
        except KeyError as exc:
            raise InvalidOrder(
                f"order {request.client_id} was not recorded before sending"
            ) from exc
        if fault and filled:  # timeout_after_fill: the fill is committed, the caller never hears
            raise ExchangeUnavailable("paper fault: response lost after the order was filled")
        return report

    def lookup(self, request: OrderRequest) -> ExecutionReport:
        """The order's fill from the book, or ``OrderUnknown`` when it was never filled."""
        fault = self._fault()
        if fault:  # a lookup has nothing to do before failing: every kind fails it
            self._raise_before(*fault)
        with self.book.transaction() as cur:
            found = self.book.find_trade(cur, request.client_id)
        if found is None:
            raise OrderUnknown(f"the paper book has no fill for {request.client_id}")
        return found

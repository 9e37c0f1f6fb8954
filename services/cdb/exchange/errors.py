"""Our exchange errors, named by how a caller handles them, and the one translation from ccxt.

ccxt's exception tree is organised by what went wrong; callers care about what to
do next: wait and retry (``ExchangeUnavailable``, ``RateLimited``), treat the
order as absent (``OrderUnknown``), give up on the request (``InvalidOrder``,
``ExchangeRejected``), or stop and call a person (``AuthenticationFailed``).
Every call into ccxt goes through ``translate_error`` / ``ccxt_errors`` so the
rest of the system never imports ccxt (freqtrade's ``raise ... from e`` pattern).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator
from contextlib import contextmanager
from types import ModuleType

from cdb.service import TransientError


class ExchangeError(Exception):
    """Base of every exchange failure we raise; the ccxt original is its ``__cause__``."""


class ExchangeUnavailable(ExchangeError, TransientError):
    """Resolves itself: network error, timeout, 5xx, maintenance. Back off and retry.

    For an order this means *outcome unknown*: look the order up before resending.
    Being a ``TransientError``, an uncaught one makes the runtime retry the entry.
    """


class RateLimited(ExchangeUnavailable):
    """Resolves itself, slower: HTTP 429 / DDoS protection. Back off longer before retrying."""

    def __init__(self, message: str = "", retry_after: float | None = None) -> None:
        super().__init__(message)
        #: Seconds the exchange asked us to wait, when it said so.
        self.retry_after = retry_after


class OrderUnknown(ExchangeError):
    """The exchange says the order does not exist: safe to (re)send it, or it is gone."""


class OrderExists(ExchangeError):
    """The exchange already has an order under this client id (MEXC ``-2010`` "Duplicate
    clientOrderId", ccxt ``DuplicateOrderId``): it exists, so look it up; never send again."""


class OrderNotVisible(ExchangeError):
    """The exchange acknowledged the order, then its order query said "does not exist".

    MEXC's order query lags its order entry: the order exists. The caller keeps looking
    it up for a bounded time and then treats the outcome as unknown, never as absent.
    """

    def __init__(self, message: str = "", exchange_order_id: str | None = None) -> None:
        super().__init__(message)
        self.exchange_order_id = exchange_order_id


class InvalidOrder(ExchangeError):
    """Permanent: the exchange rejected the request (bad amount, symbol, market closed...).

    Retrying the same request gives the same answer; record it as rejected.
    """


class InsufficientFunds(InvalidOrder):
    """Permanent for this order: the account cannot pay for it."""


class AuthenticationFailed(ExchangeError):
    """Needs a person: bad or revoked API key, missing permission, suspended account."""


class ExchangeRejected(ExchangeError):
    """Permanent: any other error the exchange reported (unsupported call, bad request)."""


#: MEXC's (and Binance's) answer to a second order under a used client id, e.g.
#: ``mexc {"msg":"Duplicate clientOrderId","code":-2010}``.
DUPLICATE_CLIENT_ID = re.compile(r"duplicate\s*(client\s*)?order\s*(id)?", re.IGNORECASE)


def ccxt_module() -> ModuleType:
    """ccxt, imported on first use: loading it costs ~0.3 s (every exchange's module), which
    the services that only name these errors (the backtest, the signal engine) never pay."""
    import ccxt

    return ccxt


@functools.cache
def _translation() -> tuple[tuple[type[BaseException], type[ExchangeError]], ...]:
    """Most specific first: the first ccxt class the exception is an instance of decides."""
    ccxt = ccxt_module()
    return (
        (ccxt.RateLimitExceeded, RateLimited),
        (ccxt.DDoSProtection, RateLimited),
        (ccxt.NetworkError, ExchangeUnavailable),  # timeouts, 5xx, maintenance, bad nonce
        (ccxt.BadResponse, ExchangeUnavailable),  # garbled or empty body: a proxy hiccup
        (ccxt.OrderNotFound, OrderUnknown),
        (ccxt.DuplicateOrderId, OrderExists),  # an InvalidOrder to ccxt: it must come first
        (ccxt.AuthenticationError, AuthenticationFailed),  # includes PermissionDenied
        (ccxt.AccountSuspended, AuthenticationFailed),
        (ccxt.InsufficientFunds, InsufficientFunds),
        (ccxt.InvalidOrder, InvalidOrder),
        (ccxt.BadSymbol, InvalidOrder),
        (ccxt.MarketClosed, InvalidOrder),
        (ccxt.ArgumentsRequired, InvalidOrder),
        (ccxt.BadRequest, InvalidOrder),
        (ccxt.BaseError, ExchangeRejected),
        # Not ccxt's own, but raised from under it: sockets and timeouts are network trouble.
        (TimeoutError, ExchangeUnavailable),
        (ConnectionError, ExchangeUnavailable),
    )


def translate_error(exc: BaseException) -> ExchangeError:
    """Our error for a ccxt (or socket) exception; unrelated exceptions become ``ExchangeRejected``.

    The caller raises the result ``from exc`` so the original stays visible in logs.
    """
    if isinstance(exc, ExchangeError):
        return exc
    message = f"{type(exc).__name__}: {exc}"[:500]
    if isinstance(exc, ccxt_module().ExchangeError) and DUPLICATE_CLIENT_ID.search(str(exc)):
        return OrderExists(message)  # MEXC: a plain ExchangeError with code -2010
    for ccxt_cls, ours in _translation():
        if isinstance(exc, ccxt_cls):
            return ours(message)
    return ExchangeRejected(message)


@contextmanager
def ccxt_errors() -> Iterator[None]:
    """Run a ccxt call, re-raising any ccxt or network exception as ours (``from`` the original).

    Programming errors (``TypeError``, ``KeyError`` ...) pass through untouched: they are bugs.
    """
    try:
        yield
    except ExchangeError:
        raise
    except (TimeoutError, ConnectionError) as exc:
        raise translate_error(exc) from exc
    except Exception as exc:
        if isinstance(exc, ccxt_module().BaseError):
            raise translate_error(exc) from exc
        raise

"""Exactly-once execution of one order: record, send, look up before resending, store, report.

The rules, in the order they apply to an ``order`` entry (which may be a redelivery):

1. The order row (``client_id``) is created ``NEW`` if absent. A final row is never
   sent again: its stored result is returned for republishing.
2. ``NEW``: refused while the service is fail-closed or the venue says it can never
   execute; otherwise marked ``SENT`` and *committed* before the venue is called.
3. ``SENT`` (a redelivery after a crash or a failed attempt): the outcome is unknown,
   so the venue is asked for the order by client id first, and the order is sent
   again only when the venue says it has no such order.
4. A timeout, 5xx or network error while sending means the same: the next attempt
   looks the order up first. 429s back off (tenacity, honouring ``retry_after``).
   After ``EXCHANGE_RETRIES`` attempts the entry is left pending and retried later.
5. The outcome is stored (fill, position and cash in one transaction) before it is
   published.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential_jitter,
)

from cdb.events import Order, OrderResult
from cdb.exchange.errors import (
    AuthenticationFailed,
    ExchangeError,
    ExchangeUnavailable,
    InvalidOrder,
    OrderUnknown,
    RateLimited,
)
from cdb.exchange.trading import ExecutionReport, OrderRequest, Venue
from cdb.execution.ledger import NEW, SENT, UNKNOWN, Ledger, StoredOrder
from cdb.runtime import TransientError

log = logging.getLogger(__name__)


@dataclass
class Problems:
    """Why the service refuses new orders (fail-closed) or cannot reach the exchange."""

    unknown: dict[str, str] = field(default_factory=dict)  # client_id → reason
    mismatches: list[str] = field(default_factory=list)  # positions the exchange does not hold
    exchange: str | None = None  # the last exhausted exchange error, cleared on success

    @property
    def fail_closed(self) -> bool:
        return bool(self.unknown or self.mismatches)

    def describe(self) -> list[str]:
        out = []
        if self.unknown:
            ids = ", ".join(sorted(self.unknown)[:5])
            out.append(
                f"fail-closed: {len(self.unknown)} order(s) in state UNKNOWN ({ids}); "
                "resolve with `python -m cdb.execution.resolve` (docs/services/execution.md)"
            )
        out.extend(f"fail-closed: {m}" for m in self.mismatches)
        if self.exchange:
            out.append(f"exchange unavailable: {self.exchange}")
        return out


class Executor:
    """Runs orders through a venue against the ledger; see the module docstring for the rules."""

    def __init__(
        self,
        ledger: Ledger,
        venue: Venue,
        *,
        retries: int,
        backoff_max_s: float,
        max_age_s: float = 0.0,
        fence: Callable[[], None] = lambda: None,
        pause: Callable[[str, str], None] = lambda point, client_id: None,
        alert: Callable[[str, str, str, dict], None] = lambda level, code, msg, ctx: None,
    ) -> None:
        self.ledger = ledger
        self.venue = venue
        self.retries = retries
        self.max_age_s = max_age_s
        self.backoff = wait_exponential_jitter(multiplier=0.2, max=backoff_max_s, jitter=0.1)
        self.fence = fence
        self.pause = pause
        self.alert = alert
        self.problems = Problems()

    # -- one order ------------------------------------------------------------------------------

    def execute(self, order: Order, market_price: float | None) -> OrderResult | None:
        """The order's final result (new or stored), or None while a person must resolve it."""
        stored = self.ledger.claim(order)
        request = OrderRequest(
            order.client_id, order.symbol, order.side, order.quantity, market_price or order.price
        )
        if stored.final:
            log.info("order %s already %s: republishing", order.client_id, stored.status)
            return stored.to_result()
        if stored.status == UNKNOWN:
            log.warning("order %s is UNKNOWN: not sent; a person must resolve it", order.client_id)
            return None
        if stored.status == NEW:
            refusal = self._stale(order) or self._refusal(request)
            if refusal:
                return self._finish(
                    stored, ExecutionReport(order.client_id, "REJECTED", error=refusal)
                )
            if not self.ledger.mark_sent(order.client_id):
                return self.execute(order, market_price)  # changed under us: decide again
            self.pause("after_sent", order.client_id)
            report = self._send(request, maybe_sent=False)
        elif stored.status == SENT:
            if stored.mode != self.venue.mode:
                self.mark_unknown(
                    stored,
                    f"sent in {stored.mode} mode; this {self.venue.mode} venue cannot look it up",
                )
                return None
            report = self._send(request, maybe_sent=True)
        else:
            raise ValueError(f"order {order.client_id} has unexpected status {stored.status!r}")
        result = self._finish(stored, report)
        self.pause("after_fill", order.client_id)
        return result

    def _stale(self, order: Order) -> str | None:
        """Safety first: an order that waited out an outage is not sent at today's prices."""
        age = time.time() - order.timestamp
        if self.max_age_s and age > self.max_age_s:
            return (
                f"order is {age:.0f} s old > ORDER_MAX_AGE_S {self.max_age_s:g} s: "
                "not sent (the market has moved on)"
            )
        return None

    def _refusal(self, request: OrderRequest) -> str | None:
        if self.problems.fail_closed:
            return "; ".join(self.problems.describe())[:500]
        try:
            self.venue.check(request)
        except InvalidOrder as exc:
            return str(exc)
        return None

    def _finish(self, stored: StoredOrder, report: ExecutionReport) -> OrderResult:
        final = self.ledger.record(stored.client_id, report)
        log.info(
            "order %s %s %s %s: %s %g @ %g fee %g%s",
            final.client_id,
            final.side,
            final.quantity,
            final.symbol,
            final.status,
            final.filled_quantity,
            final.avg_price,
            final.fee,
            f" ({final.error})" if final.error else "",
        )
        return final.to_result()

    def _wait(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, RateLimited) and exc.retry_after:
            return exc.retry_after
        return self.backoff(state)

    def _send(self, request: OrderRequest, maybe_sent: bool) -> ExecutionReport:
        """Place the order at most once in effect: every attempt after a doubt looks it up first."""
        doubt = maybe_sent

        def attempt() -> ExecutionReport:
            nonlocal doubt
            self.fence()
            if doubt:
                try:
                    found = self.venue.lookup(request)
                    log.info("order %s found at the venue: not resending", request.client_id)
                    return found
                except OrderUnknown:
                    log.info("order %s not at the venue: sending", request.client_id)
            doubt = True  # from here on, any failure leaves the outcome unknown
            return self.venue.place(request)

        retrying = Retrying(
            retry=retry_if_exception_type(ExchangeUnavailable),
            stop=stop_after_attempt(self.retries),
            wait=self._wait,
            reraise=True,
            before_sleep=lambda s: log.warning(
                "order %s: attempt %d failed (%s); retrying",
                request.client_id,
                s.attempt_number,
                s.outcome.exception() if s.outcome else "",
            ),
        )
        try:
            report = retrying(attempt)
        except ExchangeUnavailable as exc:
            self.problems.exchange = str(exc)[:200]
            raise TransientError(f"order {request.client_id}: {exc}") from exc
        except InvalidOrder as exc:
            report = ExecutionReport(request.client_id, "REJECTED", error=str(exc)[:500])
        except AuthenticationFailed as exc:
            self.alert(
                "CRITICAL",
                "EXCHANGE_AUTH_FAILED",
                f"the exchange refused our keys: {exc}"[:500],
                {"client_id": request.client_id},
            )
            report = ExecutionReport(request.client_id, "REJECTED", error=str(exc)[:500])
        except ExchangeError as exc:  # the exchange answered with a permanent error
            report = ExecutionReport(request.client_id, "ERROR", error=str(exc)[:500])
        self.problems.exchange = None
        return report

    # -- fail-closed -----------------------------------------------------------------------------

    def mark_unknown(self, stored: StoredOrder, reason: str) -> None:
        """``SENT`` → ``UNKNOWN``: raise a CRITICAL alert and refuse new orders until resolved."""
        if self.ledger.set_status(stored.client_id, SENT, UNKNOWN, reason[:500]):
            self.problems.unknown[stored.client_id] = reason
            self.alert(
                "CRITICAL",
                "ORDER_UNKNOWN",
                f"order {stored.client_id} ({stored.side} {stored.quantity:g} {stored.symbol}) "
                f"has an unknown outcome: {reason} – execution halted (fail-closed) until a "
                "person resolves it"[:500],
                {"client_id": stored.client_id, "symbol": stored.symbol, "mode": stored.mode},
            )

    def refresh_unknown(self) -> None:
        """Re-read the UNKNOWN orders: a person may have resolved them meanwhile."""
        current = {o.client_id: o.error or "unknown" for o in self.ledger.with_status(UNKNOWN)}
        for client_id in set(self.problems.unknown) - set(current):
            log.info("order %s was resolved", client_id)
        self.problems.unknown = current

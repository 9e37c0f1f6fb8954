"""Exactly-once execution of one order: record, send, look up before resending, store, report.

The rules, in the order they apply to an ``order`` entry (which may be a redelivery):

1. The order row (``client_id``) is created ``NEW`` if absent. A final row is never
   sent again: its stored result is returned for republishing.
2. ``NEW``: refused while the service is fail-closed (``Problems.refusal``: an
   ``UNKNOWN`` order blocks entries and its own symbol, a mismatch everything), while
   the kill switch (any order) or the breaker (entries) is engaged in the risk
   manager's durable state, or when the venue says it can never execute; otherwise
   marked ``SENT`` and *committed* before the venue is called.
3. ``SENT`` (a redelivery after a crash or a failed attempt): the outcome is unknown,
   so the venue is asked for the order by client id first, and the order is sent
   again only when a bounded series of lookups (``ORDER_LOOKUPS``, backing off from
   ``ORDER_LOOKUP_BACKOFF_S``) proved it absent, and the kill switch and breaker still
   allow it. One "does not exist" is not proof: an exchange's order query can lag its
   order entry.
4. A timeout, 5xx or network error while sending means the same: the next attempt
   looks the order up first. 429s back off (tenacity, honouring ``retry_after``).
   After ``EXCHANGE_RETRIES`` attempts the entry is left pending and retried later.
5. An order the exchange acknowledged (it answered the create, or refused a resend as
   a duplicate client id) exists: if the lookups still cannot find it, it becomes
   ``UNKNOWN`` (CRITICAL alert, fail-closed), never "not found". The service keeps
   looking ``UNKNOWN`` orders up and settles them when the exchange reports them.
6. The outcome is stored (fill, position and cash in one transaction) before it is
   published.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

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
    OrderExists,
    OrderNotVisible,
    OrderUnknown,
    RateLimited,
)
from cdb.exchange.trading import ExecutionReport, OrderRequest, Venue
from cdb.execution.ledger import NEW, SENT, UNKNOWN, Ledger, StoredOrder
from cdb.execution.safety import OrderInDoubt, Problems
from cdb.service import TransientError

log = logging.getLogger(__name__)

#: ``_halted``'s "the breaker was not read with the order": ask ``halt``.
UNREAD = object()


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
        lookups: int = 5,
        lookup_backoff_s: float = 0.5,
        halt: Callable[[str], str | None] = lambda side: None,
        halt_state: Callable[[dict | None, str], str | None] | None = None,
        refused: Callable[[int, dict], None] = lambda count, latest: None,
        fence: Callable[[], None] = lambda: None,
        fence_begin: Callable[[], None] = lambda: None,
        pause: Callable[[str, str], None] = lambda point, client_id: None,
        alert: Callable[[str, str, str, dict], None] = lambda level, code, msg, ctx: None,
    ) -> None:
        self.ledger = ledger
        self.venue = venue
        self.retries = retries
        self.max_age_s = max_age_s
        self.lookups = lookups
        self.lookup_backoff_s = lookup_backoff_s
        self.backoff_max_s = backoff_max_s
        self.halt = halt
        #: (persisted breaker, side) → refusal; when given, ``execute`` reads the breaker
        #: together with the order's row instead of asking ``halt`` in a round trip of its own
        self.halt_state = halt_state
        self.refused = refused
        self.backoff = wait_exponential_jitter(multiplier=0.2, max=backoff_max_s, jitter=0.1)
        self.fence = fence
        #: starts the fence's round trip early (its answer is read by ``fence``), so it
        #: overlaps the ``SENT`` commit of the common case
        self.fence_begin = fence_begin
        self.pause = pause
        self.alert = alert
        self.problems = Problems()

    # -- one order ------------------------------------------------------------------------------

    def execute(self, order: Order, market_price: float | None) -> OrderResult | None:
        """The order's final result (new or stored), or None while it is ``UNKNOWN``.

        The common case (a new order, nothing refusing it, the persisted breaker clear)
        costs one database round trip before the venue is called: ``send_if_clear``
        reads the breaker and commits the row ``SENT`` in one statement. Anything else (a
        redelivery, a refusal, a breaker that is not clear) takes the general path: one
        read (the order's row and, with ``halt_state``, the persisted breaker), then the
        rules of the module docstring, then one committed write that records it ``SENT``.
        """
        request = OrderRequest(
            order.client_id, order.symbol, order.side, order.quantity, market_price or order.price
        )
        if self.halt_state is not None:
            if not self._refused_here(order, request):
                self.fence_begin()
                sent, breaker = self.ledger.send_if_clear(order)
                if sent is not None:
                    return self._sent(sent, request, breaker)
            stored, breaker = self.ledger.prepare(order.client_id)
        else:
            stored, breaker = self.ledger.claim(order), UNREAD
        if stored is not None and stored.final:
            log.info("order %s already %s: republishing", order.client_id, stored.status)
            return stored.to_result()
        if stored is not None and stored.status == UNKNOWN:
            log.warning(
                "order %s is UNKNOWN: not sent; settled when the exchange reports it or a "
                "person resolves it",
                order.client_id,
            )
            return None
        if stored is None or stored.status == NEW:
            refusal = self._stale(order) or self._refusal(request, breaker)
            if refusal:
                if stored is None:
                    stored = self.ledger.claim(order)
                return self._finish(
                    stored, ExecutionReport(order.client_id, "REJECTED", error=refusal)
                )
            sent = self.ledger.record_sent(order)
            if sent is None:
                return self.execute(order, market_price)  # changed under us: decide again
            return self._sent(sent, request, UNREAD)
        if stored.status == SENT:
            if stored.mode != self.venue.mode:
                self.mark_unknown(
                    stored,
                    f"sent in {stored.mode} mode; this {self.venue.mode} venue cannot look it up",
                )
                return None
            return self._place(stored, request, maybe_sent=True)
        raise ValueError(f"order {order.client_id} has unexpected status {stored.status!r}")

    def _refused_here(self, order: Order, request: OrderRequest) -> bool:
        """Would a check that needs no database refuse the order? (No side effects.)"""
        if self._stale(order) or self.problems.refusal(request.side, request.symbol):
            return True
        try:
            self.venue.check(request)
        except ExchangeError:  # InvalidOrder, or the venue cannot tell now: the general path
            return True
        return False

    def _sent(
        self, stored: StoredOrder, request: OrderRequest, breaker: object
    ) -> OrderResult | None:
        """The row is committed ``SENT`` by this call: send it, unless the breaker read with
        it refuses (then it was never sent, and is stored ``REJECTED``)."""
        if breaker is not UNREAD:
            halted = self._halted(request, breaker)
            if halted:  # send_if_clear wrote only under a clear breaker: a safety net
                return self._finish(
                    stored, ExecutionReport(request.client_id, "REJECTED", error=halted)
                )
        self.pause("after_sent", request.client_id)
        return self._place(stored, request, maybe_sent=False)

    def _place(
        self, stored: StoredOrder, request: OrderRequest, maybe_sent: bool
    ) -> OrderResult | None:
        """Send (or look up first, when ``maybe_sent``), then store the outcome."""
        try:
            report = self._send(request, maybe_sent=maybe_sent)
        except OrderInDoubt as exc:
            self.mark_unknown(stored, str(exc))
            return None
        result = self._finish(stored, report)
        self.pause("after_fill", request.client_id)
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

    def _refusal(self, request: OrderRequest, breaker: object = UNREAD) -> str | None:
        closed = self.problems.refusal(request.side, request.symbol)
        if closed:
            return closed
        halted = self._halted(request, breaker)
        if halted:
            return halted
        try:
            self.venue.check(request)
        except InvalidOrder as exc:
            return str(exc)
        return None

    def _finish(self, stored: StoredOrder, report: ExecutionReport) -> OrderResult:
        """Store the outcome; its log line is written after it is published (the service)."""
        return self.ledger.record(stored.client_id, report).to_result()

    def _wait(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, RateLimited) and exc.retry_after:
            return exc.retry_after
        return self.backoff(state)

    def _halted(self, request: OrderRequest, breaker: object = UNREAD) -> str | None:
        """The kill switch (any order) or breaker (entries) as the risk manager persisted it.

        ``breaker`` is that persisted state when ``execute`` read it with the order's row
        (``halt_state``); otherwise (and before every resend) ``halt`` reads it afresh.
        """
        if self.halt_state is not None and breaker is not UNREAD:
            reason = self.halt_state(breaker, request.side)  # type: ignore[arg-type]
        else:
            reason = self.halt(request.side)
        if reason:
            self.problems.refused += 1
            self.problems.last_refused = {
                "client_id": request.client_id,
                "symbol": request.symbol,
                "side": request.side,
                "reason": reason[:300],
                "at": int(time.time()),
            }
            log.warning("order %s refused: %s", request.client_id, reason)
            self.refused(self.problems.refused, self.problems.last_refused)
        return reason

    def look_up(self, request: OrderRequest) -> ExecutionReport | None:
        """The order's report, or None once a bounded series of lookups found no such order.

        Live exchanges get ``lookups`` tries, backing off from ``lookup_backoff_s``: an
        order query can lag the order entry. The paper book and the order-test endpoint
        answer for certain at once.
        """
        tries = self.lookups if self.venue.mode == "live" else 1
        for n in range(tries):
            if n:
                time.sleep(min(self.lookup_backoff_s * 2 ** (n - 1), self.backoff_max_s))
                self.fence()
            try:
                found = self.venue.lookup(request)
            except OrderUnknown:
                continue
            log.info("order %s found at the venue: not resending", request.client_id)
            return found
        return None

    def _lookup_window(self) -> str:
        waited = sum(
            min(self.lookup_backoff_s * 2 ** (n - 1), self.backoff_max_s)
            for n in range(1, self.lookups)
        )
        return f"{self.lookups} lookups over {waited:g} s"

    def _send(self, request: OrderRequest, maybe_sent: bool) -> ExecutionReport:
        """Place the order at most once in effect: every attempt after a doubt looks it up first.

        Raises ``OrderInDoubt`` when the exchange acknowledged the order but never reports it.
        """
        doubt = maybe_sent
        acknowledged: ExchangeError | None = None  # the exchange said it has the order

        def attempt() -> ExecutionReport:
            nonlocal doubt, acknowledged
            self.fence()
            if doubt:
                found = self.look_up(request)
                if found is not None:
                    return found
                if acknowledged is not None:  # it exists: absence is never proven
                    raise OrderInDoubt(
                        f"the exchange has it ({acknowledged}) but did not report it after "
                        f"{self._lookup_window()}"
                    )
                log.info("order %s proven absent (%s)", request.client_id, self._lookup_window())
                halted = self._halted(request)  # every resend is a new send: ask again
                if halted:
                    return ExecutionReport(
                        request.client_id, "REJECTED", error=f"not resent: {halted}"[:500]
                    )
            doubt = True  # from here on, any failure leaves the outcome unknown
            try:
                return self.venue.place(request)
            except (OrderExists, OrderNotVisible) as exc:
                acknowledged = exc
                found = self.look_up(request)  # it exists: find it, never send it again
                if found is not None:
                    return found
                raise OrderInDoubt(
                    f"the exchange has it ({exc}) but did not report it after "
                    f"{self._lookup_window()}"
                ) from exc

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
            self.problems.unknown_symbols[stored.client_id] = stored.symbol
            self.alert(
                "CRITICAL",
                "ORDER_UNKNOWN",
                f"order {stored.client_id} ({stored.side} {stored.quantity:g} {stored.symbol}) "
                f"has an unknown outcome: {reason} – execution halted (fail-closed) until it is "
                "settled: the exchange reports it, or a person resolves it"[:500],
                {"client_id": stored.client_id, "symbol": stored.symbol, "mode": stored.mode},
            )

    def refresh_unknown(self, look_up: bool = False) -> list[OrderResult]:
        """Re-read the UNKNOWN orders: a person may have resolved them meanwhile.

        With ``look_up``, each UNKNOWN order of this venue's mode (live) is asked for once
        more; one the exchange now reports is settled (stored like any fill) and its
        result returned for publishing. Exchange errors leave it UNKNOWN for the next pass.
        """
        settled: list[OrderResult] = []
        rows = self.ledger.with_status(UNKNOWN)
        if look_up and self.venue.mode == "live":
            for row in rows:
                if row.mode != self.venue.mode:
                    continue
                request = OrderRequest(
                    row.client_id,
                    row.symbol,
                    row.side,
                    row.quantity,
                    row.price,  # type: ignore[arg-type]
                )
                try:
                    report = self.venue.lookup(request)
                except ExchangeError as exc:
                    log.info("order %s still UNKNOWN (%s)", row.client_id, exc)
                    continue
                final = self.ledger.record(row.client_id, report)
                log.warning("UNKNOWN order %s settled: %s", row.client_id, final.status)
                self.alert(
                    "WARNING",
                    "ORDER_SETTLED",
                    f"order {row.client_id} ({row.side} {row.symbol}) was UNKNOWN; the exchange "
                    f"now reports it {final.status} ({final.filled_quantity:g} filled)"[:500],
                    {"client_id": row.client_id, "symbol": row.symbol},
                )
                settled.append(final.to_result())
            if settled:
                rows = self.ledger.with_status(UNKNOWN)
        current = {o.client_id: o.error or "unknown" for o in rows}
        for client_id in set(self.problems.unknown) - set(current):
            log.info("order %s was resolved", client_id)
        self.problems.unknown = current
        self.problems.unknown_symbols = {o.client_id: o.symbol for o in rows}
        return settled

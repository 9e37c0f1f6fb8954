"""``cdb run execution``: executes approved orders exactly once and publishes ``order_result``.

Reads ``orders`` (and ``market_data`` for the latest price per symbol, which paper
fills use), writes ``orders``, ``trades``, ``positions`` and ``balances``, and
publishes ``order_result`` after the outcome is committed. Only one copy works at
a time (``lock.SingleWriterLock``): a second one stays in standby, reading
nothing, until the lock is free. Before its first order a copy reconciles what the
last one left in flight (``reconcile``) and fails closed on anything unknown.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

import redis

from cdb.bus import ALERTS, MARKET_DATA, ORDERS, REFUSED_KEY, Bus, Delivery
from cdb.events import Alert, MarketData, Order
from cdb.exchange.errors import ExchangeError
from cdb.exchange.paper import PaperExchange
from cdb.exchange.trading import CcxtVenue, Venue
from cdb.execution.executor import Executor
from cdb.execution.ledger import Ledger
from cdb.execution.lock import SentRefresh, SingleWriterLock
from cdb.execution.metrics import ExecutionMetrics
from cdb.execution.reconcile import reconcile
from cdb.execution.safety import halt_reason
from cdb.execution.settings import ExecutionSettings
from cdb.service import TRANSIENT, Service, TransientError
from cdb.settings import SettingsError

log = logging.getLogger(__name__)

#: Set (to ``point:client_id``) when the test-only pause is reached.
PAUSED_KEY = "cdb:execution:paused"


class ExecutionService(Service):
    name = "execution"
    default_port = 8003
    settings_class = ExecutionSettings
    streams = (ORDERS, MARKET_DATA)

    def __init__(self, settings: ExecutionSettings, bus: Bus) -> None:
        super().__init__(settings, bus)
        self.settings: ExecutionSettings = settings
        mode = settings.TRADING_MODE
        if mode != "paper" and not (settings.MEXC_API_KEY and settings.MEXC_API_SECRET):
            raise SettingsError(
                f"TRADING_MODE={mode} needs EXCHANGE_API_KEY and EXCHANGE_API_SECRET "
                "(or MEXC_API_KEY and MEXC_API_SECRET); refusing to start"
            )
        if settings.EXECUTION_TEST_PAUSE_AT and mode != "paper":
            raise SettingsError(
                "EXECUTION_TEST_PAUSE_AT is a test setting, allowed in paper mode only"
            )
        # Read nothing until this copy holds the single-writer lock and has reconciled.
        self.streams = ()  # type: ignore[misc]
        self.active = False
        self.lock = SingleWriterLock(bus.client, settings.LOCK_TTL_S)
        self._sent_fence: SentRefresh | None = None
        self.ledger = Ledger(settings, settings.QUOTE_ASSET, mode)
        self.venue: Venue = self._venue()
        self.executor = Executor(
            self.ledger,
            self.venue,
            retries=settings.EXCHANGE_RETRIES,
            backoff_max_s=settings.EXCHANGE_BACKOFF_MAX_S,
            max_age_s=settings.ORDER_MAX_AGE_S,
            lookups=settings.ORDER_LOOKUPS,
            lookup_backoff_s=settings.ORDER_LOOKUP_BACKOFF_S,
            halt=self._halt,
            halt_state=lambda breaker, side: halt_reason(breaker, side, time.time()),
            refused=self._refused,
            fence=self._fence,
            fence_begin=self._fence_begin,
            pause=self._pause,
            alert=self._alert,
        )
        self.prices: dict[str, float] = {}
        self.reconcile_error: str | None = None
        self.last_result: dict[str, Any] | None = None
        self._last_recheck = 0.0
        #: between sends the lease is renewed at most this often (a Redis round trip per loop
        #: otherwise); before every exchange call ``_fence`` renews and checks it regardless
        self._refresh_every = min(1.0, settings.LOCK_TTL_S / 10)
        #: how long the answer of a refresh sent early (``_fence_begin``) counts at the call
        self._fence_valid_s = self._refresh_every
        self._last_refresh = 0.0
        self.metrics = ExecutionMetrics(self.registry, settings.QUOTE_ASSET)
        self.results = self.metrics.results
        self.fail_closed_gauge = self.metrics.fail_closed

    def _venue(self) -> Venue:
        s = self.settings
        if s.TRADING_MODE == "paper":
            return PaperExchange(
                self.ledger, self.bus.client, s.PAPER_FEE_PCT, s.PAPER_SLIPPAGE_PCT
            )
        assert s.MEXC_API_KEY and s.MEXC_API_SECRET
        return CcxtVenue.create(
            s.EXCHANGE_ID,
            s.MEXC_API_KEY.get_secret_value(),
            s.MEXC_API_SECRET.get_secret_value(),
            s.TRADING_MODE,  # type: ignore[arg-type]
            s.LIVE_MAX_SLIPPAGE_PCT,
            s.EXCHANGE_TIMEOUT_MS,
        )

    # -- hooks given to the executor ---------------------------------------------------------------

    def _fence_reads(self) -> tuple[tuple, ...]:
        """What else the fence's round trip reads: the paper exchange's fault switch."""
        read = getattr(self.venue, "FAULT_READ", None)
        return (read,) if read else ()

    def _fence_begin(self) -> None:
        """Send the fence's refresh now and read its answer in ``_fence``, so the round trip
        runs while the order's ``SENT`` row is committed instead of after it."""
        if self._sent_fence is None:
            self._sent_fence = self.lock.refresh_send(self._fence_reads())

    def _fence(self) -> None:
        """Before every exchange call: still the single writer? Otherwise stop sending.

        The answer of a refresh sent by ``_fence_begin`` counts while it is younger than
        ``_fence_valid_s`` (min(1 s, LOCK_TTL_S / 10), the renewal period between orders;
        the lease runs from before it was sent, so at least 90 % of it is still ahead at
        the call, as with a refresh made at the call); an older one, or none, means a
        refresh now. The paper
        exchange's fault switch is read in the same round trip (it is read before every
        call anyway)."""
        reads = self._fence_reads()
        sent, self._sent_fence = self._sent_fence, None
        held = False
        if sent is not None:
            try:
                held = self.lock.refresh_read(sent)
            except (redis.ConnectionError, redis.TimeoutError):
                sent = None  # no answer: ask again below, with the client's retries
        if sent is None or (held and time.monotonic() - sent.sent_at >= self._fence_valid_s):
            held = self.lock.refresh(reads)
        if not held:
            self._standby("lost the single-writer lock")
            raise TransientError("lost the single-writer lock; another copy may be executing")
        if reads:
            self.venue.prefetched(self.lock.also_replies[0])  # type: ignore[attr-defined]

    def _fence_drain(self) -> None:
        """After each order: a refresh ``_fence_begin`` sent that no call used is read.

        A lease found lost means standby (the caller stops the batch); a Redis error
        reading the answer is transient (``TransientError``): the runtime backs off and the
        entries not acknowledged are read again.
        """
        sent, self._sent_fence = self._sent_fence, None
        if sent is None:
            return
        try:
            held = self.lock.refresh_read(sent)
        except redis.RedisError as exc:
            raise TransientError(f"lease refresh unanswered: {exc}") from exc
        if not held:
            self._standby("lost the single-writer lock")

    def _halt(self, side: str) -> str | None:
        return halt_reason(self.ledger.risk_breaker(), side, time.time())

    def _refused(self, count: int, latest: dict) -> None:
        """Show a kill switch/breaker refusal where the operator reads it (``REFUSED_KEY``)."""
        try:
            self.bus.client.hset(
                REFUSED_KEY, mapping={"count": count, **{k: str(v) for k, v in latest.items()}}
            )
        except redis.RedisError:
            log.warning("could not record the refusal in %s", REFUSED_KEY)

    def _pause(self, point: str, client_id: str) -> None:
        if point == self.settings.EXECUTION_TEST_PAUSE_AT:
            log.warning("TEST PAUSE at %s for %s", point, client_id)
            self.bus.client.set(PAUSED_KEY, f"{point}:{client_id}")
            time.sleep(self.settings.EXECUTION_TEST_PAUSE_S)

    def _alert(self, level: str, code: str, message: str, context: dict) -> None:
        log.log(logging.CRITICAL if level == "CRITICAL" else logging.WARNING, message)
        try:
            self.bus.publish(
                Alert(level=level, code=code, message=message, context=context, source=self.name),
                ALERTS,
            )
        except redis.RedisError:
            log.exception("could not publish alert %s", code)

    # -- activation --------------------------------------------------------------------------------

    def setup(self) -> None:
        self.ledger.close()

    def _standby(self, why: str) -> None:
        if self.active:
            log.error("going to standby: %s", why)
        self.active = False
        self.streams = ()  # type: ignore[misc]

    def _activate(self) -> None:
        """Holding the lock: prepare the venue and the book, reconcile, then start reading."""
        if hasattr(self.venue, "start"):
            self.venue.start()  # type: ignore[attr-defined]
        if self.settings.TRADING_MODE == "paper":
            self.ledger.ensure_cash(self.settings.PAPER_START_BALANCE)
        for result in reconcile(self.executor):
            self._publish(result)
        self._seed_prices()
        self.active = True
        self.reconcile_error = None
        self.streams = (ORDERS, MARKET_DATA)  # type: ignore[misc]
        self.bus.subscribe(self.streams)
        self._last_recheck = time.monotonic()
        log.info("active (%s mode): single writer, reconciled", self.venue.mode)

    def _seed_prices(self) -> None:
        """The latest price per symbol from the stream's tail, so a restart can fill at once."""
        for _, fields in self.bus.client.xrevrange(MARKET_DATA, count=1000):
            raw = fields.get(b"data")
            try:
                event = MarketData.model_validate_json(raw) if raw else None
            except ValueError:
                continue
            if event is not None:
                self.prices.setdefault(event.symbol, event.price)

    def tick(self) -> float | None:
        if not self.active:
            if not self.lock.acquire():
                return 1.0
            try:
                self._activate()
            except TRANSIENT as exc:
                self.reconcile_error = f"{type(exc).__name__}: {exc}"[:300]
                log.warning("reconciliation failed (%s); retrying", self.reconcile_error)
                return 2.0
            except ExchangeError as exc:  # e.g. keys refused: needs a person, retried slowly
                first = self.reconcile_error is None
                self.reconcile_error = f"{type(exc).__name__}: {exc}"[:300]
                if first:
                    self._alert(
                        "CRITICAL",
                        "EXCHANGE_START_FAILED",
                        f"execution cannot start: {self.reconcile_error}",
                        {},
                    )
                return 10.0
            return None
        now = time.monotonic()
        if now - self._last_refresh >= self._refresh_every:  # the fence checks every send
            self._last_refresh = now
            if not self.lock.refresh():
                self._standby("lost the single-writer lock")
                return 1.0
        if time.monotonic() - self._last_recheck > self.settings.UNKNOWN_RECHECK_S:
            self._last_recheck = time.monotonic()
            for result in self.executor.refresh_unknown(look_up=True):
                self._publish(result)
            self.metrics.read_ledger(self.ledger)
        self.fail_closed_gauge.set(1 if self.executor.problems.fail_closed else 0)
        return None

    # -- handling ----------------------------------------------------------------------------------

    def handle_batch(self, deliveries: list[Delivery], done: Callable[[Delivery], None]) -> None:
        if not self.active:
            raise TransientError("not the active execution copy")
        orders = []
        for delivery in deliveries:
            if isinstance(delivery.event, MarketData):
                self.prices[delivery.event.symbol] = delivery.event.price
                done(delivery)
            elif isinstance(delivery.event, Order):
                orders.append(delivery)
            else:
                done(delivery)  # market_status: not ours
        for delivery in orders:
            order: Order = delivery.event  # type: ignore[assignment]
            try:
                result = self.executor.execute(order, self.prices.get(order.symbol))
            except TRANSIENT:
                with contextlib.suppress(*TRANSIENT):  # the first error is the one to report
                    self._fence_drain()
                raise
            except Exception as exc:  # a bug or a poison entry: never block the stream on it
                with contextlib.suppress(*TRANSIENT):
                    self._fence_drain()
                log.exception("order %s failed", order.client_id)
                self.bus.dead_letter(delivery, f"handler error: {type(exc).__name__}: {exc}"[:500])
                continue
            self._fence_drain()
            if result is not None:
                self._publish(result)
            done(delivery)
            if not self.active:  # the lease was found lost: no more orders from this copy
                raise TransientError("lost the single-writer lock; the batch is left pending")

    def _publish(self, result) -> None:
        self.bus.publish(result)  # first: the log line is not on the order's path
        log.info(
            "order %s %s %s: %s %g @ %g fee %g%s",
            result.client_id,
            result.side,
            result.symbol,
            result.status,
            result.filled_quantity,
            result.avg_price,
            result.fee,
            f" ({result.error})" if result.error else "",
        )
        self.results.labels(result.status).inc()
        self.last_result = {
            "client_id": result.client_id,
            "status": result.status,
            "symbol": result.symbol,
            "side": result.side,
            "filled_quantity": result.filled_quantity,
            "avg_price": result.avg_price,
        }

    # -- HTTP --------------------------------------------------------------------------------------

    def health_problems(self) -> list[str]:
        problems = list(self.executor.problems.describe())
        if not self.active:
            if self.reconcile_error:
                problems.append(f"reconciling: {self.reconcile_error}")
            else:
                try:
                    holder = self.lock.holder()
                except redis.RedisError:
                    holder = "?"
                if holder is None:
                    problems.append("starting: acquiring the single-writer lock")
                else:
                    problems.append(f"standby: another execution copy holds the lock ({holder})")
        return problems

    def status(self) -> dict[str, Any]:
        problems = self.executor.problems
        return {
            "mode": self.venue.mode,
            "active": self.active,
            "lock_holder": self.lock.token if self.lock.held else None,
            "fail_closed": problems.fail_closed,
            "unknown_orders": sorted(problems.unknown),
            "refused_by_breaker": problems.refused,
            "last_refused": problems.last_refused,
            "exchange_findings": problems.findings,
            "prices_known": len(self.prices),
            "last_result": self.last_result,
        }

    def close(self) -> None:
        try:
            self.lock.release()
        except redis.RedisError:
            log.warning("could not release the single-writer lock; it expires by itself")
        self.ledger.close()


SERVICE = ExecutionService

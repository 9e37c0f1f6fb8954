"""The live source: closed MEXC candles through ``cdb.exchange.market``, and the exchange's health.

For each symbol (configured, or the top movers refreshed every few minutes) the
source asks for candles once a new one should have closed, and turns the closed
ones into ``market_data`` (the still-open candle is never used: its volume is
partial). When calls keep failing for longer than ``unreachable_after_s`` it
publishes ``market_status: unreachable`` and a CRITICAL alert, so the risk
manager pauses trading; the first success after that publishes ``ok`` again.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from cdb.events import Alert, Event, MarketStatus
from cdb.exchange.errors import ExchangeError, ExchangeUnavailable
from cdb.exchange.market import MarketClient
from cdb.feed.candles import (
    INTERVAL_SECONDS,
    Candle,
    CandleWindow,
    market_data_from_candles,
    window_candles,
)
from cdb.feed.sources import Poll

log = logging.getLogger(__name__)


class Reachability:
    """Tracks whether the exchange answers; yields the events of each change (pure, clocked)."""

    def __init__(self, exchange: str, unreachable_after_s: float) -> None:
        self.exchange = exchange
        self.after_s = unreachable_after_s
        self.state = "unknown"
        self.failing_since: float | None = None
        self.last_error = ""

    def failure(self, now: float, reason: str) -> list[Event]:
        """A call failed (after its retries); past the limit, the exchange is unreachable."""
        self.last_error = reason[:200]
        if self.failing_since is None:
            self.failing_since = now
        if self.state == "unreachable" or now - self.failing_since < self.after_s:
            return []
        self.state = "unreachable"
        seconds = int(now - self.failing_since)
        message = f"{self.exchange} unreachable for {seconds}s: {self.last_error}"
        log.error("%s", message)
        return [
            MarketStatus(
                timestamp=int(now),
                exchange=self.exchange,
                status="unreachable",
                reason=message[:200],
            ),
            Alert(
                timestamp=int(now),
                level="CRITICAL",
                code="EXCHANGE_UNREACHABLE",
                message=f"{message[:400]} – trading pauses until it answers again",
                context={"exchange": self.exchange, "seconds": seconds},
                source="feed",
            ),
        ]

    def success(self, now: float) -> list[Event]:
        """A call succeeded: ``ok`` on the first success and after an outage."""
        self.failing_since = None
        if self.state == "ok":
            return []
        previous, self.state = self.state, "ok"
        events: list[Event] = [
            MarketStatus(timestamp=int(now), exchange=self.exchange, status="ok")
        ]
        if previous == "unreachable":
            log.info("%s reachable again", self.exchange)
            events.append(
                Alert(
                    timestamp=int(now),
                    level="INFO",
                    code="EXCHANGE_RECOVERED",
                    message=f"{self.exchange} answers again",
                    context={"exchange": self.exchange},
                    source="feed",
                )
            )
        return events


class LiveSource:
    """Polls the exchange for closed candles of the configured symbols or the top movers."""

    name = "live"

    def __init__(
        self,
        client: MarketClient,
        *,
        symbols: list[str],
        top_movers: int = 0,
        quote: str = "USDT",
        interval: str = "1m",
        lookback_min: int = 15,
        poll_s: float = 5.0,
        close_delay_s: float = 2.0,
        unreachable_after_s: float = 60.0,
        movers_refresh_s: float = 300.0,
        movers_min_quote_volume: float = 0.0,
        held: Callable[[], list[str]] | None = None,
    ) -> None:
        self.client = client
        self.configured = list(symbols)
        self.top_movers = top_movers
        self.quote = quote
        self.interval = interval
        self.interval_ms = INTERVAL_SECONDS[interval] * 1000
        self.lookback_min = lookback_min
        self.size = window_candles(interval, lookback_min)
        self.poll_s = poll_s
        self.close_delay_ms = int(close_delay_s * 1000)
        self.movers_refresh_s = movers_refresh_s
        self.movers_min_quote_volume = movers_min_quote_volume
        self.reach = Reachability(client.exchange.id, unreachable_after_s)
        self.windows: dict[str, CandleWindow] = {}
        self.published_open_ms: dict[str, int] = {}
        self.rejected: set[str] = set()
        self.symbols: list[str] = [] if top_movers else list(symbols)
        self._movers_at: float | None = None
        #: the symbols the risk manager holds, always polled (set by the feed service)
        self.held = held
        self.held_symbols: list[str] = []

    # -- which symbols ----------------------------------------------------------------------------

    def _refresh_movers(self, now: float) -> list[Event]:
        if not self.top_movers:
            return []
        if self._movers_at is not None and now - self._movers_at < self.movers_refresh_s:
            return []
        try:
            movers = self.client.top_movers(
                self.top_movers, self.quote, self.movers_min_quote_volume
            )
        except ExchangeUnavailable as exc:
            return self.reach.failure(now, str(exc))
        except ExchangeError as exc:
            log.warning("top movers unavailable (%s); keeping %s", exc, self.symbols)
            return []
        self._movers_at = now
        if movers != self.symbols:
            log.info("top %d movers: %s", self.top_movers, ",".join(movers))
        for gone in set(self.windows) - set(movers) - set(self.held_symbols):  # bounded by N
            del self.windows[gone]
            self.published_open_ms.pop(gone, None)
        self.symbols = movers
        return self.reach.success(now)

    # -- polling ----------------------------------------------------------------------------------

    def _due(self, symbol: str, now_ms: int) -> bool:
        last = self.published_open_ms.get(symbol)
        # the candle after the last published one closes at last + 2 intervals
        return last is None or now_ms >= last + 2 * self.interval_ms + self.close_delay_ms

    def _held(self) -> list[str]:
        """Held symbols not otherwise polled: a position must never lose its prices."""
        if self.held is None:
            return []
        try:
            self.held_symbols = [s for s in self.held() if isinstance(s, str)]
        except Exception as exc:  # noqa: BLE001 – keep the last known list, say why
            log.warning("held symbols unavailable (%s); keeping %s", exc, self.held_symbols)
        return [s for s in self.held_symbols if s not in self.symbols]

    def poll(self, now: float) -> Poll:
        events: list[Event] = self._refresh_movers(now)
        now_ms = int(now * 1000)
        for symbol in self.symbols + self._held():
            if symbol in self.rejected or not self._due(symbol, now_ms):
                continue
            rows = self._fetch(symbol, now, events)
            if rows is None:
                break  # the others would fail the same way; try again next poll
            md = self._market_data(symbol, rows, now_ms)
            if md is not None:
                events.append(md)
        return Poll(events, self.poll_s)

    def _fetch(self, symbol: str, now: float, events: list[Event]) -> list:
        """Recent candles of ``symbol`` over REST (``[]`` when it is rejected), adding the
        reachability and rejection events to ``events``; ``None`` on an outage."""
        try:
            rows = self.client.fetch_candles(symbol, self.interval, limit=self.size + 2)
        except ExchangeUnavailable as exc:
            events.extend(self.reach.failure(now, str(exc)))
            return None
        except ExchangeError as exc:  # unknown symbol, rejected request: not an outage
            events.append(self._reject(symbol, str(exc), now))
            return []
        events.extend(self.reach.success(now))
        return rows

    def _reject(self, symbol: str, reason: str, now: float) -> Event:
        """Drop ``symbol`` for good (the exchange refuses it) and say so."""
        self.rejected.add(symbol)
        log.error("dropping %s from the feed: %s", symbol, reason)
        return Alert(
            timestamp=int(now),
            level="WARNING",
            code="FEED_SYMBOL_REJECTED",
            message=f"{symbol} dropped from the feed: {reason}"[:500],
            context={"symbol": symbol},
            source="feed",
        )

    def _market_data(self, symbol: str, rows: list, now_ms: int) -> Event | None:
        window = self.windows.setdefault(symbol, CandleWindow(self.size))
        window.extend(Candle(*row) for row in rows if row[0] + self.interval_ms <= now_ms)
        return self._publish(symbol)

    def _publish(self, symbol: str) -> Event | None:
        """``market_data`` for the window of ``symbol`` if its last candle is new, else None."""
        window = self.windows.setdefault(symbol, CandleWindow(self.size))
        last_open = window.last_open_ms
        if last_open is None or last_open == self.published_open_ms.get(symbol):
            return None
        md = market_data_from_candles(
            symbol,
            window.candles,
            lookback_min=self.lookback_min,
            interval=self.interval,
            source="live",
        )
        if md is not None:
            self.published_open_ms[symbol] = last_open
        return md

    @property
    def finished(self) -> bool:
        return False

    def status(self) -> dict[str, Any]:
        return {
            "exchange": self.reach.exchange,
            "exchange_status": self.reach.state,
            "last_exchange_error": self.reach.last_error or None,
            "symbols": self.symbols,
            "held_symbols": self.held_symbols,
            "rejected_symbols": sorted(self.rejected),
        }

    def close(self) -> None:
        self.client.close()

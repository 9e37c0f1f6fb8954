"""The stream source (``FEED_SOURCE=stream``): candles pushed over the exchange's websockets.

Built on the live source (:class:`cdb.feed.live.LiveSource`): the same symbols (configured,
or the top movers from its periodic REST ticker scan, plus every held symbol), the same
windows and the same ``market_data``. What changes is where closed candles come from:

* the websocket stream (:class:`cdb.feed.stream_ws.StreamWorker`) — a candle is published
  the moment the stream moves on to the next one, not on the next REST poll;
* REST (``fetch_candles``) only to *repair* the stream: the warm-up of a new symbol, a
  hole (a closed candle that does not follow the window's last one: frames were lost), a
  candle that was forming while its connection dropped (it may lack updates), a symbol
  whose connection is down (REST at the live pace until frames flow again), and a
  symbol the stream has been silent on for ``stream_grace_s`` after a candle should have
  closed (a quiet market, or a subscription that went dead).

So a window is never built on a hole the exchange's REST API can fill. A held symbol
with no data (no frame, no REST answer) for ``held_stale_s`` raises a CRITICAL
``FEED_HELD_SYMBOL_NO_DATA`` alert, once, and an INFO ``FEED_HELD_SYMBOL_DATA`` when
data returns.
"""

from __future__ import annotations

import logging
import queue
import time
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from cdb.events import Alert, Event
from cdb.exchange.errors import ExchangeError
from cdb.exchange.market import MarketClient
from cdb.feed.candles import Candle, CandleWindow
from cdb.feed.klines import Closed, KlineTracker
from cdb.feed.live import LiveSource
from cdb.feed.sources import Poll
from cdb.feed.stream_ws import StreamWorker

log = logging.getLogger(__name__)


class StreamSource(LiveSource):
    """Closed candles from websockets, repaired from REST; see the module docstring."""

    name = "stream"

    def __init__(
        self,
        client: MarketClient,
        worker: StreamWorker,
        *,
        stream_grace_s: float = 10.0,
        wait_s: float = 0.5,
        held_stale_s: float | None = None,
        clock=time.time,
        **live: Any,
    ) -> None:
        super().__init__(client, **live)
        self.worker = worker
        self.tracker = KlineTracker()
        self.grace_ms = int(stream_grace_s * 1000)
        self.wait_s = wait_s
        #: a held symbol silent this long is an alert: by default two candles past the grace
        self.held_stale_s = held_stale_s or (2 * self.interval_ms / 1000 + stream_grace_s)
        self.clock = clock
        self.started: float | None = None  # the first poll: held symbols' ages count from it
        self.down: set[str] = set()  # symbols whose connection is down: REST at the live pace
        self.last_data: dict[str, float] = {}  # wall time of the last frame or REST answer
        self.frames = 0
        self.backfills = 0
        self.gaps = 0
        self.blind: set[str] = set()  # held symbols already alerted on
        self.fetched_at: dict[str, float] = {}  # the last REST repair per symbol

    # -- the poll ---------------------------------------------------------------------------------

    def poll(self, now: float) -> Poll:
        if self.started is None:
            self.started = now
        events: list[Event] = self._refresh_movers(now)
        extra = self._held()
        wanted = [s for s in self.symbols + extra if s not in self.rejected]
        try:
            markets = self.client.load_markets()  # cached; reloaded hourly (new listings)
        except ExchangeError as exc:
            log.warning("markets unavailable (%s); streams unchanged", exc)
        else:
            self.worker.set_symbols(wanted, markets)
        for symbol in list(self.tracker.forming):
            if symbol not in wanted:
                self.tracker.forget(symbol)
        items = self._drain(self.wait_s if not events else 0.0)
        now = max(now, self.clock())
        now_ms = int(now * 1000)
        for item in items:
            events.extend(self._item(item, now, now_ms))
        for symbol in wanted:  # the repairs: warm-up, silent stream, connection down
            if symbol in self.rejected or not self._due(symbol, now_ms):
                continue
            if now - self.fetched_at.get(symbol, -1e18) < self.poll_s:
                continue  # a quiet market has no new candle: ask REST once per FEED_POLL_S
            self.fetched_at[symbol] = now
            rows = self._fetch(symbol, now, events)
            if rows is None:
                break
            if rows:
                self.last_data[symbol] = now
            self.backfills += 1
            md = self._market_data(symbol, rows, now_ms)
            if md is not None:
                events.append(md)
        events.extend(self._held_alerts(now))
        return Poll(events, 0.0)  # _drain already waited for frames

    def _drain(self, wait_s: float) -> list[tuple]:
        """Every queued item; waits up to ``wait_s`` for the first one."""
        items: list[tuple] = []
        try:
            items.append(
                self.worker.queue.get(timeout=wait_s) if wait_s else self.worker.queue.get_nowait()
            )
            while True:
                items.append(self.worker.queue.get_nowait())
        except queue.Empty:
            pass
        return items

    def _item(self, item: tuple, now: float, now_ms: int) -> list[Event]:
        kind = item[0]
        if kind == "row":
            _, symbol, row, _received = item
            self.frames += 1
            self.last_data[symbol] = now
            self.down.discard(symbol)
            out: list[Event] = []
            for closed in self.tracker.update(symbol, row):
                md = self._closed(closed, now, now_ms, out)
                if md is not None:
                    out.append(md)
            return out
        if kind == "down":
            _, symbols, reason = item
            self.tracker.taint(symbols)
            self.down.update(symbols)
            log.info("stream down for %s (%s): REST until frames flow", symbols, reason)
            return []
        if kind == "rejected":
            _, symbol, reason = item
            return [self._reject(symbol, reason, now)]
        return []

    def _closed(self, closed: Closed, now: float, now_ms: int, events: list[Event]) -> Event | None:
        """A candle the stream closed: straight into the window, or through REST if a hole."""
        symbol, candle = closed.symbol, closed.candle
        if symbol not in self.windows and symbol not in self.published_open_ms:
            return None  # not warmed up yet: the REST warm-up of this poll covers it
        window = self.windows.setdefault(symbol, CandleWindow(self.size))
        last = window.last_open_ms
        skipped = closed.next_open_ms > candle.open_ms + self.interval_ms  # unseen candles
        hole = skipped or (last is not None and candle.open_ms > last + self.interval_ms)
        if closed.trusted and not hole:
            window.add(candle)
            return self._publish(symbol)
        if hole:
            self.gaps += 1
            log.info("%s: hole in the stream after %s, backfilling from REST", symbol, last)
        rows = self._fetch(symbol, now, events)
        if rows is None:  # REST is down too: publish nothing rather than a window with a hole
            return None
        self.backfills += 1
        merged = {
            r[0]: Candle(*r)
            for r in rows
            if r[0] < closed.next_open_ms and r[0] + self.interval_ms <= now_ms
        }
        if closed.trusted:  # REST may lack the newest candle yet; the stream's is complete
            merged[candle.open_ms] = candle
        window.extend(merged[k] for k in sorted(merged))
        return self._publish(symbol)

    def _due(self, symbol: str, now_ms: int) -> bool:
        last = self.published_open_ms.get(symbol)
        if last is None or symbol in self.down:
            return super()._due(symbol, now_ms)
        return now_ms >= last + 2 * self.interval_ms + self.close_delay_ms + self.grace_ms

    # -- held symbols -----------------------------------------------------------------------------

    def _held_alerts(self, now: float) -> list[Event]:
        events: list[Event] = []
        for symbol in self.held_symbols:
            age = now - self.last_data.get(symbol, self.started or now)
            if age >= self.held_stale_s and symbol not in self.blind:
                self.blind.add(symbol)
                log.error("held symbol %s has had no market data for %.0fs", symbol, age)
                events.append(
                    Alert(
                        timestamp=int(now),
                        level="CRITICAL",
                        code="FEED_HELD_SYMBOL_NO_DATA",
                        message=f"{symbol} is held but the feed has had no data for it for "
                        f"{int(age)}s (stream and REST): its stop loss cannot see the price",
                        context={"symbol": symbol, "seconds": int(age)},
                        source="feed",
                    )
                )
            elif age < self.held_stale_s and symbol in self.blind:
                self.blind.discard(symbol)
                events.append(
                    Alert(
                        timestamp=int(now),
                        level="INFO",
                        code="FEED_HELD_SYMBOL_DATA",
                        message=f"{symbol}: market data flows again",
                        context={"symbol": symbol},
                        source="feed",
                    )
                )
        self.blind &= set(self.held_symbols)
        return events

    # -- what it shows ----------------------------------------------------------------------------

    def data_age(self, now: float | None = None) -> dict[str, float | None]:
        """Seconds since the last frame or REST answer, per streamed symbol (None: never)."""
        now = self.clock() if now is None else now
        symbols = list(dict.fromkeys(self.symbols + self.held_symbols))
        return {
            s: (round(now - self.last_data[s], 1) if s in self.last_data else None) for s in symbols
        }

    def status(self) -> dict[str, Any]:
        connections = self.worker.status()
        return {
            **super().status(),
            "data_age_s": self.data_age(),
            "connections": connections,
            "reconnects": sum(c["reconnects"] for c in connections),
            "frames": self.frames,
            "backfills": self.backfills,
            "gaps": self.gaps,
            "held_without_data": sorted(self.blind),
        }

    def metrics(self):
        """Prometheus families: data age per symbol, reconnects per connection, repairs."""
        age = GaugeMetricFamily(
            "cdb_feed_data_age_seconds",
            "Seconds since the feed last had data (frame or REST) for the symbol",
            labels=["symbol"],
        )
        now = self.clock()
        for symbol in dict.fromkeys(self.symbols + self.held_symbols):
            seen = self.last_data.get(symbol, self.started or now)
            age.add_metric([symbol], max(0.0, now - seen))
        yield age
        reconnects = CounterMetricFamily(
            "cdb_feed_stream_reconnects",
            "Websocket connections of the feed that dropped and were reopened",
            labels=["connection"],
        )
        connected = GaugeMetricFamily(
            "cdb_feed_stream_connected",
            "1 while frames flow on the connection",
            labels=["connection"],
        )
        for c in self.worker.status():
            reconnects.add_metric([str(c["connection"])], c["reconnects"])
            connected.add_metric([str(c["connection"])], 1.0 if c["connected"] else 0.0)
        yield reconnects
        yield connected
        yield CounterMetricFamily(
            "cdb_feed_stream_frames", "Kline frames received", value=self.frames
        )
        yield CounterMetricFamily(
            "cdb_feed_backfills",
            "REST fetches repairing or standing in for the stream",
            value=self.backfills,
        )
        yield CounterMetricFamily(
            "cdb_feed_stream_gaps", "Holes in the stream filled from REST", value=self.gaps
        )
        yield GaugeMetricFamily(
            "cdb_feed_held_symbols_without_data",
            "Held symbols the feed has had no data for (CRITICAL alert raised)",
            value=len(self.blind),
        )

    def threads(self):
        """The websocket thread: the service is not live without it."""
        return self.worker.threads()

    def close(self) -> None:
        self.worker.stop()
        super().close()

"""The websocket side of the streaming feed: ccxt.pro ``watch_ohlcv`` loops in their own thread.

One asyncio loop in a daemon thread runs one task per *shard* (a connection of at most
``per_connection`` subscriptions, see :mod:`cdb.feed.klines`). Each shard owns its own
ccxt.pro exchange instance — ccxt shares one connection per URL and instance, so one
instance per shard is one connection per shard — with the markets handed in (no REST
call per shard). What the shards see goes into one thread-safe queue read by the feed's
main loop:

* ``("row", symbol, row, received_monotonic)`` — a kline update ``[open_ms, o, h, l, c, v]``;
* ``("down", symbols, reason)`` — the shard's connection ended (error, renewal, resharding):
  candles forming on it may be incomplete;
* ``("rejected", symbol, reason)`` — the exchange refuses the symbol (not listed).

A dropped connection is reopened after an exponential backoff with jitter
(:func:`cdb.feed.klines.backoff_s`); a connection older than ``renew_s`` is closed and
reopened before the exchange cuts it at 24 h.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import random
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from cdb.exchange.market import to_exchange_symbol
from cdb.feed.klines import assign_shards, backoff_s

log = logging.getLogger(__name__)


@dataclass
class Shard:
    """One connection's symbols and its record (read by ``/status`` from another thread)."""

    index: int
    symbols: list[str]
    connected: bool = False
    connected_since: float | None = None  # wall time of the first frame on this connection
    reconnects: int = 0
    last_error: str = ""
    restart: bool = False
    task: Any = field(default=None, repr=False)


def pro_exchange(exchange_id: str, ws_url: str | None) -> Any:
    """A ccxt.pro exchange for public streams; ``ws_url`` replaces its spot websocket URL."""
    import ccxt.pro  # heavy: only the stream source loads it

    exchange = getattr(ccxt.pro, exchange_id)(
        {"enableRateLimit": True, "options": {"defaultType": "spot"}}
    )
    if ws_url:
        ws = exchange.urls["api"].get("ws")
        if isinstance(ws, dict):
            exchange.urls["api"]["ws"] = {**ws, "spot": ws_url}
        else:
            exchange.urls["api"]["ws"] = ws_url
    return exchange


class StreamWorker:
    """Streams klines of a changing set of symbols over sharded websocket connections."""

    def __init__(
        self,
        exchange_id: str,
        *,
        timeframe: str = "1m",
        ws_url: str | None = None,
        per_connection: int = 30,
        renew_s: float = 23 * 3600,
        backoff_base_s: float = 0.5,
        backoff_cap_s: float = 30.0,
    ) -> None:
        self.exchange_id = exchange_id
        self.markets: dict[str, Any] = {}  # ccxt symbol → market, from the REST client
        self.timeframe = timeframe
        self.ws_url = ws_url
        self.per_connection = per_connection
        self.renew_s = renew_s
        self.backoff_base_s = backoff_base_s
        self.backoff_cap_s = backoff_cap_s
        self.queue: queue.SimpleQueue = queue.SimpleQueue()
        self.shards: list[Shard] = []
        self.symbols: list[str] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._next_index = 0

    # -- the main thread's side -----------------------------------------------------------------

    def start(self) -> None:
        """Start the loop thread (idempotent)."""
        if self._thread is not None:
            return
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name="feed-stream", daemon=True)
        self._thread.start()

    def set_symbols(self, symbols: list[str], markets: dict[str, Any]) -> None:
        """Stream exactly ``symbols`` from now on (shards change only where they must).

        ``markets``: ccxt's market table (``load_markets()`` of the REST client), so no
        connection loads it again.
        """
        symbols = list(dict.fromkeys(symbols))
        self.markets = markets
        if symbols == self.symbols:
            return
        self.symbols = symbols
        self.start()
        assert self._loop is not None
        self._loop.call_soon_threadsafe(self._reshard, symbols)

    def stop(self, timeout: float = 5.0) -> None:
        """Close every connection and end the thread."""
        if self._loop is None or self._thread is None:
            return
        future = asyncio.run_coroutine_threadsafe(self._stop_all(), self._loop)
        try:
            future.result(timeout)
        except Exception as exc:  # noqa: BLE001 – shutting down: say it, do not raise
            log.warning("stream shutdown: %s", exc)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout)
        self._thread = None

    def threads(self) -> list[threading.Thread]:
        """The loop thread, once started (it must stay alive)."""
        return [self._thread] if self._thread is not None else []

    def status(self) -> list[dict[str, Any]]:
        """Per connection: its symbols, whether frames flow, since when, reconnects, last error."""
        return [
            {
                "connection": shard.index,
                "symbols": list(shard.symbols),
                "connected": shard.connected,
                "connected_since": shard.connected_since,
                "reconnects": shard.reconnects,
                "last_error": shard.last_error or None,
            }
            for shard in list(self.shards)
        ]

    # -- the loop thread ------------------------------------------------------------------------

    def _run(self) -> None:
        assert self._loop is not None
        asyncio.set_event_loop(self._loop)
        self._loop.run_forever()

    def _reshard(self, symbols: list[str]) -> None:
        layout = assign_shards([s.symbols for s in self.shards], symbols, self.per_connection)
        kept: list[Shard] = []
        for index, shard in enumerate(self.shards):
            new = layout[index] if index < len(layout) else []
            if new == shard.symbols:
                kept.append(shard)
                continue
            shard.restart = True  # its loop closes the connection and ends
            if new:
                kept.append(self._open(new))
        for new in layout[len(self.shards) :]:
            kept.append(self._open(new))
        self.shards = kept

    def _open(self, symbols: list[str]) -> Shard:
        shard = Shard(self._next_index, list(symbols))
        self._next_index += 1
        assert self._loop is not None
        shard.task = self._loop.create_task(self._run_shard(shard))
        shard.task.add_done_callback(self._ended)
        return shard

    @staticmethod
    def _ended(task: asyncio.Task) -> None:
        """A shard's loop must only end when told to: anything else is a bug, said loudly
        (its symbols then fall back to REST once the grace has passed)."""
        if not task.cancelled() and task.exception() is not None:
            log.error("stream connection loop failed", exc_info=task.exception())

    async def _stop_all(self) -> None:
        for shard in self.shards:
            shard.restart = True
        tasks = [s.task for s in self.shards if s.task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self.shards = []

    async def _run_shard(self, shard: Shard) -> None:
        import ccxt  # the errors; loaded with ccxt.pro anyway

        failures = 0
        symbols = {to_exchange_symbol(s): s for s in shard.symbols}
        while not shard.restart and symbols:
            exchange = pro_exchange(self.exchange_id, self.ws_url)
            exchange.set_markets([self.markets[m] for m in symbols if m in self.markets])
            self._tap(exchange, shard, symbols)
            opened, opened_wall = time.monotonic(), time.time()
            pending: dict[asyncio.Future, str] = {}
            reason = ""
            try:
                for market in symbols:
                    pending[asyncio.ensure_future(self._watch(exchange, market))] = market
                while not shard.restart:
                    left = opened + self.renew_s - time.monotonic()
                    if left <= 0:
                        reason = "renewed before the exchange's 24 h limit"
                        break
                    done, _ = await asyncio.wait(
                        pending, timeout=min(left, 1.0), return_when=asyncio.FIRST_COMPLETED
                    )
                    for future in done:
                        market = pending.pop(future)
                        try:
                            rows = future.result()
                        except (ccxt.BadSymbol, ccxt.BadRequest) as exc:
                            symbol = symbols.pop(market)
                            shard.symbols = [s for s in shard.symbols if s != symbol]
                            self.queue.put(("rejected", symbol, str(exc)[:300]))
                            continue
                        del rows  # the frames went out through the tap, each as it came
                        pending[asyncio.ensure_future(self._watch(exchange, market))] = market
                    if not pending:
                        break
            except asyncio.CancelledError:
                reason = "stopped"
                raise
            except Exception as exc:  # noqa: BLE001 – any connection failure: reconnect
                if (shard.connected_since or 0) >= opened_wall:
                    failures = 0  # this connection worked: start the backoff afresh
                failures += 1
                shard.reconnects += 1
                reason = f"{type(exc).__name__}: {exc}"[:300]
                shard.last_error = reason
                log.warning("stream connection %d dropped (%s)", shard.index, reason)
            finally:
                for future in pending:
                    future.cancel()
                shard.connected = False
                self.queue.put(("down", list(symbols.values()), reason or "resharded"))
                try:
                    await exchange.close()
                except Exception as exc:  # noqa: BLE001 – closing a broken connection
                    log.debug("closing stream connection %d: %s", shard.index, exc)
            if failures and not shard.restart:
                wait = backoff_s(failures, self.backoff_base_s, self.backoff_cap_s, random.random())
                await asyncio.sleep(wait)

    def _tap(self, exchange: Any, shard: Shard, symbols: dict[str, str]) -> None:
        """Hand every kline frame to the queue as ccxt parses it.

        ``watch_ohlcv`` resolves one future per frame *if one is waiting*: frames arriving
        while the caller handles the previous one only reach its cache, to be seen with the
        next frame — a closing frame could wait a whole candle. The tap on ``handle_ohlcv``
        sees each frame synchronously, in ccxt's receive loop; the watch loops keep the
        subscriptions and surface the connection's errors.
        """
        handle = exchange.handle_ohlcv
        timeframe = self.timeframe

        def handle_ohlcv(client: Any, message: Any) -> None:
            handle(client, message)
            market_id = message.get("symbol") or message.get("s")
            market = exchange.safe_market(market_id)["symbol"]
            symbol = symbols.get(market)
            stored = exchange.ohlcvs.get(market, {}).get(timeframe)
            if symbol is None or not stored:
                return
            if not shard.connected:
                shard.connected, shard.connected_since = True, time.time()
            self.queue.put(("row", symbol, list(stored[-1]), time.monotonic()))

        exchange.handle_ohlcv = handle_ohlcv

    async def _watch(self, exchange: Any, market: str) -> list:
        return await exchange.watch_ohlcv(market, self.timeframe)

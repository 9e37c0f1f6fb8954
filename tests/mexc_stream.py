"""A local MEXC: spot v3 REST (exchangeInfo, klines) and the spot websocket, from one candle book.

The websocket speaks MEXC's documented protocol (https://www.mexc.com/api-docs/spot-v3/
websocket-market-streams): ``{"method": "SUBSCRIPTION", "params": [channel]}`` answered with
``{"id": 0, "code": 0, "msg": channel}``; ``{"method": "ping"}`` answered with ``{"id": 0,
"code": 0, "msg": "PONG"}``; at most 30 subscriptions per connection (more are refused with
``code`` != 0); kline pushes are *binary protobuf* ``PushDataV3ApiWrapper`` frames built
with ccxt's own generated classes (``ccxt.protobuf.mexc``), the forming candle pushed again
on every update. REST ``/api/v3/klines`` answers from the same book, the open candle
included, as MEXC does. Tests drive it: ``push`` a kline update, ``drop`` every connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

import websockets
from ccxt.protobuf.mexc import PushDataV3ApiWrapper_pb2
from test_feed_market import CONTRACT_DETAIL, EXCHANGE_INFO, _market
from websockets.asyncio.server import serve

MIN = 60_000
MAX_SUBSCRIPTIONS = 30


def kline_frame(symbol_id: str, row: list, interval: str = "Min1") -> bytes:
    """A MEXC spot kline push for ``row`` = ``[open_ms, o, h, l, c, base_volume]``."""
    wrapper = PushDataV3ApiWrapper_pb2.PushDataV3ApiWrapper()
    wrapper.channel = f"spot@public.kline.v3.api.pb@{symbol_id}@{interval}"
    wrapper.symbol = symbol_id
    wrapper.symbolId = "0" * 32
    now = int(time.time() * 1000)
    wrapper.createTime = now
    wrapper.sendTime = now
    k = wrapper.publicSpotKline
    k.interval = interval
    k.windowStart = row[0] // 1000
    k.openingPrice, k.highestPrice, k.lowestPrice, k.closingPrice = (str(v) for v in row[1:5])
    k.volume = str(row[5])
    k.amount = str(float(row[5]) * float(row[4]))
    k.windowEnd = row[0] // 1000 + 60
    return wrapper.SerializeToString()


class Book:
    """Candles per exchange symbol id (``BTCUSDT``): ``open_ms → [open_ms, o, h, l, c, v]``."""

    def __init__(self) -> None:
        self.rows: dict[str, dict[int, list]] = {}
        self.lock = threading.Lock()

    def put(self, symbol_id: str, row: list) -> None:
        with self.lock:
            self.rows.setdefault(symbol_id, {})[row[0]] = list(row)

    def klines(self, symbol_id: str, limit: int) -> list[list]:
        with self.lock:
            rows = sorted(self.rows.get(symbol_id, {}).values())[-limit:]
        return [
            [r[0], str(r[1]), str(r[2]), str(r[3]), str(r[4]), str(r[5]), r[0] + MIN, "0"]
            for r in rows
        ]


class LocalMexc:
    """The REST and websocket servers over one :class:`Book`, each on a free loopback port."""

    def __init__(self, listed: list[str] = ()) -> None:
        """``listed``: more USDT markets (base assets, e.g. ``"S01"``) than the recorded ones."""
        self.exchange_info = {
            **EXCHANGE_INFO,
            "symbols": [
                *EXCHANGE_INFO["symbols"],
                *(_market(f"{b}USDT", b, "USDT") for b in listed),
            ],
        }
        self.book = Book()
        self.rest_down = False  # True: REST answers 503 (MEXC's "service unavailable")
        self.tickers: list[dict] = []  # /api/v3/ticker/24hr (test_feed_market.ticker rows)
        self.rest_calls: list[tuple[str, dict]] = []
        self.subscribe_requests: list[list[str]] = []
        self.connections_opened = 0
        self._conns: dict[Any, set[str]] = {}
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run_ws, daemon=True)
        self._http = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._http_thread = threading.Thread(target=self._http.serve_forever, daemon=True)

    # -- lifecycle ----------------------------------------------------------------------------

    def __enter__(self) -> LocalMexc:
        self._http_thread.start()
        self._thread.start()
        self._ready.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._http.shutdown()
        self._http.server_close()

    @property
    def rest_url(self) -> str:
        return f"http://127.0.0.1:{self._http.server_address[1]}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.ws_port}/ws"

    # -- what tests do ------------------------------------------------------------------------

    def push(self, symbol_id: str, row: list) -> None:
        """Record ``row`` in the book and push it to every subscriber of its kline channel."""
        self.book.put(symbol_id, row)
        frame = kline_frame(symbol_id, row)
        asyncio.run_coroutine_threadsafe(self._send(symbol_id, frame), self._loop).result(10)

    def drop(self) -> int:
        """Close every connection abruptly (no close frame); returns how many there were."""
        return asyncio.run_coroutine_threadsafe(self._drop(), self._loop).result(10)

    def subscribers(self, symbol_id: str) -> int:
        channel = f"spot@public.kline.v3.api.pb@{symbol_id}@Min1"
        return sum(channel in subs for subs in list(self._conns.values()))

    def wait_subscribed(self, symbol_ids: list[str], timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all(self.subscribers(s) for s in symbol_ids):
                return
            time.sleep(0.01)
        raise TimeoutError(f"not subscribed to {symbol_ids}: {list(self._conns.values())}")

    def connections(self) -> list[set[str]]:
        return [set(s) for s in list(self._conns.values())]

    # -- websocket ----------------------------------------------------------------------------

    def _run_ws(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._start())
        self._ready.set()
        self._loop.run_forever()

    async def _start(self) -> None:
        self._server = await serve(self._session, "127.0.0.1", 0, ping_interval=None)
        self.ws_port = self._server.sockets[0].getsockname()[1]

    async def _shutdown(self) -> None:
        self._server.close()
        await self._drop()

    async def _session(self, ws) -> None:
        self.connections_opened += 1
        self._conns[ws] = set()
        try:
            async for text in ws:
                request = json.loads(text)
                method = request.get("method")
                if method == "ping":
                    await ws.send(json.dumps({"id": 0, "code": 0, "msg": "PONG"}))
                elif method == "SUBSCRIPTION":
                    params = list(request.get("params") or [])
                    self.subscribe_requests.append(params)
                    subs = self._conns[ws]
                    for channel in params:
                        if len(subs) >= MAX_SUBSCRIPTIONS:
                            reply = {"id": 0, "code": 1, "msg": "Not Subscribed successfully!"}
                        else:
                            subs.add(channel)
                            reply = {"id": 0, "code": 0, "msg": channel}
                        await ws.send(json.dumps(reply))
        except websockets.ConnectionClosed:
            pass
        finally:
            self._conns.pop(ws, None)

    async def _send(self, symbol_id: str, frame: bytes) -> None:
        channel = f"spot@public.kline.v3.api.pb@{symbol_id}@Min1"
        for ws, subs in list(self._conns.items()):
            if channel in subs:
                with contextlib.suppress(websockets.ConnectionClosed):
                    await ws.send(frame)

    async def _drop(self) -> int:
        conns = list(self._conns)
        for ws in conns:
            ws.transport.abort()  # a network cut, not a polite close
            self._conns.pop(ws, None)
        return len(conns)

    # -- REST ---------------------------------------------------------------------------------

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        mexc = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                url = urlparse(self.path)
                query = {k: v[0] for k, v in parse_qs(url.query).items()}
                mexc.rest_calls.append((url.path, query))
                if mexc.rest_down:
                    body, status = {"code": 503, "msg": "Service Unavailable"}, 503
                elif url.path == "/api/v3/exchangeInfo":
                    body, status = mexc.exchange_info, 200
                elif url.path == "/api/v1/contract/detail":
                    body, status = CONTRACT_DETAIL, 200
                elif url.path == "/api/v3/ticker/24hr":
                    body, status = mexc.tickers, 200
                elif url.path == "/api/v3/klines":
                    limit = int(query.get("limit", "500"))
                    body, status = mexc.book.klines(query.get("symbol", ""), limit), 200
                else:
                    body, status = {"code": 404, "msg": "Not Found"}, 404
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: object) -> None:
                pass

        return Handler

"""``cdb up --feed live``: paper trading on the exchange's prices, here from a local server that
speaks MEXC's spot v3 protocol with recorded answers (``tests/test_feed_market.py``'s), its
candles stamped around now — never the network. ``EXCHANGE_BASE_URL`` points ccxt at it."""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

import psycopg2
import pytest
from mexc_stream import LocalMexc
from test_feed_market import CONTRACT_DETAIL, EXCHANGE_INFO
from test_local import base_env, cdb, tempdir

from cdb.exchange.market import rebase_urls
from cdb.settings import PostgresSettings

MIN = 60_000


def rising_klines(limit: int, now_ms: int) -> list[list]:
    """``limit`` 1-minute candles up to the open one, +0.3 % each: a momentum burst."""
    first_open = now_ms // MIN * MIN - (limit - 1) * MIN
    rows = []
    for i in range(limit):
        o = 60_000 * 1.003**i
        c = o * 1.003
        rows.append(
            [
                first_open + i * MIN,
                f"{o:.2f}",
                f"{c * 1.001:.2f}",
                f"{o * 0.999:.2f}",
                f"{c:.2f}",
                "20.0",  # base volume: ~1.2 M USDT a candle
                first_open + (i + 1) * MIN,
                f"{20.0 * c:.2f}",
            ]
        )
    return rows


class MexcHandler(BaseHTTPRequestHandler):
    seen: list[tuple[str, dict]] = []

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        url = urlparse(self.path)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        type(self).seen.append((url.path, query))
        if url.path == "/api/v3/exchangeInfo":
            body, status = EXCHANGE_INFO, 200
        elif url.path == "/api/v1/contract/detail":
            body, status = CONTRACT_DETAIL, 200
        elif url.path == "/api/v3/klines" and query.get("symbol") == "BTCUSDT":
            limit = int(query.get("limit", "16"))
            body, status = rising_klines(limit, int(time.time() * 1000)), 200
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


@pytest.fixture
def mexc() -> Iterator[str]:
    MexcHandler.seen = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), MexcHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture
def mexc_stream() -> Iterator[LocalMexc]:
    """MEXC's REST and websocket: the rising candles up to now in the book, and a thread
    pushing the forming candle every second as trades would (the next minute's too)."""
    with LocalMexc() as local:
        start_ms = int(time.time() * 1000)
        for row in rising_klines(20, start_ms):
            local.book.put("BTCUSDT", [row[0], *(float(v) for v in row[1:6])])
        stop = threading.Event()

        def trade() -> None:
            while not stop.wait(1.0):
                now_ms = int(time.time() * 1000)
                # the same rising series, continued: a new minute's candle follows the last
                # (pushing the series' *first* price overwrote the forming candle with a 6 %
                # drop; once that minute closed before the feed's first look, no signal)
                elapsed = now_ms // MIN - start_ms // MIN
                last = rising_klines(20 + elapsed, now_ms)[-1]
                local.push("BTCUSDT", [last[0], *(float(v) for v in last[1:6])])

        pusher = threading.Thread(target=trade, daemon=True)
        pusher.start()
        yield local
        stop.set()
        pusher.join(5)


def test_base_url_replaces_every_host_and_keeps_paths():
    api = {"spot": {"public": "https://api.mexc.com"}, "v2": "https://www.mexc.com/open/api/v2"}
    assert rebase_urls(api, "http://127.0.0.1:9/") == {
        "spot": {"public": "http://127.0.0.1:9"},
        "v2": "http://127.0.0.1:9/open/api/v2",
    }


def test_cdb_up_feed_live_streams_and_paper_trades_on_the_exchanges_prices(
    mexc_stream, redis_env, pg_env
):
    data = tempdir("cdb-live-") / "data"
    env = base_env(
        **redis_env,
        **pg_env,
        MEXC_BASE=mexc_stream.rest_url,  # the design's name for EXCHANGE_BASE_URL
        FEED_STREAM_URL=mexc_stream.ws_url,
        SYMBOLS="BTC_USDT",
        FEED_POLL_S="1",
        FEED_CLOSE_DELAY_S="0",
        MEXC_API_KEY="never-used",
    )
    done = cdb(
        [
            "up",
            "--feed",
            "live",
            "--data-dir",
            str(data),
            "--http-port-base",
            "0",
            "--duration",
            "25",
            "--refresh",
            "5",
        ],
        env,
        timeout=180,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "paper trading, live market data" in done.stdout
    assert "paper trading on live prices" in done.stdout
    assert "fills 1 (since start of data) |" in done.stdout  # one BUY: the cooldown holds the rest
    assert "BTC_USDT BUY" in done.stdout and "Momentum" in done.stdout
    paths = {path for path, _ in mexc_stream.rest_calls}
    assert {"/api/v3/exchangeInfo", "/api/v3/klines"} <= paths
    assert all(
        q.get("symbol") == "BTCUSDT" for p, q in mexc_stream.rest_calls if p == "/api/v3/klines"
    )
    # the feed ran the stream source: it subscribed to BTCUSDT's klines on the websocket
    assert ["spot@public.kline.v3.api.pb@BTCUSDT@Min1"] in mexc_stream.subscribe_requests
    feed_log = (data / "logs" / "feed.log").read_text()
    assert "source stream" in feed_log


def test_cdb_up_feed_live_polls_rest_when_asked_to(mexc, redis_env, pg_env):
    """``FEED_SOURCE=live`` keeps the REST poller (the fallback) under ``cdb up --feed live``."""
    data = tempdir("cdb-live-") / "data"
    env = base_env(
        **redis_env,
        **pg_env,
        MEXC_BASE=mexc,
        FEED_SOURCE="live",
        SYMBOLS="BTC_USDT",
        FEED_POLL_S="1",
        FEED_CLOSE_DELAY_S="0",
    )
    args = ["up", "--feed", "live", "--data-dir", str(data), "--http-port-base", "0"]
    done = cdb([*args, "--duration", "12", "--refresh", "5"], env, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "BTC_USDT BUY" in done.stdout
    assert "source live" in (data / "logs" / "feed.log").read_text()


def test_cdb_up_feed_replay_trades_and_a_finished_replay_is_no_failure(redis_env, pg_env):
    data = tempdir("cdb-replay-") / "data"
    # FEED_REPLAY_AT_END=stop: the feed exits 0 at the end (the default, idle, stays up)
    env = base_env(**redis_env, **pg_env, FEED_REPLAY_AT_END="stop")
    done = cdb(
        ["up", "--feed", "replay", "--speed", "1800", "--data-dir", str(data),
         "--http-port-base", "0", "--duration", "14", "--refresh", "2"],
        env,
        timeout=180,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "feed finished (its replay is over)" in done.stderr
    assert "| finished: feed" in done.stdout and "restarts" not in done.stdout
    final = done.stdout.split("stopping services…", 1)[1]
    assert "paper trading on replayed prices" in final
    fills = re.search(r"fills (\d+)\b", final)
    assert fills and int(fills.group(1)) >= 1, final  # not all rejected as stale any more
    dsn = PostgresSettings(**pg_env).postgres_dsn()
    with psycopg2.connect(dsn) as conn, conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM risk_events WHERE rule LIKE 'stale%'")
        assert cur.fetchone()[0] == 0
    conn.close()

"""``cdb download-data`` on recorded MEXC answers (never the network) and freqtrade imports.

A real ``ccxt.mexc`` runs its whole request path; underneath, a ``requests`` adapter
answers ``/api/v3/klines`` as MEXC documents it: candles with open time >= ``startTime``
(and < ``endTime`` when given), at most ``limit``, oldest first, values as strings,
nothing after the market's last candle — plus one 429 to show the retry.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest
import requests
from requests.adapters import BaseAdapter
from test_feed_market import CONTRACT_DETAIL, EXCHANGE_INFO

from cdb.backtest.config import Config
from cdb.backtest.run import Backtest
from cdb.feed.replay import read_candles
from cdb.history import store
from cdb.history.download import HistoryClient, download_symbol

REPO = Path(__file__).resolve().parents[1]
T0 = 1_735_689_600_000  # 2025-01-01T00:00Z
MIN = 60_000
MARKET_END = T0 + 2_500 * MIN  # the exchange has 2,500 candles from T0


def price(i: int) -> float:
    return round(100 + 5 * ((i * 37) % 11) / 11, 4)


class Mexc(BaseAdapter):
    """The klines endpoint as MEXC documents it, from a deterministic series."""

    def __init__(self, fail_first: int = 1) -> None:
        super().__init__()
        self.klines: list[dict] = []
        self.fail = fail_first

    def send(self, request, **kwargs):
        url = urlparse(request.url)
        q = {k: v[0] for k, v in parse_qs(url.query).items()}
        if url.path == "/api/v3/exchangeInfo":
            return self._answer(request, 200, EXCHANGE_INFO)
        if url.path == "/api/v1/contract/detail":
            return self._answer(request, 200, CONTRACT_DETAIL)
        if url.path != "/api/v3/klines":
            return self._answer(request, 404, {"code": 404, "msg": "Not Found"})
        self.klines.append(q)
        if self.fail:
            self.fail -= 1
            return self._answer(request, 429, {"code": 429, "msg": "Too Many Requests"})
        start = int(q.get("startTime", T0))
        end = min(int(q.get("endTime", MARKET_END)), MARKET_END)
        limit = int(q.get("limit", 500))
        first = max(0, -(-(start - T0) // MIN))
        rows = []
        i = first
        while len(rows) < limit and T0 + i * MIN < end:
            o, c = price(i), price(i + 1)
            rows.append(
                [T0 + i * MIN, str(o), str(max(o, c)), str(min(o, c)), str(c), "12.5",
                 T0 + (i + 1) * MIN, f"{12.5 * c:.2f}"]
            )  # fmt: skip
            i += 1
        return self._answer(request, 200, rows)

    def _answer(self, request, status: int, body) -> requests.Response:
        response = requests.Response()
        response.status_code = status
        response.reason = "OK" if status == 200 else "Error"
        response._content = json.dumps(body).encode()
        response.headers["Content-Type"] = "application/json"
        response.url = request.url
        response.request = request
        return response

    def close(self) -> None:
        pass


def client(adapter: Mexc) -> HistoryClient:
    session = requests.Session()
    session.mount("https://", adapter)
    return HistoryClient("mexc", session=session, sleep=lambda s: None)


def test_download_pages_resumes_and_keeps_only_closed_candles(tmp_path):
    adapter = Mexc()
    path = store.candle_path(tmp_path, "mexc", "BTC_USDT", "1m")
    ticks: list[int] = []
    first = download_symbol(
        client(adapter),
        "BTC_USDT",
        timeframe="1m",
        start_ms=T0,
        end_ms=T0 + 1_500 * MIN,
        path=path,
        progress=ticks.append,
        now_ms=lambda: MARKET_END + 30_000,
    )
    assert first.added == 1_500 and first.resumed_from is None
    assert sum(ticks) == 1_500
    # paged: a 429 retried, then each page from where the last one ended (ccxt bounds a
    # MEXC spot page to 500 candles with endTime)
    assert adapter.klines[0]["startTime"] == adapter.klines[1]["startTime"] == str(T0)
    assert [int(k["startTime"]) for k in adapter.klines[1:]] == [
        T0 + i * 500 * MIN for i in range(3)
    ]
    # the second run asks only for what is missing, up to the still-open candle
    adapter.klines.clear()
    second = download_symbol(
        client(adapter),
        "BTC_USDT",
        timeframe="1m",
        start_ms=T0,
        end_ms=T0 + 10_000 * MIN,
        path=path,
        now_ms=lambda: T0 + 2_000 * MIN + 30_000,  # the candle opened at 2,000 is still open
    )
    assert second.resumed_from == T0 + 1_500 * MIN and second.added == 500
    assert int(adapter.klines[0]["startTime"]) == T0 + 1_500 * MIN
    rows = read_candles(path)  # the replay feed's strict reader accepts the file
    assert len(rows) == 2_000
    assert [c.open_ms for _, c in rows] == [T0 + i * MIN for i in range(2_000)]
    assert rows[7][1].close == price(8) and rows[7][1].volume == 12.5
    # and it backtests as it is
    result = Backtest([path], Config.load({})).run()
    assert result.candles == 2_000 - 14


def test_import_freqtrade_files_then_backtest(tmp_path):
    ft = tmp_path / "ft"
    ft.mkdir()
    candles = [
        [T0 + i * MIN, price(i), price(i) + 1, price(i) - 1, price(i), 3.0] for i in range(50)
    ]
    (ft / "ETH_USDT-1m.json").write_text(json.dumps(candles))
    env = {**os.environ, "PYTHONPATH": f"{REPO / 'services'}:{REPO / 'operator'}"}
    cmd = [sys.executable, "-m", "cdb", "download-data", "--import-freqtrade", str(ft),
           "--datadir", str(tmp_path / "data")]  # fmt: skip
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    dest = tmp_path / "data" / "mexc" / "ETH_USDT-1m.csv"
    assert "50 candles added" in done.stdout
    again = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60)
    assert "0 candles added" in again.stdout  # nothing twice
    rows = read_candles(dest)
    assert [(c.open_ms, c.open, c.high, c.volume) for _, c in rows] == [
        (r[0], r[1], r[2], r[5]) for r in candles
    ]


@pytest.mark.parametrize(
    "args,message",
    [
        (["--symbols", "btc-usdt"], "--symbols must be like BTC_USDT"),
        (["--start", "2025-02-30"], "not a date"),
        (["--start", "2025-02-01", "--end", "2025-01-01"], "--start must be before --end"),
        (["--import-freqtrade", "/nonexistent/dir"], "no such file"),
    ],
)
def test_bad_arguments_exit_2_naming_them(tmp_path, args, message):
    env = {**os.environ, "PYTHONPATH": f"{REPO / 'services'}:{REPO / 'operator'}"}
    done = subprocess.run(
        [sys.executable, "-m", "cdb", "download-data", "--datadir", str(tmp_path), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2 and message in done.stderr

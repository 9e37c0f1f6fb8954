"""Stream feed: exchange frame → ``market_data`` latency, and CPU per 1,000 frames/s.

The local MEXC of the tests (``tests/mexc_stream.py``: a real websocket server speaking
MEXC's subscription protocol, protobuf frames built with ccxt's own classes, and MEXC
REST for the warm-up) pushes kline frames for ``SYMBOLS`` symbols at ``--stream-rate``
frames per second (default 1,000), every tenth frame of a symbol opening its next candle
— which closes the previous one, so a ``market_data`` event is due. Two clients, each a
child process of its own, take the same frames in turn:

* **baseline** — a bare ``websockets`` client decoding each frame with ccxt's protobuf
  class and noticing the candle change: the transport and decoding alone, the floor;
* **feed** — the stream source (``cdb.feed.stream.StreamSource``: ccxt.pro
  ``watch_ohlcv``, the kline tracker, the window, ``market_data``), polled as
  ``cdb run feed`` polls it (publishing to Redis is the bus benchmark's business).

Latency is ``time.monotonic_ns()`` (one system-wide clock) from just before the server
sends the closing frame to the moment the client has the event; CPU is the client
process's user + system time over the timed window (``/proc``), per 1,000 frames/s.
Target: p99 ≤ 5 ms for the feed.

Run: ``python -m bench run stream`` (``--stream-rate``, ``--stream-duration``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

from bench.latency import percentile
from bench.report import Result

ROOT = Path(__file__).resolve().parent.parent
TESTS = ROOT / "tests"
MIN = 60_000
SYMBOLS = 20  # one connection (MEXC: at most 30 subscriptions each)
FRAMES_PER_CANDLE = 10
TARGET_P99_MS = 5.0


def _bases(n: int) -> list[str]:
    return [f"S{i:02d}" for i in range(n)]


# -- the children ---------------------------------------------------------------------------------


def _child_feed(rest_url: str, ws_url: str, symbol_ids: list[str]) -> None:
    from cdb.exchange.market import MarketClient
    from cdb.feed.stream import StreamSource
    from cdb.feed.stream_ws import StreamWorker

    symbols = [f"{s[:-4]}_USDT" for s in symbol_ids]  # S00USDT → S00_USDT
    worker = StreamWorker("mexc", ws_url=ws_url)
    source = StreamSource(
        MarketClient("mexc", base_url=rest_url, attempts=1),
        worker,
        symbols=symbols,
        close_delay_s=0.0,
        wait_s=0.2,
    )
    _serve(lambda emit: _feed_loop(source, emit), source.close)


def _feed_loop(source, emit) -> None:
    while True:
        for event in source.poll(time.time()).events:
            if event.type == "market_data":
                emit(event.symbol.replace("_", ""), event.timestamp)


def _child_baseline(ws_url: str, symbol_ids: list[str]) -> None:
    import asyncio

    from ccxt.protobuf.mexc import PushDataV3ApiWrapper_pb2
    from websockets.asyncio.client import connect

    async def loop(emit) -> None:
        forming: dict[str, int] = {}
        async with connect(ws_url, ping_interval=None) as ws:
            channels = [f"spot@public.kline.v3.api.pb@{s}@Min1" for s in symbol_ids]
            await ws.send(json.dumps({"method": "SUBSCRIPTION", "params": channels}))
            async for frame in ws:
                if isinstance(frame, str):
                    continue
                message = PushDataV3ApiWrapper_pb2.PushDataV3ApiWrapper()
                message.ParseFromString(frame)
                start = message.publicSpotKline.windowStart
                if forming.get(message.symbol, start) < start:
                    emit(message.symbol, start)
                forming[message.symbol] = start

    _serve(lambda emit: asyncio.run(loop(emit)), lambda: None)


def _serve(run, close) -> None:
    """Run ``run(emit)`` in a thread; answer ``cpu``/``events`` on stdin, ``stop`` ends."""
    events: list[tuple[str, int, int]] = []
    lock = threading.Lock()

    def emit(symbol: str, close_s: int) -> None:
        now = time.monotonic_ns()
        with lock:
            events.append((symbol, close_s, now))

    threading.Thread(target=run, args=(emit,), daemon=True).start()
    print("ready", flush=True)
    for line in sys.stdin:
        command = line.strip()
        if command == "cpu":
            cpu = os.times()
            print(json.dumps(cpu.user + cpu.system), flush=True)
        elif command == "events":
            with lock:
                print(json.dumps(events), flush=True)
        elif command == "stop":
            break
    close()


# -- the parent -----------------------------------------------------------------------------------


class _Child:
    def __init__(self, *args: str) -> None:
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(TESTS), *sys.path])}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bench.stream_latency", *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        assert self.ask_raw() == "ready"

    def ask_raw(self, command: str | None = None) -> str:
        if command:
            self.proc.stdin.write(command + "\n")
            self.proc.stdin.flush()
        return self.proc.stdout.readline().strip()

    def ask(self, command: str):
        return json.loads(self.ask_raw(command))

    def stop(self) -> None:
        try:
            self.proc.stdin.write("stop\n")
            self.proc.stdin.close()
            self.proc.wait(15)
        except Exception:  # noqa: BLE001 – a wedged child is killed
            self.proc.kill()
            self.proc.wait()


def _measure(mexc, child: _Child, ids: list[str], rate: float, seconds: float, first_open: int):
    """Push frames at ``rate`` for ``seconds``; returns latencies (ms), CPU s, frames, span."""
    sent: dict[tuple[str, int], int] = {}
    period = 1.0 / rate
    frames, rounds, minute = 0, 0, {s: first_open for s in ids}
    cpu0 = child.ask("cpu")
    start = time.monotonic()
    deadline = start + seconds
    while time.monotonic() < deadline:
        new_candle = rounds % FRAMES_PER_CANDLE == 0 and rounds > 0
        rounds += 1
        for symbol in ids:
            frames += 1
            if new_candle:
                minute[symbol] += MIN
            open_ms = minute[symbol]
            price = 100.0 + (frames % 97) / 10
            row = [open_ms, 100.0, price + 1, 99.0, price, float(frames % 13 + 1)]
            if new_candle:
                sent[(symbol, open_ms // 1000)] = time.monotonic_ns()
            mexc.push(symbol, row)
            pause = start + frames * period - time.monotonic()
            if pause > 0:
                time.sleep(pause)
    span = time.monotonic() - start
    time.sleep(0.3)  # the last frames' events
    cpu = child.ask("cpu") - cpu0
    latencies = [
        (received - sent[(symbol, close_s)]) / 1e6
        for symbol, close_s, received in child.ask("events")
        if (symbol, close_s) in sent
    ]
    return latencies, cpu, frames, span, minute


def run(quick: bool = False, context: dict | None = None) -> Result:
    args = (context or {}).get("args")
    rate = 200.0 if quick else float(getattr(args, "stream_rate", 1000.0))
    seconds = 2.0 if quick else float(getattr(args, "stream_duration", 10.0))
    result = Result("stream", "Stream feed: exchange frame → market_data")
    if str(TESTS) not in sys.path:
        sys.path.insert(0, str(TESTS))
    from mexc_stream import LocalMexc

    bases = _bases(SYMBOLS)
    ids = [f"{b}USDT" for b in bases]
    rows: dict[str, dict] = {}
    with LocalMexc(listed=bases) as mexc:
        now_open = int(time.time() * 1000) // MIN * MIN
        for symbol in ids:  # the REST warm-up: 20 closed candles up to now
            for i in range(20, 0, -1):
                mexc.book.put(symbol, [now_open - i * MIN, 100.0, 101.0, 99.0, 100.5, 10.0])
        first_open = now_open  # the forming candle: the feed's REST warm-up ends just before
        for name, argv in (  # the feed first: the baseline needs no warm-up
            ("feed: StreamSource (ccxt.pro)", ("child", "feed", mexc.rest_url, mexc.ws_url)),
            ("baseline: websockets + protobuf decode", ("child", "baseline", mexc.ws_url)),
        ):
            child = _Child(*argv, ",".join(ids))
            try:
                mexc.wait_subscribed(ids)
                # a first closing frame per symbol: both clients start with a forming candle
                for symbol in ids:
                    mexc.push(symbol, [first_open, 100.0, 101.0, 99.0, 100.5, 1.0])
                time.sleep(0.5)
                lat, cpu, frames, span, minute = _measure(
                    mexc, child, ids, rate, seconds, first_open
                )
                first_open = max(minute.values()) + MIN
            finally:
                child.stop()
            rows[name] = {
                "events": len(lat),
                "p50": percentile(lat, 50) if lat else float("nan"),
                "p99": percentile(lat, 99) if lat else float("nan"),
                "max": max(lat) if lat else float("nan"),
                "frames/s": frames / span,
                "cpu_per_1000": cpu / span / (frames / span / 1000) * 100 if frames else 0.0,
            }
    t = result.table(
        f"{len(ids)} symbols on one connection, {rate:,.0f} frames/s for {seconds:.0f} s",
        [
            "client",
            "events",
            "p50, ms",
            "p99, ms",
            "max, ms",
            "frames/s",
            "CPU % of a core per 1,000 frames/s",
        ],
    )
    for name, r in rows.items():
        t.add(name, r["events"], r["p50"], r["p99"], r["max"], r["frames/s"], r["cpu_per_1000"])
    feed = rows["feed: StreamSource (ccxt.pro)"]
    base = rows["baseline: websockets + protobuf decode"]
    verdict = "met" if feed["p99"] <= TARGET_P99_MS else "missed"
    result.note(
        f"Target: frame → market_data p99 ≤ {TARGET_P99_MS:g} ms: {verdict} "
        f"({feed['p99']:.2f} ms; the bare client's p99 in the same run {base['p99']:.2f} ms)."
    )
    result.note(
        "CPU: the client process only (the server runs in the benchmark's own process); "
        "the feed's figure includes ccxt.pro's parsing, its caches and the poll loop."
    )
    result.data = {"feed": feed, "baseline": base, "target_p99_ms": TARGET_P99_MS}
    if context is not None:
        context["stream"] = result.data
    return result


if __name__ == "__main__":
    if sys.argv[1:2] == ["child"]:
        mode, *rest = sys.argv[2:]
        if mode == "feed":
            _child_feed(rest[0], rest[1], rest[2].split(","))
        else:
            _child_baseline(rest[0], rest[1].split(","))

"""The stream source against a local MEXC (``tests/mexc_stream.py``): a real websocket server
speaking MEXC's subscription protocol with protobuf frames built by ccxt's own classes, and
MEXC REST from the same candles — ccxt.pro's URL pointed at it, never the network."""

from __future__ import annotations

import time

import pytest
from mexc_stream import MIN, LocalMexc

from cdb.exchange.market import MarketClient
from cdb.feed.klines import KlineTracker, assign_shards, backoff_s
from cdb.feed.live import LiveSource
from cdb.feed.stream import StreamSource
from cdb.feed.stream_ws import StreamWorker

T0 = 1_767_000_000_000 // MIN * MIN  # a whole minute, Unix ms


def candle(i: int, base: float = 60_000.0, step: float = 0.004, part: float = 1.0) -> list:
    """Candle ``i`` of a steady rise; ``part`` < 1 is the forming candle part-way through."""
    o = base * (1 + step) ** i
    c = o * (1 + step * part)
    return [
        T0 + i * MIN,
        round(o, 2),
        round(c * 1.0005, 2),
        round(o * 0.9995, 2),
        round(c, 2),
        20.0 * part,
    ]


class Clock:
    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t

    def at_minute(self, i: int, second: float = 1.0) -> float:
        self.t = (T0 + i * MIN) / 1000 + second
        return self.t


def md(events) -> list[tuple]:
    return [
        (e.symbol, e.timestamp, e.price, round(e.volume, 6), round(e.pct_change, 9))
        for e in events
        if e.type == "market_data"
    ]


def sources(mexc: LocalMexc, clock: Clock, symbols: list[str], per_connection: int = 30):
    common = dict(symbols=symbols, close_delay_s=0.0, interval="1m", lookback_min=15)
    rest = MarketClient("mexc", base_url=mexc.rest_url, attempts=1)
    worker = StreamWorker(
        "mexc",
        ws_url=mexc.ws_url,
        per_connection=per_connection,
        backoff_base_s=0.05,
        backoff_cap_s=0.2,
    )
    stream = StreamSource(rest, worker, stream_grace_s=10.0, wait_s=0.2, clock=clock, **common)
    poller = LiveSource(MarketClient("mexc", base_url=mexc.rest_url, attempts=1), **common)
    return stream, poller


def poll_until(source: StreamSource, clock: Clock, want: int, timeout: float = 10.0) -> list:
    events: list = []
    deadline = time.monotonic() + timeout
    while len(md(events)) < want:
        assert time.monotonic() < deadline, f"{len(md(events))} of {want} events: {events}"
        events += source.poll(clock()).events
    return events


def klines_calls(mexc: LocalMexc) -> int:
    return sum(1 for path, _ in mexc.rest_calls if path == "/api/v3/klines")


def test_tracker_closes_a_candle_when_the_next_begins_and_distrusts_one_across_a_drop():
    tracker = KlineTracker()
    assert tracker.update("BTC_USDT", candle(0, part=0.5)) == []
    assert tracker.update("BTC_USDT", candle(0)) == []
    (closed,) = tracker.update("BTC_USDT", candle(1, part=0.1))
    assert closed.candle.open_ms == T0 and closed.candle.close == candle(0)[4] and closed.trusted
    assert tracker.update("BTC_USDT", candle(0)) == []  # a late frame of a closed candle
    tracker.taint(["BTC_USDT"])
    (closed,) = tracker.update("BTC_USDT", candle(4, part=0.1))
    assert not closed.trusted and closed.next_open_ms == T0 + 4 * MIN


def test_shards_keep_their_symbols_within_the_limit():
    assert assign_shards([], ["A", "B", "C"], 2) == [["A", "B"], ["C"]]
    # B leaves, D and E arrive: A's connection keeps A and takes D; C's takes E
    assert assign_shards([["A", "B"], ["C"]], ["A", "C", "D", "E"], 2) == [["A", "D"], ["C", "E"]]
    with pytest.raises(ValueError):
        assign_shards([], ["A"], 0)


def test_backoff_grows_caps_and_jitters():
    assert backoff_s(1, 0.5, 30, 0.0) == 0.25 and backoff_s(1, 0.5, 30, 0.999) < 0.5
    assert backoff_s(4, 0.5, 30, 0.0) == 2.0
    assert backoff_s(20, 0.5, 30, 0.999) < 30 and backoff_s(20, 0.5, 30, 0.0) == 15.0


def test_subscribe_stream_drop_reconnect_backfill_equals_the_rest_path():
    clock = Clock(0)
    with LocalMexc() as mexc:
        for i in range(20):
            mexc.book.put("BTCUSDT", candle(i))
        stream, poller = sources(mexc, clock, ["BTC_USDT"])
        try:
            got, want = [], []
            # warm-up over REST: the window up to candle 19
            clock.at_minute(20)
            got += poll_until(stream, clock, 1)
            want += poller.poll(clock()).events
            mexc.wait_subscribed(["BTCUSDT"])
            warm_calls = klines_calls(mexc)

            # candle 20 forms over two frames; candle 21's first frame closes it
            mexc.push("BTCUSDT", candle(20, part=0.5))
            mexc.push("BTCUSDT", candle(20))
            clock.at_minute(21)
            mexc.push("BTCUSDT", candle(21, part=0.2))
            got += poll_until(stream, clock, 1)
            assert klines_calls(mexc) == warm_calls  # from the stream alone, no REST
            want += poller.poll(clock()).events
            assert stream.frames >= 3

            # the connection drops mid-candle; 21 ends and 22, 23 pass while it is down
            assert mexc.drop() == 1
            mexc.book.put("BTCUSDT", candle(21))
            mexc.book.put("BTCUSDT", candle(22))
            mexc.book.put("BTCUSDT", candle(23))
            mexc.wait_subscribed(["BTCUSDT"])  # ccxt.pro reconnected and subscribed again
            assert mexc.connections_opened == 2
            clock.at_minute(24)
            mexc.push("BTCUSDT", candle(24, part=0.3))
            got += poll_until(stream, clock, 1)
            want += poller.poll(clock()).events
            assert stream.status()["reconnects"] == 1
            assert stream.backfills >= 2  # the warm-up and the repair after the reconnect

            # a frame lost without a drop: 25 never reaches the stream, 26's first frame does
            mexc.push("BTCUSDT", candle(24))
            mexc.book.put("BTCUSDT", candle(25))
            clock.at_minute(26)
            mexc.push("BTCUSDT", candle(26, part=0.1))
            got += poll_until(stream, clock, 1)
            want += poller.poll(clock()).events
            assert stream.gaps >= 1

            assert md(got) == md(want)
            assert [e[1] for e in md(got)] == [
                (T0 + n * MIN) // 1000 for n in (20, 21, 24, 26)
            ]  # close times of candles 19, 20, 23 and 25
            assert not [e for e in got if e.type == "alert"]
        finally:
            stream.close()
            poller.close()


def test_symbols_shard_across_connections_and_a_held_symbol_is_always_streamed():
    clock = Clock(0)
    with LocalMexc() as mexc:
        for sid in ("BTCUSDT", "ETHUSDT", "PEPEUSDT"):
            for i in range(20):
                mexc.book.put(sid, candle(i))
        stream, poller = sources(mexc, clock, ["BTC_USDT", "ETH_USDT"], per_connection=2)
        poller.close()
        stream.held = lambda: ["PEPE_USDT"]  # what the feed service reads from the risk manager
        try:
            clock.at_minute(20)
            events = poll_until(stream, clock, 3)
            assert {e[0] for e in md(events)} == {"BTC_USDT", "ETH_USDT", "PEPE_USDT"}
            mexc.wait_subscribed(["BTCUSDT", "ETHUSDT", "PEPEUSDT"])
            assert sorted(len(c) for c in mexc.connections()) == [1, 2]
            assert len(stream.status()["connections"]) == 2
            # the held symbol's candle closes from the stream too
            mexc.push("PEPEUSDT", candle(20))
            clock.at_minute(21)
            mexc.push("PEPEUSDT", candle(21, part=0.1))
            events = poll_until(stream, clock, 1)
            assert [e[0] for e in md(events)] == ["PEPE_USDT"]
            ages = stream.status()["data_age_s"]
            assert set(ages) == {"BTC_USDT", "ETH_USDT", "PEPE_USDT"}
        finally:
            stream.close()


def test_a_held_symbol_without_data_raises_a_critical_alert_once():
    clock = Clock(0)
    with LocalMexc() as mexc:
        for i in range(20):
            mexc.book.put("BTCUSDT", candle(i))
        stream, poller = sources(mexc, clock, ["BTC_USDT"])
        poller.close()
        # DEADUSDT is suspended: no candles over REST, nothing on the stream
        stream.held = lambda: ["DEAD_USDT"]
        try:
            clock.at_minute(20)
            first = stream.poll(clock()).events
            assert not [e for e in first if e.type == "alert"]
            clock.t += stream.held_stale_s + 1
            alerts = [e for e in stream.poll(clock()).events if e.type == "alert"]
            critical = [a for a in alerts if a.code == "FEED_HELD_SYMBOL_NO_DATA"]
            assert len(critical) == 1 and critical[0].level == "CRITICAL"
            assert critical[0].context["symbol"] == "DEAD_USDT"
            again = [e for e in stream.poll(clock()).events if e.type == "alert"]
            assert not [a for a in again if a.code == "FEED_HELD_SYMBOL_NO_DATA"]
            assert stream.status()["held_without_data"] == ["DEAD_USDT"]
        finally:
            stream.close()


def test_31_symbols_take_two_connections_within_mexcs_30_and_a_change_renews_one():
    bases = [f"S{i:02d}" for i in range(31)]
    with LocalMexc(listed=bases) as mexc:
        worker = StreamWorker("mexc", ws_url=mexc.ws_url)  # the default: 30 per connection
        rest = MarketClient("mexc", base_url=mexc.rest_url, attempts=1)
        try:
            markets = rest.load_markets()
            worker.set_symbols([f"{b}_USDT" for b in bases], markets)
            mexc.wait_subscribed([f"{b}USDT" for b in bases])
            assert sorted(len(c) for c in mexc.connections()) == [1, 30]
            assert mexc.connections_opened == 2
            # S30 leaves, S00 stays: only the connection that had S30 changes (it closes)
            worker.set_symbols([f"{b}_USDT" for b in bases[:30]], markets)
            deadline = time.monotonic() + 10
            while len(mexc.connections()) != 1 and time.monotonic() < deadline:
                time.sleep(0.02)
            assert [len(c) for c in mexc.connections()] == [30]
            assert mexc.connections_opened == 2  # the 30 kept their connection
        finally:
            worker.stop()
            rest.close()


def test_a_connection_is_renewed_and_its_forming_candle_comes_from_rest():
    clock = Clock(0)
    with LocalMexc() as mexc:
        for i in range(20):
            mexc.book.put("BTCUSDT", candle(i))
        stream, poller = sources(mexc, clock, ["BTC_USDT"])
        poller.close()
        stream.worker.renew_s = 1.0  # MEXC: 24 h; here a second
        try:
            clock.at_minute(20)
            poll_until(stream, clock, 1)
            mexc.wait_subscribed(["BTCUSDT"])
            mexc.push("BTCUSDT", candle(20, part=0.5))  # forming when the renewal comes
            deadline = time.monotonic() + 10
            while mexc.connections_opened < 2:
                assert time.monotonic() < deadline, "not renewed"
                time.sleep(0.05)
            mexc.wait_subscribed(["BTCUSDT"])
            stream.worker.renew_s = 3600.0  # no second renewal during the rest
            mexc.book.put("BTCUSDT", candle(20))  # its final form: only REST has it
            clock.at_minute(21)
            mexc.push("BTCUSDT", candle(21, part=0.1))
            (event,) = md(poll_until(stream, clock, 1))
            assert event[2] == candle(20)[4]  # the complete candle's close, not the partial
            assert stream.status()["reconnects"] == 0  # a renewal is no failure
        finally:
            stream.close()


def test_top_movers_are_streamed_and_a_held_symbol_stays_when_it_leaves_them():
    from test_feed_market import ticker

    clock = Clock(0)
    with LocalMexc() as mexc:
        for sid in ("BTCUSDT", "ETHUSDT", "PEPEUSDT"):
            for i in range(20):
                mexc.book.put(sid, candle(i))
        mexc.tickers = [
            ticker("BTCUSDT", "0.02", "9000000"),
            ticker("ETHUSDT", "0.09", "9000000"),
            ticker("PEPEUSDT", "0.01", "9000000"),
        ]
        rest = MarketClient("mexc", base_url=mexc.rest_url, attempts=1)
        worker = StreamWorker("mexc", ws_url=mexc.ws_url)
        stream = StreamSource(
            rest,
            worker,
            symbols=["BTC_USDT"],
            top_movers=1,
            movers_refresh_s=60.0,
            close_delay_s=0.0,
            wait_s=0.1,
            clock=clock,
        )
        stream.held = lambda: ["BTC_USDT"]  # held, though not a mover
        try:
            clock.at_minute(20)
            events = poll_until(stream, clock, 2)
            assert stream.symbols == ["ETH_USDT"]
            assert {e[0] for e in md(events)} == {"ETH_USDT", "BTC_USDT"}
            mexc.wait_subscribed(["ETHUSDT", "BTCUSDT"])
            # the movers change: PEPE replaces ETH; BTC (held) keeps streaming
            mexc.tickers[2] = ticker("PEPEUSDT", "0.5", "9000000")
            clock.t += 61
            poll_until(stream, clock, 1)
            assert stream.symbols == ["PEPE_USDT"]
            mexc.wait_subscribed(["PEPEUSDT", "BTCUSDT"])
            deadline = time.monotonic() + 10
            while mexc.subscribers("ETHUSDT") and time.monotonic() < deadline:
                time.sleep(0.02)
            assert not mexc.subscribers("ETHUSDT")
        finally:
            stream.close()


def test_a_quiet_symbol_is_asked_over_rest_once_per_poll_period_not_every_poll():
    clock = Clock(0)
    with LocalMexc() as mexc:
        for i in range(20):
            mexc.book.put("BTCUSDT", candle(i))
        stream, poller = sources(mexc, clock, ["BTC_USDT"])
        poller.close()
        stream.poll_s = 5.0
        try:
            clock.at_minute(20)
            poll_until(stream, clock, 1)
            calls = klines_calls(mexc)
            clock.at_minute(25)  # no frame, no new candle: the stream is silent
            for _ in range(10):
                stream.poll(clock())
                clock.t += 0.1
            assert klines_calls(mexc) == calls + 1
            clock.t += 5
            stream.poll(clock())
            assert klines_calls(mexc) == calls + 2
        finally:
            stream.close()


def test_no_event_is_built_on_a_hole_while_rest_cannot_fill_it():
    clock = Clock(0)
    with LocalMexc() as mexc:
        for i in range(20):
            mexc.book.put("BTCUSDT", candle(i))
        stream, poller = sources(mexc, clock, ["BTC_USDT"])
        poller.close()
        try:
            clock.at_minute(20)
            poll_until(stream, clock, 1)
            mexc.wait_subscribed(["BTCUSDT"])
            mexc.push("BTCUSDT", candle(20))
            mexc.book.put("BTCUSDT", candle(21))  # lost: never pushed
            mexc.rest_down = True
            clock.at_minute(22)
            mexc.push("BTCUSDT", candle(22, part=0.1))  # closes 20, skipping 21: a hole
            deadline = time.monotonic() + 2
            events = []
            while time.monotonic() < deadline:
                events += stream.poll(clock()).events
            assert md(events) == []  # neither 20 alone nor a window missing 21
            mexc.rest_down = False
            stream.fetched_at.clear()
            clock.t += stream.poll_s
            (event,) = md(poll_until(stream, clock, 1))  # the repair: 20 and 21 from REST
            assert event[1] == (T0 + 22 * MIN) // 1000 and event[2] == candle(21)[4]
        finally:
            stream.close()

"""``cdb run feed`` as a real process on real Redis: replay to the end, synthetic forever."""

from __future__ import annotations

import time

import pytest
import redis
from helpers import ServiceProcess, wait_until

from cdb.events import MarketData, parse_event
from cdb.feed.replay import read_files, sample_path
from cdb.feed.service import build_source
from cdb.feed.settings import FeedSettings
from cdb.feed.sources import ReplaySource, SyntheticSource
from cdb.settings import SettingsError, load_settings


def _stream(client) -> list:
    return [parse_event(fields[b"data"]) for _, fields in client.xrange("market_data")]


def _without_time(md: MarketData) -> dict:
    return md.model_dump(exclude={"timestamp"})


def test_replay_publishes_the_whole_sample_then_exits_zero(redis_env, redis_client, tmp_path):
    proc = ServiceProcess(
        "feed", {**redis_env, "FEED_SOURCE": "replay", "FEED_BATCH": "100"}, tmp_path
    )
    proc.start(wait_healthy=False)
    assert proc.proc.wait(timeout=60) == 0, proc.log()
    expected = ReplaySource(read_files([sample_path()]), batch=10_000).poll(0).events
    assert _stream(redis_client) == expected
    assert len(expected) == 678
    assert "feed finished its work" in proc.log()


def test_replay_can_stay_up_idle_at_the_end(redis_env, redis_client, tmp_path):
    env = {**redis_env, "FEED_SOURCE": "replay", "FEED_REPLAY_AT_END": "idle"}
    proc = ServiceProcess("feed", env, tmp_path).start()
    try:
        status = wait_until(
            lambda: (s := proc.status()).get("finished") and s, message="replay finished"
        )
        assert status["replayed"] == status["total"] == 678
        assert status["published"] == {"market_data": 678}
        assert status["source"] == "replay"
        assert proc.health()[0] == 200
        metrics = proc.metrics()
        assert 'cdb_feed_events_published_total{type="market_data"} 678.0' in metrics
        assert 'cdb_feed_events_published_total{type="market_status"} 0.0' in metrics
        assert 'feed_events_published_total{type="market_data"} 678.0' in metrics  # old name
    finally:
        assert proc.stop() == 0
    assert redis_client.xlen("market_data") == 678


def test_synthetic_runs_until_stopped_with_the_generators_numbers(
    redis_env, redis_client, tmp_path
):
    env = {
        **redis_env,
        "FEED_SOURCE": "synthetic",
        "FEED_SEED": "11",
        "SYMBOLS": "BTC_USDT,ETH_USDT",
        "FEED_SYNTHETIC_PERIOD_S": "0.02",
        "EVENT_MAX_LEAD_S": "604800",  # 50 candles a second: stamps run ahead of the clock
    }
    proc = ServiceProcess("feed", env, tmp_path).start()
    try:
        wait_until(lambda: redis_client.xlen("market_data") >= 60, message="60 events")
        status = proc.status()
        assert status["source"] == "synthetic"
        assert set(status["last_market_data"]) == {"BTC_USDT", "ETH_USDT"}
        assert set(status["regimes"]) == {"BTC_USDT", "ETH_USDT"}
    finally:
        assert proc.stop() == 0
    published = _stream(redis_client)
    times = [e.timestamp for e in published[::2]]
    assert times == sorted(set(times))  # strictly increasing per step
    assert abs(times[0] - time.time()) < 3600  # stamped with the wall clock, not 1970
    reference = SyntheticSource(["BTC_USDT", "ETH_USDT"], 11)
    expected = [e for i in range(len(published) // 2) for e in reference.events_at(i)]
    assert [_without_time(e) for e in published] == [_without_time(e) for e in expected]


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"FEED_INTERVAL": "1h"}, "SIGNAL_LOOKBACK_MIN=15 is not a whole number of 1h candles"),
        (
            {"FEED_SOURCE": "replay", "FEED_REPLAY_FILES": "/nonexistent.csv"},
            "FEED_REPLAY_FILES: /nonexistent.csv: cannot open: No such file or directory",
        ),
        (
            {"SYMBOLS": "BTC/USDT"},
            "SYMBOLS must be symbols like BTC_USDT, not BTC/USDT, got BTC/USDT",
        ),
        (
            {"FEED_SOURCE": "live", "EXCHANGE_ID": "nosuchexchange"},
            "EXCHANGE_ID ccxt has no exchange 'nosuchexchange'",
        ),
        ({"FEED_SYNTHETIC_PERIOD_S": "-1"}, "FEED_SYNTHETIC_PERIOD_S must be >= 0, got -1"),
        (  # REST at a mirror, the websocket at the real exchange: never silently
            {"FEED_SOURCE": "stream", "EXCHANGE_BASE_URL": "http://127.0.0.1:9"},
            "FEED_STREAM_URL must name the websocket of the exchange EXCHANGE_BASE_URL points "
            "at (ws://host:port/ws), or set FEED_SOURCE=live",
        ),
        (
            {"FEED_SOURCE": "stream", "EXCHANGE_ID": "bit2c"},  # ccxt, REST only
            "EXCHANGE_ID 'bit2c' has no websocket API in ccxt.pro: set FEED_SOURCE=live",
        ),
        (
            {"FEED_SOURCE": "stream", "FEED_STREAM_PER_CONNECTION": "31"},
            "FEED_STREAM_PER_CONNECTION must be <= 30, got 31",
        ),
    ],
)
def test_bad_feed_settings_are_one_line(clean_env, monkeypatch, env, message):
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(SettingsError) as info:
        build_source(load_settings(FeedSettings))
    assert info.value.message == message


def test_live_source_is_built_without_touching_the_network(clean_env, monkeypatch):
    monkeypatch.setenv("FEED_SOURCE", "live")
    monkeypatch.setenv("TOP_MOVERS", "5")
    source = build_source(load_settings(FeedSettings))
    assert source.name == "live" and source.top_movers == 5
    assert source.status()["exchange_status"] == "unknown"


def test_a_bad_setting_stops_the_process_with_exit_2_and_one_line(redis_env, tmp_path):
    proc = ServiceProcess("feed", {**redis_env, "FEED_SOURCE": "paper"}, tmp_path)
    proc.start(wait_healthy=False)
    assert proc.proc.wait(timeout=30) == 2
    assert [x for x in proc.log().splitlines() if x.strip()] == [
        "configuration error: FEED_SOURCE must be one of 'synthetic', 'replay', 'live' or "
        "'stream', got paper"
    ]


def test_replay_loses_nothing_across_a_redis_outage(own_redis, tmp_path):
    env = {
        **own_redis.env(),
        "FEED_SOURCE": "replay",
        "FEED_REPLAY_SPEED": "3000",
        "FEED_REPLAY_AT_END": "idle",
    }
    client = redis.Redis(port=own_redis.port)
    proc = ServiceProcess("feed", env, tmp_path).start()
    try:
        wait_until(lambda: client.xlen("market_data") >= 60, message="some events")
        before = client.xlen("market_data")
        own_redis.stop()
        assert before < 600  # the outage falls in the middle of the replay
        time.sleep(2)  # the replay clock runs on while Redis is away
        own_redis.start()
        client = redis.Redis(port=own_redis.port)
        wait_until(
            lambda: proc.status().get("finished") and proc.status()["unpublished"] == 0,
            timeout=60,
            message="replay finished after the outage",
        )
    finally:
        proc.stop()
    expected = ReplaySource(read_files([sample_path()]), batch=10_000).poll(0).events
    got = _stream(client)
    # at-least-once: a pipeline cut mid-flight may repeat a few entries, but none is lost
    deduped = list(dict.fromkeys(got))
    assert deduped == expected
    assert "transient failure" in proc.log()


def test_stream_service_publishes_held_symbols_and_shows_data_age_and_reconnects(
    redis_env, redis_client, tmp_path
):
    """``cdb run feed`` with FEED_SOURCE=stream against the local MEXC (REST + websocket):
    the held symbol (the risk manager's ``HELD_KEY``) is streamed besides SYMBOLS, /status
    and /metrics show each symbol's data age and the connection's reconnects."""
    import json
    import urllib.request

    from mexc_stream import MIN, LocalMexc

    from cdb.bus import HELD_KEY

    now_ms = int(time.time() * 1000) // MIN * MIN
    with LocalMexc() as mexc:
        for sid in ("BTCUSDT", "ETHUSDT"):
            for i in range(20, 0, -1):
                mexc.book.put(sid, [now_ms - i * MIN, 100.0, 101.0, 99.0, 100.5, 1000.0])
        redis_client.set(HELD_KEY, json.dumps(["ETH_USDT"]))
        env = {
            **redis_env,
            "FEED_SOURCE": "stream",
            "SYMBOLS": "BTC_USDT",
            "EXCHANGE_BASE_URL": mexc.rest_url,
            "FEED_STREAM_URL": mexc.ws_url,
            "FEED_STREAM_PER_CONNECTION": "1",
            "FEED_CLOSE_DELAY_S": "0",
        }
        proc = ServiceProcess("feed", env, tmp_path).start()
        try:

            def symbols() -> set[str]:
                return {e.symbol for e in _stream(redis_client) if e.type == "market_data"}

            wait_until(lambda: symbols() == {"BTC_USDT", "ETH_USDT"}, message="warm-up events")
            mexc.wait_subscribed(["BTCUSDT", "ETHUSDT"])
            assert len(mexc.connections()) == 2  # one subscription per connection here
            mexc.push("ETHUSDT", [now_ms, 100.0, 101.0, 99.0, 100.7, 10.0])
            wait_until(lambda: proc.status()["frames"] >= 1, message="a frame")
            status = proc.status()
            assert status["source"] == "stream" and status["held_symbols"] == ["ETH_USDT"]
            assert set(status["data_age_s"]) == {"BTC_USDT", "ETH_USDT"}
            assert status["data_age_s"]["ETH_USDT"] < 5
            assert mexc.drop() == 2
            wait_until(lambda: proc.status()["reconnects"] == 2, message="both reconnected")
            mexc.wait_subscribed(["BTCUSDT", "ETHUSDT"])
            with urllib.request.urlopen(f"http://127.0.0.1:{proc.port}/metrics") as answer:
                metrics = answer.read().decode()
            assert 'cdb_feed_data_age_seconds{symbol="ETH_USDT"}' in metrics
            assert 'cdb_feed_stream_reconnects_total{connection="0"} 1.0' in metrics
            assert proc.health()[0] == 200
        finally:
            assert proc.stop() == 0


def test_a_restarted_synthetic_market_continues_from_the_last_published_prices(
    redis_env, redis_client, tmp_path
):
    """A position kept from the last run (entry 61680.9) is not valued at the seed's 60000."""
    from cdb.feed.service import last_prices

    left = SyntheticSource(["BTC_USDT", "ETH_USDT"], 42, start_prices={"BTC_USDT": 61680.9})
    for event in left.events_at(int(time.time()) - 5):
        redis_client.xadd("market_data", {"data": event.model_dump_json()})
    redis_client.xadd("market_data", {"data": b"not json"})  # skipped, not fatal
    before = last_prices(redis_client, ["BTC_USDT", "ETH_USDT", "SOL_USDT"])
    assert set(before) == {"BTC_USDT", "ETH_USDT"}
    assert abs(before["BTC_USDT"] / 61680.9 - 1) < 0.05

    env = {**redis_env, "FEED_SOURCE": "synthetic", "SYMBOLS": "BTC_USDT,ETH_USDT"}
    proc = ServiceProcess("feed", {**env, "FEED_SYNTHETIC_PERIOD_S": "0.05"}, tmp_path).start()
    try:
        wait_until(lambda: redis_client.xlen("market_data") >= 9, message="new events")
    finally:
        assert proc.stop() == 0
    first_new = [parse_event(f[b"data"]) for _, f in redis_client.xrange("market_data")[3:5]]
    prices = {e.symbol: float(e.price) for e in first_new}
    assert abs(prices["BTC_USDT"] / before["BTC_USDT"] - 1) < 0.02, prices  # not 60000
    assert abs(prices["ETH_USDT"] / before["ETH_USDT"] - 1) < 0.02, prices
    assert "continues from the last published prices" in proc.log()

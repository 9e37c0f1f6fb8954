"""The offline sources: synthetic determinism and regimes, the replay of files and the sample."""

from __future__ import annotations

import io

import pytest

from cdb.events import MarketData
from cdb.feed.candles import Candle, CandleWindow, market_data_from_candles
from cdb.feed.replay import ReplayFileError, read_candles, read_files, sample_path, write_candles
from cdb.feed.sample import sample_rows
from cdb.feed.sources import ReplaySource, SyntheticSource
from cdb.feed.synthetic import SyntheticMarket

SYMBOLS = ["BTC_USDT", "ETH_USDT", "DOGE_USDT"]


def synthetic_events(seed: int, steps: int = 300, symbols=SYMBOLS) -> list[MarketData]:
    source = SyntheticSource(list(symbols), seed, period_s=1.0)
    return [e for i in range(steps) for e in source.events_at(1_000_000 + i)]


def test_same_seed_gives_the_same_events():
    assert synthetic_events(7) == synthetic_events(7)


def test_another_seed_gives_other_events():
    assert synthetic_events(7) != synthetic_events(8)


def test_a_symbol_walk_does_not_depend_on_the_other_symbols():
    alone = [e for e in synthetic_events(7, symbols=["ETH_USDT"])]
    together = [e for e in synthetic_events(7) if e.symbol == "ETH_USDT"]
    assert alone == together


def test_synthetic_market_has_bursts_and_quiet_phases():
    events = synthetic_events(42, steps=2000)
    assert len(events) == 3 * 2000  # warmed up: every step already has a full window
    rises = [e for e in events if e.pct_change >= 3.0 and e.volume >= 100_000]
    falls = [e for e in events if e.pct_change <= -3.0 and e.volume >= 100_000]
    calm = [e for e in events if abs(e.pct_change) < 1.0 and e.volume < 100_000]
    assert rises and falls
    assert len(calm) > len(events) / 3  # most of the time nothing happens
    prices = [e.price for e in events if e.symbol == "BTC_USDT"]
    assert min(prices) > 30_000 and max(prices) < 120_000  # mean reversion keeps it sane


def test_synthetic_timestamps_are_wall_clock_and_strictly_increasing():
    source = SyntheticSource(["BTC_USDT"], 1, period_s=1.0)
    a = source.poll(1000.2)
    b = source.poll(1000.7)  # same second: bumped by one
    c = source.poll(1005.0)
    assert [e.timestamp for p in (a, b, c) for e in p.events] == [1000, 1001, 1005]
    assert a.delay == 1.0
    assert all(e.source == "synthetic" for e in a.events)


def test_synthetic_flat_out_emits_batches_without_delay():
    source = SyntheticSource(["BTC_USDT", "ETH_USDT"], 1, period_s=0, batch=100)
    poll = source.poll(1000.0)
    assert len(poll.events) == 100 and poll.delay == 0
    assert not source.finished


def test_synthetic_candles_are_consistent():
    market = SyntheticMarket(["SOL_USDT"], 3, start_ms=0)
    for i in range(500):
        [(symbol, c)] = market.step()
        assert symbol == "SOL_USDT" and c.open_ms == i * 60_000
        assert c.low <= min(c.open, c.close) <= max(c.open, c.close) <= c.high
        assert c.volume > 0 and c.quote_volume == pytest.approx(c.volume * c.close)


# -- replay -------------------------------------------------------------------------------------


def test_shipped_sample_is_exactly_the_documented_generator_output():
    out = io.StringIO()
    write_candles(sample_rows(), out)
    assert sample_path().read_text() == out.getvalue()


def test_replay_of_the_sample_file():
    rows = read_files([sample_path()])
    assert len(rows) == 3 * 240
    source = ReplaySource(rows, speed=0, batch=1000)
    poll = source.poll(0.0)
    assert source.finished
    events = poll.events
    assert len(events) == 3 * (240 - 14)  # each symbol needs 15 candles for its first event
    assert [e.timestamp for e in events] == sorted(e.timestamp for e in events)
    assert {e.symbol for e in events} == {"BTC_USDT", "ETH_USDT", "SOL_USDT"}
    assert all(e.source == "replay" for e in events)
    first = events[0]
    btc = [c for s, c in rows if s == "BTC_USDT"][:15]
    assert first.symbol == "BTC_USDT"
    assert first.timestamp == 1_704_067_200 + 15 * 60
    assert first.pct_change == pytest.approx((btc[-1].close / btc[0].open - 1) * 100)
    assert first.volume == pytest.approx(sum(c.quote_volume for c in btc))
    # the sample holds momentum: some events pass the default rule, most do not
    passing = [e for e in events if e.pct_change >= 3.0 and e.volume >= 100_000]
    assert 0 < len(passing) < len(events) / 4


def test_replay_in_batches_then_finished():
    source = ReplaySource(read_files([sample_path()]), batch=100)
    sizes = []
    while not source.finished:
        sizes.append(len(source.poll(0.0).events))
    assert sizes == [100] * 6 + [78]
    assert source.poll(0.0).events == []


def test_replay_paced_at_real_time_and_faster():
    rows = read_files([sample_path()])
    source = ReplaySource(rows, speed=60.0)  # one minute of candles per second
    first = source.poll(100.0)
    assert len(first.events) == 3  # the three symbols' first candles close together
    assert 0 < first.delay <= 1.0
    assert source.poll(100.5).events == []
    assert len(source.poll(101.0).events) == 3
    assert len(source.poll(110.0).events) == 27
    assert source.status()["replayed"] == 33


def test_replay_shift_to_now_keeps_spacing():
    rows = read_files([sample_path()])
    events = ReplaySource(rows, shift_to_now=True, batch=10).poll(2_000_000_000.7).events
    assert events[0].timestamp == 2_000_000_000
    assert events[3].timestamp == 2_000_000_060


def _write(tmp_path, text: str):
    path = tmp_path / "c.csv"
    path.write_text(text)
    return path


HEADER = "timestamp,symbol,open,high,low,close,volume\n"


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ("1704067200000,btc,1,1,1,1,1\n", ":2: symbol 'btc' is not like BTC_USDT"),
        ("1704067200,BTC_USDT,1,1,1,1,1\n", ":2: timestamp 1704067200 looks like seconds"),
        ("1704067200000,BTC_USDT,1,2,1,x,1\n", ":2: could not convert string to float"),
        (
            "1704067200000,BTC_USDT,1,1,1,1,1\n1704067260000,BTC_USDT,1,0.5,1,1,1\n",
            ":3: low 1.0 / high 0.5 do not bracket",
        ),
        ("1704067200000,BTC_USDT,1,1,1,1,-1\n", ":2: volume must be >= 0"),
        ("1704067200000,BTC_USDT,1,1,1,nan,1\n", ":2: close is not a finite number"),
        (
            "1704067200000,BTC_USDT,1,1,1,1,1\n1704067200000,BTC_USDT,1,1,1,1,1\n",
            ": two candles for BTC_USDT at 1704067200000",
        ),
        ("", ": no candles"),
    ],
)
def test_bad_replay_rows_are_refused_with_file_and_line(tmp_path, body, reason):
    path = _write(tmp_path, HEADER + body)
    with pytest.raises(ReplayFileError) as info:
        read_candles(path)
    assert str(info.value).startswith(f"{path}{reason}")


def test_replay_header_and_missing_file_errors(tmp_path):
    with pytest.raises(ReplayFileError, match="header lacks volume"):
        read_candles(_write(tmp_path, "timestamp,symbol,open,high,low,close\n"))
    with pytest.raises(ReplayFileError, match="cannot open"):
        read_candles(tmp_path / "nope.csv")


def test_replay_reads_quote_volume_when_present_and_merges_files(tmp_path):
    a = tmp_path / "a.csv"
    b = tmp_path / "b.csv"
    a.write_text(HEADER.strip() + ",quote_volume\n1704067260000,BTC_USDT,1,2,1,2,5,77\n")
    b.write_text(HEADER + "1704067200000,ETH_USDT,1,1,1,1,3\n")
    rows = read_files([a, b])
    assert rows == [
        ("ETH_USDT", Candle(1_704_067_200_000, 1, 1, 1, 1, 3, None)),
        ("BTC_USDT", Candle(1_704_067_260_000, 1, 2, 1, 2, 5, 77.0)),
    ]
    with pytest.raises(ReplayFileError, match="two files have a candle for ETH_USDT"):
        read_files([b, b])


def test_replay_events_match_the_pure_function():
    rows = read_files([sample_path()])
    windows: dict[str, CandleWindow] = {}
    expected = []
    for symbol, c in rows:
        w = windows.setdefault(symbol, CandleWindow(15))
        w.add(c)
        md = market_data_from_candles(symbol, w.candles, lookback_min=15, source="replay")
        if md:
            expected.append(md)
    assert ReplaySource(rows, batch=10_000).poll(0).events == expected

"""The feed's pure transformation: candles over the lookback window → MarketData."""

from __future__ import annotations

import pytest

from cdb.feed.candles import Candle, CandleWindow, market_data_from_candles, window_candles

T0 = 1_704_067_200_000  # 2024-01-01T00:00Z, ms
MIN = 60_000


def candle(i: int, o: float, c: float, v: float = 1.0, q: float | None = None) -> Candle:
    return Candle(T0 + i * MIN, o, max(o, c) * 1.001, min(o, c) * 0.999, c, v, q)


def test_pct_change_is_last_close_over_first_open_of_the_window():
    # 15 one-minute candles: the window is exactly these, opening at 100 and closing at 104.5
    candles = [candle(i, 100 + 0.3 * i, 100 + 0.3 * (i + 1)) for i in range(15)]
    md = market_data_from_candles("BTC_USDT", candles, lookback_min=15, source="test")
    assert md.pct_change == pytest.approx(4.5)
    assert md.price == pytest.approx(104.5)
    assert md.timestamp == (T0 + 15 * MIN) // 1000  # close time of the last candle
    assert md.symbol == "BTC_USDT" and md.interval == "1m" and md.source == "test"


def test_volume_is_quote_volume_base_times_close_when_not_reported():
    candles = [candle(i, 10.0, 20.0, v=3.0) for i in range(15)]
    md = market_data_from_candles("X_USDT", candles, lookback_min=15)
    assert md.volume == pytest.approx(15 * 3.0 * 20.0)


def test_reported_quote_volume_is_used_as_is():
    candles = [candle(i, 10.0, 10.0, v=3.0, q=1000.0) for i in range(15)]
    md = market_data_from_candles("X_USDT", candles, lookback_min=15)
    assert md.volume == pytest.approx(15_000.0)


def test_only_the_window_counts_older_candles_are_ignored():
    old = [candle(i, 50.0, 50.0, v=1_000_000) for i in range(5)]  # huge volume, long ago
    window = [candle(5 + i, 100.0, 100.0 if i < 14 else 103.0, v=1.0) for i in range(15)]
    md = market_data_from_candles("X_USDT", old + window, lookback_min=15)
    assert md.pct_change == pytest.approx(3.0)
    assert md.volume == pytest.approx(14 * 100.0 + 103.0)


def test_not_enough_history_gives_no_event():
    candles = [candle(i, 100.0, 110.0) for i in range(14)]
    assert market_data_from_candles("X_USDT", candles, lookback_min=15) is None
    assert market_data_from_candles("X_USDT", [], lookback_min=15) is None


def test_a_missing_candle_makes_the_window_thinner_not_longer():
    candles = [candle(i, 100.0, 100.0, v=1.0) for i in range(16) if i != 8]
    candles[-1] = candle(15, 100.0, 105.0, v=1.0)
    md = market_data_from_candles("X_USDT", candles, lookback_min=15)
    # window = minutes 1..15 minus the missing 8: 14 candles
    assert md.volume == pytest.approx(13 * 100.0 + 105.0)
    assert md.pct_change == pytest.approx(5.0)


def test_falling_prices_give_a_negative_change():
    candles = [candle(i, 100.0 - i, 99.0 - i) for i in range(15)]
    md = market_data_from_candles("X_USDT", candles, lookback_min=15)
    assert md.pct_change == pytest.approx((85.0 / 100.0 - 1) * 100)


def test_longer_intervals_and_explicit_timestamp():
    five = [Candle(T0 + i * 5 * MIN, 10.0, 11.0, 9.0, 10.0 + i, 2.0) for i in range(4)]
    md = market_data_from_candles("X_USDT", five, lookback_min=15, interval="5m", timestamp=123)
    assert md.pct_change == pytest.approx((13.0 / 10.0 - 1) * 100)  # last 3 candles
    assert md.volume == pytest.approx(2 * (11 + 12 + 13))
    assert md.timestamp == 123 and md.interval == "5m"


def test_window_candles_must_divide_the_lookback():
    assert window_candles("1m", 15) == 15
    assert window_candles("5m", 15) == 3
    with pytest.raises(ValueError, match="not a whole number of 1h candles"):
        window_candles("1h", 15)
    with pytest.raises(ValueError):
        window_candles("15m", 20)


def test_candle_window_keeps_order_and_size():
    w = CandleWindow(3)
    assert w.last_open_ms is None
    for i in range(6):
        assert w.add(candle(i, 1.0, 1.0))
    assert not w.add(candle(4, 1.0, 1.0))  # older: ignored
    assert not w.add(candle(5, 1.0, 2.0))  # repeated: ignored
    assert [c.open_ms for c in w.candles] == [T0 + i * MIN for i in (2, 3, 4, 5)]
    assert w.last_open_ms == T0 + 5 * MIN

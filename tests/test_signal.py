"""The signal engine's logic: the momentum rule's bounds, the cooldown, settings, ids."""

from __future__ import annotations

import logging

import pytest

from cdb.events import MarketData, MarketStatus, Signal
from cdb.settings import SettingsError, load_settings
from cdb.signal.cooldown import Cooldown
from cdb.signal.engine import SignalEngine
from cdb.signal.settings import SignalSettings
from cdb.signal.strategies.momentum import Momentum
from cdb.signal.strategy import Strategy, load_strategies


def md(
    pct: float,
    volume: float = 1_000_000,
    symbol: str = "BTC_USDT",
    ts: int = 1_700_000_000,
    price: float = 100.0,
) -> MarketData:
    return MarketData(
        symbol=symbol, price=price, volume=volume, pct_change=pct, timestamp=ts, source="test"
    )


RULE = Momentum(threshold_pct=3.0, min_volume=100_000)


def test_five_percent_with_high_volume_is_a_buy_with_confidence_half():
    signal = RULE.evaluate(md(5.0))
    assert isinstance(signal, Signal)
    assert signal.side == "BUY"
    assert signal.confidence == 0.5
    assert signal.reason == "Momentum: +5.0% (threshold 3.0%)"
    assert signal.symbol == "BTC_USDT"
    assert signal.price == 100.0
    assert signal.pct_change == 5.0
    assert signal.volume == 1_000_000
    assert signal.timestamp == 1_700_000_000
    assert signal.strategy == "momentum"


def test_reason_matches_the_design_example():
    assert RULE.evaluate(md(4.5)).reason == "Momentum: +4.5% (threshold 3.0%)"


def test_one_percent_is_no_signal():
    assert RULE.evaluate(md(1.0)) is None


def test_exactly_the_threshold_is_a_buy():
    signal = RULE.evaluate(md(3.0))
    assert signal is not None and signal.side == "BUY"
    assert signal.confidence == pytest.approx(0.3)


def test_just_below_the_threshold_is_no_signal():
    assert RULE.evaluate(md(2.999999)) is None


def test_volume_just_below_the_minimum_is_no_signal():
    assert RULE.evaluate(md(5.0, volume=99_999.99)) is None


def test_volume_exactly_the_minimum_is_a_buy():
    assert RULE.evaluate(md(5.0, volume=100_000)) is not None


def test_confidence_is_capped_at_one():
    assert RULE.evaluate(md(25.0)).confidence == 1.0
    assert RULE.evaluate(md(10.0)).confidence == 1.0


def test_falling_prices_give_no_signal_unless_sell_is_enabled():
    assert RULE.evaluate(md(-6.0)) is None
    sell_rule = Momentum(threshold_pct=3.0, min_volume=100_000, sell_enabled=True)
    signal = sell_rule.evaluate(md(-6.0))
    assert signal.side == "SELL"
    assert signal.confidence == pytest.approx(0.6)
    assert signal.reason == "Momentum: -6.0% (threshold -3.0%)"
    assert sell_rule.evaluate(md(-2.0)) is None
    assert sell_rule.evaluate(md(-6.0, volume=10)) is None
    assert sell_rule.evaluate(md(4.0)).side == "BUY"


def test_debug_log_says_why_there_is_no_signal(caplog):
    with caplog.at_level(logging.DEBUG, logger="cdb.signal.strategies.momentum"):
        RULE.evaluate(md(1.0))
        RULE.evaluate(md(5.0, volume=50_000, symbol="ETH_USDT"))
    text = caplog.text
    assert "no signal for BTC_USDT: pct_change +1.00% within ±3.00%" in text
    assert "no signal for ETH_USDT: volume 50000 < minimum 100000" in text


def test_signal_id_is_deterministic_and_depends_on_symbol_and_time():
    a, b = RULE.evaluate(md(5.0)), RULE.evaluate(md(5.0))
    assert a.signal_id == b.signal_id
    assert RULE.evaluate(md(5.0, ts=1_700_000_060)).signal_id != a.signal_id
    assert RULE.evaluate(md(5.0, symbol="ETH_USDT")).signal_id != a.signal_id


def test_rule_refuses_nonsense_bounds():
    with pytest.raises(ValueError):
        Momentum(threshold_pct=0)
    with pytest.raises(ValueError):
        Momentum(min_volume=-1)


# -- cooldown -----------------------------------------------------------------------------------


def test_cooldown_uses_event_time_per_key():
    cd = Cooldown(300)
    assert cd.allow("BTC", 1000)
    assert not cd.allow("BTC", 1299)
    assert cd.allow("ETH", 1001)  # another symbol is independent
    assert cd.allow("BTC", 1300)
    assert not cd.allow("BTC", 1100)  # out of order, within the window of the last one
    assert cd.allow("BTC", 1300)  # the same instant again: a redelivery, same signal id


def test_zero_cooldown_allows_everything():
    cd = Cooldown(0)
    assert all(cd.allow("BTC", t) for t in (1, 2, 2, 3))


def test_engine_applies_cooldown_and_ignores_market_status():
    engine = SignalEngine([RULE], cooldown_s=300)
    events = [
        md(5.0, ts=1000),
        md(6.0, ts=1060),  # same move, 60 s later: suppressed
        MarketStatus(status="unreachable", timestamp=1070),
        md(5.0, ts=1070, symbol="ETH_USDT"),
        md(7.0, ts=1300),  # cooldown over
    ]
    out = [s for e in events for s in engine.evaluate(e)]
    assert [(s.symbol, s.timestamp) for s in out] == [
        ("BTC_USDT", 1000),
        ("ETH_USDT", 1070),
        ("BTC_USDT", 1300),
    ]
    assert engine.suppressed == 1
    assert engine.ignored == 1
    assert engine.evaluated == 4
    assert engine.signals_generated == 0  # counted only once published
    engine.published(out)
    status = engine.status()
    assert status["signals_generated"] == 3
    assert status["last_signal"]["timestamp"] == 1300
    assert status["last_signal"]["confidence"] == 0.7


def test_engine_replay_is_deterministic():
    events = [
        md(3.0 + (i % 7), ts=1000 + 45 * i, symbol=("BTC_USDT", "ETH_USDT")[i % 2])
        for i in range(200)
    ]

    def run():
        engine = SignalEngine([RULE], cooldown_s=300)
        return [s for e in events for s in engine.evaluate(e)]

    first, second = run(), run()
    assert first == second
    assert 0 < len(first) < len(events)


class _Contrarian:
    """A second strategy, to show the engine needs no change for one."""

    name = "contrarian"

    def evaluate(self, md: MarketData) -> Signal | None:
        if md.pct_change > -10:
            return None
        return Signal(
            timestamp=md.timestamp,
            signal_id="c",
            symbol=md.symbol,
            side="BUY",
            confidence=0.1,
            price=md.price,
            pct_change=md.pct_change,
            reason="bounce",
            strategy=self.name,
        )


def test_engine_runs_several_strategies_with_separate_cooldowns():
    assert isinstance(_Contrarian(), Strategy)
    engine = SignalEngine([RULE, _Contrarian()], cooldown_s=300)
    assert [s.strategy for s in engine.evaluate(md(-12.0, ts=1000))] == ["contrarian"]
    assert [s.strategy for s in engine.evaluate(md(5.0, ts=1010))] == ["momentum"]


# -- settings -----------------------------------------------------------------------------------


def test_settings_defaults(clean_env):
    s = load_settings(SignalSettings)
    assert (s.SIGNAL_THRESHOLD_PCT, s.SIGNAL_MIN_VOLUME) == (3.0, 100_000)
    assert s.SIGNAL_SELL_ENABLED is False
    assert s.strategy_names() == ["momentum"]
    [strategy] = load_strategies(s)
    assert strategy == Momentum(3.0, 100_000, False)


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("SIGNAL_THRESHOLD_PCT", "0", "SIGNAL_THRESHOLD_PCT must be > 0, got 0"),
        ("SIGNAL_THRESHOLD_PCT", "-1.5", "SIGNAL_THRESHOLD_PCT must be > 0, got -1.5"),
        ("SIGNAL_MIN_VOLUME", "-1", "SIGNAL_MIN_VOLUME must be >= 0, got -1"),
        ("SIGNAL_COOLDOWN_S", "soon", "SIGNAL_COOLDOWN_S must be an integer, got soon"),
        ("SIGNAL_THRESHOLD_PCT", "nan", "SIGNAL_THRESHOLD_PCT must be a finite number, got nan"),
    ],
)
def test_bad_settings_are_one_line(clean_env, monkeypatch, name, value, message):
    monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError) as info:
        load_settings(SignalSettings)
    assert info.value.message == message
    assert info.value.code == 2


def test_unknown_strategy_is_a_settings_error(clean_env, monkeypatch):
    monkeypatch.setenv("SIGNAL_STRATEGIES", "momentum, nosuch")
    settings = load_settings(SignalSettings)
    with pytest.raises(SettingsError) as info:
        load_strategies(settings)
    assert "unknown strategy 'nosuch'" in info.value.message

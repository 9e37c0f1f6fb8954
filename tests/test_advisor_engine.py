"""The advisor's per-observation logic, without I/O: scores, cooldown, agreement, and the
state put back when a batch's publication failed (the redelivery gives the same signals)."""

from __future__ import annotations

import pytest
from advisor_data import model_file

from cdb.advisor.engine import Advisor
from cdb.advisor.linear import LinearModel
from cdb.events import MarketData, MarketStatus
from cdb.signal.strategies.momentum import Momentum


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> LinearModel:
    return LinearModel.load(model_file(tmp_path_factory.mktemp("engine"), candles=600))


def _stream(n: int, symbol: str = "BTC_USDT") -> list[MarketData]:
    """A steady rise with a burst every 20 observations (so both sides have things to say)."""
    out, price = [], 100.0
    for i in range(n):
        price *= 1.004 if i % 20 < 5 else 0.9995
        out.append(
            MarketData(
                timestamp=1_700_000_000 + 60 * i,
                symbol=symbol,
                price=price,
                volume=400_000.0 if i % 20 < 5 else 50_000.0,
                pct_change=4.0 if i % 20 in (3, 4) else 0.2,
                source="test",
            )
        )
    return out


def test_scores_after_warm_up_and_every_decision_is_counted(model):
    advisor = Advisor(model, Momentum(), threshold=0.01, cooldown_s=0)
    events = _stream(100)
    signals = [s for e in events if (s := advisor.evaluate(e))]
    assert advisor.observations["warming_up"] == 60 and advisor.observations["scored"] == 40
    assert len(signals) == 40  # threshold 0.01: everything scored is a signal
    decisions = advisor.agreement.decisions
    assert sum(decisions.values()) == 40
    assert decisions.get(("BTC_USDT", "both"), 0) == sum(s.rule_signal for s in signals)
    s = signals[0]
    assert s.model_version == model.version and s.threshold == 0.01 and s.side == "BUY"
    assert len(s.contributions) == 3
    assert advisor.evaluate(MarketStatus(status="ok")) is None


def test_cooldown_holds_back_signals_but_not_decisions(model):
    advisor = Advisor(model, Momentum(), threshold=0.01, cooldown_s=600)
    signals = [s for e in _stream(100) if (s := advisor.evaluate(e))]
    assert len(signals) == 4  # one per 10 observations of 60 s
    assert advisor.suppressed == 36
    assert sum(advisor.agreement.decisions.values()) == 40


def test_restored_state_gives_the_same_signals_again(model):
    advisor = Advisor(model, Momentum(), cooldown_s=300)
    events = _stream(120)
    for e in events[:80]:
        advisor.evaluate(e)
    before = advisor.snapshot()
    first = [s for e in events[80:] if (s := advisor.evaluate(e))]
    counts = dict(advisor.agreement.decisions)
    advisor.restore(before)  # the publication failed: the batch comes again
    second = [s for e in events[80:] if (s := advisor.evaluate(e))]
    assert first and second == first
    assert advisor.agreement.decisions == counts  # not counted twice
    # and a plain redelivery of entries already handled is ignored
    assert [advisor.evaluate(e) for e in events[100:]] == [None] * 20
    assert advisor.agreement.decisions == counts

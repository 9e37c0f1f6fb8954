"""The risk rules as pure functions: one test per rule, and properties over random worlds.

The properties are the issue's promises: no approved (or clipped) order ever takes a
position, the total exposure or the number of positions past its limit, or spends
more cash than there is; an engaged or due breaker always wins; and the first rule
that applies, in the design's order, is the one that decides.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cdb.events import Signal
from cdb.risk import rules
from cdb.risk.rules import Limits, Snapshot

NOW = 1_800_000_000
LIMITS = Limits()


def signal(
    confidence: float = 0.5, side: str = "BUY", ts: int = NOW, sid: str = "812", price=100.0
):
    return Signal(
        signal_id=sid,
        symbol="BTC_USDT",
        side=side,
        confidence=confidence,
        price=price,
        pct_change=confidence * 10,
        reason="Momentum",
        timestamp=ts,
    )


def snap(**kw) -> Snapshot:
    base = dict(
        now=NOW,
        equity=10_000.0,
        day_start_equity=10_000.0,
        cash=10_000.0,
        exposure_value=0.0,
        open_positions=0,
        price=100.0,
        price_ts=NOW,
    )
    base.update(kw)
    return Snapshot(**base)


# -- one test per rule ---------------------------------------------------------------------------


def test_approve_sizes_by_confidence_with_stop_loss():
    d = rules.evaluate(signal(0.25), snap(), LIMITS)
    assert d.kind == "approve" and d.severity == "INFO"
    # 10,000 equity x 20 % x 0.25 = 500 USDT at 100 → 5 units, stop 2 % below
    assert d.quantity == pytest.approx(5.0)
    assert d.stop_loss == pytest.approx(98.0)
    assert d.price == 100.0
    assert "approved" in d.reason and "812" in d.reason


def test_half_confidence_is_exactly_the_position_limit_and_not_clipped():
    d = rules.evaluate(signal(0.5), snap(), LIMITS)
    assert d.kind == "approve"
    assert d.quantity * 100 == pytest.approx(1000.0)


def test_size_above_position_limit_is_clipped_and_says_so():
    d = rules.evaluate(signal(0.8), snap(), LIMITS)
    assert d.kind == "clip" and d.rule == "position"
    assert d.quantity * 100 == pytest.approx(1000.0)  # 10 % of 10,000, not 1,600
    assert "clipped to 1,000.00 USDT" in d.reason and "1,600.00 USDT" in d.reason


def test_existing_position_in_the_symbol_counts_against_its_limit():
    d = rules.evaluate(
        signal(0.5), snap(symbol_value=700.0, exposure_value=700.0, open_positions=1), LIMITS
    )
    assert d.kind == "clip" and d.quantity * 100 == pytest.approx(300.0)
    # the reason says why 5 % crosses a 10 % limit: what is held already, and the room
    assert d.reason.startswith(
        "size 1,000.00 USDT (10 % of equity) > room 300.00 USDT "
        "(limit 10 % of equity, 7 % held in BTC_USDT) – clipped to 300.00 USDT"
    ), d.reason


def test_exposure_room_clips_below_the_position_limit():
    d = rules.evaluate(signal(0.5), snap(exposure_value=4_700.0, open_positions=4), LIMITS)
    assert d.kind == "clip" and d.rule == "exposure"
    assert d.quantity * 100 == pytest.approx(300.0)
    assert "> room 300.00 USDT (room left under the exposure limit 50 %, exposure 47 %)" in (
        d.reason
    ), d.reason


def test_cash_clips_the_order():
    d = rules.evaluate(signal(0.5), snap(cash=400.0), LIMITS)
    assert d.kind == "clip" and d.rule == "cash" and d.quantity * 100 == pytest.approx(400.0)


def test_exposure_at_limit_rejects_with_warning_and_readable_reason():
    d = rules.evaluate(signal(), snap(exposure_value=5_200.0, open_positions=3), LIMITS)
    assert (d.kind, d.rule, d.severity) == ("reject", "exposure", "WARNING")
    assert d.reason == "exposure 52 % ≥ limit 50 % – signal 812 rejected"


def test_open_positions_at_limit_rejects():
    d = rules.evaluate(signal(), snap(open_positions=5, exposure_value=1_000.0), LIMITS)
    assert (d.kind, d.rule, d.severity) == ("reject", "open_positions", "WARNING")
    assert "open positions 5 ≥ limit 5" in d.reason


def test_drawdown_past_limit_halts_with_critical():
    d = rules.evaluate(signal(), snap(equity=9_400.0), LIMITS)
    assert (d.kind, d.rule, d.severity) == ("halt", "drawdown", "CRITICAL")
    assert d.reason.startswith("daily loss limit exceeded – trading halted")
    assert rules.evaluate(signal(), snap(equity=9_501.0), LIMITS).kind == "approve"


def test_drawdown_is_measured_from_day_start_including_unrealised():
    assert rules.drawdown_pct(9_500.0, 10_000.0) == pytest.approx(5.0)
    assert rules.drawdown_pct(11_000.0, 10_000.0) == 0.0
    assert rules.drawdown_pct(9_000.0, None) == 0.0


@pytest.mark.parametrize(
    "flags, rule",
    [
        ({"kill_switch": True}, "kill_switch"),
        ({"drawdown_breaker": True}, "drawdown"),
        ({"manual_breaker": True}, "manual_breaker"),
    ],
)
def test_engaged_breaker_blocks_entries(flags, rule):
    d = rules.evaluate(signal(), snap(**flags), LIMITS)
    assert (d.kind, d.rule) == ("halt", rule)


def test_market_status_problem_pauses():
    d = rules.evaluate(signal(), snap(market_problem="mexc unreachable"), LIMITS)
    assert (d.kind, d.rule, d.severity) == ("pause", "market_status", "WARNING")


def test_stale_market_data_pauses():
    d = rules.evaluate(signal(), snap(price_ts=NOW - 121), LIMITS)
    assert (d.kind, d.rule) == ("pause", "stale_market_data")
    assert "121 s old" in d.reason
    assert rules.evaluate(signal(), snap(price_ts=NOW - 120), LIMITS).kind == "approve"


def test_abnormal_move_pauses():
    d = rules.evaluate(signal(), snap(move_pct=10.5), LIMITS)
    assert (d.kind, d.rule) == ("pause", "abnormal_move")
    assert rules.evaluate(signal(), snap(move_pct=10.0), LIMITS).kind == "approve"


def test_stale_signal_is_rejected():
    d = rules.evaluate(signal(ts=NOW - 61), snap(), LIMITS)
    assert (d.kind, d.rule, d.severity) == ("reject", "stale_signal", "INFO")
    assert rules.evaluate(signal(ts=NOW - 60), snap(), LIMITS).kind == "approve"


def test_unknown_price_sizes_at_the_signal_price():
    d = rules.evaluate(signal(0.5, price=50.0), snap(price=None, price_ts=None), LIMITS)
    assert d.kind == "approve" and d.quantity == pytest.approx(20.0) and d.price == 50.0


def test_tiny_orders_are_rejected():
    d = rules.evaluate(signal(0.001), snap(), LIMITS)
    assert (d.kind, d.rule) == ("reject", "min_order_value")
    d = rules.evaluate(signal(0.5), snap(cash=3.0), LIMITS)
    assert (d.kind, d.rule) == ("reject", "min_order_value")


def test_sell_signal_closes_the_whole_position_even_under_the_breaker():
    d = rules.evaluate(
        signal(side="SELL"), snap(symbol_quantity=3.0, drawdown_breaker=True), LIMITS
    )
    assert d.kind == "exit" and d.quantity == 3.0


def test_sell_signal_without_position_or_under_kill_switch_sends_nothing():
    assert rules.evaluate(signal(side="SELL"), snap(), LIMITS).rule == "no_position"
    d = rules.evaluate(signal(side="SELL"), snap(symbol_quantity=3.0, kill_switch=True), LIMITS)
    assert d.kind == "halt"
    d = rules.evaluate(signal(side="SELL"), snap(symbol_quantity=3.0, exit_pending=True), LIMITS)
    assert d.rule == "exit_pending" and not d.sends_order


def test_a_symbol_in_another_quote_currency_is_rejected():
    other = signal().model_copy(update={"symbol": "ETH_BTC"})
    d = rules.evaluate(other, snap(), LIMITS)
    assert (d.kind, d.rule) == ("reject", "quote_asset") and "not quoted in USDT" in d.reason


def test_stop_hit():
    assert rules.stop_hit(98.0, 98.0) and rules.stop_hit(97.0, 98.0)
    assert not rules.stop_hit(98.01, 98.0) and not rules.stop_hit(1.0, None)


# -- properties ----------------------------------------------------------------------------------

money = st.floats(min_value=0.0, max_value=1e7, allow_nan=False, allow_infinity=False)
pct = st.floats(min_value=0.5, max_value=100.0, allow_nan=False)

limits_st = st.builds(
    Limits,
    max_position_pct=pct,
    max_exposure_pct=pct,
    max_open_positions=st.integers(1, 20),
    max_daily_drawdown_pct=st.floats(0.5, 50.0),
    stop_loss_pct=st.floats(0.1, 50.0),
    target_position_pct=pct,
    min_order_value=st.floats(0.0, 100.0),
    signal_max_age_s=st.integers(1, 600),
    market_data_max_age_s=st.integers(1, 600),
    abnormal_move_pct=st.floats(1.0, 50.0),
)


#: True one time in eight: most generated worlds are healthy, so approvals are frequent
rare = st.integers(0, 7).map(lambda i: i == 7)


@st.composite
def worlds(draw):
    limits = draw(limits_st)
    equity = draw(st.floats(min_value=1.0, max_value=1e7))
    exposure = draw(st.floats(min_value=0.0, max_value=equity * 1.2))
    world = Snapshot(
        now=NOW,
        equity=equity,
        day_start_equity=draw(st.one_of(st.none(), st.floats(0.8, 1.1).map(lambda f: f * equity))),
        cash=draw(st.floats(min_value=0.0, max_value=equity)),
        exposure_value=exposure,
        open_positions=draw(st.integers(0, 8)),
        symbol_value=draw(st.floats(min_value=0.0, max_value=exposure)),
        symbol_quantity=draw(st.floats(min_value=0.0, max_value=1e6)),
        exit_pending=draw(rare),
        manual_breaker=draw(rare),
        kill_switch=draw(rare),
        drawdown_breaker=draw(rare),
        market_problem=draw(st.sampled_from([None] * 7 + ["mexc unreachable"])),
        price=draw(st.one_of(st.none(), st.floats(min_value=1e-6, max_value=1e6))),
        price_ts=draw(st.one_of(st.none(), st.integers(NOW - 700, NOW))),
        move_pct=draw(st.one_of(st.just(0.0), st.floats(min_value=0.0, max_value=60.0))),
    )
    sig = Signal(
        signal_id="s1",
        symbol="BTC_USDT",
        side=draw(st.sampled_from(["BUY"] * 7 + ["SELL"])),
        confidence=draw(st.floats(min_value=0.0, max_value=1.0)),
        price=draw(st.floats(min_value=1e-6, max_value=1e6)),
        pct_change=3.0,
        reason="r",
        timestamp=draw(st.one_of(st.just(NOW), st.integers(NOW - 700, NOW + 10))),
    )
    return limits, world, sig


@st.composite
def healthy_worlds(draw):
    """Worlds where no breaker, market or age check applies: only sizing and exposure decide."""
    limits, world, sig = draw(worlds())
    world = Snapshot(
        now=NOW,
        equity=world.equity,
        day_start_equity=world.equity,
        cash=world.cash,
        exposure_value=world.exposure_value,
        open_positions=world.open_positions,
        symbol_value=world.symbol_value,
        price=world.price,
        price_ts=NOW,
    )
    return limits, world, sig.model_copy(update={"side": "BUY", "timestamp": NOW})


def _within(value: float, limit: float) -> bool:
    return value <= limit * (1 + 1e-9) + 1e-9


@settings(max_examples=800, deadline=None)
@given(st.one_of(worlds(), healthy_worlds()))
def test_no_approved_entry_ever_exceeds_a_limit(world):
    limits, snap_, sig = world
    d = rules.evaluate(sig, snap_, limits)
    if d.kind not in ("approve", "clip"):
        return
    value = d.quantity * d.price
    eq = snap_.equity
    assert value > 0
    assert _within(snap_.symbol_value + value, eq * limits.max_position_pct / 100)
    assert _within(snap_.exposure_value + value, eq * limits.max_exposure_pct / 100)
    assert snap_.open_positions + 1 <= limits.max_open_positions
    assert _within(value, snap_.cash)
    assert value >= limits.min_order_value * (1 - 1e-8)
    assert d.stop_loss == pytest.approx(d.price * (1 - limits.stop_loss_pct / 100))
    # and nothing ruled out by a higher-priority check slipped through
    assert not (snap_.kill_switch or snap_.manual_breaker or snap_.drawdown_breaker)
    assert rules.drawdown_pct(eq, snap_.day_start_equity) < limits.max_daily_drawdown_pct
    assert snap_.market_problem is None and snap_.move_pct <= limits.abnormal_move_pct


@settings(max_examples=400, deadline=None)
@given(worlds())
def test_breaker_always_wins_for_entries(world):
    limits, snap_, sig = world
    engaged = snap_.kill_switch or snap_.manual_breaker or snap_.drawdown_breaker
    due = rules.drawdown_pct(snap_.equity, snap_.day_start_equity) >= limits.max_daily_drawdown_pct
    d = rules.evaluate_entry(sig, snap_, limits)
    if engaged or due:
        assert d.kind == "halt" and not d.sends_order
    else:
        assert d.kind != "halt"


@settings(max_examples=400, deadline=None)
@given(worlds())
def test_the_first_applicable_rule_decides(world):
    """The decision comes from the highest-priority check that applies, never a lower one."""
    limits, snap_, sig = world
    checks = [rules.check_breaker, rules.check_market, rules.check_signal_age, rules.check_exposure]
    applicable = [c(sig, snap_, limits) for c in checks]
    d = rules.evaluate_entry(sig, snap_, limits)
    first = next((a for a in applicable if a is not None), None)
    if first is not None:
        assert d == first
    else:
        assert d.kind in ("approve", "clip", "reject")
        assert d.kind != "reject" or d.rule == "min_order_value"


@settings(max_examples=300, deadline=None)
@given(worlds())
def test_exits_never_buy_and_never_sell_more_than_held(world):
    limits, snap_, sig = world
    sig = sig.model_copy(update={"side": "SELL"})
    d = rules.evaluate(sig, snap_, limits)
    if d.sends_order:
        assert d.kind == "exit" and 0 < d.quantity <= snap_.symbol_quantity
        assert not snap_.kill_switch and not snap_.exit_pending


@settings(max_examples=300, deadline=None)
@given(
    limits_st,
    st.floats(min_value=1.0, max_value=1e7),
    st.floats(min_value=0.0, max_value=1.0),
)
def test_clipping_is_reachable_and_exact(limits, equity, confidence):
    """With room everywhere but the position limit, a size above it becomes exactly the limit."""
    sig = signal(confidence)
    world = snap(equity=equity, cash=equity, day_start_equity=equity)
    wanted = rules.target_value(sig, equity, limits)
    d = rules.evaluate(sig, world, limits)
    cap = equity * min(limits.max_position_pct, limits.max_exposure_pct) / 100
    value = min(wanted, cap)
    near = 1e-6  # cases within this of a boundary may fall either way: not asserted
    if value < limits.min_order_value * (1 - near) or wanted <= 0:
        assert d.kind == "reject"
    elif value > limits.min_order_value * (1 + near):
        if wanted > cap * (1 + near):
            assert d.kind == "clip"
            assert d.quantity * d.price == pytest.approx(cap, rel=1e-6)
        elif wanted < cap * (1 - near):
            assert d.kind == "approve"
            assert d.quantity * d.price == pytest.approx(wanted, rel=1e-6)

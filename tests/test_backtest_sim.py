"""``SimRisk`` is the live risk manager with only its I/O edges replaced.

The backtest's promise (same decisions as live) holds only while every live method that
reaches Redis or PostgreSQL is replaced in the simulation and everything else is the live
code. These checks read the live classes, so a method added to the risk manager later
that publishes or writes (as ``mirror_held`` did) fails here by name, not deep inside a
backtest with ``AttributeError``.
"""

from __future__ import annotations

import inspect
import re

from cdb.backtest.config import Config
from cdb.backtest.sim import IO_EDGES, Recorder, SimRisk, _NoStore
from cdb.events import MarketData, Signal
from cdb.risk.market import MarketView
from cdb.risk.service import RiskService

#: live methods the backtest never calls (the runtime's start and batch hooks)
RUNTIME_ONLY = {"__init__", "restore", "handle_batch"}


def _risk_methods():
    """(name, source) of every method the risk package defines on ``RiskService``."""
    seen = set()
    for cls in RiskService.__mro__:
        if not cls.__module__.startswith("cdb.risk."):
            continue
        for name, fn in vars(cls).items():
            if name not in seen and inspect.isfunction(fn):
                seen.add(name)
                yield name, inspect.getsource(fn)


def test_every_live_method_reaching_the_bus_is_replaced():
    touching = {name for name, src in _risk_methods() if "self.bus" in src} - RUNTIME_ONLY
    assert touching, "the check reads nothing"
    assert touching <= set(IO_EDGES), f"not replaced in SimRisk: {touching - set(IO_EDGES)}"
    for name in IO_EDGES:
        assert name in vars(SimRisk), f"SimRisk does not replace {name}"


def test_the_simulated_store_answers_every_call_the_handlers_make():
    used = set()
    for name, src in _risk_methods():
        if name not in RUNTIME_ONLY and name not in IO_EDGES:
            used |= set(re.findall(r"self\.store\.(\w+)", src))
    assert {"find", "save_day_start"} <= used
    missing = {attr for attr in used if not hasattr(_NoStore, attr)}
    assert not missing, f"_NoStore lacks {missing}"


def test_a_trade_opened_and_stopped_out_touches_neither_redis_nor_postgres():
    """No bus at all: an open (held-symbols mirror) and a stop-loss close run through."""
    config = Config.load({"STOP_LOSS_PCT": "2"})
    rec = Recorder(keep_log=True)
    sim = SimRisk(
        config.risk, MarketView(300), fee_pct=0.1, slippage_pct=0.0, recorder=rec
    )  # fmt: skip
    assert sim.bus is None and isinstance(sim, RiskService)
    t0 = 1_735_689_600
    sim.ts = t0
    sim.roll_day(t0)
    sim.on_price(
        MarketData(timestamp=t0, symbol="BTC_USDT", price=100.0, volume=1e6, pct_change=0.0)
    )
    sim.on_signal(
        Signal(
            timestamp=t0, signal_id="s1", symbol="BTC_USDT", side="BUY", confidence=0.5,
            reason="test", price=100.0, pct_change=5.0,
        )
    )  # fmt: skip
    sim.settle()
    assert "BTC_USDT" in sim.book.positions
    sim.ts = t0 + 60
    sim.on_price(
        MarketData(timestamp=t0 + 60, symbol="BTC_USDT", price=90.0, volume=1e6, pct_change=-10.0)
    )
    sim.settle()
    assert "BTC_USDT" not in sim.book.positions
    assert [(d, r) for _, d, r, *_ in rec.log] == [("approve", "approved"), ("exit", "stop_loss")]
    assert [f.side for f in rec.fills] == ["BUY", "SELL"]


def test_replaced_methods_keep_the_live_signatures():
    """The live handlers call these with the live arguments (e.g. ``first_only``)."""
    for name in IO_EDGES:
        live = inspect.signature(getattr(RiskService, name))
        sim = inspect.signature(getattr(SimRisk, name))
        assert list(live.parameters) == list(sim.parameters), name

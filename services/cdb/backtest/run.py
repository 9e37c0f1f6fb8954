"""The backtest loop: chunks of candles → ``SignalEngine`` → ``SimRisk`` → simulated fills.

Per grid row (one candle time), in the order the live pipeline sees them: every
symbol's ``MarketData`` (sorted by symbol, as the replay feed publishes them) goes to
the risk manager's ``on_price`` and the signal engine; then the row's signals go to
``on_signal``; every order is filled before the next event (``SimRisk.settle``).

Two loops make the same decisions:

* ``exact``: every candle is a validated ``MarketData`` through ``SignalEngine.evaluate``
  and the live ``MarketView`` — the reference;
* ``fast`` (default): a candle that can neither make a signal (the momentum bounds,
  checked on whole chunks with numpy, are not met) nor touch a held position cannot
  change any state the decisions read, so only the others are handed to the same
  handlers; the abnormal-move figure comes from the chunk (same formula as
  ``MoveWindow``). Strategies other than momentum make every candle a candidate.
  ``tests/test_backtest_equivalence.py`` checks that both loops decide the same.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cdb.backtest.config import Config
from cdb.backtest.fast import SAMPLE_S, FastLoop
from cdb.backtest.grid import Chunk, ChunkReader
from cdb.backtest.sim import FastMarket, Recorder, SimRisk
from cdb.events import MarketData
from cdb.risk.market import MarketView
from cdb.signal.engine import SignalEngine
from cdb.signal.strategies.momentum import Momentum
from cdb.signal.strategy import load_strategies


@dataclass
class RunResult:
    """Everything the report needs from one run (plain values, picklable for the sweep)."""

    settings: dict[str, Any]
    files: list[str]
    symbols: list[str]
    candles: int = 0
    first_ts: int | None = None
    last_ts: int | None = None
    signals: int = 0
    suppressed: int = 0
    seconds: float = 0.0
    loop_seconds: float = 0.0  # CPU seconds in the decision loop (the rest: reading, numpy)
    start_equity: float = 0.0
    end_equity: float = 0.0
    end_cash: float = 0.0
    open_positions: dict[str, dict[str, float]] = field(default_factory=dict)
    last_prices: dict[str, float] = field(default_factory=dict)
    peak_equity: float = 0.0
    max_drawdown_pct: float = 0.0
    max_drawdown_ts: int | None = None
    curve: list[tuple[int, float, float]] = field(default_factory=list)  # ts, equity, exposure %
    decisions: dict[str, int] = field(default_factory=dict)
    fills: list[dict[str, Any]] = field(default_factory=list)
    rejected_orders: list[dict[str, Any]] = field(default_factory=list)
    trips: list[dict[str, Any]] = field(default_factory=list)
    pauses: list[dict[str, Any]] = field(default_factory=list)
    log: list[tuple] = field(default_factory=list)


class Backtest(FastLoop):
    """One run over ``paths`` with ``config``; ``run()`` returns a ``RunResult``."""

    def __init__(
        self,
        paths: Iterable[Path],
        config: Config,
        *,
        exact: bool = False,
        keep_log: bool = False,
        chunk_rows: int = 4_320,
    ) -> None:
        self.paths = [Path(p) for p in paths]
        self.config = config
        self.exact = exact
        self.chunk_rows = chunk_rows
        sig, risk = config.signal, config.risk
        self.engine = SignalEngine(load_strategies(sig), sig.SIGNAL_COOLDOWN_S)
        window = risk.RISK_ABNORMAL_MOVE_WINDOW_S
        self.market = MarketView(window) if exact else FastMarket(window)
        self.rec = Recorder(keep_log=keep_log)
        self.risk = SimRisk(
            risk,
            self.market,
            fee_pct=config.execution.PAPER_FEE_PCT,
            slippage_pct=config.execution.PAPER_SLIPPAGE_PCT,
            recorder=self.rec,
            record_pauses=exact,
        )
        self.momentum = [s for s in self.engine.strategies if isinstance(s, Momentum)]
        self.prefilter = len(self.momentum) == len(self.engine.strategies)
        self.interval = config.feed.FEED_INTERVAL
        self.result = RunResult(config.summary(), [str(p) for p in self.paths], [])
        self.result.start_equity = risk.PAPER_START_BALANCE
        self.peak = risk.PAPER_START_BALANCE
        self.last_sample = -(10**12)
        self.n_fills = 0
        self.paused = np.zeros(0, bool)  # fast loop: pause state per column

    # -- bookkeeping -----------------------------------------------------------------------

    def _sample(self, ts: int, force: bool = False) -> None:
        risk = self.risk
        equity = risk.book.equity(self.market.prices)
        if equity > self.peak:
            self.peak = equity
        elif self.peak > 0:
            dd = (self.peak - equity) / self.peak * 100.0
            if dd > self.result.max_drawdown_pct:
                self.result.max_drawdown_pct, self.result.max_drawdown_ts = dd, ts
        bucket = ts // SAMPLE_S
        if force or bucket != self.last_sample or len(self.rec.fills) != self.n_fills:
            self.n_fills = len(self.rec.fills)
            self.last_sample = bucket
            exposure = risk.book.exposure_value(self.market.prices)
            self.result.curve.append((ts, equity, exposure / equity * 100.0 if equity > 0 else 0.0))

    def _row_start(self, ts: int) -> None:
        risk = self.risk
        risk.ts = ts
        if ts // 86_400 != risk.day_number:
            risk.roll_day(ts)
            risk.ensure_day_start(ts)
            self._sample(ts, force=True)

    def _signals(self, found: list, ts: int) -> None:
        self.engine.published(found)
        risk = self.risk
        for signal in found:
            risk.on_signal(signal)
            risk.settle()

    def _event(self, chunk: Chunk, r: int, s: int, ts: int) -> MarketData:
        return MarketData(
            timestamp=ts,
            symbol=chunk.names[s],
            price=float(chunk.close[r, s]),
            volume=float(chunk.volume[r, s]),
            pct_change=float(chunk.pct[r, s]),
            interval=self.interval,
            source="replay",
        )

    # -- the loops -------------------------------------------------------------------------

    def _exact_chunk(self, chunk: Chunk) -> None:
        risk, evaluate = self.risk, self.engine.evaluate
        valid = chunk.valid[:, chunk.order]
        for r in range(chunk.rows):
            cols = chunk.order[valid[r]]
            if not len(cols):
                continue
            ts = int(chunk.ts[r])
            self._row_start(ts)
            found = []
            for s in cols.tolist():
                md = self._event(chunk, r, s, ts)
                risk.on_price(md)
                risk.settle()
                found.extend(evaluate(md))
            if found:
                self._signals(found, ts)
            self._sample(ts)

    # -- driver ----------------------------------------------------------------------------

    def run(self, progress: Callable[[int], None] | None = None) -> RunResult:
        """Every chunk of every file; ``progress(n)`` is called with each chunk's candle count."""
        started = time.perf_counter()
        feed, risk = self.config.feed, self.config.risk
        reader = ChunkReader(
            self.paths,
            interval=feed.FEED_INTERVAL,
            lookback_min=feed.SIGNAL_LOOKBACK_MIN,
            move_window_s=risk.RISK_ABNORMAL_MOVE_WINDOW_S,
            chunk_rows=self.chunk_rows,
        )
        res = self.result
        step = self._exact_chunk if self.exact else self._fast_chunk
        for chunk in reader:
            n = chunk.candles
            if n:
                rows = np.flatnonzero(chunk.valid.any(axis=1))
                res.first_ts = res.first_ts or int(chunk.ts[rows[0]])
                res.last_ts = int(chunk.ts[rows[-1]])
                for s in np.flatnonzero(chunk.valid.any(axis=0)).tolist():
                    srows = np.flatnonzero(chunk.valid[:, s])
                    res.last_prices[chunk.names[s]] = float(chunk.close[srows[-1], s])
            t0 = time.process_time()  # CPU: a busy machine does not slow the figure down
            step(chunk)
            res.loop_seconds += time.process_time() - t0
            res.candles += n
            if progress is not None:
                progress(n)
        return self._finish(reader.names, time.perf_counter() - started)

    def _finish(self, names: list[str], seconds: float) -> RunResult:
        res, risk, rec = self.result, self.risk, self.rec
        # value what is still open at the last known prices (not just the fast loop's view)
        for symbol, price in res.last_prices.items():
            if symbol in risk.book.positions:
                self.market.prices[symbol] = price
        if res.last_ts is not None:
            self._sample(res.last_ts, force=True)
        res.symbols = sorted(names)
        res.seconds = seconds
        res.signals = self.engine.signals_generated
        res.suppressed = self.engine.suppressed
        res.end_equity = risk.equity()
        res.end_cash = risk.book.cash
        res.peak_equity = self.peak
        res.open_positions = {
            s: {"quantity": p.quantity, "avg_price": p.avg_price, "price": res.last_prices.get(s)}
            for s, p in risk.book.positions.items()
        }
        res.decisions = {f"{d}/{r}": n for (d, r), n in sorted(rec.decisions.items())}
        res.fills = [
            {
                "ts": f.ts,
                "client_id": f.client_id,
                "symbol": f.symbol,
                "side": f.side,
                "quantity": f.quantity,
                "price": f.price,
                "fee": f.fee,
                "rule": f.rule,
                "reason": f.reason,
            }
            for f in rec.fills
        ]
        res.rejected_orders = rec.rejected_orders
        res.trips = rec.trips
        res.pauses = rec.pauses
        res.log = rec.log
        return res

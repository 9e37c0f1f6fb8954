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
from typing import Any, NamedTuple

import numpy as np

from cdb.backtest.config import Config
from cdb.backtest.grid import Chunk, ChunkReader
from cdb.backtest.sim import FastMarket, Recorder, SimRisk, pause_event
from cdb.events import MarketData
from cdb.risk.market import MarketView
from cdb.signal.engine import SignalEngine
from cdb.signal.strategies.momentum import Momentum
from cdb.signal.strategy import load_strategies

#: Equity is sampled for the curve at most this often (and at every fill).
SAMPLE_S = 3600


class _Tick(NamedTuple):
    """What ``on_price`` reads of a ``MarketData`` (for held symbols' non-signal candles)."""

    symbol: str
    price: float
    timestamp: int


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


class Backtest:
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

    def _candidates(self, chunk: Chunk) -> np.ndarray:
        if not self.prefilter:
            return chunk.valid
        cand = np.zeros_like(chunk.valid)
        pct, vol = chunk.pct, chunk.volume
        for m in self.momentum:
            hit = pct >= m.threshold_pct
            if m.sell_enabled:
                hit |= pct <= -m.threshold_pct
            cand |= hit & (vol >= m.min_volume)
        return cand & chunk.valid

    def _fast_pauses(self, chunk: Chunk) -> None:
        """Abnormal-market pauses and resumptions from the chunk's moves (report only)."""
        n = len(chunk.names)
        if len(self.paused) < n:
            self.paused = np.concatenate([self.paused, np.zeros(n - len(self.paused), bool)])
        limit = self.risk.limits.abnormal_move_pct
        over = chunk.move > limit
        for s in np.flatnonzero(chunk.valid.any(axis=0)).tolist():
            rows = np.flatnonzero(chunk.valid[:, s])
            state = over[rows, s]
            prev = np.concatenate([[self.paused[s]], state[:-1]])
            for i in np.flatnonzero(state != prev).tolist():
                r = int(rows[i])
                kind = "pause" if state[i] else "resume"
                ctx = {"move_pct": float(chunk.move[r, s])}
                pause_event(self.rec, kind, chunk.names[s], int(chunk.ts[r]), ctx)
            self.paused[s] = bool(state[-1])
        self.rec.pauses.sort(key=lambda p: (p["start"], p["symbol"]))

    def _fast_chunk(self, chunk: Chunk) -> None:
        risk, evaluate, market = self.risk, self.engine.evaluate, self.market
        positions = risk.book.positions
        self._fast_pauses(chunk)
        cand = self._candidates(chunk)
        valid = chunk.valid
        # rows the exact loop acts on even without a position: candidates and, so the day
        # rolls (and the breaker is released) at the same moment, each new day's first event
        has_events = valid.any(axis=1)
        event_rows = np.flatnonzero(has_events)
        days = chunk.ts[event_rows] // 86_400
        prev_days = np.concatenate([[self.risk.day_number], days[:-1]])
        new_day_rows = event_rows[days != prev_days]
        stop_rows = np.union1d(np.flatnonzero(cand.any(axis=1)), new_day_rows)
        col_of = chunk.col_of
        order, names = chunk.order, chunk.names
        close, move, ts_arr = chunk.close, chunk.move, chunk.ts
        held = np.zeros(len(names), bool)
        r, rows = 0, chunk.rows
        while r < rows:
            if not positions:
                i = int(np.searchsorted(stop_rows, r))
                nxt = int(stop_rows[i]) if i < len(stop_rows) else rows
                skipped = event_rows[(event_rows >= r) & (event_rows < nxt)]
                if len(skipped):
                    self._flat_samples(chunk.ts[skipped])
                if i == len(stop_rows):
                    break
                r = nxt
            elif not has_events[r]:
                r += 1
                continue
            ts = int(ts_arr[r])
            self._row_start(ts)
            crow = cand[r]
            if positions:
                held[:] = False
                for symbol in positions:
                    held[col_of[symbol]] = True
                want = (crow | held) & valid[r]
            else:
                want = crow
            if positions and not crow.any() and self._quiet_row(chunk, r, ts):
                self._sample(ts)
                r += 1
                continue
            found = []
            for s in order[want[order]].tolist():
                market.pending_move = float(move[r, s])
                if crow[s]:
                    md = self._event(chunk, r, s, ts)
                    risk.on_price(md)
                    risk.settle()
                    found.extend(evaluate(md))
                else:
                    risk.on_price(_Tick(names[s], float(close[r, s]), ts))
                    risk.settle()
            if found:
                self._signals(found, ts)
            self._sample(ts)
            r += 1

    def _flat_samples(self, times: np.ndarray) -> None:
        """The curve samples the exact loop takes on rows skipped while nothing is held."""
        buckets = times // SAMPLE_S
        prev = np.concatenate([[self.last_sample], buckets[:-1]])
        new = times[buckets != prev]
        if len(new):
            equity = self.risk.book.equity(self.market.prices)
            self.result.curve.extend((int(t), equity, 0.0) for t in new.tolist())
            self.last_sample = int(buckets[-1])

    def _quiet_row(self, chunk: Chunk, r: int, ts: int) -> bool:
        """Apply a row of held symbols' prices directly when no handler could act on it.

        True (prices taken) when no held symbol reaches its stop and equity stays clear of
        the daily-loss trip in every intermediate state of the row (bounded below by each
        position at the lower of its old and new price, with a 1e-9 margin for rounding);
        otherwise nothing is changed and the caller runs the handlers event by event.
        """
        risk = self.risk
        if risk.book.exits or risk.exit_retry_at or risk.breaker.engaged(risk.day):
            return False
        prices, valid, close = self.market.prices, chunk.valid, chunk.close
        col_of = chunk.col_of
        lower = risk.book.cash
        updates = []
        for symbol, pos in risk.book.positions.items():
            old = prices.get(symbol, pos.avg_price)
            s = col_of[symbol]
            new = old
            if valid[r, s]:
                new = float(close[r, s])
                if pos.stop_loss is not None and new <= pos.stop_loss:
                    return False
                updates.append((symbol, new, s))
            lower += pos.quantity * (new if new < old else old)
        start = risk.day_start
        if start is not None and start > 0:
            trip = start * (1.0 - risk.limits.max_daily_drawdown_pct / 100.0)
            if lower <= trip + start * 1e-9:
                return False
        market = self.market
        for symbol, price, s in updates:
            market.pending_move = float(chunk.move[r, s])
            market.update(symbol, price, ts)
        return True

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

"""The fast loop: only the candles that can matter reach the live handlers.

A candle that can neither make a signal (the momentum bounds, checked on whole chunks
with numpy) nor touch a held position cannot change any state the decisions read, so
only the others are handed to ``SimRisk``; rows of held symbols whose stop and the
daily-loss trip are out of reach only update prices. The abnormal-move figure and the
pause episodes come from the chunk (the same formula as ``MoveWindow``). Decisions,
fills, trips, pauses and curve samples equal the exact loop's
(``tests/test_backtest_equivalence.py``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

import numpy as np

from cdb.backtest.grid import Chunk
from cdb.backtest.sim import pause_event

if TYPE_CHECKING:
    from cdb.backtest.run import Backtest

#: Equity is sampled for the curve at most this often (and at every fill).
SAMPLE_S = 3600


class Tick(NamedTuple):
    """What ``on_price`` reads of a ``MarketData`` (for held symbols' non-signal candles)."""

    symbol: str
    price: float
    timestamp: int


class FastLoop:
    """The fast loop's methods, mixed into ``Backtest`` (which holds the state)."""

    def _candidates(self: Backtest, chunk: Chunk) -> np.ndarray:
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

    def _fast_pauses(self: Backtest, chunk: Chunk) -> None:
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

    def _fast_chunk(self: Backtest, chunk: Chunk) -> None:
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
                    risk.on_price(Tick(names[s], float(close[r, s]), ts))
                    risk.settle()
            if found:
                self._signals(found, ts)
            self._sample(ts)
            r += 1

    def _flat_samples(self: Backtest, times: np.ndarray) -> None:
        """The curve samples the exact loop takes on rows skipped while nothing is held."""
        buckets = times // SAMPLE_S
        prev = np.concatenate([[self.last_sample], buckets[:-1]])
        new = times[buckets != prev]
        if len(new):
            equity = self.risk.book.equity(self.market.prices)
            self.result.curve.extend((int(t), equity, 0.0) for t in new.tolist())
            self.last_sample = int(buckets[-1])

    def _quiet_row(self: Backtest, chunk: Chunk, r: int, ts: int) -> bool:
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

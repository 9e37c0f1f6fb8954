"""Candle streams → time chunks of the feed's ``MarketData`` values, computed with numpy.

Each chunk is a dense grid (rows = candle times on the ``FEED_INTERVAL`` grid, columns =
symbols) carrying, per candle, exactly what ``cdb.feed.candles.market_data_from_candles``
would publish: ``price`` (close), ``volume`` (quote volume summed over the lookback,
added in the feed's order, so the floats are identical), ``pct_change`` (close over the
open of the first candle in the window), ``valid`` (an event exists: the symbol's data
reaches back to the window's start), plus ``move``, the risk manager's abnormal-move
figure (``cdb.risk.market.MoveWindow``: range of event prices over the buckets in its
window). A tail of earlier rows is carried between chunks, so a year of 20 symbols is
processed in bounded memory (``sources.read_batches`` hands out each file's candles in
time order).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cdb.backtest.sources import Batch, CandleFileError, read_batches
from cdb.feed.candles import INTERVAL_SECONDS, window_candles


@dataclass(slots=True)
class Chunk:
    """``rows`` grid rows × ``len(names)`` symbols; ``order`` lists columns by symbol name."""

    names: list[str]
    order: np.ndarray
    ts: np.ndarray  # int64 event time (candle close), Unix seconds, per row
    close: np.ndarray
    volume: np.ndarray
    pct: np.ndarray
    valid: np.ndarray  # bool
    move: np.ndarray
    col_of: dict[str, int]  # symbol → column

    @property
    def rows(self) -> int:
        return len(self.ts)

    @property
    def candles(self) -> int:
        return int(self.valid.sum())


class _Source:
    """One file's batches with a cursor; rows are handed out by time."""

    def __init__(self, path: Path, index: dict[str, int], names: list[str]) -> None:
        self.path = path
        self.batches = read_batches(path)
        self.index, self.names = index, names
        first = next(self.batches, None)
        second = next(self.batches, None) if first is not None else None
        if first is not None and second is None:
            first = _sorted(first)  # a file read in one batch may be in any order
        self._queue = [b for b in (first, second) if b is not None]
        self.buf: Batch | None = None
        self.codes = np.zeros(0, np.int32)
        self.pos = 0
        self.last_ms: int | None = None
        self._pull()

    def _pull(self) -> None:
        nxt = self._queue.pop(0) if self._queue else next(self.batches, None)
        if nxt is None:
            self.buf = None
            return
        ms = nxt.open_ms
        if (len(ms) > 1 and not bool(np.all(ms[1:] >= ms[:-1]))) or (
            self.last_ms is not None and len(ms) and int(ms[0]) < self.last_ms
        ):
            raise CandleFileError(
                f"{self.path}: not sorted by time; a file larger than one read batch must be "
                "sorted by timestamp (files of cdb download-data and freqtrade are)"
            )
        self.buf, self.pos = nxt, 0
        for name in nxt.names:
            if name not in self.index:
                self.index[name] = len(self.names)
                self.names.append(name)
        table = np.asarray([self.index[n] for n in nxt.names], dtype=np.int32)
        self.codes = table[nxt.symbol]
        if len(ms):
            self.last_ms = int(ms[-1])

    def first_ms(self) -> int | None:
        b = self.buf
        return int(b.open_ms[self.pos]) if b is not None and self.pos < len(b.open_ms) else None

    def take(self, until_ms: int) -> list[tuple[np.ndarray, ...]]:
        """Rows with open time < ``until_ms``: (global symbol, open_ms, open, close, quote)."""
        out = []
        while self.buf is not None:
            b = self.buf
            end = int(np.searchsorted(b.open_ms, until_ms, side="left"))
            if end > self.pos:
                s = slice(self.pos, end)
                out.append((self.codes[s], b.open_ms[s], b.open[s], b.close[s], b.quote[s]))
                self.pos = end
            if self.pos < len(b.open_ms):
                break
            self._pull()
        return out


def _sorted(b: Batch) -> Batch:
    if len(b.open_ms) < 2 or bool(np.all(b.open_ms[1:] >= b.open_ms[:-1])):
        return b
    i = np.argsort(b.open_ms, kind="stable")
    return Batch(b.names, b.symbol[i], b.open_ms[i], b.open[i], b.close[i], b.quote[i])


class ChunkReader:
    """Chunks of ``chunk_rows`` grid rows over all files, with the feed's values per candle.

    ``interval`` / ``lookback_min`` are the feed's ``FEED_INTERVAL`` / ``SIGNAL_LOOKBACK_MIN``;
    ``move_window_s`` is the risk manager's ``RISK_ABNORMAL_MOVE_WINDOW_S``. Raises
    ``CandleFileError`` for a bad file, a duplicate candle or a time off the interval grid.
    """

    def __init__(
        self,
        paths: list[Path],
        *,
        interval: str = "1m",
        lookback_min: int = 15,
        move_window_s: int = 300,
        chunk_rows: int = 4_320,
    ) -> None:
        if not paths:
            raise CandleFileError("no candle files given")
        self.step_s = INTERVAL_SECONDS[interval]
        self.step_ms = self.step_s * 1000
        self.k = window_candles(interval, lookback_min)
        self.lookback_ms = lookback_min * 60_000
        self.bucket_s = max(1, move_window_s // 30)
        self.span = move_window_s // self.bucket_s
        self.max_lag = ((self.span + 1) * self.bucket_s) // self.step_s + 1
        self.tail = max(self.k, self.max_lag)
        self.chunk_rows = chunk_rows
        self.names: list[str] = []
        self.index: dict[str, int] = {}
        self.sources = [_Source(Path(p), self.index, self.names) for p in paths]
        firsts = [f for f in (s.first_ms() for s in self.sources) if f is not None]
        if not firsts:
            raise CandleFileError("the files hold no candles")
        self.origin = min(firsts)
        self.first_seen: dict[int, int] = {}

    def __iter__(self) -> Iterator[Chunk]:
        t = self.tail
        prev: dict[str, np.ndarray] | None = None
        start = self.origin
        while True:
            end = start + self.chunk_rows * self.step_ms
            parts = [p for src in self.sources for p in src.take(end)]
            if not parts and all(s.buf is None for s in self.sources):
                return
            n_sym = len(self.names)
            rows = self.chunk_rows
            grid = {
                "open": np.full((t + rows, n_sym), np.nan),
                "close": np.full((t + rows, n_sym), np.nan),
                "quote": np.zeros((t + rows, n_sym)),
                "present": np.zeros((t + rows, n_sym), bool),
                "valid": np.zeros((t + rows, n_sym), bool),
            }
            if prev is not None:
                w = prev["close"].shape[1]
                for key, arr in prev.items():
                    grid[key][:t, :w] = arr
            if parts:
                sym = np.concatenate([p[0] for p in parts])
                ms = np.concatenate([p[1] for p in parts])
                offset = ms - start
                if (offset % self.step_ms).any():
                    bad = int(ms[np.flatnonzero(offset % self.step_ms)[0]])
                    raise CandleFileError(
                        f"candle open time {bad} ms is off the {self.step_s} s grid of "
                        "FEED_INTERVAL (is the interval right?)"
                    )
                row = (offset // self.step_ms).astype(np.int64) + t
                flat = row * n_sym + sym
                counts = np.bincount(flat, minlength=(t + rows) * n_sym)
                if counts.max() > 1:
                    f = int(np.flatnonzero(counts > 1)[0])
                    when = start + (f // n_sym - t) * self.step_ms
                    raise CandleFileError(f"two candles for {self.names[f % n_sym]} at {when} ms")
                grid["open"][row, sym] = np.concatenate([p[2] for p in parts])
                grid["close"][row, sym] = np.concatenate([p[3] for p in parts])
                grid["quote"][row, sym] = np.concatenate([p[4] for p in parts])
                grid["present"][row, sym] = True
                for s in np.unique(sym).tolist():
                    if s not in self.first_seen:
                        self.first_seen[s] = int(ms[sym == s].min())
            if all(src.buf is None for src in self.sources):
                # the last chunk: stop at the last candle rather than at the chunk's end
                last = np.flatnonzero(grid["present"][t:].any(axis=1))
                rows = int(last[-1]) + 1 if len(last) else 0
                grid = {key: arr[: t + rows] for key, arr in grid.items()}
            chunk = self._compute(grid, start, rows, n_sym)
            prev = {key: arr[-t:].copy() for key, arr in grid.items()}
            yield chunk
            start = end

    def _compute(self, g: dict[str, np.ndarray], start: int, rows: int, n_sym: int) -> Chunk:
        t, k = self.tail, self.k
        cur = slice(t, t + rows)
        present, opn, close, quote = g["present"], g["open"], g["close"], g["quote"]
        # the feed: volume = 0.0, then += quote of each candle from the newest back
        volume = np.zeros((rows, n_sym))
        first_open = opn[cur].copy()
        for j in range(k):
            sl = slice(t - j, t - j + rows)
            volume = volume + quote[sl]
            if j:
                first_open = np.where(present[sl], opn[sl], first_open)
        with np.errstate(invalid="ignore", divide="ignore"):
            pct = (close[cur] / first_open - 1.0) * 100.0
        open_ms = start + np.arange(rows, dtype=np.int64) * self.step_ms
        first_seen = np.full(n_sym, np.iinfo(np.int64).max)
        for s, ms in self.first_seen.items():
            first_seen[s] = ms
        reach = (open_ms + self.step_ms - self.lookback_ms)[:, None]
        valid = present[cur] & (first_seen[None, :] <= reach)
        g["valid"][cur] = valid
        ts = (open_ms + self.step_ms) // 1000
        # the risk manager's move window: event prices in buckets >= current - span
        hi = np.full((rows, n_sym), -np.inf)
        lo = np.full((rows, n_sym), np.inf)
        allv = g["valid"]
        for d in range(self.max_lag + 1):
            if d > t:
                break
            keep = (ts - d * self.step_s) // self.bucket_s >= ts // self.bucket_s - self.span
            if not keep.any():
                continue
            sl = slice(t - d, t - d + rows)
            m = allv[sl] & keep[:, None]
            c = close[sl]
            hi = np.where(m & (c > hi), c, hi)
            lo = np.where(m & (c < lo), c, lo)
        with np.errstate(invalid="ignore", divide="ignore"):
            move = np.where(valid, (hi - lo) / lo * 100.0, 0.0)
        names = list(self.names)
        order = np.asarray(sorted(range(n_sym), key=names.__getitem__), dtype=np.int64)
        col_of = {name: i for i, name in enumerate(names)}
        return Chunk(names, order, ts, close[cur], volume, pct, valid, move, col_of)

"""The local candle store: where a symbol's file lives, what it already holds, appending to it.

Layout: ``<datadir>/<exchange>/<SYMBOL>-<timeframe>.csv`` in the replay feed's format
(``timestamp,symbol,open,high,low,close,volume``; open time in Unix ms, base volume),
sorted by time without duplicates. A download only ever appends candles newer than the
file's last one, so an interrupted download resumes where it stopped.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

HEADER = "timestamp,symbol,open,high,low,close,volume\n"


def candle_path(datadir: Path, exchange: str, symbol: str, timeframe: str) -> Path:
    return datadir / exchange / f"{symbol}-{timeframe}.csv"


def last_timestamp(path: Path) -> int | None:
    """Open time (ms) of the file's last candle, read from its tail; ``None`` if none."""
    if not path.exists():
        return None
    with path.open("rb") as fh:
        fh.seek(0, os.SEEK_END)
        size = fh.tell()
        fh.seek(max(0, size - 4096))
        lines = [line for line in fh.read().decode().splitlines() if line.strip()]
    if not lines or lines[-1].startswith("timestamp"):
        return None
    return int(lines[-1].split(",", 1)[0])


def append(path: Path, symbol: str, rows: Iterable[tuple]) -> int:
    """Append ccxt OHLCV rows ``(ms, o, h, l, c, v)``; flushes to disk; returns how many."""
    path.parent.mkdir(parents=True, exist_ok=True)
    new = not path.exists() or path.stat().st_size == 0
    n = 0
    with path.open("a", encoding="utf-8") as fh:
        if new:
            fh.write(HEADER)
        for ms, o, h, lo, c, v in rows:
            fh.write(f"{int(ms)},{symbol},{o!r},{h!r},{lo!r},{c!r},{v!r}\n")
            n += 1
        fh.flush()
        os.fsync(fh.fileno())
    return n

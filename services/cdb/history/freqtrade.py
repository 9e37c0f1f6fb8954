"""Import freqtrade's data files (``<SYMBOL>-<timeframe>.json`` / ``.feather``) into the store.

Only candles newer than the store's last one for that symbol and timeframe are added,
so importing twice (or after a download) adds nothing twice.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cdb.backtest.sources import FREQTRADE_NAME, CandleFileError, read_freqtrade
from cdb.history import store


def find_files(paths: list[Path]) -> list[Path]:
    """The freqtrade spot files named by ``paths`` (files, or directories searched)."""
    out: list[Path] = []
    for p in paths:
        if p.is_dir():
            out += sorted(f for f in p.rglob("*") if FREQTRADE_NAME.match(f.name))
        elif p.exists():
            out.append(p)
        else:
            raise CandleFileError(f"{p}: no such file or directory")
    return out


def import_file(src: Path, datadir: Path, exchange: str) -> tuple[Path, int]:
    """Copy ``src``'s candles into the store; returns (the store's file, candles added)."""
    symbol, timeframe, ms, cols = read_freqtrade(src)
    dest = store.candle_path(datadir, exchange, symbol, timeframe)
    last = store.last_timestamp(dest)
    order = np.argsort(ms, kind="stable")
    if last is not None:
        order = order[ms[order] > last]
    _, first = np.unique(ms[order], return_index=True)  # a repeated candle is kept once
    order = order[first]
    keys = ("open", "high", "low", "close", "volume")
    rows = zip(ms[order].tolist(), *(cols[k][order].tolist() for k in keys), strict=True)
    return dest, store.append(dest, symbol, rows)

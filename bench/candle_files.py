"""Real-looking OHLCV files for the backtest benchmarks: random walks with rare strong moves.

``write_csv(path, days, symbols)`` writes our replay format (open time in Unix ms, sorted
by time, then symbol); ``write_freqtrade(dir, ...)`` the same candles as freqtrade's
``<SYMBOL>-1m.feather`` files. Deterministic (numpy, seeded per symbol).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

START_MS = 1_735_689_600_000  # 2025-01-01T00:00:00Z


def candles(days: int, n_symbols: int, seed: int = 42) -> dict[str, dict[str, np.ndarray]]:
    """Per symbol: columns date (ms), open, high, low, close, volume (base asset)."""
    minutes = days * 1440
    out = {}
    for i in range(n_symbols):
        rng = np.random.default_rng([seed, i])
        ret = rng.normal(0.0, 0.0008, minutes)
        jumps = rng.random(minutes) < 1 / 3000
        n = int(jumps.sum())
        ret[jumps] += rng.choice([-1.0, 1.0], n) * rng.normal(0.04, 0.015, n)
        close = (10.0 + 10 * i) * np.exp(np.cumsum(ret))
        opn = np.concatenate([[close[0]], close[:-1]])
        wick = np.abs(rng.normal(0, 0.0004, (2, minutes)))
        high = np.maximum(opn, close) * (1 + wick[0])
        low = np.minimum(opn, close) * (1 - wick[1])
        quote = rng.lognormal(np.log(15_000), 0.8, minutes)
        out[f"C{i:03d}_USDT"] = {
            "date": START_MS + np.arange(minutes, dtype=np.int64) * 60_000,
            "open": opn.round(6),
            "high": high.round(6),
            "low": low.round(6),
            "close": close.round(6),
            "volume": (quote / close).round(6),
        }
    return out


def write_csv(path: Path, days: int, n_symbols: int, seed: int = 42) -> int:
    """Our replay CSV, time-major; returns the number of candles."""
    import pyarrow as pa
    from pyarrow import csv

    data = candles(days, n_symbols, seed)
    names = sorted(data)
    cols = {k: np.stack([data[s][k] for s in names], axis=1).ravel() for k in data[names[0]]}
    table = pa.table(
        {
            "timestamp": cols["date"],
            "symbol": np.tile(np.asarray(names), days * 1440),
            **{k: cols[k] for k in ("open", "high", "low", "close", "volume")},
        }
    )
    csv.write_csv(table, path, csv.WriteOptions(quoting_style="none"))
    return table.num_rows


def write_freqtrade(directory: Path, days: int, n_symbols: int, seed: int = 42) -> list[Path]:
    """freqtrade's feather layout (``date`` as UTC timestamps), one file per symbol."""
    import pyarrow as pa
    from pyarrow import feather

    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for symbol, c in candles(days, n_symbols, seed).items():
        table = pa.table(
            {
                "date": pa.array(c["date"], pa.timestamp("ms", tz="UTC")),
                **{k: c[k] for k in ("open", "high", "low", "close", "volume")},
            }
        )
        path = directory / f"{symbol}-1m.feather"
        feather.write_feather(table, path)
        paths.append(path)
    return paths

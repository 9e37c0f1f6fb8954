"""Historical candles for training and reports: the backtest's CSV format, read strictly.

Format, one candle per row, with a header (columns in any order)::

    symbol,timestamp,open,high,low,close,volume

``timestamp`` is the candle's open time in Unix **seconds** (a value ≥ 10^11 is taken
as milliseconds, ccxt's convention, and converted), ``volume`` is in the base asset.
A bad row stops the command with the file, the line and the reason.

The training data hash (``data_hash``) is over the parsed rows in a canonical order,
so the same candles give the same hash however they are split into files.
"""

from __future__ import annotations

import csv
import hashlib
import math
import re
from collections.abc import Iterable
from pathlib import Path
from typing import TextIO

from cdb.events import SYMBOL_PATTERN
from cdb.feed.candles import Candle
from cdb.feed.synthetic import SyntheticMarket

REQUIRED = ("symbol", "timestamp", "open", "high", "low", "close", "volume")
_SYMBOL = re.compile(SYMBOL_PATTERN)
_MS = 10**11


class DataError(ValueError):
    """Candle data that cannot be used; the message names file and line."""


def _row(row: dict[str, str]) -> tuple[str, Candle]:
    symbol = (row["symbol"] or "").strip()
    if not _SYMBOL.match(symbol):
        raise ValueError(f"symbol {symbol!r} is not like BTC_USDT")
    raw = (row["timestamp"] or "").strip()
    if not raw.isdigit():
        raise ValueError(f"timestamp {raw!r} is not Unix seconds")
    ts = int(raw)
    open_ms = ts if ts >= _MS else ts * 1000
    values = []
    for key in ("open", "high", "low", "close", "volume"):
        value = float(row[key])
        if not math.isfinite(value):
            raise ValueError(f"{key} is not a finite number")
        values.append(value)
    o, h, low, c, v = values
    if min(o, h, low, c) <= 0 or v < 0:
        raise ValueError("prices must be > 0 and volume >= 0")
    if not (low <= min(o, c) and max(o, c) <= h):
        raise ValueError(f"low {low} / high {h} do not bracket open {o} and close {c}")
    return symbol, Candle(open_ms, o, h, low, c, v)


def read_csv(paths: Iterable[Path]) -> dict[str, list[Candle]]:
    """Candles per symbol, oldest first; raises ``DataError`` (bad row, duplicate, no data)."""
    out: dict[str, dict[int, Candle]] = {}
    for path in paths:
        try:
            handle = Path(path).open(newline="", encoding="utf-8")  # noqa: SIM115
        except OSError as exc:
            raise DataError(f"{path}: cannot open: {exc.strerror or exc}") from None
        with handle:
            reader = csv.DictReader(handle)
            header = [h.strip() for h in reader.fieldnames or []]
            missing = [c for c in REQUIRED if c not in header]
            if missing:
                raise DataError(f"{path}: header lacks {', '.join(missing)} (need {REQUIRED})")
            reader.fieldnames = header
            for row in reader:
                try:
                    symbol, candle = _row(row)
                except (ValueError, TypeError, KeyError) as exc:
                    raise DataError(f"{path}:{reader.line_num}: {exc}") from None
                bucket = out.setdefault(symbol, {})
                if candle.open_ms in bucket:
                    raise DataError(f"{path}:{reader.line_num}: second candle for {symbol}")
                bucket[candle.open_ms] = candle
    if not out:
        raise DataError("no candles in " + ", ".join(map(str, paths)))
    return {s: [b[k] for k in sorted(b)] for s, b in sorted(out.items())}


def data_hash(candles: dict[str, list[Candle]]) -> str:
    """sha256 over every candle in (symbol, time) order, as ``sha256:<hex>``."""
    digest = hashlib.sha256()
    for symbol in sorted(candles):
        for c in candles[symbol]:
            digest.update(
                f"{symbol},{c.open_ms},{c.open!r},{c.high!r},{c.low!r},{c.close!r},{c.volume!r}\n".encode()
            )
    return "sha256:" + digest.hexdigest()


def write_sample(
    out: TextIO, symbols: list[str], candles: int, seed: int = 7, start_s: int = 1_704_067_200
) -> int:
    """Write ``candles`` 1m candles per symbol of the feed's synthetic market; returns rows.

    The synthetic market switches between quiet, normal and burst regimes (see
    ``cdb.feed.synthetic``), so it has structure a model can learn: a test dataset, not a
    market. ``start_s`` defaults to 2024-01-01 00:00 UTC.
    """
    market = SyntheticMarket(symbols, seed, start_ms=start_s * 1000)
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(REQUIRED)
    n = 0
    for _ in range(candles):
        for symbol, c in market.step():
            writer.writerow(
                [
                    symbol,
                    c.open_ms // 1000,
                    *(f"{p:.10g}" for p in (c.open, c.high, c.low, c.close, c.volume)),
                ]
            )
            n += 1
    return n

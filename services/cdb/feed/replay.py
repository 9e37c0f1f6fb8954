"""OHLCV CSV files for the replay source: reading (strictly) and writing (the shipped sample).

Format, one candle per row, with a header::

    timestamp,symbol,open,high,low,close,volume[,quote_volume]

``timestamp`` is the candle's open time in Unix milliseconds (ccxt's convention),
``symbol`` is ours (``BTC_USDT``), ``volume`` is in the base asset and the optional
``quote_volume`` in the quote asset (when absent, ``volume × close`` stands in).
A file is read whole and checked before the first event goes out: a bad row stops
the feed with the file, the line and the reason, instead of replaying half a file.
"""

from __future__ import annotations

import csv
import math
import re
from collections.abc import Iterable
from importlib import resources
from pathlib import Path
from typing import TextIO

from cdb.events import SYMBOL_PATTERN
from cdb.feed.candles import Candle

REQUIRED = ("timestamp", "symbol", "open", "high", "low", "close", "volume")
COLUMNS = (*REQUIRED, "quote_volume")
SAMPLE_NAME = "sample_1m.csv"
_SYMBOL = re.compile(SYMBOL_PATTERN)
_MIN_MS = 10**11  # 1973 in milliseconds: anything smaller is a timestamp in seconds


class ReplayFileError(ValueError):
    """A replay file that cannot be used as it is; the message names file and line."""


def sample_path() -> Path:
    """The sample shipped with the package (``cdb/data/sample_1m.csv``)."""
    return Path(str(resources.files("cdb") / "data" / SAMPLE_NAME))


def _number(value: str, column: str) -> float:
    number = float(value)
    if not math.isfinite(number):
        raise ValueError(f"{column} is not a finite number: {value!r}")
    return number


def _parse_row(row: dict[str, str], has_quote: bool) -> tuple[str, Candle]:
    symbol = (row["symbol"] or "").strip()
    if not _SYMBOL.match(symbol):
        raise ValueError(f"symbol {symbol!r} is not like BTC_USDT")
    raw_ts = (row["timestamp"] or "").strip()
    if not raw_ts.isdigit():
        raise ValueError(f"timestamp {raw_ts!r} is not Unix milliseconds")
    open_ms = int(raw_ts)
    if open_ms < _MIN_MS:
        raise ValueError(f"timestamp {open_ms} looks like seconds; Unix milliseconds expected")
    o, h, low, c = (_number(row[k], k) for k in ("open", "high", "low", "close"))
    volume = _number(row["volume"], "volume")
    if min(o, h, low, c) <= 0:
        raise ValueError("prices must be > 0")
    if not (low <= min(o, c) and max(o, c) <= h):
        raise ValueError(f"low {low} / high {h} do not bracket open {o} and close {c}")
    if volume < 0:
        raise ValueError("volume must be >= 0")
    quote = None
    if has_quote and (row.get("quote_volume") or "").strip():
        quote = _number(row["quote_volume"], "quote_volume")
        if quote < 0:
            raise ValueError("quote_volume must be >= 0")
    return symbol, Candle(open_ms, o, h, low, c, volume, quote)


def read_candles(path: Path) -> list[tuple[str, Candle]]:
    """Every candle of one file, checked; sorted by time (then symbol), duplicates refused."""
    try:
        handle = path.open(newline="", encoding="utf-8")
    except OSError as exc:
        raise ReplayFileError(f"{path}: cannot open: {exc.strerror or exc}") from None
    with handle:
        reader = csv.DictReader(handle)
        header = [h.strip() for h in reader.fieldnames or []]
        missing = [c for c in REQUIRED if c not in header]
        if missing:
            raise ReplayFileError(f"{path}: header lacks {', '.join(missing)} (need {REQUIRED})")
        reader.fieldnames = header
        has_quote = "quote_volume" in header
        rows: list[tuple[str, Candle]] = []
        for row in reader:
            try:
                rows.append(_parse_row(row, has_quote))
            except (ValueError, TypeError) as exc:
                raise ReplayFileError(f"{path}:{reader.line_num}: {exc}") from None
    if not rows:
        raise ReplayFileError(f"{path}: no candles")
    rows.sort(key=lambda r: (r[1].open_ms, r[0]))
    for (s1, c1), (s2, c2) in zip(rows, rows[1:], strict=False):
        if s1 == s2 and c1.open_ms == c2.open_ms:
            raise ReplayFileError(f"{path}: two candles for {s1} at {c1.open_ms}")
    return rows


def read_files(paths: Iterable[Path]) -> list[tuple[str, Candle]]:
    """All candles of several files in time order (a symbol may not repeat a candle)."""
    merged: list[tuple[str, Candle]] = []
    for path in paths:
        merged.extend(read_candles(path))
    merged.sort(key=lambda r: (r[1].open_ms, r[0]))
    seen: set[tuple[str, int]] = set()
    for symbol, candle in merged:
        key = (symbol, candle.open_ms)
        if key in seen:
            raise ReplayFileError(f"two files have a candle for {symbol} at {candle.open_ms}")
        seen.add(key)
    return merged


def write_candles(rows: Iterable[tuple[str, Candle]], out: TextIO) -> int:
    """Write candles in the replay format; returns the number of rows."""
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(COLUMNS)
    n = 0
    for symbol, c in rows:
        quote = "" if c.quote_volume is None else f"{c.quote_volume:.2f}"
        writer.writerow(
            [
                c.open_ms,
                symbol,
                *(f"{p:.8g}" for p in (c.open, c.high, c.low, c.close)),
                f"{c.volume:.8g}",
                quote,
            ]
        )
        n += 1
    return n

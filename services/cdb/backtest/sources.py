"""Candle files the backtest reads, as streams of column batches sorted by time.

Accepted (the format is recognised from the file name and header):

* our replay CSV (``cdb download-data``, the feed's ``FEED_REPLAY_FILES``):
  ``timestamp,symbol,open,high,low,close,volume[,quote_volume]``, open time in Unix ms;
* plain CSV ``symbol,timestamp,open,high,low,close,volume`` with the open time in Unix
  **seconds** (any column order; a timestamp below 10^11 is taken as seconds);
* freqtrade's data files ``<BASE>_<QUOTE>-<timeframe>.json`` (a list of
  ``[ms, open, high, low, close, volume]``) and ``.feather`` (columns ``date, open,
  high, low, close, volume``); the symbol comes from the file name.

A CSV sorted by time is streamed (bounded memory); an unsorted one is read whole and
sorted. Rows are checked like the replay feed checks them (prices > 0, low/high bracketing
open and close, volume >= 0); a bad row raises ``CandleFileError`` naming file and row.
"""

from __future__ import annotations

import csv as csv_module
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cdb.events import SYMBOL_PATTERN

_SYMBOL = re.compile(SYMBOL_PATTERN)
#: freqtrade names: ``BTC_USDT-1m.json``, ``BTC_USDT_USDT-1m-futures.feather`` (futures: refused)
FREQTRADE_NAME = re.compile(
    r"^(?P<symbol>[A-Z0-9]+_[A-Z0-9]+)-(?P<timeframe>\d+[mhdwM])\.(json|feather)$"
)
_MIN_MS = 10**11
BLOCK_BYTES = 4 << 20  # pyarrow CSV block: ~4 MiB of text (~55k candles) per batch


class CandleFileError(ValueError):
    """A candle file that cannot be used as it is; the message names the file and row."""


@dataclass(slots=True)
class Batch:
    """Consecutive candles of one file: symbol names and parallel numpy columns.

    ``symbol`` indexes ``names``; ``open_ms`` is the candle's open time (Unix ms); ``quote``
    is the quote-currency volume (reported, else ``volume × close``, as the feed does).
    """

    names: list[str]
    symbol: np.ndarray  # int32 index into names
    open_ms: np.ndarray  # int64
    open: np.ndarray
    close: np.ndarray
    quote: np.ndarray


def _check(path: Path, cols: dict[str, np.ndarray], first_row: int) -> None:
    o, h, lo, c, v = (cols[k] for k in ("open", "high", "low", "close", "volume"))
    bad = ~np.isfinite(o) | ~np.isfinite(h) | ~np.isfinite(lo) | ~np.isfinite(c)
    bad |= (np.minimum(np.minimum(o, h), np.minimum(lo, c)) <= 0) | ~(v >= 0)
    bad |= (lo > np.minimum(o, c)) | (np.maximum(o, c) > h)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise CandleFileError(
            f"{path}: row {first_row + i + 1}: bad candle (open {o[i]}, high {h[i]}, low {lo[i]}, "
            f"close {c[i]}, volume {v[i]}): prices must be > 0, low/high must bracket open and "
            "close, volume >= 0"
        )


def _batch(path: Path, names: list[str], sym: np.ndarray, ts: np.ndarray, cols: dict, row: int):
    _check(path, cols, row)
    ms = ts.astype(np.int64)
    if len(ms) and ms.min() < _MIN_MS:
        ms = ms * 1000  # seconds (the plain CSV of issue 13)
    quote = cols["volume"] * cols["close"]
    q = cols.get("quote_volume")
    if q is not None:
        quote = np.where(np.isnan(q), quote, q)
        if (quote < 0).any():
            raise CandleFileError(f"{path}: quote_volume must be >= 0")
    return Batch(names, sym.astype(np.int32), ms, cols["open"], cols["close"], quote)


def _read_csv(path: Path) -> Iterator[Batch]:
    import pyarrow as pa
    from pyarrow import csv

    with path.open("rb") as fh:
        line = fh.readline().decode("utf-8", "replace")
    header = [h.strip() for h in next(csv_module.reader([line]), [])]
    need = ("timestamp", "symbol", "open", "high", "low", "close", "volume")
    missing = [c for c in need if c not in header]
    if missing:
        raise CandleFileError(f"{path}: header lacks {', '.join(missing)} (need {', '.join(need)})")
    types = {c: pa.float64() for c in ("open", "high", "low", "close", "volume", "quote_volume")}
    types["timestamp"] = pa.int64()
    types["symbol"] = pa.dictionary(pa.int32(), pa.string())
    try:
        reader = csv.open_csv(
            path,
            read_options=csv.ReadOptions(block_size=BLOCK_BYTES, use_threads=False),
            convert_options=csv.ConvertOptions(
                column_types={k: v for k, v in types.items() if k in header},
                strings_can_be_null=False,
            ),
        )
    except (pa.ArrowInvalid, OSError) as exc:
        raise CandleFileError(f"{path}: {exc}") from None
    names: list[str] = []
    index: dict[str, int] = {}
    row = 0
    while True:
        try:
            rb = reader.read_next_batch()
        except StopIteration:
            return
        except pa.ArrowInvalid as exc:
            raise CandleFileError(f"{path}: {exc}") from None
        sym = rb.column("symbol")
        values = sym.dictionary.to_pylist()
        for s in values:
            if s not in index:
                if not _SYMBOL.match(s or ""):
                    raise CandleFileError(f"{path}: symbol {s!r} is not like BTC_USDT")
                index[s] = len(names)
                names.append(s)
        local = np.asarray([index[s] for s in values], dtype=np.int32)
        codes = local[sym.indices.to_numpy(zero_copy_only=False)]
        cols = {
            k: rb.column(k).to_numpy(zero_copy_only=False).astype(np.float64)
            for k in types
            if k in header and k not in ("timestamp", "symbol")
        }
        if "quote_volume" in cols and rb.column("quote_volume").null_count:
            cols["quote_volume"] = np.where(
                rb.column("quote_volume").is_null().to_numpy(zero_copy_only=False),
                np.nan,
                cols["quote_volume"],
            )
        ts = rb.column("timestamp").to_numpy(zero_copy_only=False)
        yield _batch(path, names, codes, ts, cols, row)
        row += rb.num_rows


def read_freqtrade(path: Path) -> tuple[str, str, np.ndarray, dict[str, np.ndarray]]:
    """A freqtrade file: (symbol, timeframe, open times in ms, columns open..volume), checked."""
    m = FREQTRADE_NAME.match(path.name)
    if m is None:
        raise CandleFileError(
            f"{path}: not a freqtrade spot file name like BTC_USDT-1m.json / BTC_USDT-1m.feather"
        )
    keys = ("open", "high", "low", "close", "volume")
    if path.suffix == ".json":
        try:
            data = np.asarray(json.loads(path.read_text()), dtype=np.float64)
        except (ValueError, OSError) as exc:
            raise CandleFileError(f"{path}: {exc}") from None
        if data.ndim != 2 or data.shape[1] < 6:
            raise CandleFileError(
                f"{path}: expected a list of [ms, open, high, low, close, volume]"
            )
        ts = data[:, 0].astype(np.int64)
        cols = {k: data[:, i + 1].copy() for i, k in enumerate(keys)}
    else:
        from pyarrow import feather

        try:
            table = feather.read_table(path)
        except Exception as exc:  # pyarrow raises several types for a bad file
            raise CandleFileError(f"{path}: {exc}") from None
        missing = [c for c in ("date", *keys) if c not in table.column_names]
        if missing:
            raise CandleFileError(f"{path}: feather file lacks {', '.join(missing)}")
        date = table.column("date")
        unit = getattr(date.type, "unit", "ms")
        raw = np.asarray(date.cast("int64").to_numpy(), dtype=np.int64)
        ts = raw * 1000 if unit == "s" else raw // {"ms": 1, "us": 1000, "ns": 10**6}[unit]
        cols = {k: table.column(k).to_numpy().astype(np.float64) for k in keys}
    _check(path, cols, 0)
    return m["symbol"], m["timeframe"], ts, cols


def _freqtrade(path: Path) -> Iterator[Batch]:
    symbol, _, ts, cols = read_freqtrade(path)
    yield _batch(path, [symbol], np.zeros(len(ts), np.int32), ts, cols, 0)


def csv_sorted(path: Path) -> bool:
    """Whether a CSV's timestamps never decrease (reads only that column: ~5 % of a run)."""
    import pyarrow as pa
    from pyarrow import csv

    try:
        reader = csv.open_csv(
            path,
            read_options=csv.ReadOptions(block_size=BLOCK_BYTES, use_threads=False),
            convert_options=csv.ConvertOptions(
                include_columns=["timestamp"], column_types={"timestamp": pa.int64()}
            ),
        )
        last = None
        for rb in reader:
            ts = rb.column(0).to_numpy(zero_copy_only=False)
            if len(ts) and (
                (last is not None and ts[0] < last) or not bool(np.all(ts[1:] >= ts[:-1]))
            ):
                return False
            if len(ts):
                last = ts[-1]
    except (pa.ArrowInvalid, KeyError):
        return True  # the full read reports what is wrong with the file, with its row
    return True


def _sorted_whole(path: Path) -> Iterator[Batch]:
    """An unsorted CSV (e.g. grouped by symbol): read whole, sorted by time (not streamed)."""
    batches = list(_read_csv(path))
    if not batches:
        return
    names = batches[-1].names
    cols = [np.concatenate([getattr(b, k) for b in batches]) for k in Batch.__slots__[1:]]
    order = np.argsort(cols[1], kind="stable")
    yield Batch(names, *(c[order] for c in cols))


def read_batches(path: Path) -> Iterator[Batch]:
    """The file's candles as batches sorted by time (see the module docstring for formats).

    A CSV sorted by time is streamed in batches of ``BLOCK_BYTES`` of text, so memory stays
    bounded whatever its size; an unsorted one is read whole and sorted.
    """
    if not path.is_file():
        raise CandleFileError(f"{path}: no such file")
    if path.suffix in (".json", ".feather"):
        return _freqtrade(path)
    return _read_csv(path) if csv_sorted(path) else _sorted_whole(path)

"""``cdb download-data``: candles from the exchange (ccxt) or freqtrade's files into the store.

Examples::

    cdb download-data --symbols BTC_USDT,ETH_USDT --timeframe 1m --days 30
    cdb download-data --exchange binance --symbols BTC_USDT --start 2025-01-01 --end 2025-02-01
    cdb download-data --import-freqtrade ~/freqtrade/user_data/data/binance

Files: ``<datadir>/<exchange>/<SYMBOL>-<timeframe>.csv`` (see ``cdb.history.store``).
Running the same command again fetches only what is missing after each file's last
candle. Exit codes: 0 done, 1 the exchange failed (what was fetched is kept), 2 bad
arguments or file.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
from pathlib import Path

from cdb.feed.candles import INTERVAL_SECONDS


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--exchange", default=os.environ.get("EXCHANGE_ID", "mexc"), help="ccxt id")
    p.add_argument(
        "--symbols",
        default=os.environ.get("SYMBOLS", "BTC_USDT,ETH_USDT,SOL_USDT"),
        help="comma list like BTC_USDT,ETH_USDT (default: SYMBOLS)",
    )
    p.add_argument(
        "--timeframe",
        default=os.environ.get("FEED_INTERVAL", "1m"),
        choices=sorted(INTERVAL_SECONDS, key=INTERVAL_SECONDS.get),
    )
    p.add_argument("--start", help="first day, YYYY-MM-DD (UTC)")
    p.add_argument("--end", help="day to stop before, YYYY-MM-DD (UTC; default: now)")
    p.add_argument("--days", type=int, default=30, help="without --start: the last N days")
    p.add_argument("--datadir", type=Path, default=Path("data"), help="the store's directory")
    p.add_argument(
        "--import-freqtrade",
        nargs="+",
        type=Path,
        metavar="PATH",
        help="import freqtrade json/feather files (or directories) instead of downloading",
    )
    p.add_argument("--no-progress", action="store_true")


def _day_ms(text: str, option: str) -> int:
    try:
        day = dt.date.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{option} {text!r} is not a date like 2025-01-31") from None
    return int(dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC).timestamp() * 1000)


def _import(args: argparse.Namespace) -> int:
    from cdb.history.freqtrade import find_files, import_file

    files = find_files(args.import_freqtrade)
    if not files:
        print("cdb download-data: no freqtrade files found", file=sys.stderr)
        return 2
    for src in files:
        dest, added = import_file(src, args.datadir, args.exchange)
        print(f"{src} → {dest}: {added} candles added")
    return 0


def main(args: argparse.Namespace) -> int:
    """Run the command; a missing module of the ``backtest`` extra is named (exit 2)."""
    from cdb.backtest import missing_extra

    try:
        return _main(args)
    except ModuleNotFoundError as exc:
        return missing_extra("download-data", exc)


def _main(args: argparse.Namespace) -> int:
    from cdb.backtest.sources import CandleFileError
    from cdb.events import SYMBOL_PATTERN

    try:
        if args.import_freqtrade:
            return _import(args)
        import re

        symbols = [s.strip() for s in args.symbols.split(",") if s.strip()]
        bad = [s for s in symbols if not re.match(SYMBOL_PATTERN, s)]
        if not symbols or bad:
            raise ValueError(f"--symbols must be like BTC_USDT,ETH_USDT, not {args.symbols!r}")
        now_ms = int(dt.datetime.now(dt.UTC).timestamp() * 1000)
        end = _day_ms(args.end, "--end") if args.end else now_ms
        start = _day_ms(args.start, "--start") if args.start else end - args.days * 86_400_000
        if start >= end:
            raise ValueError("--start must be before --end")
    except (ValueError, CandleFileError, OSError) as exc:
        print(f"cdb download-data: {exc}", file=sys.stderr)
        return 2
    return download(args, symbols, start, end)


def download(args: argparse.Namespace, symbols: list[str], start: int, end: int) -> int:
    from tqdm import tqdm

    from cdb.exchange.errors import ExchangeError
    from cdb.history import store
    from cdb.history.download import HistoryClient, download_symbol

    step = INTERVAL_SECONDS[args.timeframe] * 1000
    try:
        client = HistoryClient(args.exchange)
    except ValueError as exc:
        print(f"cdb download-data: {exc}", file=sys.stderr)
        return 2
    try:
        for symbol in symbols:
            path = store.candle_path(args.datadir, args.exchange, symbol, args.timeframe)
            total = max(0, (end - start) // step)
            with tqdm(
                total=total,
                unit="candle",
                unit_scale=True,
                desc=symbol,
                disable=args.no_progress,
                file=sys.stderr,
            ) as bar:
                last = store.last_timestamp(path)
                if last is not None and last >= start:
                    bar.update(min(total, (last + step - start) // step))
                out = download_symbol(
                    client,
                    symbol,
                    timeframe=args.timeframe,
                    start_ms=start,
                    end_ms=end,
                    path=path,
                    progress=bar.update,
                )
            resumed = f" (resumed after {out.resumed_from - step} ms)" if out.resumed_from else ""
            print(f"{symbol}: {out.added} candles added to {path}{resumed}")
    except ExchangeError as exc:
        print(
            f"cdb download-data: {args.exchange}: {exc} (what was fetched is kept)", file=sys.stderr
        )
        return 1
    finally:
        client.close()
    return 0

"""``cdb backtest FILE…``: run the live strategy and risk rules over candle files and report.

Examples::

    cdb backtest data/mexc/BTC_USDT-1m.csv data/mexc/ETH_USDT-1m.csv --out runs/base
    cdb backtest candles.csv --spec examples/tradingbot-paper.yaml --set PAPER_FEE_PCT=0.2
    cdb backtest candles.csv --sweep thresholdPct=2,2.5,3 --sweep minVolume=50000,100000
    cdb backtest --compare runs/base/report.json runs/tuned/report.json

Settings: the environment, then ``--spec``, then ``--set`` (see ``cdb.backtest.config``).
Exit codes: 0 done, 2 bad setting or unusable file (one line on stderr naming it).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import sys
from pathlib import Path
from typing import Any

# the rest is imported when the command runs: ``cdb run NAME`` builds this parser too


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("files", nargs="*", type=Path, help="candle files (CSV, freqtrade json/feather)")
    p.add_argument("--spec", type=Path, help="a TradingBot file whose settings to use")
    p.add_argument("--set", action="append", default=[], metavar="NAME=VALUE", help="a setting")
    p.add_argument("--out", type=Path, default=Path("backtest-report"), help="report directory")
    p.add_argument("--title", default="", help="the report's title")
    p.add_argument("--json", action="store_true", help="print the JSON report, not the text")
    p.add_argument("--exact", action="store_true", help="every candle through every handler")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--compare", nargs=2, type=Path, metavar=("A", "B"), help="two report.json")
    p.add_argument(
        "--sweep", action="append", default=[], metavar="NAME=V1,V2", help="values to try"
    )
    p.add_argument("--jobs", type=int, default=0, help="sweep processes (default: every core)")


def overrides(args: argparse.Namespace) -> dict[str, str]:
    from cdb.backtest.config import parse_assignments, spec_env

    env: dict[str, str] = {}
    if args.spec:
        env.update(spec_env(args.spec))
    env.update(parse_assignments(args.set, "--set"))
    return env


def run_once(
    files: list[Path], env: dict[str, str], *, exact: bool = False, progress: bool = False
) -> dict[str, Any]:
    """One backtest → its ``RunResult`` as a plain dict (also the sweep's worker)."""
    from dataclasses import asdict

    from cdb.backtest.config import Config
    from cdb.backtest.run import Backtest

    config = Config.load(env)
    bt = Backtest(files, config, exact=exact, keep_log=True)
    if progress:
        from tqdm import tqdm

        with tqdm(unit="candle", unit_scale=True, desc="backtest", file=sys.stderr) as bar:
            result = bt.run(bar.update)
    else:
        result = bt.run()
    return asdict(result)


def _sweep_worker(job: tuple[list[Path], dict[str, str]]) -> dict[str, Any]:
    from cdb.backtest.metrics import summarize

    files, env = job
    figures = summarize(run_once(files, env))
    figures.pop("abnormal_market_pauses")
    return figures


def sweep(args: argparse.Namespace, base: dict[str, str]) -> int:
    """Every combination of the ``--sweep`` values, one process per core."""
    import multiprocessing

    from cdb.backtest.config import Config, parse_assignments

    axes: list[tuple[str, list[str]]] = []
    for item in args.sweep:
        parsed = parse_assignments([item], "--sweep")
        ((name, values),) = parsed.items()
        axes.append((name, [v.strip() for v in values.split(",") if v.strip()]))
    combos = [dict(zip([a for a, _ in axes], vals, strict=True)) for vals in
              itertools.product(*(v for _, v in axes))]  # fmt: skip
    for combo in combos:
        Config.load({**base, **combo})  # a bad value fails here, before any process starts
    jobs = args.jobs or os.cpu_count() or 1
    work = [(args.files, {**base, **combo}) for combo in combos]
    with multiprocessing.get_context("spawn").Pool(min(jobs, len(work))) as pool:
        results = pool.map(_sweep_worker, work)
    rows = []
    names = [a for a, _ in axes]
    print(" ".join(f"{n:>22}" for n in names) + f" {'trades':>7} {'win %':>6} {'P&L':>11} "
          f"{'max DD %':>8} {'Sharpe':>7}")  # fmt: skip
    for combo, fig in zip(combos, results, strict=True):
        rows.append({"settings": combo, "figures": fig})
        win = fig["win_rate_pct"]
        sharpe = fig["sharpe"]
        print(
            " ".join(f"{combo[n]:>22}" for n in names)
            + f" {fig['trades']:>7} {'-' if win is None else f'{win:.1f}':>6} "
            f"{fig['pnl_total']:>11,.2f} {fig['max_drawdown_pct']:>8.2f} "
            f"{'-' if sharpe is None else f'{sharpe:.2f}':>7}"
        )
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "sweep.json").write_text(json.dumps(rows, indent=1, default=str) + "\n")
    print(f"wrote {args.out / 'sweep.json'} ({len(rows)} runs on {min(jobs, len(work))} processes)")
    return 0


def main(args: argparse.Namespace) -> int:
    """Run the command; a missing module of the ``backtest`` extra is named (exit 2)."""
    from cdb.backtest import missing_extra

    try:
        return _main(args)
    except ModuleNotFoundError as exc:
        return missing_extra("backtest", exc)


def _main(args: argparse.Namespace) -> int:
    from cdb.backtest import render
    from cdb.backtest.sources import CandleFileError
    from cdb.settings import SettingsError

    try:
        if args.compare:
            a, b = (json.loads(p.read_text()) for p in args.compare)
            print(render.compare_text(a, b), end="")
            return 0
        if not args.files:
            print("cdb backtest: give candle files (or --compare A B)", file=sys.stderr)
            return 2
        base = overrides(args)
        if args.sweep:
            return sweep(args, base)
        result = run_once(args.files, base, exact=args.exact, progress=not args.no_progress)
    except (SettingsError, CandleFileError, OSError, ValueError) as exc:
        message = exc.message if isinstance(exc, SettingsError) else str(exc)
        print(f"cdb backtest: {message}", file=sys.stderr)
        return 2
    title = args.title or f"Backtest of {', '.join(p.name for p in args.files)}"
    report = render.report_dict(result, title)
    paths = render.write_all(report, args.out)
    if args.json:
        print(json.dumps(report["figures"], indent=1, default=str))
    else:
        print(render.text(report), end="")
        rate = result["candles"] / result["seconds"] if result["seconds"] else 0
        print(f"\n{result['candles']:,} candles in {result['seconds']:.2f} s ({rate:,.0f}/s)")
        print(f"report: {paths['html']} (and .json, .txt, .png)")
    return 0

"""``cdb backtest`` against ``freqtrade backtesting`` on the same candles, same machine, same run.

The candles (``bench.candle_files``: 20 symbols × 30 days of 1-minute random walks with
rare strong moves) are written twice with identical values: our CSV for ``cdb backtest``
and freqtrade's feather files. Both run the momentum rule (+3 % over 15 minutes on
100,000 USDT of volume → buy), a 2 % stop loss, 0.1 % fees, at most 5 positions of
1,000 USDT (ours: confidence-sized, clipped to the 10 % position limit), each as a whole
process (a fresh Python, imports, reading, the loop, the report); wall time and the
child's peak RSS (``wait4``) are measured here. freqtrade is installed from PyPI into its
own virtualenv (``--ft-venv``, kept between runs); when that fails the benchmark says so
and measures only ours. freqtrade needs the exchange's markets before it starts: it is
pointed at ``bench.binance_stub`` on loopback. A sweep of four settings then runs with
one process and with every core (``--jobs``), to show it scales.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.binance_stub import BinanceStub
from bench.candle_files import write_csv, write_freqtrade
from bench.report import Result

ROOT = Path(__file__).resolve().parent.parent
LAST_CPU = [0.0]
VENV = Path.home() / ".cache" / "cdb-bench" / "freqtrade-venv"
STRATEGY = '''
from freqtrade.strategy import IStrategy


class CdbMomentum(IStrategy):
    """The momentum rule of cdb.signal.strategies.momentum, in freqtrade's terms."""

    INTERFACE_VERSION = 3
    timeframe = "1m"
    minimal_roi = {"0": 1000}  # no take-profit: exits are stop losses, as ours
    stoploss = -0.02
    startup_candle_count = 15
    use_exit_signal = False

    def populate_indicators(self, df, metadata):
        df["pct"] = (df["close"] / df["open"].shift(14) - 1) * 100  # over 15 candles
        df["qv"] = (df["volume"] * df["close"]).rolling(15).sum()  # quote volume
        return df

    def populate_entry_trend(self, df, metadata):
        df.loc[(df["pct"] >= 3.0) & (df["qv"] >= 100000), "enter_long"] = 1
        return df

    def populate_exit_trend(self, df, metadata):
        df["exit_long"] = 0
        return df
'''


def timed(cmd: list[str], cwd: Path, env: dict | None = None) -> tuple[float, float, str, str]:
    """Run ``cmd``; (wall seconds, peak RSS MiB, stdout, stderr) of that child alone.

    The child's CPU seconds (user + system, from ``wait4``) are kept in ``LAST_CPU``.
    """
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        started = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=out, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        wall = time.perf_counter() - started
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read().decode(), err.read().decode()
    LAST_CPU[0] = usage.ru_utime + usage.ru_stime
    if proc.returncode != 0:
        raise RuntimeError(f"{cmd[0]} {cmd[1]} exited {proc.returncode}: {stderr[-2000:]}")
    return wall, usage.ru_maxrss / 1024, stdout, stderr


def freqtrade_bin(venv: Path) -> tuple[Path | None, str]:
    """freqtrade in its own venv (installed from PyPI when missing); (path or None, why)."""
    exe = venv / "bin" / "freqtrade"
    if exe.exists():
        return exe, ""
    try:
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, capture_output=True)
        subprocess.run(
            [str(venv / "bin" / "pip"), "install", "-q", "freqtrade"],
            check=True,
            capture_output=True,
            timeout=1800,
        )
    except (subprocess.SubprocessError, OSError) as exc:
        detail = getattr(exc, "stderr", b"") or b""
        return None, f"freqtrade could not be installed ({exc}; {detail.decode()[-300:]})"
    return (exe, "") if exe.exists() else (None, "freqtrade installed no executable")


def run_freqtrade(exe: Path, work: Path, symbols: list[str]) -> dict:
    subprocess.run([str(exe), "create-userdir", "--userdir", str(work / "ud")],
                   check=True, capture_output=True)  # fmt: skip
    (work / "strategies").mkdir(exist_ok=True)
    (work / "strategies" / "cdb_momentum.py").write_text(STRATEGY)
    with BinanceStub(symbols) as api:
        ccxt = {"urls": {"api": api}, "options": {"fetchMarkets": {"types": ["spot"]}}}
        config = {
            "max_open_trades": 5,
            "stake_currency": "USDT",
            "stake_amount": 1000,
            "dry_run": True,
            "dry_run_wallet": 10000,
            "timeframe": "1m",
            "fee": 0.001,
            "trading_mode": "spot",
            "exchange": {
                "name": "binance",
                "key": "",
                "secret": "",
                "pair_whitelist": [s.replace("_", "/") for s in symbols],
                "ccxt_config": ccxt,
                "ccxt_async_config": ccxt,
            },
            "pairlists": [{"method": "StaticPairList"}],
            "entry_pricing": {"price_side": "same", "use_order_book": False, "order_book_top": 1,
                              "price_last_balance": 0.0,
                              "check_depth_of_market": {"enabled": False, "bids_to_ask_delta": 1}},
            "exit_pricing": {"price_side": "same", "use_order_book": False, "order_book_top": 1},
            "dataformat_ohlcv": "feather",
            "user_data_dir": str(work / "ud"),
            "strategy_path": str(work / "strategies"),
        }  # fmt: skip
        (work / "config.json").write_text(json.dumps(config))
        wall, rss, out, err = timed(
            [str(exe), "backtesting", "-c", "config.json", "-s", "CdbMomentum", "--export",
             "none", "--datadir", str(work / "ft"), "--cache", "none"],
            work,
        )  # fmt: skip
    found = re.search(r"│\s*CdbMomentum\s*│\s*(\d+)\s*│", out)
    loaded = re.findall(r"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+) - freqtrade.optimize.backtesting"
                        r" - INFO - (Dataload complete|Backtesting with data)", out + err)  # fmt: skip
    return {"wall": wall, "cpu": LAST_CPU[0], "rss_mib": rss,
            "trades": int(found[1]) if found else None,
            "stages": loaded}  # fmt: skip


def run(quick: bool = False, context: dict | None = None) -> Result:
    args = (context or {}).get("args")
    days = 2 if quick else getattr(args, "ft_days", 30)
    n_symbols = 3 if quick else getattr(args, "ft_symbols", 20)
    venv = Path(getattr(args, "ft_venv", None) or VENV)
    work = Path(tempfile.mkdtemp(prefix="cdb-bench-ft-"))
    csv_path = work / "candles.csv"
    n = write_csv(csv_path, days, n_symbols)
    paths = write_freqtrade(work / "ft", days, n_symbols)
    symbols = sorted(p.name.split("-")[0] for p in paths)
    env = {
        **os.environ,
        "PYTHONPATH": f"{ROOT / 'services'}:{ROOT / 'operator'}",
        "PAPER_SLIPPAGE_PCT": "0",
    }  # fmt: skip  (freqtrade has no slippage model)
    wall, rss, out, _ = timed(
        [sys.executable, "-m", "cdb", "backtest", str(csv_path), "--json", "--no-progress",
         "--out", str(work / "cdb")],
        work, env,
    )  # fmt: skip
    ours = json.loads((work / "cdb" / "report.json").read_text())
    fig = ours["figures"]
    result = Result("freqtrade", "Backtest: cdb backtest vs freqtrade backtesting (same candles)")
    t = result.table(
        f"{n:,} one-minute candles ({n_symbols} symbols × {days} days), whole process",
        ["engine", "wall s", "CPU s", "candles/wall-s", "candles/CPU-s", "peak RSS MiB",
         "trades", "decision loop/CPU-s"],
    )  # fmt: skip
    loop = ours.get("loop_seconds") or 0
    cpu = LAST_CPU[0]
    t.add("cdb backtest", wall, cpu, n / wall, n / cpu, rss, fig["trades"] + fig["open_trades"],
          n / loop if loop else None)  # fmt: skip
    data = {"candles": n, "cdb": {"wall": wall, "cpu": cpu, "rss_mib": rss, "trades": fig["trades"],
                                  "open": fig["open_trades"], "loop_s": loop}}  # fmt: skip
    exe, why = freqtrade_bin(venv)
    if exe is None:
        result.note(f"freqtrade skipped: {why}")
    else:
        ft = run_freqtrade(exe, work, symbols)
        t.add("freqtrade backtesting", ft["wall"], ft["cpu"], n / ft["wall"], n / ft["cpu"],
              ft["rss_mib"], ft["trades"], None)  # fmt: skip
        data["freqtrade"] = ft
        result.note(
            f"Whole process: cdb is {ft['wall'] / wall:.1f}× freqtrade's candles per wall second "
            f"({ft['cpu'] / cpu:.1f}× per CPU second) and uses {rss / ft['rss_mib']:.2f}× its "
            "peak memory."
        )
    # the sweep on one process and on every core
    sweep = ["--sweep", "thresholdPct=2.5,3", "--sweep", "maxOpenPositions=3,5"]
    s = result.table(
        "Sweep of 4 settings over the same candles", ["processes", "wall s", "CPU s (all)"]
    )
    for jobs in sorted({1, os.cpu_count() or 1}):
        w, _, _, _ = timed(
            [sys.executable, "-m", "cdb", "backtest", str(csv_path), *sweep, "--jobs", str(jobs),
             "--out", str(work / f"sweep{jobs}")],
            work, env,
        )  # fmt: skip
        s.add(jobs, w, LAST_CPU[0])
        data[f"sweep_{jobs}"] = {"wall": w, "cpu": LAST_CPU[0]}
    result.note(
        "The sweep runs one process per core (multiprocessing, spawn): with the cores free its "
        "wall time falls with their number; CPU s is the same work plus one interpreter start "
        "per extra process. On a machine busier than its core count the wall times say so."
    )
    result.note(
        "Both engines read every candle from disk and simulate every candle; cdb's decision "
        "loop figure counts candles over the CPU time spent deciding (reading and the numpy "
        "pass that computes the feed's MarketData values are excluded)."
    )
    result.data = data
    if context is not None:
        context["freqtrade"] = data
    return result

"""Replay / backtest speed: a year of 1-minute candles for 20 symbols through the real logic.

The candles are generated first (numpy, deterministic, not timed); then every
candle is turned into a validated ``MarketData`` event and driven through the
signal engine and the risk rules in-process (``bench.backtest``), with a tqdm
progress bar. A second, shorter pass builds the events without validation, to
show what event construction costs. Target: >= 500,000 candles/s.

Run: ``python -m bench run replay`` (``--replay-days``, ``--replay-symbols``).
"""

from __future__ import annotations

import time

from tqdm import tqdm

from bench.backtest import Backtest, CandleGen
from bench.report import Result
from cdb.risk.settings import RiskSettings
from cdb.signal.settings import SignalSettings

TARGET = 500_000


def replay(days: int, n_symbols: int, trusted: bool, progress: bool = True) -> dict:
    gen = CandleGen(n_symbols)
    chunks = list(gen.chunks(days * 1440))  # generation is not timed
    bt = Backtest(SignalSettings(), RiskSettings(), trusted=trusted)
    total = days * 1440 * n_symbols
    label = "replay (trusted events)" if trusted else "replay (validated events)"
    started = time.perf_counter()
    cpu = time.process_time()
    with tqdm(total=total, unit="candle", unit_scale=True, desc=label, disable=not progress) as bar:
        for chunk in chunks:
            bar.update(bt.run_chunk(chunk, gen.symbols))
    elapsed = time.perf_counter() - started
    cpu = time.process_time() - cpu
    return {
        "candles": bt.candles,
        "seconds": elapsed,
        "rate": bt.candles / elapsed,
        "rate_per_cpu": bt.candles / cpu,
        "signals": bt.signals,
        "fills": bt.fills,
        "decisions": dict(bt.decisions),
        "equity": bt.equity(),
    }


def run(quick: bool = False, context: dict | None = None) -> Result:
    args = (context or {}).get("args")
    days = 2 if quick else getattr(args, "replay_days", 365)
    n_symbols = 3 if quick else getattr(args, "replay_symbols", 20)
    short = min(days, 30)
    full = replay(days, n_symbols, trusted=False)
    fast = replay(short, n_symbols, trusted=True)
    result = Result("replay", "Replay / backtest speed (in-process, real strategy and risk rules)")
    t = result.table(
        f"{n_symbols} symbols of 1-minute candles",
        ["pass", "candles", "seconds", "candles/s", "per CPU-s", "target"],
    )
    t.add(
        f"{days} days, validated MarketData",
        full["candles"],
        full["seconds"],
        full["rate"],
        full["rate_per_cpu"],
        f">= {TARGET:,}",
    )
    t.add(
        f"{short} days, trusted MarketData",
        fast["candles"],
        fast["seconds"],
        fast["rate"],
        fast["rate_per_cpu"],
        f">= {TARGET:,}",
    )
    d = result.table(f"What the {days} days produced (validated pass)", ["measure", "value"])
    d.add("signals", full["signals"])
    d.add("fills (entries and exits)", full["fills"])
    for key, count in sorted(full["decisions"].items()):
        d.add(f"decision {key}", count)
    d.add("final equity (start 10,000)", full["equity"])
    if not quick and full["rate"] < TARGET:
        result.note(
            f"Target missed by {(1 - full['rate'] / TARGET) * 100:.0f} % with validated events "
            f"({full['rate']:,.0f}/s) and by {(1 - fast['rate'] / TARGET) * 100:.0f} % with "
            f"trusted ones ({fast['rate']:,.0f}/s); see the analysis below the tables."
        )
    result.note(
        "Per candle: one MarketData event, SignalEngine.evaluate (momentum + cooldown), "
        "MarketView.update and a stop check; per signal: the risk service's snapshot, "
        "rules.evaluate and an instant paper fill. Candle generation is not timed."
    )
    result.data = {"full": full, "trusted": fast}
    if context is not None:
        context["replay"] = result.data
    return result

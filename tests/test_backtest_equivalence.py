"""The fast loop decides exactly like the exact loop (every candle through every handler).

Markets made to reach every rule: violent random walks (abnormal-move pauses, stops,
daily-loss trips, new UTC days releasing the breaker), SELL signals on, missing candles,
a symbol that starts late, a low threshold (many signals: clipping, exposure and
position-count rejections). Compared: every risk decision in order, every fill (price,
fee), breaker trips, pauses, the equity curve and the end state.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from cdb.backtest.config import Config
from cdb.backtest.run import Backtest

START_MS = 1_735_689_600_000


def rough_market(path: Path, seed: int, minutes: int, n_symbols: int = 5) -> Path:
    rng = np.random.default_rng(seed)
    lines = ["timestamp,symbol,open,high,low,close,volume"]
    rows = []
    for i in range(n_symbols):
        ret = rng.normal(0, 0.006, minutes)
        jumps = rng.random(minutes) < 0.01
        ret[jumps] += rng.choice([-1, 1], jumps.sum()) * rng.uniform(0.03, 0.15, jumps.sum())
        close = 50.0 * (i + 1) * np.exp(np.cumsum(ret))
        opn = np.concatenate([[close[0]], close[:-1]])
        vol = rng.lognormal(np.log(300), 1.0, minutes)
        keep = rng.random(minutes) > 0.03  # missing candles
        first = 0 if i else minutes // 5  # one symbol starts late
        for m in range(first, minutes):
            if keep[m]:
                o, c = opn[m], close[m]
                rows.append(
                    (
                        START_MS + m * 60_000,
                        f"S{i}_USDT",
                        o,
                        max(o, c) * 1.001,
                        min(o, c) * 0.999,
                        c,
                        vol[m],
                    )
                )
    rows.sort(key=lambda r: (r[0], r[1]))
    lines += [f"{t},{s},{o:.6f},{h:.6f},{lo:.6f},{c:.6f},{v:.4f}" for t, s, o, h, lo, c, v in rows]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_fast_loop_decides_like_the_exact_loop(tmp_path, seed):
    data = rough_market(tmp_path / "m.csv", seed, minutes=3 * 1440)
    env = {
        "SIGNAL_THRESHOLD_PCT": "2",
        "SIGNAL_MIN_VOLUME": "1000",
        "SIGNAL_SELL_ENABLED": "true",
        "SIGNAL_COOLDOWN_S": "120",
        "SIGNAL_LOOKBACK_MIN": "5",
        "MAX_DAILY_DRAWDOWN_PCT": "3",
        "RISK_ABNORMAL_MOVE_PCT": "8",
        "MAX_OPEN_POSITIONS": "3",
    }
    config = Config.load(env)
    exact = Backtest([data], config, exact=True, keep_log=True, chunk_rows=700).run()
    fast = Backtest([data], config, keep_log=True, chunk_rows=1000).run()
    assert exact.log == fast.log
    assert exact.fills == fast.fills
    assert exact.trips == fast.trips
    assert exact.pauses == fast.pauses
    assert exact.curve == fast.curve
    assert exact.end_equity == fast.end_equity
    assert exact.max_drawdown_pct == fast.max_drawdown_pct
    # the market reached the rules this test is about
    kinds = {f"{d}/{r}" for _, d, r, _, _ in fast.log}
    assert {"exit/stop_loss", "halt/drawdown", "exit/drawdown", "exit/sell_signal"} <= kinds, kinds
    assert {"reject/open_positions", "release/drawdown"} & kinds
    assert fast.pauses and fast.trips and len(fast.fills) > 20

"""``cdb backtest`` end to end on small files made here, checked against hand computations.

The hand-computed case (plain CSV, timestamps in seconds): BTC_USDT sits at 100, one
candle closes at 105 (+5 % over the 5-minute window, 50,000 USDT volume) → a BUY of
confidence 0.5 → 0.5 × 20 % × 10,000 = 1,000 USDT (exactly the 10 % position limit:
approved); the fill is 0.05 % above 105 with a 0.1 % fee; two candles later the close is
102, below the stop (2 % under the fill price) → sold 0.05 % below 102, 0.1 % fee.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from cdb.backtest.config import SPEC_KEYS, Config, env_name, spec_env
from cdb.backtest.metrics import ratios, round_trips
from cdb.backtest.run import Backtest
from cdb.backtest.sources import CandleFileError

REPO = Path(__file__).resolve().parents[1]
T0 = 1_735_689_600  # 2025-01-01T00:00:00Z, seconds
ENV = {"SIGNAL_LOOKBACK_MIN": "5", "SIGNAL_MIN_VOLUME": "1000"}


def hand_file(path: Path) -> Path:
    """The case of the module docstring, in the issue's plain CSV (seconds, base volume)."""
    btc = [(100, 100, 100, 100)] * 10 + [(100, 105, 100, 105), (105, 105, 105, 105)]
    btc += [(105, 105, 102, 102)] + [(102, 102, 102, 102)] * 7
    lines = ["symbol,timestamp,open,high,low,close,volume"]
    for i, (o, h, lo, c) in enumerate(btc):
        lines.append(f"BTC_USDT,{T0 + 60 * i},{o},{h},{lo},{c},100")
        lines.append(f"ETH_USDT,{T0 + 60 * i},50,50.5,49.5,50,200")
    path.write_text("\n".join(lines) + "\n")
    return path


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": f"{REPO / 'services'}:{REPO / 'operator'}"}
    env.update(ENV)
    return subprocess.run(
        [sys.executable, "-m", "cdb", "backtest", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_hand_computed_report(tmp_path):
    data = hand_file(tmp_path / "candles.csv")
    done = cli(str(data), "--out", "run", "--no-progress", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    f = report["figures"]

    # by hand: entry
    qty = 1000.0 / 105 * (1 - 1e-9)  # the rule shaves sizes by 1e-9 (never above a limit)
    buy_price = 105 * 1.0005
    buy_fee = qty * buy_price * 0.001
    sell_price = 102 * 0.9995
    sell_fee = qty * sell_price * 0.001
    pnl = qty * sell_price - qty * buy_price - buy_fee - sell_fee
    assert f["signals"] == 1 and f["trades"] == 1 and f["open_trades"] == 0
    assert f["wins"] == 0 and f["win_rate_pct"] == 0.0
    assert f["fees_paid"] == pytest.approx(buy_fee + sell_fee, rel=1e-12)
    assert f["pnl_total"] == pytest.approx(pnl, rel=1e-9)
    assert f["end_equity"] == pytest.approx(10_000 + pnl, rel=1e-12)
    assert f["per_symbol"] == {
        "BTC_USDT": {
            "trades": 1,
            "wins": 0,
            "pnl": pytest.approx(pnl),
            "fees": pytest.approx(buy_fee + sell_fee),
        }
    }
    assert f["exits"] == {"stop_loss": 1}
    assert f["decisions"] == {"approve/approved": 1, "exit/stop_loss": 1}
    # the lowest equity is after the exit: the drawdown from the 10,000 start
    assert f["max_drawdown_pct"] == pytest.approx(-pnl / 10_000 * 100, rel=1e-9)
    assert f["breaker_trips"] == [] and f["abnormal_market_pauses"] == []
    assert f["sharpe"] is None  # one day: no daily return dispersion to speak of
    fills = report["fills"]
    assert [(x["side"], x["ts"]) for x in fills] == [("BUY", T0 + 11 * 60), ("SELL", T0 + 13 * 60)]
    assert fills[0]["price"] == pytest.approx(buy_price) and fills[1]["price"] == pytest.approx(
        sell_price
    )
    # the other outputs exist and say the same
    page = (tmp_path / "run" / "report.html").read_text()
    assert "data:image/png;base64," in page and "BTC_USDT" in page
    assert (tmp_path / "run" / "report.png").read_bytes()[:4] == b"\x89PNG"
    assert f"{pnl:,.2f}" in (tmp_path / "run" / "report.txt").read_text()
    assert "win rate" in done.stdout


def test_compare_and_bad_settings(tmp_path):
    data = hand_file(tmp_path / "candles.csv")
    assert cli(str(data), "--out", "a", "--no-progress", cwd=tmp_path).returncode == 0
    done = cli(str(data), "--out", "b", "--no-progress", "--set", "STOP_LOSS_PCT=5", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    cmp = cli("--compare", "a/report.json", "b/report.json", cwd=tmp_path)
    assert cmp.returncode == 0
    assert "setting STOP_LOSS_PCT: 2.0 → 5.0" in cmp.stdout
    bad = cli(str(data), "--set", "maxPositionPct=150", cwd=tmp_path)
    assert bad.returncode == 2 and "MAX_POSITION_PCT" in bad.stderr
    unknown = cli(str(data), "--set", "NOT_A_SETTING=1", cwd=tmp_path)
    assert unknown.returncode == 2 and "NOT_A_SETTING" in unknown.stderr
    broken = tmp_path / "broken.csv"
    broken.write_text(
        "symbol,timestamp,open,high,low,close,volume\nBTC_USDT,1735689600,1,0.5,2,1,1\n"
    )
    done = cli(str(broken), cwd=tmp_path)
    assert done.returncode == 2 and "broken.csv: row 1" in done.stderr


def test_sweep_runs_every_combination(tmp_path):
    data = hand_file(tmp_path / "candles.csv")
    done = cli(
        str(data), "--out", "s", "--sweep", "thresholdPct=3,6", "--sweep", "STOP_LOSS_PCT=2,5",
        cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    rows = json.loads((tmp_path / "s" / "sweep.json").read_text())
    got = {
        (r["settings"]["SIGNAL_THRESHOLD_PCT"], r["settings"]["STOP_LOSS_PCT"]): r["figures"]
        for r in rows
    }
    assert set(got) == {("3", "2"), ("3", "5"), ("6", "2"), ("6", "5")}
    assert got[("6", "2")]["trades"] == got[("6", "5")]["trades"] == 0  # a 5 % move is below 6 %
    assert got[("3", "2")]["trades"] == 1
    assert got[("3", "5")]["open_trades"] == 1  # 102 is above a 5 % stop: still held at the end


def test_formats_give_the_same_run(tmp_path):
    """Our replay CSV, the plain CSV, freqtrade json and feather: one set of candles, one result."""
    import pyarrow as pa
    from pyarrow import feather

    plain = hand_file(tmp_path / "plain.csv")
    rows = [line.split(",") for line in plain.read_text().splitlines()[1:]]
    ours = tmp_path / "ours.csv"
    ours.write_text(
        "timestamp,symbol,open,high,low,close,volume\n"
        + "".join(f"{int(r[1]) * 1000},{r[0]},{','.join(r[2:])}\n" for r in rows)
    )
    ft = tmp_path / "ft"
    ft.mkdir()
    for sym in ("BTC_USDT", "ETH_USDT"):
        mine = [[int(r[1]) * 1000, *map(float, r[2:])] for r in rows if r[0] == sym]
        (ft / f"{sym}-1m.json").write_text(json.dumps(mine))
        cols = list(zip(*mine, strict=True))
        table = pa.table(
            {
                "date": pa.array(cols[0], pa.timestamp("ms", tz="UTC")),
                **{
                    k: list(cols[i + 1])
                    for i, k in enumerate(("open", "high", "low", "close", "volume"))
                },
            }
        )
        feather.write_feather(table, ft / f"{sym}-1m.feather")
    config = Config.load(ENV)
    results = [
        Backtest(files, config).run()
        for files in (
            [plain],
            [ours],
            sorted(ft.glob("*.json")),
            sorted(ft.glob("*.feather")),
        )
    ]
    for r in results[1:]:
        assert r.fills == results[0].fills and r.candles == results[0].candles
    assert len(results[0].fills) == 2


def test_bad_files(tmp_path):
    config = Config.load(ENV)
    dup = tmp_path / "dup.csv"
    dup.write_text(
        "symbol,timestamp,open,high,low,close,volume\n"
        "BTC_USDT,1735689600,1,1,1,1,1\nBTC_USDT,1735689600,1,1,1,1,1\n"
    )
    with pytest.raises(CandleFileError, match="two candles for BTC_USDT"):
        Backtest([dup], config).run()
    off = tmp_path / "off.csv"
    off.write_text("symbol,timestamp,open,high,low,close,volume\nBTC_USDT,1735689630,1,1,1,1,1\n"
                   "BTC_USDT,1735689600,1,1,1,1,1\n")  # fmt: skip
    with pytest.raises(CandleFileError, match="off the 60 s grid"):
        Backtest([off], config).run()
    with pytest.raises(CandleFileError, match="no such file"):
        Backtest([tmp_path / "missing.csv"], config).run()
    name = tmp_path / "BTCUSDT.json"
    name.write_text("[]")
    with pytest.raises(CandleFileError, match="freqtrade"):
        Backtest([name], config).run()


def test_spec_keys_match_the_operator(tmp_path):
    """``--spec`` and the sweep's spec names reach the variables the operator sets."""
    env = spec_env(REPO / "examples" / "tradingbot-paper.yaml")
    assert env["SIGNAL_THRESHOLD_PCT"] == "2.5" and env["MAX_OPEN_POSITIONS"] == "4"
    assert set(SPEC_KEYS.values()) <= set(env)
    assert env_name("thresholdPct") == "SIGNAL_THRESHOLD_PCT"
    config = Config.load(env)
    assert config.signal.SIGNAL_MIN_VOLUME == 250_000 and config.risk.MAX_EXPOSURE_PCT == 40


def test_metrics_by_hand():
    fills = [
        {"ts": 1, "symbol": "A_USDT", "side": "BUY", "quantity": 2.0, "price": 10.0, "fee": 0.02},
        {"ts": 2, "symbol": "A_USDT", "side": "SELL", "quantity": 2.0, "price": 11.0, "fee": 0.022},
        {"ts": 3, "symbol": "B_USDT", "side": "BUY", "quantity": 1.0, "price": 5.0, "fee": 0.005},
    ]
    trips = round_trips(fills)
    assert trips[0]["pnl"] == pytest.approx(22 - 20 - 0.042)
    assert trips[1]["open"] is True
    sharpe, sortino = ratios([(0, 110.0), (1, 99.0), (2, 108.9)], 100.0)
    rets = np.array([0.1, -0.1, 0.1])
    assert sharpe == pytest.approx(rets.mean() / rets.std(ddof=1) * np.sqrt(365))
    assert sortino == pytest.approx(rets.mean() / np.sqrt((0.1**2) / 3) * np.sqrt(365))


def test_deterministic_whatever_the_chunk_size(tmp_path):
    """Two runs, chunks of 3 rows (smaller than the lookback tail) and of 4,320: one result."""
    from dataclasses import asdict

    from test_backtest_equivalence import rough_market

    data = rough_market(tmp_path / "m.csv", seed=7, minutes=1440, n_symbols=3)
    config = Config.load({**ENV, "SIGNAL_THRESHOLD_PCT": "2", "MAX_DAILY_DRAWDOWN_PCT": "3"})
    runs = [asdict(Backtest([data], config, keep_log=True, chunk_rows=n).run()) for n in (3, 4_320)]
    for r in runs:
        r.pop("seconds")
        r.pop("loop_seconds")
    assert runs[0] == runs[1]
    assert runs[0]["fills"]


def test_a_big_csv_grouped_by_symbol_gives_the_time_sorted_result(tmp_path):
    """Larger than one read batch and not in time order: read whole, sorted, same run."""
    from test_backtest_equivalence import rough_market

    data = rough_market(tmp_path / "sorted.csv", seed=5, minutes=16_000, n_symbols=4)
    header, *rows = data.read_text().splitlines()
    grouped = tmp_path / "grouped.csv"
    grouped.write_text("\n".join([header, *sorted(rows, key=lambda r: r.split(",")[1])]) + "\n")
    assert grouped.stat().st_size > 4 << 20  # more than one batch
    config = Config.load({**ENV, "SIGNAL_THRESHOLD_PCT": "2"})
    a, b = (Backtest([p], config).run() for p in (data, grouped))
    assert a.fills == b.fills and a.candles == b.candles and a.fills


def test_without_the_backtest_extra_the_install_is_named(tmp_path):
    """The services' image has no pyarrow: ``cdb backtest`` says what to install, exit 2."""
    fake = tmp_path / "shadow" / "pyarrow"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text(
        "raise ModuleNotFoundError(\"No module named 'pyarrow'\", name='pyarrow')\n"
    )
    data = hand_file(tmp_path / "candles.csv")
    env = {
        **os.environ,
        "PYTHONPATH": f"{tmp_path / 'shadow'}:{REPO / 'services'}:{REPO / 'operator'}",
    }
    done = subprocess.run(
        [sys.executable, "-m", "cdb", "backtest", str(data), "--no-progress"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2
    assert "pip install 'claire-de-binare[backtest]'" in done.stderr

"""Shared test data for the advisor: a small synthetic candle file and a model trained on it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SYMBOLS = "BTC_USDT,ETH_USDT,SOL_USDT"
CANDLES = 2000


def cdb(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """Run ``python -m cdb ARGS`` and return the finished process (text output)."""
    return subprocess.run(
        [sys.executable, "-m", "cdb", *args], capture_output=True, text=True, timeout=timeout
    )


def cdb_here(capsys, *args: str) -> tuple[int, str, str]:
    """``cdb ARGS`` in this process (no interpreter start-up): (exit code, stdout, stderr)."""
    from cdb.cli import main

    capsys.readouterr()
    code = main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


def make_data(directory: Path, candles: int = CANDLES, seed: int = 7) -> Path:
    path = directory / "candles.csv"
    done = cdb(
        "ml", "sample", "--output", str(path), "--symbols", SYMBOLS,
        "--candles", str(candles), "--seed", str(seed),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return path


def train_model(data: Path, out: Path, *extra: str, capsys=None) -> dict:
    """``cdb ml train`` as a process, or in this process when given pytest's ``capsys``."""
    args = ("ml", "train", "--data", str(data), "--output", str(out), *extra)
    if capsys is None:
        done = cdb(*args)
        code, stdout, stderr = done.returncode, done.stdout, done.stderr
    else:
        code, stdout, stderr = cdb_here(capsys, *args)
    assert code == 0, stderr
    assert out.name in stdout
    return json.loads(out.read_text())


def model_file(directory: Path, lookback_min: int = 15, candles: int = 1500) -> Path:
    """Train a model in this process (no CLI start-up) and write its artifact; returns the path."""
    import io

    from cdb.advisor import data, dataset, train
    from cdb.signal.strategies.momentum import Momentum

    buf = io.StringIO()
    data.write_sample(buf, SYMBOLS.split(","), candles)
    csv_path = directory / "train.csv"
    csv_path.write_text(buf.getvalue())
    candles_by_symbol = data.read_csv([csv_path])
    window = dataset.WindowSpec(lookback_min, "1m")
    label = dataset.LabelSpec()
    rows = dataset.build(candles_by_symbol, window, label, Momentum())
    artifact = train.train(
        rows,
        window=window,
        label=label,
        rule=Momentum(),
        data_hash=data.data_hash(candles_by_symbol),
    )
    path = directory / f"model-{lookback_min}.json"
    path.write_text(json.dumps(artifact))
    return path

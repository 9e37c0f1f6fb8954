"""``cdb up --advisor [MODEL]``: the advisor as one more local child, in shadow mode.

Without a model file, one is trained first on the synthetic market's candles (the same
generator the local feed runs, ``cdb ml sample``), in about a second; it is written to
the data directory as ``advisor-model.json``.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

from cdb.advisor import data, dataset, train
from cdb.signal.strategies.momentum import Momentum

NAME = "advisor"
SAMPLE_SYMBOLS = ["BTC_USDT", "ETH_USDT", "SOL_USDT"]


def ensure_model(requested: str, data_dir: Path, lookback_min: int = 15) -> Path:
    """The model to run: ``requested`` if it names a file, else one trained now in ``data_dir``."""
    if requested:
        return Path(requested).resolve()
    buf = io.StringIO()
    data.write_sample(buf, SAMPLE_SYMBOLS, 3000)
    csv_path = data_dir / "advisor-sample.csv"
    csv_path.write_text(buf.getvalue())
    candles = data.read_csv([csv_path])
    window, label, rule = dataset.WindowSpec(lookback_min, "1m"), dataset.LabelSpec(), Momentum()
    artifact = train.train(
        dataset.build(candles, window, label, rule),
        window=window,
        label=label,
        rule=rule,
        data_hash=data.data_hash(candles),
    )
    path = data_dir / "advisor-model.json"
    path.write_text(json.dumps(artifact, indent=2, sort_keys=True) + "\n")
    return path

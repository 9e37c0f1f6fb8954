"""``cdb ml train``: fit the model on a time-based split and write the versioned artifact.

Split (no look-ahead): rows are ordered by time; the first ``train_fraction`` of the
period trains, the rest is held out. Rows whose label horizon reaches into the held-out
period are dropped from training (an embargo), so no training label has seen a held-out
price. The model is scikit-learn's ``StandardScaler`` + ``LogisticRegression``; the
artifact keeps only its numbers (see ``linear.py``), with the training data's hash, the
features, the label and window definitions, the metrics on both periods, and the library
versions, under a version derived from all of them.
"""

from __future__ import annotations

import hashlib
import json
import platform
import time
from typing import Any

import numpy as np
import sklearn
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from cdb import __version__
from cdb.advisor import metrics
from cdb.advisor.dataset import Dataset, LabelSpec, WindowSpec
from cdb.advisor.features import FEATURES, LONG_WINDOWS
from cdb.advisor.linear import FORMAT, LinearModel
from cdb.signal.strategies.momentum import Momentum


class TrainingError(ValueError):
    """Too little data, or a period with only one class: nothing sensible can be fitted."""


def split_ts(data: Dataset, train_fraction: float) -> int:
    """First timestamp of the held-out period: the ``train_fraction`` point of the period."""
    if not 0 < train_fraction < 1:
        raise TrainingError(f"train fraction must be in (0, 1), got {train_fraction}")
    start, end = int(data.ts.min()), int(data.ts.max())
    return start + int((end - start) * train_fraction)


def train(
    data: Dataset,
    *,
    window: WindowSpec,
    label: LabelSpec,
    rule: Momentum,
    data_hash: str,
    train_fraction: float = 0.7,
    c: float = 1.0,
) -> dict[str, Any]:
    """Fit and return the artifact (a JSON-ready dict); raises ``TrainingError``."""
    if len(data) < 50:
        raise TrainingError(f"{len(data)} labelled rows; at least 50 are needed")
    cut = split_ts(data, train_fraction)
    embargo = label.horizon * window.interval_s
    train_rows = data.select(data.ts + embargo < cut)
    test_rows = data.select(data.ts >= cut)
    if len(set(train_rows.y.tolist())) < 2:
        raise TrainingError("the training period has only one label class")
    scaler = StandardScaler().fit(train_rows.x)
    clf = LogisticRegression(C=c, max_iter=2000).fit(scaler.transform(train_rows.x), train_rows.y)
    body: dict[str, Any] = {
        "format": FORMAT,
        "kind": "logistic_regression",
        "features": list(FEATURES),
        "model": {
            "mean": scaler.mean_.tolist(),
            "scale": [float(s) if s > 0 else 1.0 for s in scaler.scale_],
            "coef": clf.coef_[0].tolist(),
            "intercept": float(clf.intercept_[0]),
            "C": c,
        },
        "threshold": 0.5,  # replaced below, once the probabilities are known
        "window": {
            "lookback_min": window.lookback_min,
            "interval": window.interval,
            "candles": window.candles,
            "long_windows": LONG_WINDOWS,
        },
        "rule": {"threshold_pct": float(rule.threshold_pct), "min_volume": float(rule.min_volume)},
        "label": {
            "horizon": label.horizon,
            "fee_pct": label.fee_pct,
            "min_edge_pct": label.min_edge_pct,
            "cost_pct": label.cost_pct,
            "definition": label.describe(),
        },
        "training_data": {
            "hash": data_hash,
            "rows": len(data),
            "symbols": sorted(set(data.symbol.tolist())),
            "from_ts": int(data.ts.min()),
            "to_ts": int(data.ts.max()),
            "split_ts": cut,
            "embargo_s": embargo,
            "train_rows": len(train_rows),
            "test_rows": len(test_rows),
        },
        "library_versions": {
            "python": platform.python_version(),
            "scikit-learn": sklearn.__version__,
            "numpy": np.__version__,
            "cdb": __version__,
        },
    }
    model = LinearModel.from_artifact({**body, "version": "pending"})
    p_train = probabilities(model, train_rows.x)
    body["threshold"] = metrics.best_threshold(p_train, train_rows.forward_pct - label.cost_pct)
    model = LinearModel.from_artifact({**body, "version": "pending"})
    base = float(train_rows.y.mean())
    body["metrics"] = {
        "train": metrics.scores(train_rows.y, p_train, body["threshold"], base),
        "test": metrics.scores(
            test_rows.y, probabilities(model, test_rows.x), body["threshold"], base
        )
        if len(test_rows)
        else None,
        "rule_test": metrics.rule_scores(test_rows.y, test_rows.rule) if len(test_rows) else None,
    }
    digest = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()
    body["version"] = f"lr-{digest[:12]}"
    body["created_at"] = int(time.time())
    return body


def probabilities(model: LinearModel, x: np.ndarray) -> np.ndarray:
    """Vectorised ``LinearModel.probability`` over rows of ``x``."""
    if len(x) == 0:
        return np.zeros(0)
    z = (x - np.array(model.mean)) / np.array(model.scale) @ np.array(model.coef)
    return 1.0 / (1.0 + np.exp(-(z + model.intercept)))

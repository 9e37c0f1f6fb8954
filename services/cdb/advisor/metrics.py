"""Classification figures for a scored period: precision, recall, AUC, Brier, calibration.

scikit-learn computes them (``sklearn.metrics``); this module only chooses which, and
shapes them for the artifact and the printed tables. ``baseline_brier`` is the Brier
score of the trivial model that always predicts the training base rate: a model that does
not beat it has learnt nothing.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.metrics import brier_score_loss, precision_score, recall_score, roc_auc_score


def scores(y: np.ndarray, p: np.ndarray, threshold: float, base_rate: float) -> dict[str, Any]:
    """Figures of probabilities ``p`` against labels ``y`` at ``threshold``.

    Keys: rows, positives, base_rate, predicted (rows at or above threshold), precision,
    recall, auc (None when only one class is present), brier, baseline_brier.
    """
    y = np.asarray(y, dtype=int)
    p = np.asarray(p, dtype=float)
    predicted = (p >= threshold).astype(int)
    both = len(set(y.tolist())) == 2
    return {
        "rows": int(len(y)),
        "positives": int(y.sum()),
        "base_rate": float(y.mean()) if len(y) else 0.0,
        "predicted": int(predicted.sum()),
        "precision": float(precision_score(y, predicted, zero_division=0)),
        "recall": float(recall_score(y, predicted, zero_division=0)),
        "auc": float(roc_auc_score(y, p)) if both else None,
        "brier": float(brier_score_loss(y, p)) if len(y) else None,
        "baseline_brier": float(brier_score_loss(y, np.full(len(y), base_rate)))
        if len(y)
        else None,
    }


def rule_scores(y: np.ndarray, fired: np.ndarray) -> dict[str, Any]:
    """Precision and recall of the momentum rule's own decisions on the same rows."""
    y = np.asarray(y, dtype=int)
    fired = np.asarray(fired, dtype=int)
    return {
        "predicted": int(fired.sum()),
        "precision": float(precision_score(y, fired, zero_division=0)),
        "recall": float(recall_score(y, fired, zero_division=0)),
    }


def calibration(y: np.ndarray, p: np.ndarray, bins: int = 10) -> list[dict[str, Any]]:
    """Equal-width probability bins: rows, mean predicted and observed rate per bin."""
    y = np.asarray(y, dtype=int)
    p = np.asarray(p, dtype=float)
    edges = np.linspace(0.0, 1.0, bins + 1)
    index = np.clip(np.digitize(p, edges[1:-1]), 0, bins - 1)
    table = []
    for b in range(bins):
        mask = index == b
        n = int(mask.sum())
        table.append(
            {
                "from": float(edges[b]),
                "to": float(edges[b + 1]),
                "rows": n,
                "mean_predicted": float(p[mask].mean()) if n else None,
                "observed": float(y[mask].mean()) if n else None,
            }
        )
    return table


def best_threshold(p: np.ndarray, net_pct: np.ndarray) -> float:
    """The probability threshold that would have earned most after costs on these rows.

    ``net_pct`` is each row's forward return minus the costs (%); the threshold maximises
    the sum of ``net_pct`` over rows at or above it. Candidates are the 50th…99th
    percentiles of ``p`` (so at least 1 % of rows signal); ties go to the higher threshold
    (fewer, surer signals). Used on the training rows only.
    """
    p = np.asarray(p, dtype=float)
    net_pct = np.asarray(net_pct, dtype=float)
    best, best_sum = 0.5, -np.inf
    for q in range(50, 100):
        t = float(np.percentile(p, q))
        total = float(net_pct[p >= t].sum())
        if total >= best_sum:
            best, best_sum = t, total
    return min(max(best, 1e-6), 1 - 1e-6)

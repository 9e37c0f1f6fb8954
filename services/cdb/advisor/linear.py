"""The model artifact and its scorer: a standardised logistic regression as plain JSON.

Why JSON and not a pickle: loading a pickle runs code, and the advisor loads its model
from a ConfigMap or a volume; a JSON file of numbers is data. Why logistic regression:
its score is a sum of per-feature terms, so every ``ml_signal`` can name exactly what
pushed it (``contributions``), which the manifesto asks of every decision. The advisor
needs no scikit-learn at run time: scoring is the formula below, checked against
scikit-learn's own ``predict_proba`` in the tests.

``p = 1 / (1 + exp(-(intercept + Σ coef_i · (x_i - mean_i) / scale_i)))``
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

FORMAT = "cdb-advisor-model/1"


class ModelError(ValueError):
    """An artifact that cannot be used: unreadable, wrong format, or inconsistent."""


@dataclass(frozen=True)
class LinearModel:
    """A trained model as the advisor uses it; ``meta`` is the artifact's full JSON."""

    version: str
    features: tuple[str, ...]
    mean: tuple[float, ...]
    scale: tuple[float, ...]
    coef: tuple[float, ...]
    intercept: float
    threshold: float
    meta: dict[str, Any]

    @classmethod
    def from_artifact(cls, data: dict[str, Any]) -> LinearModel:
        """Build from the artifact's JSON; raises ``ModelError`` naming what is wrong."""
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise ModelError(f"not a {FORMAT} artifact")
        try:
            model = data["model"]
            features = tuple(str(f) for f in data["features"])
            vectors = [tuple(float(v) for v in model[k]) for k in ("mean", "scale", "coef")]
            out = cls(
                version=str(data["version"]),
                features=features,
                mean=vectors[0],
                scale=vectors[1],
                coef=vectors[2],
                intercept=float(model["intercept"]),
                threshold=float(data["threshold"]),
                meta=data,
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelError(f"artifact lacks or mangles {exc}") from None
        if not all(len(v) == len(features) for v in vectors):
            raise ModelError("mean, scale and coef must have one value per feature")
        if any(s <= 0 for s in out.scale) or not 0 < out.threshold < 1:
            raise ModelError("scale must be > 0 and threshold in (0, 1)")
        return out

    @classmethod
    def load(cls, path: Path) -> LinearModel:
        """Read an artifact file; raises ``ModelError``."""
        try:
            data = json.loads(Path(path).read_text())
        except (OSError, ValueError) as exc:
            raise ModelError(f"cannot read {path}: {exc}") from None
        return cls.from_artifact(data)

    def terms(self, x: list[float]) -> list[float]:
        """Each feature's log-odds contribution ``coef · (x - mean) / scale``."""
        return [
            c * (v - m) / s for v, m, s, c in zip(x, self.mean, self.scale, self.coef, strict=True)
        ]

    def probability(self, x: list[float]) -> float:
        """The probability that the label holds, in [0, 1]."""
        z = self.intercept + sum(self.terms(x))
        if z < -700:
            return 0.0
        return 1.0 / (1.0 + math.exp(-z))

    def explain(self, x: list[float], top: int = 3) -> list[dict[str, float | str]]:
        """The ``top`` largest contributions by size: feature, value, contribution."""
        terms = self.terms(x)
        order = sorted(range(len(terms)), key=lambda i: abs(terms[i]), reverse=True)[:top]
        return [
            {"feature": self.features[i], "value": x[i], "contribution": terms[i]} for i in order
        ]

    @property
    def lookback_min(self) -> int:
        return int(self.meta["window"]["lookback_min"])

    @property
    def interval(self) -> str:
        return str(self.meta["window"]["interval"])

    @property
    def horizon(self) -> int:
        return int(self.meta["label"]["horizon"])

    @property
    def cost_pct(self) -> float:
        """Return (%) a trade must beat to count as a hit: round-trip fees plus margin."""
        return float(self.meta["label"]["cost_pct"])

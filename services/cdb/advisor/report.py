"""``cdb ml report``: the rules and the model over the same period, side by side.

Every labelled observation of the period gets two decisions: the momentum rule's
(``Momentum.evaluate``, the signal engine's own code) and the model's (probability ≥
the model's threshold). From them:

* **agreement**: observations where both, only the rules, only the model, or neither
  signalled, each with its hit rate (the label: forward return beats the costs) and
  mean forward return;
* **earnings**: each side trades its signals — buy at the observation's price, sell
  ``horizon`` observations later, pay the round-trip costs (``cost_pct``), one trade per
  symbol at a time (signals while holding are skipped, as a cooldown would) — and the
  report sums the net returns, in % of one stake per trade;
* **disagreements**: the largest forward moves where only the rules, and where only the
  model, signalled (half of ``top`` each, in time order);
* **verdict**: ``GO`` (worth a person's review for promotion) only if the model made at
  least ``min_trades`` trades, its hit rate and its net earnings are at least the rules'
  and its net earnings are positive; otherwise ``NO-GO`` with the failed criteria.
  Nothing is promoted automatically: the advisor has no route to trading either way.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import numpy as np

from cdb.advisor.dataset import Dataset
from cdb.advisor.linear import LinearModel
from cdb.advisor.train import probabilities

CATEGORIES = ("both", "only_rules", "only_ml", "neither")


def _iso(ts: int) -> str:
    return dt.datetime.fromtimestamp(int(ts), dt.UTC).strftime("%Y-%m-%d %H:%M")


def simulate(data: Dataset, decisions: np.ndarray, horizon: int, cost_pct: float) -> dict:
    """Non-overlapping trades per symbol; net % per trade after ``cost_pct``."""
    nets: list[float] = []
    busy_until: dict[str, int] = {}
    seen: dict[str, int] = {}
    for i in range(len(data)):
        symbol = data.symbol[i]
        k = seen[symbol] = seen.get(symbol, -1) + 1
        if decisions[i] and k >= busy_until.get(symbol, 0):
            nets.append(float(data.forward_pct[i]) - cost_pct)
            busy_until[symbol] = k + horizon
    arr = np.array(nets)
    return {
        "trades": len(nets),
        "hit_rate": float((arr > 0).mean()) if len(nets) else None,
        "net_pct": float(arr.sum()),
        "mean_net_pct": float(arr.mean()) if len(nets) else None,
    }


def compare(data: Dataset, model: LinearModel, min_trades: int = 30, top: int = 10) -> dict:
    """The whole report as a dict (``--json`` prints it as is)."""
    p = probabilities(model, data.x)
    ml = p >= model.threshold
    rule = data.rule.astype(bool)
    masks = {
        "both": rule & ml,
        "only_rules": rule & ~ml,
        "only_ml": ~rule & ml,
        "neither": ~rule & ~ml,
    }
    agreement = {}
    for name, mask in masks.items():
        n = int(mask.sum())
        agreement[name] = {
            "observations": n,
            "hit_rate": float(data.y[mask].mean()) if n else None,
            "mean_forward_pct": float(data.forward_pct[mask].mean()) if n else None,
        }
    horizon, cost = model.horizon, model.cost_pct
    earnings = {
        "rules": simulate(data, rule, horizon, cost),
        "ml": simulate(data, ml, horizon, cost),
        "both_agree": simulate(data, rule & ml, horizon, cost),
    }
    order = []
    for side in (rule & ~ml, ~rule & ml):  # the largest moves each side alone signalled
        idx = np.flatnonzero(side)
        order += idx[np.argsort(-np.abs(data.forward_pct[idx]))][: top // 2].tolist()
    order.sort(key=lambda i: int(data.ts[i]))
    disagreements = [
        {
            "time": _iso(data.ts[i]),
            "symbol": str(data.symbol[i]),
            "signalled": "rules" if rule[i] else "ml",
            "pct_change": float(data.x[i][0]),
            "probability": float(p[i]),
            "forward_pct": float(data.forward_pct[i]),
            "right": ("rules" if rule[i] else "ml")
            if data.y[i]
            else ("ml" if rule[i] else "rules"),
        }
        for i in order
    ]
    ml_e, rule_e = earnings["ml"], earnings["rules"]
    failed = []
    if ml_e["trades"] < min_trades:
        failed.append(f"the model made {ml_e['trades']} trades, fewer than {min_trades}")
    if (ml_e["hit_rate"] or 0) < (rule_e["hit_rate"] or 0):
        failed.append("its hit rate is below the rules'")
    if ml_e["net_pct"] < rule_e["net_pct"]:
        failed.append("it earned less than the rules after fees")
    if ml_e["net_pct"] <= 0:
        failed.append("it did not earn anything after fees")
    return {
        "model_version": model.version,
        "period": {
            "from": _iso(data.ts.min()) if len(data) else None,
            "to": _iso(data.ts.max()) if len(data) else None,
            "observations": len(data),
            "symbols": sorted(set(data.symbol.tolist())),
        },
        "label": model.meta["label"]["definition"],
        "threshold": model.threshold,
        "agreement": agreement,
        "earnings": earnings,
        "disagreements": disagreements,
        "verdict": "GO" if not failed else "NO-GO",
        "failed": failed,
    }


def _pct(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value * 100:.{digits}f} %"


def _num(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:+.{digits}f}"


def render(report: dict[str, Any]) -> str:
    """The report as text (what ``cdb ml report`` prints)."""
    per = report["period"]
    lines = [
        f"ML advisor report - model {report['model_version']}",
        f"period {per['from']} .. {per['to']} UTC, {per['observations']} observations, "
        f"symbols {', '.join(per['symbols'])}",
        f"label: {report['label']}; model threshold {report['threshold']:.3f}",
        "",
        "agreement (per observation, before cooldowns)",
        f"  {'':<12}{'obs':>8}{'hit rate':>11}{'mean fwd %':>12}",
    ]
    for name in CATEGORIES:
        a = report["agreement"][name]
        lines.append(
            f"  {name:<12}{a['observations']:>8}{_pct(a['hit_rate']):>11}"
            f"{_num(a['mean_forward_pct'], 3):>12}"
        )
    lines += ["", "earnings after fees (one trade per symbol at a time, % of one stake)"]
    lines.append(f"  {'':<12}{'trades':>8}{'hit rate':>11}{'net %':>10}{'mean %':>10}")
    for name, e in report["earnings"].items():
        lines.append(
            f"  {name:<12}{e['trades']:>8}{_pct(e['hit_rate']):>11}"
            f"{_num(e['net_pct']):>10}{_num(e['mean_net_pct'], 3):>10}"
        )
    lines += ["", "largest disagreements"]
    for d in report["disagreements"]:
        lines.append(
            f"  {d['time']} {d['symbol']:<10} {d['signalled']:<5} signalled: "
            f"move {d['pct_change']:+.2f} %, p {d['probability']:.2f}, "
            f"forward {d['forward_pct']:+.2f} % -> {d['right']} right"
        )
    lines += ["", f"verdict: {report['verdict']}"]
    lines += [f"  - {reason}" for reason in report["failed"]]
    return "\n".join(lines)

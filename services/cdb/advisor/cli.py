"""``cdb ml``: make sample data, train, evaluate, and compare the model with the rules.

::

    cdb ml sample   --output candles.csv [--symbols BTC_USDT,ETH_USDT] [--candles 3000]
    cdb ml train    --data candles.csv [--data more.csv] --output model.json
    cdb ml evaluate --model model.json --data candles.csv [--from TS] [--to TS]
    cdb ml report   --model model.json --data candles.csv [--from TS] [--to TS] [--json]

``--data`` files are the backtest's CSV (``symbol,timestamp,open,high,low,close,volume``,
timestamps in Unix seconds). ``evaluate`` and ``report`` default to the model's held-out
period (from its ``split_ts`` on). Bad input exits 2 with one line saying what is wrong.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

SAMPLE_SYMBOLS = "BTC_USDT,ETH_USDT,SOL_USDT"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="ml_command", required=True)
    sample = sub.add_parser("sample", help="write synthetic candles in the backtest's CSV format")
    sample.add_argument("--output", type=Path, required=True)
    sample.add_argument("--symbols", default=SAMPLE_SYMBOLS)
    sample.add_argument("--candles", type=int, default=3000, help="1m candles per symbol")
    sample.add_argument("--seed", type=int, default=7)

    train = sub.add_parser("train", help="train a model and write its artifact (JSON)")
    train.add_argument("--data", type=Path, action="append", required=True)
    train.add_argument("--output", type=Path, required=True)
    train.add_argument("--lookback-min", type=int, default=15, help="SIGNAL_LOOKBACK_MIN")
    train.add_argument("--interval", default="1m", help="candle interval of the data")
    train.add_argument("--horizon", type=int, default=15, help="label horizon, observations")
    train.add_argument("--fee-pct", type=float, default=0.1, help="fee per side, %%")
    train.add_argument("--min-edge-pct", type=float, default=0.0, help="required edge, %%")
    train.add_argument("--threshold-pct", type=float, default=3.0, help="SIGNAL_THRESHOLD_PCT")
    train.add_argument("--min-volume", type=float, default=100_000, help="SIGNAL_MIN_VOLUME")
    train.add_argument("--train-fraction", type=float, default=0.7)
    train.add_argument("--c", type=float, default=1.0, help="inverse regularisation strength")

    for name, text in (
        ("evaluate", "precision/recall/AUC and calibration on the held-out period"),
        ("report", "rules vs model over a period: hit rates, earnings, disagreements"),
    ):
        p = sub.add_parser(name, help=text)
        p.add_argument("--model", type=Path, required=True)
        p.add_argument("--data", type=Path, action="append", required=True)
        p.add_argument("--from", dest="from_ts", type=int, help="Unix s (default: split_ts)")
        p.add_argument("--to", dest="to_ts", type=int, help="Unix s (default: end of data)")
        p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    report = sub.choices["report"]
    report.add_argument("--min-trades", type=int, default=30, help="fewest trades for a GO")


def _fail(message: str) -> int:
    print(f"cdb ml: {message}", file=sys.stderr)
    return 2


def main(args: argparse.Namespace) -> int:
    from cdb.advisor.data import DataError
    from cdb.advisor.linear import ModelError
    from cdb.advisor.train import TrainingError

    try:
        return {"sample": _sample, "train": _train, "evaluate": _evaluate, "report": _report}[
            args.ml_command
        ](args)
    except (DataError, ModelError, TrainingError) as exc:
        return _fail(str(exc))
    except ValueError as exc:  # a bad option value (e.g. a lookback not a whole window)
        return _fail(str(exc))


def _sample(args: argparse.Namespace) -> int:
    from cdb.advisor.data import write_sample

    with args.output.open("w") as out:
        n = write_sample(out, [s.strip() for s in args.symbols.split(",")], args.candles, args.seed)
    print(f"wrote {n} candles to {args.output}")
    return 0


def _train(args: argparse.Namespace) -> int:
    from cdb.advisor import data, dataset
    from cdb.advisor.dataset import LabelSpec, WindowSpec
    from cdb.advisor.train import train
    from cdb.signal.strategies.momentum import Momentum

    window = WindowSpec(args.lookback_min, args.interval)
    _ = window.candles  # raises ValueError for a window that is not whole candles
    label = LabelSpec(args.horizon, args.fee_pct, args.min_edge_pct)
    rule = Momentum(args.threshold_pct, args.min_volume)
    candles = data.read_csv(args.data)
    rows = dataset.build(candles, window, label, rule)
    artifact = train(
        rows,
        window=window,
        label=label,
        rule=rule,
        data_hash=data.data_hash(candles),
        train_fraction=args.train_fraction,
        c=args.c,
    )
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(artifact, indent=2, sort_keys=True) + "\n")
    test = artifact["metrics"]["test"] or {}
    print(
        f"model {artifact['version']} -> {args.output}: {artifact['training_data']['train_rows']}"
        f" training rows, {artifact['training_data']['test_rows']} held out; held-out AUC "
        f"{_fmt(test.get('auc'))}, Brier {_fmt(test.get('brier'))} (baseline "
        f"{_fmt(test.get('baseline_brier'))}), threshold {artifact['threshold']:.3f}"
    )
    return 0


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def _period(args: argparse.Namespace) -> tuple[Any, Any]:
    from cdb.advisor import data, dataset
    from cdb.advisor.dataset import LabelSpec, WindowSpec
    from cdb.advisor.linear import LinearModel
    from cdb.signal.strategies.momentum import Momentum

    model = LinearModel.load(args.model)
    rule_meta = model.meta["rule"]
    label = model.meta["label"]
    rows = dataset.build(
        data.read_csv(args.data),
        WindowSpec(model.lookback_min, model.interval),
        LabelSpec(label["horizon"], label["fee_pct"], label["min_edge_pct"]),
        Momentum(rule_meta["threshold_pct"], rule_meta["min_volume"]),
    )
    start = args.from_ts if args.from_ts is not None else model.meta["training_data"]["split_ts"]
    mask = rows.ts >= start
    if args.to_ts is not None:
        mask &= rows.ts <= args.to_ts
    period = rows.select(mask)
    if len(period) == 0:
        raise ValueError("no labelled observations in the period")
    return model, period


def _evaluate(args: argparse.Namespace) -> int:
    from cdb.advisor import metrics
    from cdb.advisor.train import probabilities

    model, period = _period(args)
    p = probabilities(model, period.x)
    base = model.meta["metrics"]["train"]["base_rate"]
    out = {
        "model_version": model.version,
        "rows": len(period),
        "model": metrics.scores(period.y, p, model.threshold, base),
        "rules": metrics.rule_scores(period.y, period.rule),
        "calibration": metrics.calibration(period.y, p),
    }
    if args.json:
        print(json.dumps(out, indent=2))
        return 0
    m, r = out["model"], out["rules"]
    print(f"model {model.version} on {len(period)} held-out observations")
    print(f"label: {model.meta['label']['definition']}; base rate {m['base_rate']:.3f}")
    print(f"{'':<22}{'signals':>8}{'precision':>11}{'recall':>8}{'AUC':>7}{'Brier':>8}")
    print(
        f"{'model @' + format(model.threshold, '.3f'):<22}{m['predicted']:>8}"
        f"{m['precision']:>11.3f}{m['recall']:>8.3f}{_fmt(m['auc']):>7}{_fmt(m['brier']):>8}"
    )
    print(f"{'momentum rule':<22}{r['predicted']:>8}{r['precision']:>11.3f}{r['recall']:>8.3f}")
    print(
        f"{'base rate (trivial)':<22}{'':>8}{'':>11}{'':>8}{'0.500':>7}"
        f"{_fmt(m['baseline_brier']):>8}"
    )
    print("\ncalibration")
    print(f"  {'probability':<14}{'rows':>7}{'predicted':>11}{'observed':>10}")
    for b in out["calibration"]:
        if b["rows"]:
            print(
                f"  {b['from']:.1f} - {b['to']:.1f}{'':<5}{b['rows']:>7}"
                f"{b['mean_predicted']:>11.3f}{b['observed']:>10.3f}"
            )
    return 0


def _report(args: argparse.Namespace) -> int:
    from cdb.advisor.report import compare, render

    model, period = _period(args)
    report = compare(period, model, min_trades=args.min_trades)
    print(json.dumps(report, indent=2) if args.json else render(report))
    return 0

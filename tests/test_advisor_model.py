"""The advisor's model: features, labels, a time-based split, training that beats a trivial
baseline in seconds, the JSON artifact, and ``cdb ml evaluate`` / ``report`` as a user runs them."""

from __future__ import annotations

import csv
import json
import math
import random
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest
from advisor_data import cdb_here, make_data, train_model
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from cdb.advisor import data as ml_data
from cdb.advisor import dataset
from cdb.advisor.agreement import Agreement
from cdb.advisor.features import FEATURES, FeatureBuilder
from cdb.advisor.linear import LinearModel, ModelError
from cdb.advisor.report import simulate
from cdb.advisor.train import probabilities
from cdb.events import MarketData
from cdb.signal.strategies.momentum import Momentum


@pytest.fixture(scope="module")
def trained():
    root = Path(tempfile.mkdtemp(prefix="cdb-ml-"))
    data = make_data(root)
    artifact = train_model(data, root / "model.json")
    yield data, root / "model.json", artifact
    shutil.rmtree(root, ignore_errors=True)


def test_a_model_trains_in_seconds_and_beats_the_trivial_baseline(trained):
    _, _, artifact = trained
    test = artifact["metrics"]["test"]
    assert test["rows"] > 1000 and 0.1 < test["base_rate"] < 0.9
    # ranking: better than chance; probabilities: better than always saying the base rate
    assert test["auc"] > 0.6, test
    assert test["brier"] < test["baseline_brier"] - 0.01, test
    # the signals it gives are right more often than a random observation's label
    assert test["precision"] > test["base_rate"] + 0.05, test


def test_the_artifact_is_versioned_with_data_hash_features_metrics_and_libraries(trained, capsys):
    data, path, artifact = trained
    assert artifact["format"] == "cdb-advisor-model/1"
    assert artifact["version"].startswith("lr-") and len(artifact["version"]) == 15
    candles = ml_data.read_csv([data])
    assert artifact["training_data"]["hash"] == ml_data.data_hash(candles)
    assert artifact["features"] == list(FEATURES)
    assert set(artifact["library_versions"]) == {"python", "scikit-learn", "numpy", "cdb"}
    assert artifact["label"]["cost_pct"] == 0.2
    assert "forward return over 15 observations > 0.2 %" in artifact["label"]["definition"]
    assert artifact["window"] == {
        "lookback_min": 15, "interval": "1m", "candles": 15, "long_windows": 4,
    }  # fmt: skip
    # the same data and options give the same version (created_at aside)
    again = train_model(data, path.with_name("again.json"), capsys=capsys)
    assert again["version"] == artifact["version"]
    assert again["model"] == artifact["model"]


def test_split_by_time_never_lets_the_held_out_period_shape_the_model(trained, tmp_path, capsys):
    data, _, artifact = trained
    split = artifact["training_data"]["split_ts"]
    embargo = artifact["training_data"]["embargo_s"]
    assert embargo == 15 * 60
    # Scramble every price after the split: the fitted model must not change at all.
    rows = list(csv.DictReader(data.open()))
    rng = random.Random(1)
    for row in rows:
        if int(row["timestamp"]) >= split:
            f = rng.uniform(0.5, 2.0)
            for k in ("open", "high", "low", "close"):
                row[k] = repr(float(row[k]) * f)
    scrambled = tmp_path / "scrambled.csv"
    with scrambled.open("w", newline="") as out:
        writer = csv.DictWriter(out, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    other = train_model(scrambled, tmp_path / "m.json", capsys=capsys)
    assert other["training_data"]["split_ts"] == split
    assert other["training_data"]["hash"] != artifact["training_data"]["hash"]
    assert other["model"] == artifact["model"]
    assert other["threshold"] == artifact["threshold"]
    assert other["metrics"]["test"] != artifact["metrics"]["test"]


def test_the_json_scorer_is_scikit_learns_own_probability(trained):
    data, path, artifact = trained
    model = LinearModel.load(path)
    rows = dataset.build(
        ml_data.read_csv([data]), dataset.WindowSpec(), dataset.LabelSpec(), Momentum()
    )
    cut, embargo = artifact["training_data"]["split_ts"], artifact["training_data"]["embargo_s"]
    train = rows.select(rows.ts + embargo < cut)
    scaler = StandardScaler().fit(train.x)
    clf = LogisticRegression(max_iter=2000).fit(scaler.transform(train.x), train.y)
    expected = clf.predict_proba(scaler.transform(rows.x))[:, 1]
    np.testing.assert_allclose(probabilities(model, rows.x), expected, atol=1e-9)
    assert math.isclose(model.probability(list(rows.x[0])), expected[0], abs_tol=1e-9)
    explained = model.explain(list(rows.x[0]), top=3)
    assert len(explained) == 3
    sizes = [abs(c["contribution"]) for c in explained]
    assert sizes == sorted(sizes, reverse=True)


def test_evaluate_prints_precision_recall_auc_and_calibration(trained, capsys):
    data, path, artifact = trained
    code, out, err = cdb_here(capsys, "ml", "evaluate", "--model", str(path), "--data", str(data))
    assert code == 0, err
    assert f"on {artifact['training_data']['test_rows']} held-out observations" in out
    for word in ("precision", "recall", "AUC", "Brier", "momentum rule", "calibration"):
        assert word in out
    as_json = json.loads(
        cdb_here(capsys, "ml", "evaluate", "--model", str(path), "--data", str(data), "--json")[1]
    )
    assert as_json["model"]["auc"] == pytest.approx(artifact["metrics"]["test"]["auc"])
    assert sum(b["rows"] for b in as_json["calibration"]) == as_json["rows"]


def test_report_compares_rules_and_model_and_gives_a_verdict(trained, capsys):
    data, path, _ = trained
    code, out, err = cdb_here(
        capsys, "ml", "report", "--model", str(path), "--data", str(data), "--json"
    )
    assert code == 0, err
    report = json.loads(out)
    agreement = report["agreement"]
    assert sum(a["observations"] for a in agreement.values()) == report["period"]["observations"]
    assert agreement["both"]["observations"] > 0 and agreement["only_ml"]["observations"] > 0
    assert {"rules", "ml", "both_agree"} == set(report["earnings"])
    assert report["disagreements"] and report["verdict"] in ("GO", "NO-GO")
    assert (report["verdict"] == "GO") == (not report["failed"])
    text = cdb_here(capsys, "ml", "report", "--model", str(path), "--data", str(data))[1]
    assert "earnings after fees" in text and f"verdict: {report['verdict']}" in text
    # an impossible bar: never a GO
    strict = cdb_here(
        capsys, "ml", "report", "--model", str(path), "--data", str(data), "--json",
        "--min-trades", "100000",
    )  # fmt: skip
    assert json.loads(strict[1])["verdict"] == "NO-GO"


def test_bad_input_exits_2_naming_file_and_line(tmp_path, capsys):
    bad = tmp_path / "bad.csv"
    bad.write_text(
        "symbol,timestamp,open,high,low,close,volume\nBTC_USDT,1704067200,1,2,0.5,1.5,10\n"
        "BTC_USDT,1704067260,1,2,0.5,3,10\n"
    )
    code, _, err = cdb_here(
        capsys, "ml", "train", "--data", str(bad), "--output", str(tmp_path / "m.json")
    )
    assert code == 2
    assert f"{bad}:3:" in err and "bracket" in err
    code, _, err = cdb_here(
        capsys, "ml", "evaluate", "--model", str(tmp_path / "nope.json"), "--data", str(bad)
    )
    assert code == 2 and "cannot read" in err
    with pytest.raises(ModelError):
        LinearModel.from_artifact({"format": "something else"})


def _md(ts: int, price: float, pct: float = 0.0, volume: float = 1000.0) -> MarketData:
    return MarketData(
        timestamp=ts, symbol="BTC_USDT", price=price, volume=volume, pct_change=pct, source="test"
    )


def test_features_warm_up_ignore_redeliveries_and_restart_after_a_gap():
    builder = FeatureBuilder(window=2, interval_s=60, rule=Momentum())
    assert builder.warmup == 9
    out = [builder.update(_md(60 * i, 100.0 + i)) for i in range(9)]
    assert out[:8] == [None] * 8 and out[8] is not None
    x = dict(zip(FEATURES, out[8], strict=True))
    assert x["ret_1"] == pytest.approx((108 / 107 - 1) * 100)
    assert x["ret_long"] == pytest.approx(8.0)
    assert x["volume_ratio"] == pytest.approx(1.0)
    assert x["momentum_rule"] == 0.0
    assert builder.update(_md(60 * 8, 999.0)) is None  # a redelivery: ignored
    hot = builder.update(_md(60 * 9, 120.0, pct=5.0, volume=200_000))
    assert hot[FEATURES.index("momentum_rule")] == 1.0
    assert hot[FEATURES.index("volume_ratio")] == pytest.approx(200.0)
    assert builder.update(_md(60 * 100, 120.0)) is None  # a gap: history starts again


def test_agreement_counts_categories_and_resolves_outcomes_after_the_horizon():
    a = Agreement(horizon=2, cost_pct=0.2)
    assert a.record("X", 100.0, rule=True, ml=True) == "both"
    assert a.record("X", 100.0, rule=False, ml=True) == "only_ml"
    assert a.outcomes == {}
    a.record("X", 101.0, rule=False, ml=False)  # resolves "both": +1 % > 0.2 %
    a.record("X", 100.1, rule=True, ml=False)  # resolves "only_ml": +0.1 % → miss
    assert a.outcomes == {("X", "both", "hit"): 1, ("X", "only_ml", "miss"): 1}
    assert a.forward_pct_sum[("X", "both")] == pytest.approx(1.0)
    assert a.totals()["neither"]["decisions"] == 1


def test_simulated_trades_do_not_overlap_and_pay_the_costs():
    n = 6
    rows = dataset.Dataset(
        x=np.zeros((n, len(FEATURES))),
        y=np.zeros(n, dtype=int),
        ts=np.arange(n),
        symbol=np.array(["A"] * n, dtype=object),
        price=np.ones(n),
        forward_pct=np.array([1.0, 5.0, 5.0, -1.0, 0.0, 0.0]),
        rule=np.zeros(n, dtype=bool),
    )
    out = simulate(rows, np.array([1, 1, 1, 1, 0, 0], dtype=bool), horizon=3, cost_pct=0.2)
    # trades at rows 0 and 3 only (row 1 and 2 fall inside the first trade's horizon)
    assert out["trades"] == 2
    assert out["net_pct"] == pytest.approx((1.0 - 0.2) + (-1.0 - 0.2))
    assert out["hit_rate"] == 0.5


def test_the_docs_example_is_what_its_commands_print(tmp_path, capsys, monkeypatch):
    """docs/advisor.md's `$ cdb ml …` lines, run as written: the same model quality and verdict."""
    import re
    import shlex

    doc = (Path(__file__).resolve().parents[1] / "docs" / "advisor.md").read_text()
    commands = [line[2:] for line in doc.splitlines() if line.startswith("$ cdb ml ")]
    assert [shlex.split(c)[2] for c in commands] == ["sample", "train", "evaluate", "report"]
    monkeypatch.chdir(tmp_path)
    printed = ""
    for command in commands:
        code, out, err = cdb_here(capsys, *shlex.split(command)[1:])
        assert code == 0, err
        printed += out

    def figure(text: str, pattern: str) -> float:
        return float(re.search(pattern, text).group(1))

    for pattern in (r"held-out AUC ([0-9.]+)", r"Brier ([0-9.]+) \(baseline"):
        assert figure(printed, pattern) == pytest.approx(figure(doc, pattern), abs=0.01)
    verdict = re.search(r"verdict: (\S+)", doc).group(1)
    assert f"verdict: {verdict}" in printed


def test_a_model_that_is_right_where_the_rule_is_not_gets_a_go(trained):
    _, path, _ = trained
    meta = json.loads(path.read_text())
    n = len(FEATURES)
    # a model that only looks at ret_1 (index 3), very sharply
    meta["model"] = {
        "mean": [0.0] * n, "scale": [1.0] * n, "intercept": 0.0,
        "coef": [0.0, 0.0, 0.0, 20.0, 0.0, 0.0, 0.0, 0.0],
    }  # fmt: skip
    meta["threshold"] = 0.5
    model = LinearModel.from_artifact(meta)
    rng = np.random.default_rng(3)
    rows = 400
    winner = rng.random(rows) < 0.4
    x = np.zeros((rows, n))
    x[:, 3] = np.where(winner, 1.0, -1.0)  # the model sees who wins
    forward = np.where(winner, 1.0, -1.0)
    data = dataset.Dataset(
        x=x,
        y=(forward > model.cost_pct).astype(int),
        ts=np.arange(rows) * 60,
        symbol=np.array(["A", "B"] * (rows // 2), dtype=object),
        price=np.ones(rows),
        forward_pct=forward,
        rule=rng.random(rows) < 0.3,  # the rule fires at random
    )
    from cdb.advisor.report import compare

    report = compare(data, model, min_trades=5)
    assert report["verdict"] == "GO", report["failed"]
    assert report["earnings"]["ml"]["hit_rate"] == 1.0
    assert report["agreement"]["only_rules"]["hit_rate"] == 0.0
    assert compare(data, model, min_trades=10_000)["failed"] == [
        f"the model made {report['earnings']['ml']['trades']} trades, fewer than 10000"
    ]

"""Smoke tests of the benchmarks: each runs on tiny sizes and prints its table.

No figure is asserted (timing belongs to ``bench/``, not to tests); what is checked
is that every benchmark runs against the real servers and processes, measures
something, finds nothing lost, and writes its section of the docs without
touching the hand-written text around it.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # `bench` is a top-level directory, not an installed package
    sys.path.insert(0, str(ROOT))

from bench import (  # noqa: E402
    backtest,
    feed_rate,
    latency,
    operator_bench,
    pipeline,
    pipeline_noaof,
    replay,
    report,
    signal_drain,
    stream_latency,
    targets,
)
from bench.env import Servers  # noqa: E402


def quick_context(**extra) -> dict:
    args = argparse.Namespace(
        backlog=3_000,
        duration=3.0,
        symbols=20,
        latency_duration=3.0,
        rate=1000.0,
        replay_days=2,
        replay_symbols=3,
        flips=2,
        profile=False,
        order_heavy=False,
        repeat=1,
    )
    for key, value in extra.items():
        setattr(args, key, value)
    return {"args": args}


def test_cli_runs_bus_baseline_prints_table_and_writes_its_section(tmp_path: Path) -> None:
    docs = tmp_path / "benchmarks.md"
    docs.write_text("# Benchmarks\n\nHand-written analysis.\n")
    out = subprocess.run(
        [sys.executable, "-m", "bench", "run", "bus", "--quick", "--docs", str(docs)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert "Redis Streams on this machine" in out.stdout
    assert "drain: XREADGROUP 500 + pydantic + XACK" in out.stdout
    text = docs.read_text()
    assert "Hand-written analysis." in text
    assert "<!-- bench:bus -->" in text and "<!-- /bench:bus -->" in text
    assert "**cores**" in text and "**redis**" in text


def test_cli_rejects_an_unknown_benchmark() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "bench", "run", "nope", "--no-docs"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2
    assert "unknown benchmark 'nope'" in out.stderr


def test_update_section_replaces_only_its_own_block(tmp_path: Path) -> None:
    docs = tmp_path / "b.md"
    report.update_section("signal", "## first", docs)
    docs.write_text(docs.read_text() + "\nkept by hand\n")
    report.update_section("signal", "## second", docs)
    text = docs.read_text()
    assert "## second" in text and "## first" not in text
    assert "kept by hand" in text
    assert text.count("<!-- bench:signal -->") == 1


def test_signal_drain_runs_the_real_service() -> None:
    result = signal_drain.run(quick=True, context=quick_context())
    assert result.data["measured"] > 0 and result.data["rate"] > 0
    assert result.data["dead_letter"] == 0
    assert result.data["signals"] > 0  # 1 % strong moves over 3,000 entries
    assert "cdb run signal draining" in report.render_text(result)


def test_pipeline_and_latency_run_end_to_end_and_lose_nothing() -> None:
    context = quick_context()
    result = pipeline.run(quick=True, context=context)
    assert result.data["problems"] == [], result.data["problems"]
    assert result.data["md_rate"] > 0
    assert all(m.get("VmHWM", 0) > 0 for m in result.data["memory"].values())
    assert "memory" in result.data["_sections"]
    lat = latency.run(quick=True, context=context)
    assert lat.data["market_data → signal"], report.render_text(lat)
    assert lat.data["market_data → order_result"], report.render_text(lat)
    assert all(v >= 0 for v in lat.data["market_data → order_result"])


def test_replay_drives_the_real_strategy_and_rules() -> None:
    result = replay.run(quick=True, context=quick_context())
    full = result.data["full"]
    assert full["candles"] == 2 * 1440 * 3
    assert result.data["trusted"]["candles"] == full["candles"]
    assert full["signals"] > 0 and sum(full["decisions"].values()) >= full["signals"]


def test_trusted_market_data_equals_a_validated_one() -> None:
    values = dict(
        timestamp=1,
        symbol="A_USDT",
        price=2.0,
        volume=3.0,
        pct_change=4.0,
        interval="1m",
        source="replay",
    )
    assert backtest.trusted_market_data(**values) == backtest.MarketData(**values)


def test_candles_are_deterministic() -> None:
    a = backtest.CandleGen(2).chunk(100)
    b = backtest.CandleGen(2).chunk(100)
    assert a.close == b.close and a.pct == b.pct


def test_operator_rendering_and_cluster_skip(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KUBECONFIG", raising=False)
    result = operator_bench.run(quick=True, context=quick_context())
    assert result.data["one_ms"] > 0
    assert "KUBECONFIG is not set" in result.data["cluster"]
    assert "KUBECONFIG is not set" in result.data["scale"]


def test_pipeline_noaof_runs_the_pipeline_without_aof_and_keeps_the_aof_figures(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seen = []

    def fake_run(quick: bool, context: dict) -> report.Result:
        seen.append(Servers.appendonly)
        context["pipeline"] = {"md_rate": 2.0, "problems": []}
        return report.Result("pipeline", "x", data={"_sections": {"memory": "m"}})

    monkeypatch.setattr(pipeline, "run", fake_run)
    context = {"pipeline": {"md_rate": 1.0, "problems": []}}
    result = pipeline_noaof.run(quick=True, context=context)
    assert seen == [False] and Servers.appendonly is True
    assert context["pipeline"]["md_rate"] == 1.0
    assert context["pipeline_noaof"]["md_rate"] == 2.0
    assert result.name == "pipeline_noaof" and "_sections" not in result.data


def test_targets_say_met_or_by_how_much() -> None:
    context = {
        "signal": {"rate": 50_000.0, "rate_per_cpu": 120_000.0},
        "pipeline": {"md_rate": 15_000.0, "problems": []},
        "latency": {"market_data → order_result": [1.0, 2.0, 30.0]},
        "operator": {"cluster": "skipped: KUBECONFIG is not set"},
        "stream": {"feed": {"p99": 4.0}},
    }
    rows = {r[0]: r[-1] for r in targets.summarize(context).tables[0].rows}
    assert rows["stream feed: frame → market_data p99, ms"] == "met"
    assert rows["signal engine alone, entries/s (wall)"] == "missed by 50 %"
    assert rows["signal engine alone, entries per CPU-second"] == "met"
    assert rows["full pipeline, market_data/s sustained"] == "missed by 25 %"
    assert rows["nothing lost, nothing dead-lettered"] == "met"
    assert rows["tick → order_result p50, ms"] == "met"
    assert rows["tick → order_result p99, ms"] == "missed: 5.0x the target"  # <= 6 ms
    assert rows["breaker patch → halted p99, s"].startswith("skipped")


def test_feed_benchmark_runs_the_real_feed() -> None:
    result = feed_rate.run(quick=True, context=quick_context())
    assert result.data["events"] > 0 and result.data["rate"] > 0


def test_stream_benchmark_runs_the_stream_feed_against_the_local_websocket() -> None:
    result = stream_latency.run(quick=True, context=quick_context())
    feed, baseline = result.data["feed"], result.data["baseline"]
    assert feed["events"] > 0 and baseline["events"] > 0  # both clients saw candles close
    assert feed["p99"] >= feed["p50"] > 0 and feed["cpu_per_1000"] > 0
    assert "p99 ≤ 5 ms" in report.render_text(result)

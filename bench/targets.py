"""The issue's targets against what a full run measured: met or missed, and by how much."""

from __future__ import annotations

from bench.latency import TARGETS, percentile
from bench.report import Result


def _gap(value: float, target: float, higher_is_better: bool = True) -> str:
    if higher_is_better:
        return "met" if value >= target else f"missed by {(1 - value / target) * 100:.0f} %"
    return "met" if value <= target else f"missed: {value / target:.1f}x the target"


def summarize(context: dict) -> Result:
    """A table of every target whose benchmark ran in this invocation."""
    result = Result("targets", "Targets (issues 7 and 20) against this run")
    t = result.table("Targets", ["target", "required", "measured", "verdict"])
    if "signal" in context:
        s = context["signal"]
        t.add(
            "signal engine alone, entries/s (wall)",
            ">= 100,000",
            s["rate"],
            _gap(s["rate"], 100_000),
        )
        t.add(
            "signal engine alone, entries per CPU-second",
            ">= 100,000",
            s["rate_per_cpu"],
            _gap(s["rate_per_cpu"], 100_000),
        )
    if "pipeline" in context:
        p = context["pipeline"]
        t.add(
            "full pipeline, market_data/s sustained",
            ">= 20,000",
            p["md_rate"],
            _gap(p["md_rate"], 20_000),
        )
        t.add(
            "nothing lost, nothing dead-lettered",
            "0 problems",
            len(p["problems"]),
            "met" if not p["problems"] else "MISSED: " + "; ".join(p["problems"])[:200],
        )
    if "pipeline_noaof" in context:
        p = context["pipeline_noaof"]
        t.add(
            "full pipeline, Redis without AOF (comparison)",
            ">= 20,000",
            p["md_rate"],
            _gap(p["md_rate"], 20_000),
        )
    if "stream" in context:  # issue 16
        feed = context["stream"]["feed"]
        t.add(
            "stream feed: frame → market_data p99, ms",
            "<= 5",
            feed["p99"],
            _gap(feed["p99"], 5, False),
        )
    if "latency" in context:
        lat = context["latency"]
        for hop, (t50, t99) in TARGETS.items():
            values = lat.get(hop) or []
            end = hop.split(" → ")[1]
            for label, q, target in (("p50", 50, t50), ("p99", 99, t99)):
                if values:
                    got = percentile(values, q)
                    t.add(
                        f"tick → {end} {label}, ms", f"<= {target:g}", got, _gap(got, target, False)
                    )
    if "replay" in context:
        r = context["replay"]["full"]
        t.add(
            "replay, candles/s (validated events)",
            ">= 500,000",
            r["rate"],
            _gap(r["rate"], 500_000),
        )
    if "freqtrade" in context:  # issue 13
        f = context["freqtrade"]
        n, ours = f["candles"], f["cdb"]
        per_cpu = n / ours["cpu"] if ours["cpu"] else 0.0
        t.add("backtest whole process, candles per CPU-s", ">= 300,000", per_cpu,
              _gap(per_cpu, 300_000))  # fmt: skip
        if ours["loop_s"]:
            loop = n / ours["loop_s"]
            t.add("backtest decision loop, candles per CPU-s", ">= 1,000,000", loop,
                  _gap(loop, 1_000_000))  # fmt: skip
        ft = f.get("freqtrade")
        if ft and ft.get("cpu"):
            ratio = ft["cpu"] / ours["cpu"]
            t.add("backtest vs freqtrade, × per CPU-s", ">= 10", ratio, _gap(ratio, 10))
    if "operator" in context:
        c = context["operator"]["cluster"]
        if isinstance(c, str):
            t.add("breaker patch → halted p99, s", "<= 1", "-", c)
        else:
            p99 = percentile(c[1], 99)
            t.add("breaker patch → halted p99, s", "<= 1", p99, _gap(p99, 1, False))
    result.note("Why each miss happens, and what would fix it: see the analysis below.")
    return result

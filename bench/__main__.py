"""``python -m bench run [NAME ...] [--quick] [--no-docs]``: run benchmarks, print, write docs.

Without names every benchmark runs, in the order below, sharing one context so
later ones quote the bus baseline measured in the same run.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import time
from pathlib import Path

from bench import machine, report

#: name → module with ``run(quick, context) -> Result``, in run order.
BENCHMARKS: dict[str, str] = {
    "bus": "bench.bus_baseline",
    "signal": "bench.signal_drain",
    "feed": "bench.feed_rate",
    "pipeline": "bench.pipeline",
    "pipeline-noaof": "bench.pipeline_noaof",
    "latency": "bench.latency",
    "stream": "bench.stream_latency",
    "replay": "bench.replay",
    "freqtrade": "bench.freqtrade_compare",
    "operator": "bench.operator_bench",
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run benchmarks (all when no name is given)")
    run.add_argument(
        "names", nargs="*", metavar="NAME", help=f"one or more of: {', '.join(BENCHMARKS)}"
    )
    run.add_argument("--quick", action="store_true", help="tiny sizes: checks it runs, not speed")
    run.add_argument("--no-docs", action="store_true", help="print only; leave docs alone")
    run.add_argument("--docs", default=str(report.DOCS), help="the markdown file to update")
    run.add_argument("--backlog", type=int, default=100_000, help="signal: backlog to drain")
    run.add_argument("--repeat", type=int, default=3, help="signal: runs (median reported)")
    run.add_argument("--duration", type=float, default=30.0, help="pipeline: seconds sustained")
    run.add_argument("--order-heavy", action="store_true", help="pipeline: latency settings")
    run.add_argument("--symbols", type=int, default=200, help="feed/pipeline/latency: symbols")
    run.add_argument("--latency-duration", type=float, default=30.0, help="latency: seconds")
    run.add_argument("--rate", type=float, default=1000.0, help="latency: events per second")
    run.add_argument("--stream-rate", type=float, default=1000.0, help="stream: frames per second")
    run.add_argument("--stream-duration", type=float, default=10.0, help="stream: seconds")
    run.add_argument("--replay-days", type=int, default=365, help="replay: days of 1m candles")
    run.add_argument("--replay-symbols", type=int, default=20, help="replay: symbols")
    run.add_argument(
        "--no-aof", action="store_true", help="Redis without AOF (to show what AOF costs)"
    )
    run.add_argument(
        "--profile", action="store_true", help="signal/pipeline/latency: py-spy profiles"
    )
    run.add_argument(
        "--trace",
        action="store_true",
        help="latency: time each step of the order path in risk and execution (bench/hoptrace)",
    )
    run.add_argument("--ft-days", type=int, default=30, help="freqtrade: days of 1m candles")
    run.add_argument("--ft-symbols", type=int, default=20, help="freqtrade: symbols")
    run.add_argument("--ft-venv", default=None, help="freqtrade: its virtualenv (made if missing)")
    run.add_argument("--flips", type=int, default=20, help="operator: breaker flips on a cluster")
    run.add_argument("--bots", type=int, default=100, help="operator: TradingBots at scale")
    sub.add_parser("machine", help="print the machine description")
    args = parser.parse_args(argv)

    info = machine.describe()
    if args.command == "machine":
        print(machine.markdown(info))
        return 0
    names = args.names or list(BENCHMARKS)
    if getattr(args, "no_aof", False):
        from bench.env import Servers

        Servers.appendonly = False
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        parser.error(f"unknown benchmark {unknown[0]!r}; choose from {', '.join(BENCHMARKS)}")
    context: dict = {"args": args, "machine": info}
    print(machine.markdown(info), flush=True)
    docs = Path(args.docs)
    for name in names:
        module = importlib.import_module(BENCHMARKS[name])
        started, load0 = time.monotonic(), os.getloadavg()[0]
        result = module.run(quick=args.quick, context=context)
        result.note(
            f"Load average (1 min) at start {load0:.1f}, at end {os.getloadavg()[0]:.1f} on "
            f"{os.cpu_count()} cores: above ~1 other work shared the CPU and wall-clock rates "
            "are low by that much; per-CPU-second figures are not."
        )
        extra = (" --quick" if args.quick else "") + (" --no-aof" if args.no_aof else "")
        if name == "latency":  # what changes the latency figures: say it with them
            if args.latency_duration != 30.0:
                extra += f" --latency-duration {args.latency_duration:g}"
            if args.rate != 1000.0:
                extra += f" --rate {args.rate:g}"
            extra += (" --trace" if args.trace else "") + (" --profile" if args.profile else "")
        result.command = f"python -m bench run {name}{extra}"
        print("\n" + report.render_text(result), flush=True)
        print(f"({name}: {time.monotonic() - started:.1f} s)", flush=True)
        if not args.no_docs:
            stamp = f"_Measured on:_\n\n{machine.markdown(info)}"
            report.update_section("machine", "## Machine\n\n" + stamp, docs)
            report.update_section(result.name, report.render_markdown(result), docs)
            for extra_name, body in result.data.get("_sections", {}).items():
                report.update_section(extra_name, body, docs)
    if len(names) > 1:
        from bench import targets

        summary = targets.summarize(context)
        summary.command = "python -m bench run" + (" --quick" if args.quick else "")
        print("\n" + report.render_text(summary), flush=True)
        if not args.no_docs:
            report.update_section("targets", report.render_markdown(summary), docs)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Signal engine alone: how fast ``cdb run signal`` drains a ``market_data`` backlog.

The backlog (default 100,000 entries, 200 symbols, one event per symbol per
second of event time, 1 % strong moves) is written before the service starts;
the clock runs from the first entry its consumer group has read to the moment
the group has read everything and has nothing pending (``XINFO GROUPS``,
polled every 5 ms), so process start-up is not counted. The service's own CPU
time over the same span gives the rate per CPU-second, which other load on a
shared machine does not distort. Target: >= 100,000 entries/s on one core.

Run: ``python -m bench run signal`` (``--backlog N``; ``--profile`` adds a py-spy profile).
"""

from __future__ import annotations

import time

from bench import profile as prof
from bench.env import Servers, entries_added, groups
from bench.report import Result
from bench.synth import MarketGen, fill
from cdb.bus import DEAD_LETTER, MARKET_DATA, SIGNALS

TARGET = 100_000


def drain(servers: Servers, n: int, profile_to: str | None = None) -> dict:
    """Fill the backlog, start the service, time the drain; returns the figures."""
    client = servers.client()
    gen = MarketGen(n_symbols=200, fire=0.01)
    base = int(time.time()) - n // 200
    fill(client, MARKET_DATA, (gen.next(base + i // 200)[3] for i in range(n)))
    proc = servers.service("signal", {"STREAM_MAXLEN_MARKET_DATA": str(max(100_000, n))})
    proc_started = time.perf_counter()
    proc.start_async()
    spy = None
    t0 = read0 = cpu0 = None
    while True:
        g = groups(client, MARKET_DATA).get("signal")
        now = time.perf_counter()
        if g is not None:
            read = g.get("entries-read") or 0
            if t0 is None and read > 0:
                t0, read0, cpu0 = now, read, proc.cpu_seconds()
                if profile_to:
                    spy = prof.record(proc.pid, profile_to)
            if read >= n and g["pending"] == 0:
                t1, cpu1 = now, proc.cpu_seconds()
                break
        if proc.proc.poll() is not None:
            raise RuntimeError(f"signal exited early; log: {proc.log_path}")
        if now - proc_started > 300:
            raise RuntimeError(f"signal did not drain {n} entries in 300 s")
        time.sleep(0.005)
    if spy is not None:
        prof.stop(spy)
    memory = proc.memory()
    status = proc.status()
    proc.stop()
    span = t1 - t0
    cpu = max(cpu1 - cpu0, 1e-9)
    figures = {
        "n": n,
        "measured": n - read0,
        "seconds": span,
        "rate": (n - read0) / span,
        "cpu_seconds": cpu,
        "rate_per_cpu": (n - read0) / cpu,
        "startup_s": t0 - proc_started,
        "signals": entries_added(client, SIGNALS),
        "dead_letter": client.xlen(DEAD_LETTER),
        "evaluated": status.get("market_data_evaluated"),
        "suppressed": status.get("signals_suppressed_cooldown"),
        "rss_peak": memory.get("VmHWM", 0),
    }
    assert figures["dead_letter"] == 0, f"{figures['dead_letter']} entries dead-lettered"
    client.close()
    return figures


def run(quick: bool = False, context: dict | None = None) -> Result:
    args = (context or {}).get("args")
    n = 3_000 if quick else getattr(args, "backlog", 100_000)
    profile_to = getattr(args, "profile", None) and prof.output_path("signal")
    repeat = 1 if quick else max(1, getattr(args, "repeat", 3))
    result = Result("signal", "Signal engine alone (drain of a market_data backlog)")
    runs = []
    for i in range(repeat):  # the median of a few runs: the machine is shared
        with Servers() as servers:
            runs.append(drain(servers, n, profile_to if i == 0 else None))
    runs.sort(key=lambda r: r["rate_per_cpu"])
    f = runs[len(runs) // 2]
    baseline = (context or {}).get("bus", {})
    bare = baseline.get("bare_loop")
    t = result.table(
        f"cdb run signal draining {n:,} entries", ["measure", "value", "target / reference"]
    )
    t.add("entries/s (wall clock)", f["rate"], f">= {TARGET:,}")
    t.add("entries per CPU-second of the service", f["rate_per_cpu"], f">= {TARGET:,}")
    t.add("ratio to the bare pydantic loop", f["rate"] / bare if bare else None, "1.0 = as fast")
    t.add("drain time, s", f["seconds"], "")
    t.add("service CPU time, s", f["cpu_seconds"], "")
    t.add("signals published", f["signals"], "")
    t.add("dead-lettered", f["dead_letter"], "0")
    t.add("peak RSS, MiB", f["rss_peak"] / 2**20, "")
    if not quick and (f["rate"] < TARGET or f["rate_per_cpu"] < TARGET):
        result.note(
            f"Target: wall clock {f['rate']:,.0f}/s "
            + (
                "(met)"
                if f["rate"] >= TARGET
                else f"({(1 - f['rate'] / TARGET) * 100:.0f} % below)"
            )
            + f", per CPU-second {f['rate_per_cpu']:,.0f} "
            + (
                "(met)"
                if f["rate_per_cpu"] >= TARGET
                else f"({(1 - f['rate_per_cpu'] / TARGET) * 100:.0f} % below)"
            )
            + "; the wall-clock figure shares two cores with Redis and the load noted below."
        )
    result.note(
        f"Median of {repeat} runs by entries per CPU-second; all runs (wall / per CPU-s): "
        + ", ".join(f"{r['rate']:,.0f} / {r['rate_per_cpu']:,.0f}" for r in runs)
    )
    result.note(
        f"{f['measured']:,} of {n:,} entries timed (the first batch is read during start-up); "
        "clock = XINFO GROUPS polled every 5 ms."
    )
    if profile_to:
        result.note(f"py-spy profile: {profile_to}")
        result.data["profile"] = prof.summarize(profile_to)
        print(prof.format_summary(result.data["profile"]))
    result.data.update(f)
    if context is not None:
        context["signal"] = f
    return result

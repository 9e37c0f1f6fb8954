"""Feed alone: how many market_data events ``cdb run feed`` publishes flat out.

The feed's synthetic source (``FEED_SOURCE=synthetic``) with
``FEED_SYNTHETIC_PERIOD_S=0`` makes candles as fast as it can for ``--symbols``
symbols (default 200) and publishes them in pipelined batches (``FEED_BATCH``).
The rate is ``entries-added`` of ``market_data`` over a timed window, after a
warm-up; the feed's CPU time over the same window gives events per
CPU-second, and ``/proc`` its peak RSS. In production the feed paces itself
(one candle per symbol and interval); this is its ceiling, the most a single
feed could push into the pipeline.

Run: ``python -m bench run feed`` (``--symbols N``).
"""

from __future__ import annotations

import time

from bench.env import Servers, entries_added, service_available
from bench.report import Result
from bench.synth import symbols
from cdb.bus import DEAD_LETTER, MARKET_DATA


def run(quick: bool = False, context: dict | None = None) -> Result:
    args = (context or {}).get("args")
    n_symbols = 20 if quick else getattr(args, "symbols", 200)
    seconds = 2.0 if quick else 10.0
    result = Result("feed", "Feed alone (synthetic source, flat out)")
    if not service_available("feed"):
        result.note("Not run: the feed service is not available yet.")
        return result
    env = {
        "FEED_SOURCE": "synthetic",
        "FEED_SYNTHETIC_PERIOD_S": "0",
        "SYMBOLS": ",".join(symbols(n_symbols)),
    }
    with Servers() as servers:
        client = servers.client()
        proc = servers.service("feed", env).start()
        time.sleep(1.0 if quick else 2.0)  # warm-up
        n0, cpu0, t0 = entries_added(client, MARKET_DATA), proc.cpu_seconds(), time.monotonic()
        time.sleep(seconds)
        n1, cpu1, t1 = entries_added(client, MARKET_DATA), proc.cpu_seconds(), time.monotonic()
        memory = proc.memory()
        dead = client.xlen(DEAD_LETTER)
        proc.stop()
        client.close()
    n, span, cpu = n1 - n0, t1 - t0, cpu1 - cpu0
    t = result.table(f"cdb run feed, {n_symbols} symbols, {span:.0f} s", ["measure", "value"])
    t.add("market_data events published", n)
    t.add("events/s (wall clock)", n / span)
    t.add("events per CPU-second of the feed", n / cpu if cpu else None)
    t.add("feed CPU, % of one core", cpu / span * 100)
    t.add("peak RSS, MiB", memory.get("VmHWM", 0) / 2**20)
    t.add("dead-lettered", dead)
    result.note(
        "The pipeline benchmark feeds itself (to control the rate and count every entry); "
        "this is what the real feed could supply instead."
    )
    result.data = {"rate": n / span, "rate_per_cpu": n / cpu if cpu else 0.0, "events": n}
    if context is not None:
        context["feed"] = result.data
    return result

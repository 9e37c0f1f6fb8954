"""Latency: a market_data entry's creation → its signals entry → its order_result entry.

The pipeline of ``bench.pipeline`` (real processes, Redis, PostgreSQL) is fed
at a steady ``--rate`` (default 1,000 events/s, 200 symbols) for
``--latency-duration`` seconds after a 3 s warm-up, with about 1 % strong moves
and the order-flow settings of ``bench.pipeline.FLOW_ENV`` (5 s cooldown, room
for 1,000 positions), i.e. ~10 signals and orders a second.

The clock is Redis's: every stream entry id starts with the millisecond at
which Redis appended it, so each hop is the difference of two entry ids, on
one clock, at 1 ms resolution. The chain is matched by the events' own fields:

- market_data → signal: the generator allows at most one strong move per
  (symbol, second), and the momentum strategy copies ``symbol`` and
  ``timestamp`` into its signal, so (symbol, timestamp) names the entry;
- signal → order: ``Order.signal_id`` is the signal's ``signal_id``;
- order → order_result: ``OrderResult.client_id`` is the order's ``client_id``.

Targets: tick → order_result p50 <= 2 ms, p99 <= 10 ms.

Run: ``python -m bench run latency`` (``--rate``, ``--latency-duration``, ``--symbols``).
"""

from __future__ import annotations

import time

import orjson

from bench.env import Servers, service_available
from bench.pipeline import BASE_ENV, FLOW_ENV, SERVICES, wait_drained
from bench.report import Result
from bench.synth import MarketGen
from cdb.bus import DEAD_LETTER, MARKET_DATA, ORDER_RESULT, ORDERS, SIGNALS

TARGET_P50, TARGET_P99 = 2.0, 10.0


def ms(entry_id: bytes | str) -> int:
    """The millisecond part of a stream entry id (Redis's clock at XADD)."""
    raw = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
    return int(raw.split("-", 1)[0])


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty list."""
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, round(q / 100 * len(ordered) + 0.5) - 1))
    return float(ordered[k])


def produce(client, rate: float, seconds: float, warmup: float, n_symbols: int):
    """Send ``rate`` events/s; returns {(symbol, ts): entry ms} of the timed strong moves."""
    gen = MarketGen(n_symbols=n_symbols, fire=0.01)
    fired: dict[tuple[str, int], int] = {}
    start = time.monotonic()
    timed_from = start + warmup
    end = timed_from + seconds
    sent = 0
    while True:
        now = time.monotonic()
        if now >= end:
            break
        due = int((now - start) * rate) - sent
        if due <= 0:
            time.sleep(0.0005)
            continue
        pipe = client.pipeline(transaction=False)
        batch = [gen.next() for _ in range(due)]
        for _symbol, _ts, _fires, payload in batch:
            pipe.xadd(MARKET_DATA, {"data": payload})
        ids = pipe.execute()
        sent += due
        if now >= timed_from:
            for (symbol, ts, fires, _payload), entry_id in zip(batch, ids, strict=True):
                if fires:
                    fired[(symbol, ts)] = ms(entry_id)
    return fired, sent


def read_stream(client, stream: str) -> list[tuple[int, dict]]:
    out = []
    last = "-"
    while True:
        batch = client.xrange(stream, min=last, max="+", count=10_000)
        if last != "-":
            batch = batch[1:]
        if not batch:
            return out
        out += [(ms(i), orjson.loads(f[b"data"])) for i, f in batch]
        last = batch[-1][0]


def match(client, fired: dict[tuple[str, int], int]) -> dict[str, list[float]]:
    """Hop latencies in ms, chained by (symbol, timestamp), signal_id and client_id."""
    signals = {}
    for at, ev in read_stream(client, SIGNALS):
        key = (ev["symbol"], ev["timestamp"])
        if key in fired and ev["signal_id"] not in signals:
            signals[ev["signal_id"]] = (fired[key], at)
    orders = {}
    for at, ev in read_stream(client, ORDERS):
        sid = ev.get("signal_id")
        if sid in signals and ev["client_id"] not in orders:
            orders[ev["client_id"]] = (signals[sid][0], signals[sid][1], at)
    results = {}
    for at, ev in read_stream(client, ORDER_RESULT):
        cid = ev["client_id"]
        if cid in orders and cid not in results:
            results[cid] = (*orders[cid], at, ev["status"])
    out: dict[str, list[float]] = {
        "market_data → signal": [s - m for m, s in signals.values()],
        "signal → order": [o - s for m, s, o in orders.values()],
        "order → order_result": [r - o for m, s, o, r, _ in results.values()],
        "market_data → order": [o - m for m, s, o in orders.values()],
        "market_data → order_result": [r - m for m, s, o, r, _ in results.values()],
    }
    out["_statuses"] = [st for *_, st in results.values()]  # type: ignore[list-item]
    return out


def run(quick: bool = False, context: dict | None = None) -> Result:
    args = (context or {}).get("args")
    rate = getattr(args, "rate", 1000.0)
    seconds = 3.0 if quick else getattr(args, "latency_duration", 30.0)
    n_symbols = 20 if quick else getattr(args, "symbols", 200)
    result = Result("latency", "Latency: market_data → signal → order_result")
    missing = [s for s in SERVICES if not service_available(s)]
    if missing:
        result.note(f"Not run: service(s) {', '.join(missing)} not available yet.")
        return result
    with Servers(postgres=True) as servers:
        client = servers.client()
        servers.start_all(SERVICES, {**BASE_ENV, **FLOW_ENV})
        fired, sent = produce(client, rate, seconds, 1.0 if quick else 3.0, n_symbols)
        open_ = wait_drained(client, 60)
        hops = match(client, fired)
        dead = client.xlen(DEAD_LETTER)
        client.close()
    statuses = hops.pop("_statuses")
    t = result.table(
        f"{rate:,.0f} market_data/s for {seconds:.0f} s, {n_symbols} symbols "
        f"({len(fired):,} timed strong moves)",
        ["hop (Redis entry-id clock, ms)", "samples", "p50", "p99", "max"],
    )
    for hop, values in hops.items():
        if values:
            t.add(hop, len(values), percentile(values, 50), percentile(values, 99), max(values))
        else:
            t.add(hop, 0, None, None, None)
    end_to_end = hops["market_data → order_result"]
    if end_to_end and not quick:
        p50, p99 = percentile(end_to_end, 50), percentile(end_to_end, 99)
        verdicts = []
        if p50 > TARGET_P50:
            verdicts.append(
                f"p50 {p50:.0f} ms is {p50 / TARGET_P50:.1f}x the {TARGET_P50:g} ms target"
            )
        if p99 > TARGET_P99:
            verdicts.append(
                f"p99 {p99:.0f} ms is {p99 / TARGET_P99:.1f}x the {TARGET_P99:g} ms target"
            )
        if verdicts:
            result.note("Target missed: " + "; ".join(verdicts) + " (analysis below).")
    filled = sum(1 for s in statuses if s == "FILLED")
    result.note(
        f"{sent:,} market_data entries sent; {len(hops['market_data → signal']):,} strong moves "
        f"became signals (the rest fell in a symbol's 5 s cooldown), "
        f"{len(hops['signal → order']):,} orders, {len(statuses):,} results ({filled:,} FILLED); "
        f"dead-lettered: {dead}."
    )
    if open_:
        result.note("PROBLEM: not drained: " + "; ".join(open_))
    result.note(
        "Resolution 1 ms (entry ids are Redis milliseconds), so a hop under 1 ms reads 0 or 1."
    )
    result.data = {k: v for k, v in hops.items()}
    if context is not None:
        context["latency"] = result.data
    return result

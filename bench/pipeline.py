"""Full pipeline throughput: market_data → signal → risk → execution (paper) → persistence.

All four services run as real ``cdb run`` processes on a private Redis and a
migrated PostgreSQL. The bench is the feed: it XADDs feed-format
``market_data`` (200 symbols by default, 1 % strong moves) in pipelined
batches as fast as the slowest ``market_data`` consumer keeps up (the largest
lag of the signal, risk and execution groups is held under 20,000 entries, so
the rate measured is the pipeline's, not a backlog's). After a warm-up it
measures a window of ``--duration`` seconds (default 30), then stops
producing, waits until every group has read and acknowledged everything, and
checks that nothing was lost or dead-lettered: every group read every entry of
its streams, and PostgreSQL holds one row per distinct signal, order and
order result that went over the bus.

The services run with their default settings (as deployed): with a 300 s
cooldown per symbol and at most 5 open positions, the order path carries a few
hundred signals and a handful of orders, and the rate is that of digesting
market data. ``--order-heavy`` uses the settings of the latency benchmark
instead (SIGNAL_COOLDOWN_S=5, PAPER_START_BALANCE=1,000,000,
MAX_OPEN_POSITIONS=1000, RISK_TARGET_POSITION_PCT=0.01: up to 40 orders/s).

Run: ``python -m bench run pipeline`` (``--duration S``, ``--symbols N``).
"""

from __future__ import annotations

import time

from bench import bus_baseline
from bench import profile as prof
from bench.env import Servers, entries_added, groups, service_available
from bench.report import Result, Table, md_table
from bench.synth import MarketGen
from cdb.bus import DEAD_LETTER, MARKET_DATA, ORDER_RESULT, ORDERS, SIGNALS

SERVICES = ("persistence", "execution", "risk", "signal")
TARGET = 20_000
LAG_LIMIT = 20_000
PLACEHOLDER = 1_111_111_111

#: Every run: no trimming of market_data (nothing can be lost to MAXLEN), health every 5 s.
BASE_ENV = {"STREAM_MAXLEN_MARKET_DATA": "10000000", "HEALTH_INTERVAL_S": "5"}

#: Settings that let orders flow (latency benchmark, ``--order-heavy``).
FLOW_ENV = {
    "SIGNAL_COOLDOWN_S": "5",
    "PAPER_START_BALANCE": "1000000",
    "MAX_OPEN_POSITIONS": "1000",
    "RISK_TARGET_POSITION_PCT": "0.01",
    "TRADING_MODE": "paper",
}

#: (group, stream) pairs whose read rate is a stage of the pipeline.
STAGES = (
    ("signal", MARKET_DATA),
    ("risk", MARKET_DATA),
    ("execution", MARKET_DATA),
    ("risk", SIGNALS),
    ("persistence", SIGNALS),
    ("execution", ORDERS),
    ("persistence", ORDERS),
    ("risk", ORDER_RESULT),
    ("persistence", ORDER_RESULT),
)


class Producer:
    """Feed-format market_data from a pool of templates (the timestamp is patched in)."""

    def __init__(self, client, n_symbols: int, pool: int = 20_000) -> None:
        gen = MarketGen(n_symbols=n_symbols, fire=0.01)
        self.templates = [gen.next(PLACEHOLDER)[3] for _ in range(pool)]
        self.client = client
        self.conn = client.connection_pool.get_connection()
        self.i = 0
        self.sent = 0

    def send(self, n: int) -> None:
        """XADD ``n`` entries in one round trip, RESP written by hand (redis-py's command
        building would make the producer, not the pipeline, the bottleneck)."""
        ts = str(int(time.time())).encode()
        key = str(PLACEHOLDER).encode()
        templates, pool = self.templates, len(self.templates)
        head = b"*5\r\n$4\r\nXADD\r\n$11\r\nmarket_data\r\n$1\r\n*\r\n$4\r\ndata\r\n"
        parts = []
        for k in range(n):
            payload = templates[(self.i + k) % pool].replace(key, ts, 1)
            parts.append(b"%s$%d\r\n%s\r\n" % (head, len(payload), payload))
        conn = self.conn
        conn.send_packed_command([b"".join(parts)])
        for _ in range(n):
            reply = conn.read_response()
            if isinstance(reply, Exception):
                raise reply
        self.i += n
        self.sent += n

    def close(self) -> None:
        self.client.connection_pool.release(self.conn)


class ProcCPU:
    """CPU seconds used so far by any process (here: redis-server)."""

    def __init__(self, pid: int) -> None:
        self.pid = pid

    def __call__(self) -> float:
        import os

        try:
            with open(f"/proc/{self.pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        except (OSError, IndexError, ValueError):
            return 0.0


def read_counts(client) -> dict[tuple[str, str], int]:
    out = {}
    for stream in {s for _, s in STAGES}:
        for group, info in groups(client, stream).items():
            out[(group, stream)] = info.get("entries-read") or 0
    return out


def max_md_lag(client) -> int:
    lags = [info.get("lag") or 0 for info in groups(client, MARKET_DATA).values()]
    return max(lags, default=0)


def wait_drained(client, timeout: float) -> list[str]:
    """Wait until every group read and acked everything; returns what is still open."""
    deadline = time.monotonic() + timeout
    while True:
        open_ = []
        for stream in (MARKET_DATA, SIGNALS, ORDERS, ORDER_RESULT):
            added = entries_added(client, stream)
            for group, info in groups(client, stream).items():
                read = info.get("entries-read") or 0
                if read < added or info["pending"]:
                    open_.append(
                        f"{group}/{stream}: read {read:,} of {added:,}, pending {info['pending']}"
                    )
        if not open_ or time.monotonic() > deadline:
            return open_
        time.sleep(0.2)


def distinct(client, stream: str, field: str) -> tuple[int, set[str]]:
    """Entries on a stream and the distinct values of one event field."""
    import orjson

    values: set[str] = set()
    n = 0
    last = "-"
    while True:
        batch = client.xrange(stream, min=last, max="+", count=10_000)
        if last != "-":
            batch = batch[1:]
        if not batch:
            break
        for _entry_id, fields in batch:
            values.add(orjson.loads(fields[b"data"])[field])
        n += len(batch)
        last = batch[-1][0]
    return n, values


def verify(servers: Servers, client, produced: int) -> tuple[Table, list[str]]:
    """Nothing lost, nothing dead-lettered: streams against groups and PostgreSQL rows."""
    problems = []
    t = Table("Nothing lost, nothing dead-lettered", ["check", "expected", "found", "ok"])
    md = entries_added(client, MARKET_DATA)
    t.add("market_data entries on the stream", produced, md, md == produced)
    for group in ("signal", "risk", "execution"):
        info = groups(client, MARKET_DATA).get(group, {})
        read = info.get("entries-read") or 0
        t.add(
            f"market_data read and acked by {group}",
            md,
            read,
            read == md and not info.get("pending"),
        )
    dl = client.xlen(DEAD_LETTER)
    t.add("dead_letter entries", 0, dl, dl == 0)
    for stream, field, table, key in (
        (SIGNALS, "signal_id", "signals", "signal_id"),
        (ORDERS, "client_id", "orders", "client_id"),
        (ORDER_RESULT, "client_id", "order_results", "client_id"),
    ):
        n, ids = distinct(client, stream, field)
        rows = int(servers.psql(f"SELECT count(DISTINCT {key}) FROM {table}").strip())
        t.add(
            f"{table} rows = distinct {field} on {stream} ({n:,} entries)",
            len(ids),
            rows,
            rows == len(ids),
        )
    n_sig, sig_ids = distinct(client, SIGNALS, "signal_id")
    decided = int(
        servers.psql("SELECT count(*) FROM risk_events WHERE event_key LIKE 'signal:%'").strip()
    )
    t.add("risk decisions = distinct signals", len(sig_ids), decided, decided == len(sig_ids))
    for row in t.rows:
        if not row[-1]:
            problems.append(f"{row[0]}: expected {row[1]}, found {row[2]}")
    return t, problems


def run(quick: bool = False, context: dict | None = None) -> Result:
    args = (context or {}).get("args")
    duration = 3.0 if quick else getattr(args, "duration", 30.0)
    n_symbols = 20 if quick else getattr(args, "symbols", 200)
    want_profile = bool(getattr(args, "profile", False))
    env = {**BASE_ENV, **(FLOW_ENV if getattr(args, "order_heavy", False) else {})}
    heavy = bool(getattr(args, "order_heavy", False))
    result = Result("pipeline", "Full pipeline throughput (real processes, Redis, PostgreSQL)")
    if heavy:  # a section of its own: the default section keeps the deployed settings
        result = Result("pipeline_order_heavy", "Full pipeline throughput, order-heavy settings")
    missing = [s for s in SERVICES if not service_available(s)]
    if missing:
        result.note(f"Not run: service(s) {', '.join(missing)} not available yet.")
        return result
    with Servers(postgres=True) as servers:
        client = servers.client()
        baseline = (context or {}).get("bus") or _quick_baseline(client, servers, quick)
        client.flushall()
        procs = servers.start_all(SERVICES, env)
        producer = Producer(client, n_symbols)
        batch = 500

        def produce_until(deadline: float) -> None:
            while time.monotonic() < deadline:
                if max_md_lag(client) < LAG_LIMIT:
                    producer.send(batch)
                else:
                    time.sleep(0.002)

        produce_until(time.monotonic() + (1.0 if quick else 5.0))  # warm-up
        redis_cpu = ProcCPU(servers.redis_server.proc.pid)
        counts0, cpu0 = read_counts(client), {n: p.cpu_seconds() for n, p in procs.items()}
        cpu0["redis-server"], cpu0["bench producer"] = redis_cpu(), time.process_time()
        sent0, t0 = producer.sent, time.monotonic()
        spies = {}
        if want_profile:
            spies = {
                n: (
                    prof.record(p.pid, prof.output_path(f"pipe-{n}")),
                    prof.output_path(f"pipe-{n}"),
                )
                for n, p in procs.items()
            }
        produce_until(t0 + duration)
        t1 = time.monotonic()
        counts1, cpu1 = read_counts(client), {n: p.cpu_seconds() for n, p in procs.items()}
        cpu1["redis-server"], cpu1["bench producer"] = redis_cpu(), time.process_time()
        sent1 = producer.sent
        producer.close()
        for spy, _path in spies.values():
            if spy is not None:
                prof.stop(spy)
        open_ = wait_drained(client, 30 if quick else 180)
        memory = {n: p.memory() for n, p in procs.items()}
        statuses = {n: p.status() for n, p in procs.items()}
        for p in procs.values():
            p.stop()
        check, problems = verify(servers, client, producer.sent)
        client.close()
    span = t1 - t0
    bare = baseline.get("bare_loop")
    md_rate = (
        counts1.get(("signal", MARKET_DATA), 0) - counts0.get(("signal", MARKET_DATA), 0)
    ) / span
    t = result.table(
        f"{span:.0f} s sustained, {n_symbols} symbols, {producer.sent:,} market_data entries",
        ["stage (group ← stream)", "entries", "per second", "ratio to bare loop"],
    )
    t.add(
        "bench producer → market_data",
        sent1 - sent0,
        (sent1 - sent0) / span,
        (sent1 - sent0) / span / bare if bare else None,
    )
    for group, stream in STAGES:
        n = counts1.get((group, stream), 0) - counts0.get((group, stream), 0)
        t.add(f"{group} ← {stream}", n, n / span, n / span / bare if bare else None)
    c = result.table(
        "CPU over the window (capacity = entries it read per CPU-second it used)",
        ["process", "CPU s", "% of one core", "entries read", "entries per CPU-s"],
    )
    for name in (*SERVICES, "redis-server", "bench producer"):
        used = cpu1[name] - cpu0[name]
        n = sum(counts1.get(k, 0) - counts0.get(k, 0) for k in counts1 if k[0] == name)
        if name == "bench producer":
            n = sent1 - sent0
        c.add(name, used, used / span * 100, n or None, n / used if n and used else None)
    m = result.table(
        "Peak memory under the throughput run", ["service", "peak RSS MiB", "RSS at end MiB"]
    )
    for name in SERVICES:
        m.add(name, memory[name].get("VmHWM", 0) / 2**20, memory[name].get("VmRSS", 0) / 2**20)
    result.tables.append(check)
    x = result.table("Baseline of the same run", ["reference", "per second", "pipeline ratio"])
    for key, label in (
        ("bare_loop", "bare pydantic drain loop"),
        ("xadd", "XADD unpipelined"),
        ("xadd_pipelined", "XADD pipelined"),
    ):
        if baseline.get(key):
            x.add(label, baseline[key], md_rate / baseline[key])
    if open_:
        problems += ["not drained after the window: " + "; ".join(open_)]
    for p in problems:
        result.note(f"PROBLEM: {p}")
    if not quick and md_rate < TARGET:
        result.note(
            f"Target missed: {md_rate:,.0f} market_data/s end to end, "
            f"{(1 - md_rate / TARGET) * 100:.0f} % below {TARGET:,}/s; see the analysis below."
        )
    result.note(
        "Per-stage rates are entries read by each consumer group over the window (XINFO GROUPS "
        "entries-read); all three market_data consumers keep pace with the producer by design "
        f"(lag held < {LAG_LIMIT:,}), so the slowest of them sets the rate."
    )
    result.note("Settings (others default): " + ", ".join(f"{k}={v}" for k, v in env.items()))
    result.data = {
        "md_rate": md_rate,
        "problems": problems,
        "statuses": statuses,
        "memory": memory,
        "_sections": {} if heavy else {"memory": "## Memory\n\n" + md_table(m)},
    }
    if spies:
        for name, (_spy, path) in spies.items():
            summary = prof.summarize(path)
            print(f"--- {name} ---\n" + prof.format_summary(summary))
    if context is not None:
        context["pipeline_order_heavy" if heavy else "pipeline"] = result.data
    return result


def _quick_baseline(client, servers: Servers, quick: bool) -> dict:
    """When run alone: the XADD and bare-loop figures on this very Redis, before the services."""
    n = 3_000 if quick else 50_000
    figures = {
        "xadd": bus_baseline.xadd_rate(client, n // 5),
        "xadd_pipelined": bus_baseline.xadd_rate(client, n, pipeline=500),
        "bare_loop": bus_baseline.bare_loop(client, n),
    }
    return figures

"""Bus baseline: what Redis Streams and a bare Python consumer can do on this machine.

Everything else is a ratio of these figures, measured in the same run:

- XADD/s from one client, unpipelined and pipelined (redis-py, and
  ``redis-benchmark`` when installed), with a real ``market_data`` payload;
- drain rate of a ``market_data`` backlog by a bare loop that XREADGROUPs
  batches of 500, validates each entry with pydantic and acks the batch (the
  "bare loop" the services are compared with), by the same loop without
  validation (the floor of Redis + redis-py), and by the foundation's
  ``Bus.read``/``Bus.ack`` (what a service gets before its own handler runs).

Run: ``python -m bench run bus`` (``--quick`` for small sizes).
"""

from __future__ import annotations

import gc
import shutil
import subprocess
import time

import orjson
import redis

from bench.env import Servers
from bench.report import Result
from bench.synth import MarketGen, fill
from cdb.bus import MARKET_DATA, Bus
from cdb.events import MarketData

#: Entries in the backlog the drain loops read.
DRAIN = 100_000


def _backlog_gen(n_symbols: int = 200) -> MarketGen:
    return MarketGen(n_symbols=n_symbols, fire=0.01)


#: entries per CPU-second of the client in the last measurement, by function name
CPU_RATES: dict[str, float] = {}


def xadd_rate(client: redis.Redis, n: int, pipeline: int = 0) -> float:
    """XADD/s of one client (``pipeline`` = commands per round trip, 0 = none)."""
    stream = f"bench_xadd_{pipeline}"
    payloads = list(_backlog_gen().payloads(n, ts=int(time.time())))
    client.delete(stream)
    started, cpu = time.perf_counter(), time.process_time()
    if pipeline:
        pipe = client.pipeline(transaction=False)
        for i, payload in enumerate(payloads, 1):
            pipe.xadd(stream, {"data": payload}, maxlen=100_000, approximate=True)
            if i % pipeline == 0:
                pipe.execute()
        pipe.execute()
    else:
        xadd = client.xadd
        for payload in payloads:
            xadd(stream, {"data": payload}, maxlen=100_000, approximate=True)
    elapsed = time.perf_counter() - started
    CPU_RATES["xadd_pipelined" if pipeline else "xadd"] = n / (time.process_time() - cpu)
    client.delete(stream)
    return n / elapsed


def redis_benchmark(port: int, n: int, clients: int, pipeline: int, payload: bytes) -> float | None:
    """XADD requests/s by ``redis-benchmark`` (None when it is not installed)."""
    binary = shutil.which("redis-benchmark")
    if not binary:
        return None
    cmd = [binary, "-p", str(port), "-n", str(n), "-c", str(clients), "-P", str(pipeline)]
    cmd += ["--csv", "XADD", "bench_rb", "MAXLEN", "~", "100000", "*", "data", payload.decode()]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=120).stdout
    for line in out.splitlines():  # "test","rps","avg",...,"max" (the test name has commas)
        parts = [p.strip('"') for p in line.split(",")]
        if line.startswith('"XADD') and len(parts) >= 8:
            return float(parts[-7])
    return None


def _prepare_backlog(client: redis.Redis, n: int, group: str) -> None:
    client.delete(MARKET_DATA)
    gen = _backlog_gen()
    base = int(time.time()) - n // len(gen.symbols)
    fill(client, MARKET_DATA, (gen.next(base + i // len(gen.symbols))[3] for i in range(n)))
    client.xgroup_create(MARKET_DATA, group, id="0")


def bare_loop(client: redis.Redis, n: int, validate: bool = True, batch: int = 500) -> float:
    """Drain rate (entries/s) of an ``n``-entry backlog: XREADGROUP, validate, XACK per batch."""
    _prepare_backlog(client, n, "bare")
    validate_json = MarketData.model_validate_json
    done = 0
    started, cpu = time.perf_counter(), time.process_time()
    while True:
        raw = client.xreadgroup("bare", "c1", {MARKET_DATA: ">"}, count=batch)
        if not raw:
            break
        entries = raw[0][1]
        if not entries:
            break
        if validate:
            for _id, fields in entries:
                validate_json(fields[b"data"])
        else:
            for _id, fields in entries:
                orjson.loads(fields[b"data"])
        client.xack(MARKET_DATA, "bare", *[e[0] for e in entries])
        done += len(entries)
    elapsed = time.perf_counter() - started
    CPU_RATES["bare_loop" if validate else "drain_no_validation"] = n / (time.process_time() - cpu)
    assert done == n, f"bare loop read {done} of {n}"
    return n / elapsed


def bus_loop(client: redis.Redis, n: int, batch: int = 500) -> float:
    """Drain rate of the same backlog through ``cdb.bus.Bus`` (read + validate + ack)."""
    _prepare_backlog(client, n, "busloop")
    bus = Bus(client, service="busloop", consumer="c1")
    bus.subscribe([MARKET_DATA])
    done = 0
    started, cpu = time.perf_counter(), time.process_time()
    while done < n:
        deliveries = bus.read(batch, block_ms=1000)
        if not deliveries:
            break
        bus.ack(deliveries)
        done += len(deliveries)
    elapsed = time.perf_counter() - started
    CPU_RATES["bus_loop"] = n / (time.process_time() - cpu)
    assert done == n, f"Bus loop read {done} of {n}"
    return n / elapsed


def measure(client: redis.Redis, port: int, quick: bool = False) -> dict[str, float | None]:
    """The baseline figures (entries or commands per second) on a running Redis."""
    # Like the services (cdb.runtime freezes its start-up objects), so that a full
    # collection walking this harness's imports does not land in one loop and not another.
    gc.collect()
    gc.freeze()
    n_plain = 3_000 if quick else 20_000
    n_pipe = 10_000 if quick else 200_000
    n_drain = 5_000 if quick else DRAIN
    payload = next(_backlog_gen().payloads(1))
    figures: dict[str, float | None] = {
        "xadd": xadd_rate(client, n_plain),
        "xadd_pipelined": xadd_rate(client, n_pipe, pipeline=500),
        "rb_xadd": redis_benchmark(port, n_plain, 1, 1, payload),
        "rb_xadd_pipelined": redis_benchmark(port, n_pipe, 1, 500, payload),
        "rb_xadd_50_clients": redis_benchmark(port, n_pipe // 2, 50, 1, payload),
        "drain_no_validation": bare_loop(client, n_drain, validate=False),
        "bare_loop": bare_loop(client, n_drain, validate=True),
        "bus_loop": bus_loop(client, n_drain),
    }
    client.delete("bench_rb", MARKET_DATA)
    return figures


ROWS = (
    ("xadd", "XADD, 1 client, unpipelined", "redis-py"),
    ("xadd_pipelined", "XADD, 1 client, pipeline of 500", "redis-py"),
    ("rb_xadd", "XADD, 1 client, unpipelined", "redis-benchmark -c 1"),
    ("rb_xadd_pipelined", "XADD, 1 client, pipeline of 500", "redis-benchmark -c 1 -P 500"),
    ("rb_xadd_50_clients", "XADD, 50 clients, unpipelined", "redis-benchmark -c 50"),
    ("drain_no_validation", "drain: XREADGROUP 500 + orjson + XACK", "bare Python loop"),
    ("bare_loop", "drain: XREADGROUP 500 + pydantic + XACK", "bare Python loop (reference)"),
    ("bus_loop", "drain: Bus.read(500) + Bus.ack", "cdb.bus (foundation)"),
)


def run(quick: bool = False, context: dict | None = None) -> Result:
    result = Result("bus", "Bus baseline (the physical limit)")
    with Servers() as servers:
        client = servers.client()
        figures = measure(client, servers.redis_server.port, quick)
        client.close()
    table = result.table(
        "Redis Streams on this machine",
        ["what", "how", "per second", "per CPU-second of the Python client"],
    )
    for key, what, how in ROWS:
        value = figures[key]
        table.add(what, how, "not installed" if value is None else value, CPU_RATES.get(key))
    result.data = {**figures, **{f"{k}_cpu": v for k, v in CPU_RATES.items()}}
    aof = "AOF, appendfsync everysec" if Servers.appendonly else "AOF OFF (--no-aof)"
    result.note(
        f"Redis as `cdb up` runs it ({aof}), on loopback; payload: one "
        f"feed-format market_data event ({len(next(_backlog_gen().payloads(1)))} bytes of JSON)."
    )
    result.note(
        "The drain rows read a backlog of "
        f"{5_000 if quick else DRAIN:,} entries; the pydantic bare loop is the reference "
        "every consumer is compared with."
    )
    if context is not None:
        context["bus"] = result.data
    return result

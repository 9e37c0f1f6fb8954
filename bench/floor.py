"""The machine's floor under the latency benchmark: the disk's sync time and round trips.

A decision path can be no faster than the durable commits and round trips it
needs. This module measures their unit costs on the benchmark's own servers, in
the same run, so the latency figures can be read as multiples of them:

- ``pg_test_fsync`` (PostgreSQL's own tool, Debian ``postgresql-15``) on the
  disk under the benchmark's PostgreSQL data directory: microseconds per 8 kB
  write + sync, for each method (``fdatasync`` is PostgreSQL's default
  ``wal_sync_method`` on Linux, so it is *the* fsync time of a commit);
- one Redis round trip (``PING``), one PostgreSQL round trip (``SELECT 1``) and
  one committed single-row ``INSERT`` (a round trip plus the WAL flush), each the
  median and 99th percentile of a few hundred, through the clients the services use;
- the same three, and one 8 kB write + ``fdatasync`` on the same disk, each after
  ``IDLE_GAP_S`` of idleness (``cold=True``): the way a decision path meets them. Orders
  come ~10 a second, so the servers, the disk and the CPUs they wake have been idle
  for tens of milliseconds; on a virtual machine whose idle CPUs halt at once (this
  one: the ``haltpoll`` cpuidle driver with ``guest_halt_poll_ns=0``) a cold wake
  costs several times the back-to-back figure, and no code on our side changes it
  (busy-polling the client socket was tried: the cost is in the server's and the
  disk's wake-up, not ours).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from pathlib import Path

#: Where Debian's postgresql-15 puts the tool (not on PATH).
PG_TEST_FSYNC = "/usr/lib/postgresql/15/bin/pg_test_fsync"
#: PostgreSQL's default wal_sync_method on Linux: the figure a commit waits for.
DEFAULT_METHOD = "fdatasync"

#: Idle time before each "cold" sample: longer than a CPU needs to halt, shorter than
#: the ~100 ms between orders of the latency benchmark.
IDLE_GAP_S = 0.01

_LINE = re.compile(r"^\s+(\w+)\s+([\d.]+) ops/sec\s+(\d+) usecs/op")


def pg_test_fsync(directory: Path, seconds: int = 1) -> dict[str, float]:
    """µs per op of each sync method for one 8 kB write (the tool's first section).

    Runs ``pg_test_fsync -s SECONDS -f DIRECTORY/...`` and stops it after its first
    section (one second per method, ~5 s) rather than the ~16 tests of a full run.
    Returns {} when the tool is missing.
    """
    binary = PG_TEST_FSYNC if Path(PG_TEST_FSYNC).exists() else shutil.which("pg_test_fsync")
    if not binary:
        return {}
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / "pg_test_fsync.out"
    proc = subprocess.Popen(
        [binary, "-s", str(seconds), "-f", str(target)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    figures: dict[str, float] = {}
    section = 0
    assert proc.stdout is not None
    try:
        for line in proc.stdout:
            if line.startswith("Compare "):
                section += 1
                if section > 1:
                    break
            match = _LINE.match(line)
            if match and section == 1:
                figures[match.group(1)] = float(match.group(3))
    finally:
        proc.kill()
        proc.wait()
        target.unlink(missing_ok=True)
    return figures


def _quantiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return ordered[len(ordered) // 2], ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


def cold_fdatasync(directory: Path, n: int = 60, gap_s: float = IDLE_GAP_S) -> tuple:
    """(p50, p99) in µs of one 8 kB write + ``fdatasync`` after ``gap_s`` idle, on ``directory``'s disk."""
    import os

    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "cold_fdatasync.out"
    block = os.urandom(8192)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    samples = []
    try:
        for i in range(n):
            time.sleep(gap_s)
            t = time.perf_counter()
            os.pwrite(fd, block, (i % 16) * 8192)
            os.fdatasync(fd)
            samples.append((time.perf_counter() - t) * 1e6)
    finally:
        os.close(fd)
        path.unlink(missing_ok=True)
    return _quantiles(samples)


def round_trips(
    redis_client, pg_env: dict[str, str], n: int = 300, cold: bool = False
) -> dict[str, tuple]:
    """(p50, p99) in µs of a Redis PING, a PostgreSQL SELECT 1 and a committed INSERT.

    ``cold``: each sample after ``IDLE_GAP_S`` of idleness (labels say so).
    """
    import psycopg2

    gap = IDLE_GAP_S if cold else 0.0
    suffix = f", after {gap * 1000:g} ms idle" if cold else ""

    def timed(call) -> list[float]:
        samples = []
        for _ in range(n):
            if gap:
                time.sleep(gap)
            t = time.perf_counter()
            call()
            samples.append((time.perf_counter() - t) * 1e6)
        return samples

    out: dict[str, tuple] = {}
    out[f"redis round trip (PING){suffix}"] = _quantiles(timed(redis_client.ping))
    conn = psycopg2.connect(
        host=pg_env["POSTGRES_HOST"],
        port=pg_env["POSTGRES_PORT"],
        user=pg_env["POSTGRES_USER"],
        password=pg_env["POSTGRES_PASSWORD"],
        dbname=pg_env["POSTGRES_DB"],
    )
    conn.autocommit = True
    try:
        with conn.cursor() as cur:

            def select() -> None:
                cur.execute("SELECT 1")
                cur.fetchone()

            out[f"postgresql round trip (SELECT 1){suffix}"] = _quantiles(timed(select))
            cur.execute("CREATE TABLE IF NOT EXISTS bench_commit_floor (n int)")
            out[f"postgresql committed INSERT (round trip + WAL flush){suffix}"] = _quantiles(
                timed(lambda: cur.execute("INSERT INTO bench_commit_floor VALUES (1)"))
            )
            cur.execute("DROP TABLE bench_commit_floor")
    finally:
        conn.close()
    return out

"""A backup taken while the real persistence writer is busy restores exactly.

The writer runs as a real process (``cdb run persistence``), fed a steady stream of
events on real Redis; ``cdb backup`` runs in the middle of it. The restored database
must match the manifest table by table (``cdb restore`` checks counts and checksums),
hold only rows the source also holds (an independent row-by-row check), and miss the
rows written after the snapshot.
"""

from __future__ import annotations

import tempfile
import threading
from pathlib import Path

import psycopg2
import redis
from helpers import ServiceProcess, wait_until
from test_backup_support import cdb, fresh_db, settings_for

from cdb.backup.manifest import read_manifest
from cdb.bus import Bus
from cdb.db.migrate import migrate
from cdb.events import Alert, Event, Health, Order, OrderResult, Signal

TABLES = ("signals", "orders", "order_results", "alerts", "health_checks")


def batch(n: int) -> list[Event]:
    cid = f"p{n}"
    return [
        Signal(
            signal_id=f"sig-{n}",
            symbol="BTC_USDT",
            side="BUY",
            confidence=0.6,
            price=100.0 + n / 7,
            pct_change=4.2,
            volume=250_000,
            reason=f"momentum {n}",
        ),
        Order(client_id=cid, symbol="BTC_USDT", side="BUY", quantity=0.1, price=100.0),
        OrderResult(
            client_id=cid,
            symbol="BTC_USDT",
            side="BUY",
            status="FILLED",
            filled_quantity=0.1,
            avg_price=100.0 + n / 3,
        ),
        Alert(level="INFO", code="TEST", message=f"alert {n}", context={"n": n}),
        Health(service="producer", status="ok", details={"n": n}),
    ]


def row_hashes(env: dict[str, str], table: str) -> set[str]:
    with psycopg2.connect(settings_for(env).postgres_dsn()) as conn, conn.cursor() as cur:
        cur.execute("SET TimeZone = 'UTC'")
        cur.execute(f"SELECT md5(t::text) FROM {table} AS t")
        return {row[0] for row in cur.fetchall()}


def count(env: dict[str, str], table: str) -> int:
    with psycopg2.connect(settings_for(env).postgres_dsn()) as conn, conn.cursor() as cur:
        cur.execute(f"SELECT count(*) FROM {table}")
        return cur.fetchone()[0]


def test_backup_during_the_pipeline_restores_identically(redis_env, pg_server, pg_env):
    migrate(settings_for(pg_env))
    logs = Path(tempfile.mkdtemp(prefix="cdb-backup-pipeline-"))
    out = logs / "backups"
    writer = ServiceProcess(
        "persistence", {**redis_env, **pg_env, "HEALTH_INTERVAL_S": "3600"}, logs
    ).start()
    client = redis.Redis(port=int(redis_env["REDIS_PORT"]))
    bus = Bus(client, service="test-producer")
    stop = threading.Event()
    sent = [0]

    def produce() -> None:
        while not stop.is_set():
            bus.publish_many(batch(sent[0]))
            sent[0] += 1
            stop.wait(0.005)

    producer = threading.Thread(target=produce, daemon=True)
    producer.start()
    try:
        wait_until(lambda: count(pg_env, "signals") >= 50, timeout=60, message="rows written")
        done = cdb(["backup", "--output", str(out), "--redis"], {**redis_env, **pg_env})
        assert done.returncode == 0, done.stderr
        (name,) = [p.name for p in out.iterdir() if p.name.startswith("backup-")]
        manifest = read_manifest(out / name)
        wait_until(
            lambda: all(
                count(pg_env, t) > manifest.tables[f"public.{t}"].rows + 20 for t in TABLES
            ),
            timeout=60,
            message="rows written after the backup, in every table",
        )
    finally:
        stop.set()
        producer.join(timeout=10)
        writer.stop()
        client.close()

    target = fresh_db(pg_server)
    done = cdb(["restore", str(out / name)], target)
    assert done.returncode == 0, done.stderr
    assert "row counts and checksums verified" in done.stdout
    assert manifest.tables["public.signals"].rows >= 50
    for table in TABLES:
        in_backup = manifest.tables[f"public.{table}"].rows
        assert count(target, table) == in_backup > 0
        assert count(pg_env, table) > in_backup  # the writer went on after the snapshot
        restored = row_hashes(target, table)
        assert len(restored) == in_backup
        assert restored <= row_hashes(pg_env, table)  # every restored row, exactly as written

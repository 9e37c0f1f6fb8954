"""The persistence writer as a real process: every event in its table, exactly once, and
nothing lost across a PostgreSQL outage."""

from __future__ import annotations

import tempfile
from pathlib import Path

import psycopg2
import pytest
from helpers import ServiceProcess, wait_until

from cdb.bus import DEAD_LETTER, Bus, Delivery
from cdb.db.migrate import migrate
from cdb.events import Alert, Event, Health, Order, OrderResult, Signal
from cdb.persistence.rows import rows_by_table
from cdb.settings import PostgresSettings

STREAMS = ("signals", "orders", "order_result", "alerts", "health")


def events(tag: str, n: int) -> list[Event]:
    """``n`` events of each kind the writer keeps, with keys unique to ``tag``."""
    out: list[Event] = []
    for i in range(n):
        cid = f"{tag}{i}"[:32]
        out += [
            Signal(
                signal_id=f"sig-{tag}-{i}",
                symbol="BTC_USDT",
                side="BUY",
                confidence=0.5,
                price=100.0 + i,
                pct_change=5.0,
                volume=200_000,
                reason="Momentum: +5.0% (threshold 3.0%)",
            ),
            Order(client_id=cid, symbol="BTC_USDT", side="BUY", quantity=0.1, price=100.0),
            OrderResult(
                client_id=cid,
                symbol="BTC_USDT",
                side="BUY",
                status="FILLED",
                filled_quantity=0.1,
                avg_price=100.0,
            ),
            Alert(level="WARNING", code="TEST", message=f"alert {tag} {i}", context={"i": i}),
            Health(service=f"probe-{tag}", status="ok", details={"i": i}),
        ]
    return out


def counts(dsn: str, tag: str) -> dict[str, int]:
    queries = {
        "signals": ("SELECT count(*) FROM signals WHERE signal_id LIKE %s", f"sig-{tag}-%"),
        "orders": ("SELECT count(*) FROM orders WHERE client_id LIKE %s", f"{tag}%"),
        "order_results": ("SELECT count(*) FROM order_results WHERE client_id LIKE %s", f"{tag}%"),
        "alerts": ("SELECT count(*) FROM alerts WHERE message LIKE %s", f"alert {tag} %"),
        "health_checks": ("SELECT count(*) FROM health_checks WHERE service = %s", f"probe-{tag}"),
    }
    with psycopg2.connect(dsn) as conn, conn.cursor() as cur:
        out = {}
        for table, (sql, arg) in queries.items():
            cur.execute(sql, (arg,))
            out[table] = cur.fetchone()[0]
    conn.close()
    return out


def query(dsn: str, sql: str, *args: object) -> list[tuple]:
    with psycopg2.connect(dsn) as conn, conn.cursor() as cur:
        cur.execute(sql, args)
        rows = cur.fetchall() if cur.description else []
    conn.close()
    return rows


def all_read_and_acked(client) -> bool:
    """The writer's group has read up to the last entry of every stream and acknowledged all."""
    for stream in STREAMS:
        last = client.xinfo_stream(stream)["last-generated-id"]
        group = next(g for g in client.xinfo_groups(stream) if g["name"] == b"persistence")
        if group["last-delivered-id"] != last or group["pending"] != 0:
            return False
    return True


def each(n: int) -> dict[str, int]:
    return dict.fromkeys(("signals", "orders", "order_results", "alerts", "health_checks"), n)


@pytest.fixture
def log_dir() -> Path:
    return Path(tempfile.mkdtemp(prefix="cdb-persistence-"))


def start_writer(redis_env: dict, pg_env: dict, log_dir: Path, **extra: str) -> ServiceProcess:
    migrate(PostgresSettings(**pg_env))
    env = {**redis_env, **pg_env, "HEALTH_INTERVAL_S": "3600", **extra}
    return ServiceProcess("persistence", env, log_dir).start()


def test_rows_keep_one_row_per_key_and_the_latest_result():
    partial = OrderResult(
        client_id="c1",
        symbol="BTC_USDT",
        side="BUY",
        status="PARTIALLY_FILLED",
        filled_quantity=0.05,
        avg_price=100.0,
    )
    filled = partial.model_copy(update={"status": "FILLED", "filled_quantity": 0.1})
    alert = Alert(level="INFO", code="X", message="m", context={"a": 1})
    batch = [
        Delivery("order_result", "1-0", partial),
        Delivery("order_result", "2-0", filled),
        Delivery("alerts", "3-0", alert),
        Delivery("alerts", "4-0", alert),
    ]
    grouped = rows_by_table(batch)
    assert [row[4] for row in grouped["order_results"]] == ["FILLED"]
    # Alerts are keyed by their stream entry: two entries with equal content are two rows.
    assert [row[0] for row in grouped["alerts"]] == ["3-0", "4-0"]
    assert grouped["alerts"][0][-1] == '{"a":1}'


def test_every_event_lands_in_its_table_and_a_redelivery_adds_no_row(
    redis_env, redis_client, pg_env, log_dir
):
    dsn = PostgresSettings(**pg_env).postgres_dsn()
    writer = start_writer(redis_env, pg_env, log_dir)
    try:
        partial = OrderResult(
            client_id="part1",
            symbol="ETH_USDT",
            side="BUY",
            status="PARTIALLY_FILLED",
            filled_quantity=0.5,
            avg_price=2000.0,
        )
        bus = Bus(redis_client, service="test-producer")
        bus.publish_many([*events("a", 20), partial])
        wait_until(lambda: counts(dsn, "a") == each(20), message="20 rows in every table")
        wait_until(lambda: query(dsn, "SELECT status FROM order_results WHERE client_id='part1'"))
        bus.publish(partial.model_copy(update={"status": "FILLED", "filled_quantity": 1.0}))
        wait_until(
            lambda: (
                query(dsn, "SELECT status FROM order_results WHERE client_id='part1'")
                == [("FILLED",)]
            ),
            message="a later result replaces a partial fill",
        )
        # The execution service owns an order's status: a redelivered order must not reset it.
        query(dsn, "UPDATE orders SET status = 'FILLED' WHERE client_id = 'a0'")
        row = query(
            dsn,
            "SELECT signal_id, ts, symbol, side, confidence, price, pct_change, "
            "volume, reason, strategy FROM signals WHERE signal_id = 'sig-a-3'",
        )
        assert row[0][0] == "sig-a-3" and row[0][2:] == (
            "BTC_USDT",
            "BUY",
            0.5,
            103.0,
            5.0,
            200000.0,
            "Momentum: +5.0% (threshold 3.0%)",
            "momentum",
        )

        # Redeliver everything: rewind the writer's consumer group to the start of each stream.
        before = sum(writer.status()["duplicates"].values())
        for stream in STREAMS:
            redis_client.xgroup_setid(stream, "persistence", "0")
        wait_until(lambda: all_read_and_acked(redis_client), message="every entry read again")
        # Every entry came back once; the two results for part1 share one key within a batch.
        assert sum(writer.status()["duplicates"].values()) - before >= 100
        assert counts(dsn, "a") == each(20)
        assert query(dsn, "SELECT status FROM orders WHERE client_id = 'a0'") == [("FILLED",)]
        assert query(
            dsn, "SELECT status, filled_quantity FROM order_results WHERE client_id = 'part1'"
        ) == [("FILLED", 1.0)]
        assert redis_client.xlen(DEAD_LETTER) == 0
        assert writer.health()[0] == 200
    finally:
        assert writer.stop() == 0


def test_an_entry_the_database_refuses_is_dead_lettered_and_the_rest_is_kept(
    redis_env, redis_client, pg_env, log_dir
):
    dsn = PostgresSettings(**pg_env).postgres_dsn()
    writer = start_writer(redis_env, pg_env, log_dir)
    try:
        bus = Bus(redis_client, service="test-producer")
        # valid events PostgreSQL still refuses: timestamps past BIGINT (NUL characters, the
        # earlier example, are now refused by the event contract itself)
        poison = [
            Alert(level="INFO", code="NUL", message="too late", timestamp=2**63),
            Alert(level="INFO", code="NUL", message="far too late", timestamp=2**70),
        ]
        bus.publish_many([*events("b", 3), *poison, *events("c", 3)])
        wait_until(lambda: counts(dsn, "c") == each(3), message="the entries after the poison")
        assert counts(dsn, "b") == each(3)
        dead = redis_client.xrange(DEAD_LETTER)
        assert len(dead) == 2
        reasons = sorted(fields[b"reason"].decode() for _, fields in dead)
        assert all(r.startswith("alerts: ") for r in reasons), reasons
        assert query(dsn, "SELECT count(*) FROM alerts WHERE code = 'NUL'") == [(0,)]
        assert writer.status()["refused"] == 2
        assert writer.health()[0] == 200
    finally:
        assert writer.stop() == 0


def test_a_postgres_outage_loses_nothing(redis_env, redis_client, own_postgres, log_dir):
    own_postgres.create_database("outage")
    pg_env = own_postgres.env("outage")
    dsn = PostgresSettings(**pg_env).postgres_dsn()
    writer = start_writer(redis_env, pg_env, log_dir, DB_PROBE_INTERVAL_S="0.5")
    try:
        bus = Bus(redis_client, service="test-producer")
        bus.publish_many(events("before", 50))
        wait_until(lambda: counts(dsn, "before") == each(50), message="rows before the outage")

        own_postgres.stop()
        bus.publish_many(events("during", 30))  # arrives while the database is going away
        status, body = wait_until(
            lambda: (h := writer.health())[0] == 503 and h, message="/health reports the outage"
        )
        assert any("postgres unreachable" in p for p in body["problems"]), body
        bus.publish_many(events("down", 30))  # arrives while the database is known to be down
        assert writer.proc.poll() is None

        own_postgres.start()
        wait_until(
            lambda: counts(dsn, "down") == each(30),
            timeout=90,
            message="the backlog written after the outage",
        )
        assert counts(dsn, "before") == each(50)
        assert counts(dsn, "during") == each(30)
        wait_until(lambda: writer.health()[0] == 200, timeout=30, message="healthy again")
        assert redis_client.xlen(DEAD_LETTER) == 0
        pending = [redis_client.xpending(s, "persistence")["pending"] for s in STREAMS]
        wait_until(
            lambda: all(redis_client.xpending(s, "persistence")["pending"] == 0 for s in STREAMS),
            message=f"every entry acknowledged (pending was {pending})",
        )
    finally:
        assert writer.stop() == 0

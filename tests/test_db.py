"""The schema: `cdb db migrate` on a real PostgreSQL, twice, creates every table."""

import os
import subprocess
import sys

import psycopg2

from cdb.settings import PostgresSettings

TABLES = {
    "signals",
    "orders",
    "order_results",
    "trades",
    "positions",
    "balances",
    "risk_events",
    "alerts",
    "health_checks",
    "metrics",
    "service_state",
    "webpush_subscriptions",
    "ml_signals",
}


def cdb(*args, env):
    return subprocess.run(
        [sys.executable, "-m", "cdb", *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_migrate_twice_on_a_fresh_database(pg_env):
    first = cdb("db", "migrate", env=pg_env)
    assert first.returncode == 0, first.stderr
    assert "applied" in first.stdout and "0001_initial" in first.stdout
    second = cdb("db", "migrate", env=pg_env)
    assert second.returncode == 0, second.stderr
    assert "applied 0 migration(s)" in second.stdout
    version = cdb("db", "version", env=pg_env)
    assert version.stdout.strip().splitlines()[-1].startswith("schema version: 0")

    dsn = PostgresSettings(**{k: v for k, v in pg_env.items()}).postgres_dsn()
    with psycopg2.connect(dsn) as conn, conn.cursor() as cur:
        cur.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        tables = {row[0] for row in cur.fetchall()}
        assert tables >= TABLES, TABLES - tables
        assert "strategy_params" not in tables  # dropped by 0002: nothing read it
        cur.execute("SELECT indexdef FROM pg_indexes WHERE tablename = 'signals'")
        assert any("symbol" in row[0] and "ts" in row[0] for row in cur.fetchall())
        cur.execute(
            "INSERT INTO signals (signal_id, ts, symbol, side, confidence, price, pct_change,"
            " reason, strategy) VALUES ('a', 1, 'BTC_USDT', 'BUY', 0.5, 1, 5, 'r', 'm')"
            " ON CONFLICT (signal_id) DO NOTHING"
        )
        cur.execute(
            "INSERT INTO signals (signal_id, ts, symbol, side, confidence, price, pct_change,"
            " reason, strategy) VALUES ('a', 1, 'BTC_USDT', 'BUY', 0.5, 1, 5, 'r', 'm')"
            " ON CONFLICT (signal_id) DO NOTHING"
        )
        cur.execute("SELECT count(*) FROM signals")
        assert cur.fetchone()[0] == 1, "the natural key makes a redelivered insert a no-op"


def test_migrate_with_a_bad_setting_exits_2(pg_env):
    result = cdb("db", "migrate", env={**pg_env, "POSTGRES_PORT": "99999"})
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "configuration error: POSTGRES_PORT must be <= 65535, got 99999"
    )


def test_password_is_hidden_in_the_error_line(pg_env):
    # a SecretStr cannot fail validation by value, so check a sibling error keeps it out
    result = cdb("db", "migrate", env={**pg_env, "POSTGRES_PORT": "x"})
    assert pg_env["POSTGRES_PASSWORD"] not in result.stderr + result.stdout

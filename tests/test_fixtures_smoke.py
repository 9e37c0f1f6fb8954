"""The fixtures start real servers: a quick check that both answer."""

import psycopg2

from cdb.db.migrate import migrate, schema_version
from cdb.settings import PostgresSettings


def test_redis_answers(redis_client):
    assert redis_client.ping() is True


def test_migrate_twice_creates_every_table(pg_env, monkeypatch):
    for key, value in pg_env.items():
        monkeypatch.setenv(key, value)
    settings = PostgresSettings()
    assert migrate(settings) == ["0001_initial"]
    assert migrate(settings) == []
    assert schema_version(settings) == "0001_initial"
    with psycopg2.connect(settings.postgres_dsn()) as conn, conn.cursor() as cur:
        cur.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        tables = {row[0] for row in cur.fetchall()}
    expected = {"signals", "orders", "trades", "positions", "balances", "risk_events",
                "health_checks", "metrics", "strategy_params", "alerts", "order_results"}
    assert expected <= tables

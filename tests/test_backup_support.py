"""Helpers for the backup tests (no tests here): seed a database, run the CLI, fingerprint tables.

The fingerprint is deliberately computed another way than the production checksum
(md5 of every row's text, ordered by primary key), so the tests do not grade the code
with its own ruler.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import psycopg2

from cdb.db.migrate import migrate
from cdb.localservers import PostgresServer
from cdb.settings import PostgresSettings


def settings_for(env: dict[str, str]) -> PostgresSettings:
    return PostgresSettings(**env)


def fresh_db(pg_server: PostgresServer) -> dict[str, str]:
    name = f"r_{uuid.uuid4().hex[:12]}"
    pg_server.create_database(name)
    return pg_server.env(name)


def seed(env: dict[str, str], n: int = 40, start: int = 0, migrated: bool = False) -> None:
    """Migrate (unless done) and write ``n`` rows into most tables in one transaction."""
    settings = settings_for(env)
    if not migrated:
        migrate(settings)
    with psycopg2.connect(settings.postgres_dsn()) as conn, conn.cursor() as cur:
        for i in range(start, start + n):
            cur.execute(
                "INSERT INTO signals (signal_id, ts, symbol, side, confidence, price, pct_change,"
                " volume, reason, strategy) VALUES (%s, %s, 'BTC_USDT', 'BUY', 0.7, %s, %s, %s,"
                " %s, 'momentum')",
                (
                    f"sig-{i}",
                    1_700_000_000 + i,
                    0.1 + 0.2 * i,
                    3.3333333333333335,
                    1e-9 * i,
                    f"reason with 'quotes', ünïcode and\nnewline {i}",
                ),
            )
            cur.execute(
                "INSERT INTO orders (client_id, signal_id, ts, symbol, side, quantity, price,"
                " status) VALUES (%s, %s, %s, 'ETH_USDT', 'SELL', %s, NULL, 'FILLED')",
                (f"c{i}", f"sig-{i}", 1_700_000_000 + i, 1 / 3 + i),
            )
            cur.execute(
                "INSERT INTO risk_events (event_key, ts, severity, decision, rule, description,"
                " context) VALUES (%s, %s, 'WARNING', 'reject', 'max_exposure', 'too big', %s)",
                (f"ev-{i}", 1_700_000_000 + i, f'{{"i": {i}, "nested": {{"x": [1, 2.5, null]}}}}'),
            )
            cur.execute(
                "INSERT INTO metrics (ts, name, value, labels) VALUES (%s, 'equity', %s, '{}')",
                (1_700_000_000 + i, 10_000 + i * 0.01),
            )
        cur.execute(
            "INSERT INTO positions (symbol, quantity, avg_price, updated_ts) VALUES"
            " ('BTC_USDT', 0.5, 43000.25, 1) ON CONFLICT (symbol) DO UPDATE SET quantity ="
            " positions.quantity + 0.5"
        )
        cur.execute(
            "INSERT INTO service_state (service, key, value) VALUES ('risk', 'breaker',"
            " '{\"engaged\": false}') ON CONFLICT DO NOTHING"
        )


def fingerprints(env: dict[str, str]) -> dict[str, tuple[int, str]]:
    """Every user table → (row count, md5 of its rows' text ordered by primary key)."""
    settings = settings_for(env)
    result = {}
    with psycopg2.connect(settings.postgres_dsn()) as conn, conn.cursor() as cur:
        cur.execute("SET TimeZone = 'UTC'")
        cur.execute(
            "SELECT c.oid, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid ="
            " c.relnamespace WHERE n.nspname = 'public' AND c.relkind = 'r' ORDER BY 2"
        )
        for oid, table in cur.fetchall():
            cur.execute(
                "SELECT string_agg(quote_ident(a.attname), ', ' ORDER BY k.ord) FROM pg_index i,"
                " unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord) JOIN pg_attribute a"
                " ON a.attnum = k.attnum WHERE i.indrelid = %s AND i.indisprimary"
                " AND a.attrelid = %s",
                (oid, oid),
            )
            order = cur.fetchone()[0] or "t::text"
            cur.execute(
                f"SELECT count(*), md5(coalesce(string_agg(t::text, E'\\n' ORDER BY {order}),"
                f" '')) FROM public.{table} AS t"
            )
            result[table] = tuple(cur.fetchone())
    return result


def cdb(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    """Run ``cdb ARGS`` as a real process with ``env`` on top of ours."""
    return subprocess.run(
        [sys.executable, "-m", "cdb", *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def listing(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name != ".cdb-backup.lock")


def relations(env: dict[str, str]) -> int:
    with psycopg2.connect(settings_for(env).postgres_dsn()) as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname = 'public'"
        )
        return cur.fetchone()[0]

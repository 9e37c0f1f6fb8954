"""Shared helpers of the execution tests (no tests here): a migrated database, orders in, results out."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import psycopg2
import redis

from cdb.bus import Bus
from cdb.db.migrate import migrate
from cdb.events import MarketData, Order, OrderResult, parse_event
from cdb.settings import PostgresSettings


def migrated(pg_env: dict[str, str]) -> PostgresSettings:
    settings = PostgresSettings(**pg_env)
    migrate(settings)
    return settings


def sql(pg_env: dict[str, str], query: str, args: tuple = ()) -> list[tuple[Any, ...]]:
    with psycopg2.connect(PostgresSettings(**pg_env).postgres_dsn()) as conn, conn.cursor() as cur:
        cur.execute(query, args)
        return cur.fetchall() if cur.description else []


def publisher(client: redis.Redis) -> Bus:
    return Bus(client, service="test-driver")


def order(
    client_id: str,
    side: str = "BUY",
    quantity: float = 10.0,
    price: float = 99.0,
    symbol: str = "BTC_USDT",
    **kw: Any,
) -> Order:
    return Order(
        client_id=client_id, symbol=symbol, side=side, quantity=quantity, price=price, **kw
    )


def tick(symbol: str, price: float) -> MarketData:
    return MarketData(symbol=symbol, price=price, volume=1e6, pct_change=0.0, source="test")


def results(client: redis.Redis, client_id: str | None = None) -> list[OrderResult]:
    out = []
    for _, fields in client.xrange("order_result"):
        event = parse_event(fields[b"data"])
        if client_id is None or event.client_id == client_id:
            out.append(event)
    return out


def alerts(client: redis.Redis) -> list[dict[str, Any]]:
    return [json.loads(f[b"data"]) for _, f in client.xrange("alerts")]


def run_cdb(env: dict[str, str], *args: str, module: str = "cdb") -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", module, *args], env=env, capture_output=True, text=True, timeout=60
    )

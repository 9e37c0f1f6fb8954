"""Read the running pipeline: each service's /health and /status, PostgreSQL, the breaker hash.

Everything here tolerates a missing piece (a service not up yet, a database
restarting): the summary shows what it could read and says what it could not.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import psycopg2
import psycopg2.extensions
import redis

from cdb.bus import BREAKER_KEY
from cdb.db.connect import connect
from cdb.settings import PostgresSettings


@dataclass
class ServiceView:
    """What one service says about itself (``state`` is ok / unavailable / no answer / exited)."""

    name: str
    port: int | None
    state: str = "no answer"
    problems: list[str] = field(default_factory=list)
    status: dict[str, Any] = field(default_factory=dict)


@dataclass
class Snapshot:
    services: dict[str, ServiceView] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    latest: dict[str, list[tuple]] = field(default_factory=dict)
    breaker: dict[str, str] = field(default_factory=dict)
    database_error: str | None = None
    redis_error: str | None = None


def _get(port: int, path: str, timeout: float) -> tuple[int, Any]:
    url = f"http://127.0.0.1:{port}{path}"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status, json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as exc:
        try:
            return exc.code, json.loads(exc.read() or b"null")
        except ValueError:
            return exc.code, None


def read_service(name: str, port: int | None, timeout: float = 1.0) -> ServiceView:
    view = ServiceView(name, port)
    if port is None:
        return view
    try:
        code, health = _get(port, "/health", timeout)
        view.state = "ok" if code == 200 else "unavailable"
        if isinstance(health, dict):
            view.problems = list(health.get("problems") or [])
        code, status = _get(port, "/status", timeout)
        if code == 200 and isinstance(status, dict):
            view.status = status
    except (OSError, ValueError):
        view.state = "no answer"
    return view


def read_services(ports: dict[str, int | None], timeout: float = 1.0) -> dict[str, ServiceView]:
    with ThreadPoolExecutor(max_workers=len(ports) or 1) as pool:
        views = pool.map(lambda item: read_service(item[0], item[1], timeout), ports.items())
        return {v.name: v for v in views}


COUNT_SQL = {
    "signals": "SELECT count(*) FROM signals",
    "orders": "SELECT count(*) FROM orders",
    "fills": "SELECT count(*) FROM trades",
    "risk_events": "SELECT count(*) FROM risk_events",
    "alerts": "SELECT count(*) FROM alerts",
}
LATEST_SQL = {
    "signals": "SELECT ts, symbol, side, confidence, reason FROM signals ORDER BY id DESC LIMIT %s",
    "orders": "SELECT ts, client_id, symbol, side, quantity, status, avg_price "
    "FROM orders ORDER BY id DESC LIMIT %s",
    "fills": "SELECT ts, symbol, side, quantity, price, realized_pnl "
    "FROM trades ORDER BY id DESC LIMIT %s",
    "risk_events": "SELECT ts, severity, decision, rule, description "
    "FROM risk_events ORDER BY id DESC LIMIT %s",
}


class Database:
    """One autocommit connection, reopened after any failure."""

    def __init__(self, settings: PostgresSettings) -> None:
        self.settings = settings
        self.conn: psycopg2.extensions.connection | None = None

    def read(self, snap: Snapshot, latest: int) -> None:
        try:
            if self.conn is None or self.conn.closed:
                self.conn = connect(self.settings, application_name="cdb-up")
                self.conn.autocommit = True
            with self.conn.cursor() as cur:
                for key, sql in COUNT_SQL.items():
                    cur.execute(sql)
                    snap.counts[key] = cur.fetchone()[0]
                if latest:
                    for key, sql in LATEST_SQL.items():
                        cur.execute(sql, (latest,))
                        snap.latest[key] = cur.fetchall()
        except psycopg2.Error as exc:
            snap.database_error = (str(exc).strip().splitlines() or ["error"])[0][:200]
            self.close()

    def close(self) -> None:
        if self.conn is not None and not self.conn.closed:
            self.conn.close()
        self.conn = None


def open_positions(settings: PostgresSettings) -> list[str]:
    """Symbols with an open position (``positions.quantity > 0``); raises ``psycopg2.Error``."""
    conn = connect(settings, application_name="cdb-up")
    try:
        with conn, conn.cursor() as cur:
            cur.execute("SELECT symbol FROM positions WHERE quantity > 0 ORDER BY symbol")
            return [row[0] for row in cur.fetchall()]
    finally:
        conn.close()


def read_breaker(client: redis.Redis, snap: Snapshot) -> None:
    try:
        raw = client.hgetall(BREAKER_KEY)
    except redis.RedisError as exc:
        snap.redis_error = str(exc)[:200]
        return
    snap.breaker = {k.decode(): v.decode() for k, v in raw.items()}

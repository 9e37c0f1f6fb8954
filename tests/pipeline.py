"""A whole pipeline of real processes on real servers, for the fault and security suites.

Every service runs as ``python -m cdb run NAME`` against a Redis and a PostgreSQL the
test owns (so it can stop, kill and restart them), and the checks read only what a
person could read: the streams, the consumer groups, the tables, the HTTP endpoints.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import psycopg2
import redis
from helpers import ServiceProcess, wait_until

from cdb.bus import BREAKER_KEY, DEAD_LETTER, STREAMS
from cdb.db.migrate import migrate
from cdb.local.plan import START_ORDER, STOP_ORDER
from cdb.localservers import PostgresServer, RedisServer
from cdb.settings import PostgresSettings

#: A steady, lively synthetic market: one candle per symbol every 0.2 s, frequent bursts.
STEADY_MARKET = {
    "FEED_SOURCE": "synthetic",
    "FEED_SYNTHETIC_PERIOD_S": "0.2",
    "EVENT_MAX_LEAD_S": "604800",  # 5 candles a second: the stamps run ahead of the clock
    "SYMBOLS": "BTC_USDT,ETH_USDT,SOL_USDT,XRP_USDT,ADA_USDT,DOGE_USDT",
    "SIGNAL_COOLDOWN_S": "30",
    "SIGNAL_LOOKBACK_MIN": "5",
    "HEALTH_INTERVAL_S": "1",
    "CLAIM_IDLE_MS": "3000",
    "TRADING_MODE": "paper",
    "LOG_LEVEL": "INFO",
}


@dataclass
class Pipeline:
    """Redis, PostgreSQL and every service, started and checked as a unit."""

    redis_server: RedisServer
    pg_server: PostgresServer
    log_dir: Path
    extra_env: dict[str, str] = field(default_factory=dict)
    services: dict[str, ServiceProcess] = field(default_factory=dict)

    @property
    def env(self) -> dict[str, str]:
        return {
            **STEADY_MARKET,
            **self.redis_server.env(),
            **self.pg_server.env(),
            **self.extra_env,
        }

    def redis(self) -> redis.Redis:
        return redis.Redis(
            port=self.redis_server.port, password=self.redis_server.password, socket_timeout=5
        )

    def sql(self, query: str, params: tuple = ()) -> list[tuple]:
        settings = PostgresSettings(**self.pg_server.env())
        with psycopg2.connect(settings.postgres_dsn()) as conn, conn.cursor() as cur:
            cur.execute(query, params)
            rows = cur.fetchall() if cur.description else []
        conn.close()
        return rows

    def start(self, names: Iterable[str] = START_ORDER) -> Pipeline:
        migrate(PostgresSettings(**self.pg_server.env()))
        for name in names:
            self.start_service(name)
        return self

    def start_service(self, name: str) -> ServiceProcess:
        old = self.services.get(name)
        port = old.port if old else None
        svc = ServiceProcess(
            name, {**self.env, "CDB_CONSUMER_NAME": f"{name}-0"}, self.log_dir, port=port
        )
        self.services[name] = svc.start(timeout=60)
        return svc

    def stop(self, names: Iterable[str] = STOP_ORDER) -> dict[str, int | None]:
        return {n: self.services[n].stop(timeout=30) for n in names if n in self.services}

    def processes(self) -> str:
        """Which services run, and the last log lines of those that exited (for a failure)."""
        out = []
        for name, svc in self.services.items():
            code = svc.proc.poll() if svc.proc else None
            if code is None:
                out.append(f"{name} running")
            else:
                tail = svc.log().splitlines()[-15:]
                out.append(f"{name} EXITED {code}: " + " | ".join(tail))
        return "; ".join(out)

    # -- the invariants --------------------------------------------------------------------

    def groups(self) -> dict[tuple[str, str], dict]:
        """Every consumer group on every stream, with its lag and pending count."""
        client = self.redis()
        out = {}
        for stream in STREAMS:
            if not client.exists(stream):
                continue
            for group in client.xinfo_groups(stream):
                name = group["name"].decode() if isinstance(group["name"], bytes) else group["name"]
                out[(stream, name)] = group
        client.close()
        return out

    def drained(self) -> bool:
        """True when every group has read every entry of its streams and acknowledged it."""
        return all(g["pending"] == 0 and g.get("lag") == 0 for g in self.groups().values())

    def wait_drained(self, timeout: float = 90.0) -> float:
        """Wait until nothing is unread or unacknowledged anywhere; returns the seconds taken."""
        started = time.monotonic()
        wait_until(
            self.drained,
            timeout=timeout,
            interval=0.2,
            message=f"every group drained: {self.groups()}",
        )
        return time.monotonic() - started

    def dead_letters(self) -> list:
        client = self.redis()
        entries = client.xrange(DEAD_LETTER)
        client.close()
        return entries

    def breaker(self) -> dict[str, str]:
        client = self.redis()
        raw = client.hgetall(BREAKER_KEY)
        client.close()
        return {k.decode(): v.decode() for k, v in raw.items()}

    def stream_client_ids(self, stream: str) -> list[str]:
        client = self.redis()
        ids = []
        for _, fields in client.xrange(stream):
            ids.append(json.loads(fields[b"data"])["client_id"])
        client.close()
        return ids

    def check_invariants(self) -> dict[str, int]:
        """No event lost, no order executed twice, every result persisted; returns the counts.

        ``lost`` counts entries some group has not read or not acknowledged, plus entries
        dead-lettered; ``duplicates`` counts client ids with more than one fill. Both are
        measured here and must be 0.
        """
        groups = self.groups()
        md_groups = {g for (s, g) in groups if s == "market_data"}
        assert {"signal", "risk", "execution"} <= md_groups, md_groups

        def unprocessed() -> int:
            # heartbeats on `health` never stop, and a periodic check may add an alert at any
            # moment: an entry counts as lost only if it stays unread or unacked for seconds
            return sum(
                int(info["pending"]) + int(info.get("lag") or 0)
                for (stream, _), info in self.groups().items()
                if stream != "health"
            ) + len(self.dead_letters())

        deadline = time.monotonic() + 10
        while (lost := unprocessed()) and time.monotonic() < deadline:
            time.sleep(0.2)
        duplicates = len(
            self.sql("SELECT client_id FROM trades GROUP BY client_id HAVING count(*) > 1")
        )
        assert lost == 0, f"entries unprocessed or dead-lettered: {groups}, {self.dead_letters()}"
        assert duplicates == 0, "orders executed more than once"
        results = set(self.stream_client_ids("order_result"))
        persisted = {r[0] for r in self.sql("SELECT client_id FROM order_results")}
        assert results == persisted, f"order results not persisted: {results - persisted}"
        orders = set(self.stream_client_ids("orders"))
        assert orders <= {r[0] for r in self.sql("SELECT client_id FROM orders")}
        client = self.redis()
        counts = {
            "lost": lost,
            "duplicates": duplicates,
            "market_data": client.xlen("market_data"),
            "signals": client.xlen("signals"),
            "orders": len(orders),
            "order_results": len(results),
            "trades": self.sql("SELECT count(*) FROM trades")[0][0],
        }
        client.close()
        return counts

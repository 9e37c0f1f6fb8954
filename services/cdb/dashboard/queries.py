"""What the dashboard reads: PostgreSQL (the audit trail) and Redis (prices, heartbeats).

Read-only everywhere: one autocommit connection in a read-only session, reopened after a
failure; a failure raises ``psycopg2.Error`` / ``redis.RedisError`` to the caller, which
shows it instead of figures.
"""

from __future__ import annotations

import json
import threading
from typing import Any

import psycopg2
import psycopg2.extensions
import redis

from cdb.bus import HEALTH, MARKET_DATA
from cdb.db.connect import connect
from cdb.settings import PostgresSettings

LATEST_SQL = {
    "signals": "SELECT ts, signal_id, symbol, side, confidence, price, reason, strategy "
    "FROM signals ORDER BY id DESC LIMIT %s",
    "orders": "SELECT ts, client_id, signal_id, symbol, side, quantity, price, stop_loss, "
    "status, mode, filled_quantity, avg_price, fee, error, reason FROM orders "
    "ORDER BY id DESC LIMIT %s",
    "fills": "SELECT ts, trade_id, client_id, symbol, side, quantity, price, fee, realized_pnl, "
    "mode FROM trades ORDER BY id DESC LIMIT %s",
    "alerts": "SELECT ts, level, code, message, source FROM alerts ORDER BY id DESC LIMIT %s",
    "risk_events": "SELECT ts, severity, decision, rule, description, signal_id, client_id, "
    "symbol FROM risk_events ORDER BY id DESC LIMIT %s",
}
#: Starting cash = cash now + what fills took out − what they brought in (fees included).
CASH_FLOWS_SQL = (
    "SELECT coalesce(sum(CASE WHEN side = 'BUY' THEN quantity * price + fee "
    "ELSE -(quantity * price - fee) END), 0) FROM trades"
)
#: Cumulative realised P&L after each fill (the last ``%s`` fills).
CURVE_SQL = (
    "SELECT ts, cum FROM (SELECT id, ts, sum(realized_pnl) OVER (ORDER BY id) AS cum "
    "FROM trades) t ORDER BY id DESC LIMIT %s"
)
DAILY_SQL = (
    "SELECT ts / 86400 * 86400 AS day, sum(realized_pnl), sum(fee), count(*) FROM trades "
    "GROUP BY 1 ORDER BY 1 DESC LIMIT %s"
)


def _rows(cur) -> list[dict[str, Any]]:
    cols = [d.name for d in cur.description]
    return [dict(zip(cols, row, strict=True)) for row in cur.fetchall()]


DECISION_SQL = (
    "SELECT event_key, ts, severity, decision, rule, description, signal_id, client_id, "
    "symbol, context FROM risk_events WHERE "
)


def _signal(cur, signal_id: str) -> dict[str, Any] | None:
    cur.execute(
        "SELECT signal_id, ts, symbol, side, confidence, price, pct_change, volume, reason, "
        "strategy FROM signals WHERE signal_id = %s",
        (signal_id,),
    )
    rows = _rows(cur)
    return rows[0] if rows else None


class Reader:
    """One read-only PostgreSQL session shared by the HTTP threads (serialised by a lock)."""

    def __init__(self, settings: PostgresSettings, quote_asset: str) -> None:
        self.settings = settings
        self.quote = quote_asset
        self.lock = threading.Lock()
        self.conn: psycopg2.extensions.connection | None = None

    def _cursor(self):
        if self.conn is None or self.conn.closed:
            self.conn = connect(self.settings, application_name="cdb-dashboard")
            self.conn.set_session(readonly=True, autocommit=True)
        return self.conn.cursor()

    def _run(self, fn):
        with self.lock:
            try:
                with self._cursor() as cur:
                    return fn(cur)
            except psycopg2.Error:
                self.close()
                raise

    def close(self) -> None:
        if self.conn is not None and not self.conn.closed:
            self.conn.close()
        self.conn = None

    # -- reads -----------------------------------------------------------------------------

    def book(self, curve_points: int = 5000, days: int = 60) -> dict[str, Any]:
        """Cash, positions, the risk manager's day start, the curve and daily P&L rows."""

        def read(cur) -> dict[str, Any]:
            cur.execute("SELECT free FROM balances WHERE asset = %s", (self.quote,))
            row = cur.fetchone()
            cash = float(row[0]) if row else None
            cur.execute(
                "SELECT symbol, quantity, avg_price, stop_loss, take_profit, opened_ts, "
                "realized_pnl, mode FROM positions WHERE quantity > 0 ORDER BY symbol"
            )
            positions = _rows(cur)
            cur.execute(
                "SELECT value FROM service_state WHERE service = 'risk' AND key = 'day_start'"
            )
            row = cur.fetchone()
            day_start = row[0] if row else None
            if isinstance(day_start, str):
                day_start = json.loads(day_start)
            cur.execute(CASH_FLOWS_SQL)
            flows = float(cur.fetchone()[0])
            cur.execute(CURVE_SQL, (curve_points,))
            curve = [(int(ts), float(cum)) for ts, cum in reversed(cur.fetchall())]
            cur.execute(DAILY_SQL, (days,))
            daily = [
                {"day": int(d), "realized_pnl": float(p), "fees": float(f), "fills": int(n)}
                for d, p, f, n in reversed(cur.fetchall())
            ]
            return {
                "cash": cash,
                "positions": positions,
                "day_start": day_start,
                "cash_flows": flows,
                "curve": curve,
                "daily": daily,
            }

        return self._run(read)

    def latest(self, limit: int) -> dict[str, list[dict[str, Any]]]:
        def read(cur):
            out = {}
            for key, sql in LATEST_SQL.items():
                cur.execute(sql, (limit,))
                out[key] = _rows(cur)
            return out

        return self._run(read)

    def explain_rows(self, client_id: str | None = None, signal_id: str | None = None) -> dict:
        """The rows :func:`cdb.dashboard.explain.build` takes, for one client id, or for one
        signal (its decision, and the order it got if any: a rejected signal has none)."""

        def one(cur, sql: str, *params) -> dict[str, Any] | None:
            cur.execute(sql, params)
            rows = _rows(cur)
            return rows[0] if rows else None

        def read(cur) -> dict[str, Any]:
            nonlocal client_id
            if signal_id is not None:
                by_signal = one(
                    cur,
                    "SELECT client_id FROM risk_events WHERE event_key = %s",
                    f"signal:{signal_id}",
                )
                client_id = (by_signal or {}).get("client_id")
                if client_id is None:  # no order: the signal and its decision only
                    return {
                        "client_id": None,
                        "signal": _signal(cur, signal_id),
                        "decision": one(
                            cur, DECISION_SQL + "event_key = %s", f"signal:{signal_id}"
                        ),
                        "order": None,
                        "result": None,
                        "fills": [],
                    }
            order = one(
                cur,
                "SELECT client_id, signal_id, ts, symbol, side, quantity, price, stop_loss, "
                "take_profit, reason, status, mode, exchange_order_id, filled_quantity, "
                "avg_price, fee, error FROM orders WHERE client_id = %s",
                client_id,
            )
            decision = one(cur, DECISION_SQL + "client_id = %s ORDER BY id LIMIT 1", client_id)
            sid = (order or {}).get("signal_id") or (decision or {}).get("signal_id")
            signal = _signal(cur, sid) if sid else None
            result = one(
                cur,
                "SELECT ts, status, filled_quantity, avg_price, fee, error, exchange_order_id, "
                "mode FROM order_results WHERE client_id = %s",
                client_id,
            )
            cur.execute(
                "SELECT trade_id, ts, symbol, side, quantity, price, fee, realized_pnl, mode "
                "FROM trades WHERE client_id = %s ORDER BY id",
                (client_id,),
            )
            fills = _rows(cur)
            return {
                "client_id": client_id,
                "signal": signal,
                "decision": decision,
                "order": order,
                "result": result,
                "fills": fills,
            }

        return self._run(read)


def _latest_per(client: redis.Redis, stream: str, key: str, count: int) -> dict[str, dict]:
    """The newest entry per ``key`` among the last ``count`` entries of ``stream``."""
    out: dict[str, dict] = {}
    for _, fields in client.xrevrange(stream, count=count):
        try:
            data = json.loads(fields[b"data"])
        except (KeyError, ValueError):
            continue
        name = data.get(key)
        if isinstance(name, str) and name not in out:
            out[name] = data
    return out


def latest_prices(client: redis.Redis, count: int = 2000) -> dict[str, dict[str, Any]]:
    """Symbol → ``{"price", "ts"}`` from the newest ``market_data`` events."""
    found = _latest_per(client, MARKET_DATA, "symbol", count)
    return {
        s: {"price": float(d["price"]), "ts": int(d["timestamp"])}
        for s, d in found.items()
        if d.get("type") == "market_data"
    }


def heartbeats(client: redis.Redis, count: int = 500) -> dict[str, dict[str, Any]]:
    """Service → its newest ``health`` event (``status``, ``ts``, ``details``)."""
    found = _latest_per(client, HEALTH, "service", count)
    return {
        s: {"status": d["status"], "ts": int(d["timestamp"]), "details": d.get("details") or {}}
        for s, d in found.items()
    }

"""The equity history: the real risk manager writes equity, drawdown and exposure into the
``metrics`` table every ``RISK_EQUITY_HISTORY_S`` — what the dashboard and reports read."""

from __future__ import annotations

import psycopg2
from helpers import ServiceProcess, wait_until

from cdb.db.migrate import migrate
from cdb.settings import PostgresSettings


def test_risk_manager_writes_the_equity_history(redis_env, pg_env, tmp_path):
    settings = PostgresSettings(**pg_env)
    migrate(settings)
    env = {**redis_env, **pg_env, "RISK_EQUITY_HISTORY_S": "1", "PAPER_START_BALANCE": "2500"}
    proc = ServiceProcess("risk", env, tmp_path).start()

    def rows() -> list[tuple]:
        with psycopg2.connect(settings.postgres_dsn()) as conn, conn.cursor() as cur:
            cur.execute("SELECT ts, name, value, labels FROM metrics ORDER BY ts, name")
            return cur.fetchall()

    def two_rounds() -> list[tuple] | None:
        got = rows()
        return got if len({r[0] for r in got}) >= 2 else None

    try:
        history = wait_until(
            two_rounds,
            timeout=30,
            message="two seconds of equity history",
        )
    finally:
        proc.stop()
    equity = [r for r in history if r[1] == "equity"]
    assert len(equity) >= 2 and {r[2] for r in equity} == {2500.0}
    assert {r[1] for r in history} == {"equity", "drawdown_pct", "exposure_pct"}
    assert all(r[3] == {"quote": "USDT"} for r in history)
    assert equity[1][0] - equity[0][0] >= 1  # one row per figure per interval

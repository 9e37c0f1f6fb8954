"""``cdb report`` flags what broke a rule, on a real PostgreSQL with rows as the services write them.

The live pipeline test (``test_backtest_live``) shows a clean week reported like its
backtest; here the trail holds what must never happen: an entry worth 15 % of equity
under a 10 % position limit, an entry decided after the daily-loss breaker tripped that
day, and an order without any decision row.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import psycopg2
import psycopg2.extras

from cdb.db.migrate import migrate
from cdb.settings import PostgresSettings

REPO = Path(__file__).resolve().parents[1]
DAY = 1_735_689_600  # 2025-01-01T00:00Z


def test_report_lists_violations_and_figures(pg_env, tmp_path):
    settings = PostgresSettings(**pg_env)
    migrate(settings)
    conn = psycopg2.connect(settings.postgres_dsn())
    conn.autocommit = True
    cur = conn.cursor()

    def signal(sid: str, ts: int, sym: str, price: float) -> None:
        cur.execute(
            "INSERT INTO signals (signal_id, ts, symbol, side, confidence, price, pct_change, "
            "volume, reason, strategy) VALUES (%s, %s, %s, 'BUY', 0.5, %s, 5, 1e6, 'x', 'momentum')",
            (sid, ts, sym, price),
        )

    def order(cid, sid, ts, sym, side, qty, price, decision=None, rule=None, ctx=None):
        cur.execute(
            "INSERT INTO orders (client_id, signal_id, ts, symbol, side, quantity, price, status) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s, 'FILLED')",
            (cid, sid, ts, sym, side, qty, price),
        )
        fee = qty * price * 0.001
        cur.execute(
            "INSERT INTO trades (trade_id, client_id, ts, symbol, side, quantity, price, fee) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
            (f"t-{cid}", cid, ts, sym, side, qty, price, fee),
        )
        if decision:
            cur.execute(
                "INSERT INTO risk_events (event_key, ts, severity, decision, rule, description, "
                "signal_id, client_id, symbol, context) VALUES (%s, %s, 'INFO', %s, %s, 'd', %s, "
                "%s, %s, %s)",
                (f"k-{cid}", ts, decision, rule, sid, cid, sym, psycopg2.extras.Json(ctx or {})),
            )

    ok_ctx = {"equity": 10_000, "price": 100.0, "open_positions": 0, "exposure_pct": 0}
    signal("s1", DAY + 100, "AAA_USDT", 100.0)
    order("c1", "s1", DAY + 100, "AAA_USDT", "BUY", 10.0, 100.0, "approve", "approved", ok_ctx)
    order("x1", None, DAY + 200, "AAA_USDT", "SELL", 10.0, 110.0, "exit", "stop_loss",
          {"price": 110.0, "stop_loss": 98.0})  # fmt: skip
    signal("s2", DAY + 300, "BBB_USDT", 50.0)
    big = {**ok_ctx, "price": 50.0}
    order("c2", "s2", DAY + 300, "BBB_USDT", "BUY", 30.0, 50.0, "approve", "approved", big)
    cur.execute(
        "INSERT INTO risk_events (event_key, ts, severity, decision, rule, description) "
        "VALUES ('halt:2025-01-01', %s, 'CRITICAL', 'halt', 'drawdown', 'daily loss limit')",
        (DAY + 400,),
    )
    signal("s3", DAY + 500, "CCC_USDT", 10.0)
    order("c3", "s3", DAY + 500, "CCC_USDT", "BUY", 10.0, 10.0, "approve", "approved",
          {**ok_ctx, "price": 10.0, "open_positions": 1})  # fmt: skip
    order("c4", None, DAY + 600, "CCC_USDT", "SELL", 10.0, 10.0)  # no decision at all
    conn.close()

    env = {
        **os.environ,
        "PYTHONPATH": f"{REPO / 'services'}:{REPO / 'operator'}",
        **pg_env,
        "MAX_POSITION_PCT": "10",
    }
    done = subprocess.run(
        [sys.executable, "-m", "cdb", "report", "--since", "2025-01-01", "--until", "2025-01-02",
         "--out", "rep"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    report = json.loads((tmp_path / "rep" / "report.json").read_text())
    comp = report["compliance"]
    assert comp["orders"] == 5 and comp["traced"] == 4
    failed = {v["client_id"]: v["failed"] for v in comp["violations"]}
    assert failed == {
        "c2": ["position_limit"],  # 1,500 of 10,000 is 15 % > 10 %
        "x1": ["at_or_below_stop"],  # sold at 110 as a "stop loss" with the stop at 98
        "c3": ["breaker_released"],  # bought after the trip that day
        "c4": ["decision_recorded"],
    }
    f = report["figures"]
    # the AAA round trip: bought 10 @ 100, sold 10 @ 110, fees 0.1 % each way
    assert f["per_symbol"]["AAA_USDT"]["pnl"] == 100.0 - 1.0 - 1.1
    assert f["trades"] == 2 and f["wins"] == 1 and f["fills"] == 5
    assert len(f["breaker_trips"]) == 1 and f["signals"] == 3
    assert "4 violation(s)" in done.stdout
    bad = subprocess.run(
        [sys.executable, "-m", "cdb", "report", "--since", "yesterday"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert bad.returncode == 2 and "--since" in bad.stderr


def test_an_empty_week_is_a_report_of_nothing(pg_env, tmp_path):
    migrate(PostgresSettings(**pg_env))
    env = {**os.environ, "PYTHONPATH": f"{REPO / 'services'}:{REPO / 'operator'}", **pg_env}
    done = subprocess.run(
        [sys.executable, "-m", "cdb", "report", "--out", "rep"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    report = json.loads((tmp_path / "rep" / "report.json").read_text())
    f = report["figures"]
    assert f["trades"] == 0 and f["fills"] == 0 and f["pnl_total"] == 0
    assert f["start_equity"] == 10_000  # PAPER_START_BALANCE: execution wrote no balance yet
    assert report["compliance"] == {"orders": 0, "traced": 0, "checks": [], "violations": []}
    until = f["period"]["last_ts"]
    assert until - f["period"]["first_ts"] == 7 * 86_400  # the last week by default


def test_unreachable_database_exits_1(tmp_path):
    env = {**os.environ, "PYTHONPATH": f"{REPO / 'services'}:{REPO / 'operator'}",
           "POSTGRES_HOST": "127.0.0.1", "POSTGRES_PORT": "1"}  # fmt: skip
    done = subprocess.run(
        [sys.executable, "-m", "cdb", "report"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 1 and "database unreachable" in done.stderr

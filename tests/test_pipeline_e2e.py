"""The whole pipeline, end to end: real Redis, real PostgreSQL, every service a separate process.

The test plays the feed: it XADDs a scripted ``market_data`` sequence and checks, step by
step and then table by table, the exact outcome issue 3 asks for — the signals (5.0 % on
high volume → confidence 0.5; 1.0 % → none), one order approved, one clipped, one
rejected for exposure, a stop loss that closes a position, a drawdown that trips the
breaker, closes what is open and blocks the next signal, the paper fills, and the rows in
every table. A last test runs ``cdb up --duration`` and reads signals and paper fills
from its summary.

Limits used (shared setting names, as the operator's ConfigMap would set them), chosen so
each rule is reached by a short, unambiguous script:
- ``MAX_POSITION_PCT=12``: the 5 % signal asks for 0.5 × 20 % = 10 % of equity (under the
  limit: approved); the 8 % signal asks for 16 % (over it: clipped to 12 %).
- ``MAX_EXPOSURE_PCT=22.5``: the two positions make 22 %; a 5 % rise of both prices
  takes exposure to ~22.9 %, so the next signal is rejected for exposure. (With the
  clip bound by the position limit, exposure cannot reach the exposure limit without a
  price move: a third entry would otherwise be needed.)
- ``MAX_DAILY_DRAWDOWN_PCT=2`` and ``RISK_ABNORMAL_MOVE_PCT=50``: a 25 % fall of one
  position trips the breaker; the abnormal-move pause (its own rule, tested by the risk
  manager's tests) stays out of the way.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg2
import pytest
from helpers import ServiceProcess, wait_until

from cdb.bus import BREAKER_KEY, Bus
from cdb.db.migrate import migrate
from cdb.events import MarketData
from cdb.settings import PostgresSettings

LIMITS = {
    "MAX_POSITION_PCT": "12",
    "MAX_EXPOSURE_PCT": "22.5",
    "MAX_DAILY_DRAWDOWN_PCT": "2",
    "RISK_ABNORMAL_MOVE_PCT": "50",
    "STOP_LOSS_PCT": "2",
    "PAPER_START_BALANCE": "10000",
    "PAPER_FEE_PCT": "0.1",
    "PAPER_SLIPPAGE_PCT": "0.05",
    "SIGNAL_THRESHOLD_PCT": "3.0",
    "SIGNAL_MIN_VOLUME": "100000",
    "HEALTH_INTERVAL_S": "2",
}
START_ORDER = ("persistence", "notifier", "execution", "risk", "signal")
FEE, SLIP, EPS = 0.001, 0.0005, 1e-9


class Db:
    def __init__(self, dsn: str) -> None:
        self.conn = psycopg2.connect(dsn)
        self.conn.autocommit = True

    def rows(self, sql: str, *args: object) -> list[tuple]:
        with self.conn.cursor() as cur:
            cur.execute(sql, args)
            return cur.fetchall()

    def one(self, sql: str, *args: object):
        rows = self.rows(sql, *args)
        return rows[0][0] if rows else None


@pytest.fixture
def pipeline(redis_env, pg_env) -> Iterator[dict]:
    migrate(PostgresSettings(**pg_env))
    log_dir = Path(tempfile.mkdtemp(prefix="cdb-e2e-"))
    env = {**redis_env, **pg_env, **LIMITS}
    procs: dict[str, ServiceProcess] = {}
    try:
        for name in START_ORDER:
            procs[name] = ServiceProcess(name, env, log_dir).start(timeout=60)
        yield procs
    finally:
        codes = {name: proc.stop(timeout=30) for name, proc in reversed(procs.items())}
        assert all(code == 0 for code in codes.values()), f"{codes} (logs: {log_dir})"


def md(symbol: str, price: float, pct: float = 0.0, volume: float = 0.0) -> MarketData:
    return MarketData(
        symbol=symbol,
        price=price,
        pct_change=pct,
        volume=volume,
        source="test",
        timestamp=int(time.time()),
    )


def test_scripted_market_gives_exactly_the_expected_trades(pipeline, redis_client, pg_env):
    db = Db(PostgresSettings(**pg_env).postgres_dsn())
    bus = Bus(redis_client, service="test-feed")
    risk, execution = pipeline["risk"], pipeline["execution"]

    def decision(symbol: str, kind: str) -> tuple | None:
        rows = db.rows(
            "SELECT decision, rule, severity, description, signal_id, client_id, context "
            "FROM risk_events WHERE symbol = %s AND decision = %s ORDER BY id",
            symbol,
            kind,
        )
        return rows[-1] if rows else None

    def filled(client_id: str) -> bool:
        return db.one("SELECT status FROM orders WHERE client_id = %s", client_id) == "FILLED"

    def risk_holds(symbol: str) -> bool:
        return symbol in risk.status()["positions"]

    # 1. BTC +5.0 % on high volume: confidence 0.5, asks for 10 % of equity → approved.
    #    ETH +1.0 % and ADA +5.0 % on thin volume: no signal at all.
    bus.publish_many(
        [
            md("ETH_USDT", 3000.0, 1.0, 500_000),
            md("ADA_USDT", 0.5, 5.0, 50_000),
            md("BTC_USDT", 60_000.0, 5.0, 200_000),
        ]
    )
    approve = wait_until(lambda: decision("BTC_USDT", "approve"), message="BTC approved")
    wait_until(lambda: filled(approve[5]), message="BTC order filled")
    wait_until(lambda: risk_holds("BTC_USDT"), message="risk applied the BTC fill")
    btc_qty = 1000.0 / 60_000.0 * (1 - EPS)
    btc_fill = 60_000.0 * (1 + SLIP)
    equity_after_btc = 10_000.0 - btc_qty * btc_fill * (1 + FEE) + btc_qty * 60_000.0

    # 2. SOL +8.0 %: confidence 0.8 asks for 16 % of equity → clipped to the 12 % limit.
    bus.publish(md("SOL_USDT", 150.0, 8.0, 300_000))
    clip = wait_until(lambda: decision("SOL_USDT", "clip"), message="SOL clipped")
    wait_until(lambda: filled(clip[5]), message="SOL order filled")
    wait_until(lambda: risk_holds("SOL_USDT"), message="risk applied the SOL fill")
    sol_value = 0.12 * equity_after_btc
    sol_qty = sol_value / 150.0 * (1 - EPS)

    # 3. Both prices +5 %: exposure ~22.9 % ≥ 22.5 %, so the XRP signal is rejected.
    bus.publish_many([md("BTC_USDT", 63_000.0), md("SOL_USDT", 157.5)])
    wait_until(
        lambda: (
            risk.status()["positions"]["SOL_USDT"]["price"] == 157.5
            and risk.status()["positions"]["BTC_USDT"]["price"] == 63_000.0
        ),
        message="risk saw the new prices",
    )
    bus.publish(md("XRP_USDT", 0.6, 6.0, 200_000))
    reject = wait_until(lambda: decision("XRP_USDT", "reject"), message="XRP rejected")

    # 4. BTC falls to 58,200, below its stop (2 % under the 60,030 fill): the position is closed.
    bus.publish(md("BTC_USDT", 58_200.0))
    stop = wait_until(lambda: decision("BTC_USDT", "exit"), message="BTC stop loss")
    wait_until(lambda: filled(stop[5]), message="BTC exit filled")
    wait_until(lambda: not risk_holds("BTC_USDT"), message="risk closed BTC")

    # 5. SOL falls 25 % below its entry: drawdown ≥ 2 % trips the breaker, SOL is closed.
    bus.publish(md("SOL_USDT", 112.5))
    halt = wait_until(
        lambda: db.rows(
            "SELECT decision, rule, severity, description FROM risk_events "
            "WHERE decision = 'halt' AND signal_id IS NULL"
        ),
        message="breaker tripped",
    )
    sol_exit = wait_until(lambda: decision("SOL_USDT", "exit"), message="SOL closed by breaker")
    wait_until(lambda: filled(sol_exit[5]), message="SOL exit filled")
    wait_until(lambda: not risk_holds("SOL_USDT"), message="risk closed SOL")

    # 6. BNB +7.0 %: a signal, blocked by the breaker.
    bus.publish(md("BNB_USDT", 550.0, 7.0, 200_000))
    blocked = wait_until(lambda: decision("BNB_USDT", "halt"), message="BNB blocked")

    # -- the persistence writer caught up: signals, orders, results, alerts ------------------
    wait_until(lambda: db.one("SELECT count(*) FROM order_results") == 4, message="4 results")
    wait_until(lambda: db.one("SELECT count(*) FROM signals") == 4, message="4 signals")
    wait_until(
        lambda: db.one("SELECT count(*) FROM alerts WHERE source = 'risk'") == 3,
        message="3 risk alerts persisted",
    )

    # -- signals ----------------------------------------------------------------------------
    signals = db.rows(
        "SELECT symbol, side, confidence, pct_change, reason, signal_id "
        "FROM signals ORDER BY ts, id"
    )
    assert [s[:5] for s in signals] == [
        ("BTC_USDT", "BUY", 0.5, 5.0, "Momentum: +5.0% (threshold 3.0%)"),
        ("SOL_USDT", "BUY", 0.8, 8.0, "Momentum: +8.0% (threshold 3.0%)"),
        ("XRP_USDT", "BUY", 0.6, 6.0, "Momentum: +6.0% (threshold 3.0%)"),
        ("BNB_USDT", "BUY", 0.7, 7.0, "Momentum: +7.0% (threshold 3.0%)"),
    ]
    sid = {s[0]: s[5] for s in signals}

    # -- risk decisions, in order -----------------------------------------------------------
    events = db.rows(
        "SELECT decision, rule, severity, symbol, signal_id FROM risk_events ORDER BY id"
    )
    assert events == [
        ("approve", "approved", "INFO", "BTC_USDT", sid["BTC_USDT"]),
        ("clip", "position", "INFO", "SOL_USDT", sid["SOL_USDT"]),
        ("reject", "exposure", "WARNING", "XRP_USDT", sid["XRP_USDT"]),
        ("exit", "stop_loss", "WARNING", "BTC_USDT", None),
        ("halt", "drawdown", "CRITICAL", None, None),
        ("exit", "drawdown", "INFO", "SOL_USDT", None),
        ("halt", "drawdown", "INFO", "BNB_USDT", sid["BNB_USDT"]),
    ]
    assert (
        "approved: buy 1,000.00 USDT of BTC_USDT (10 % of equity, confidence 0.50)" in (approve[3])
    )
    assert re.search(
        r"> room 1,199\.\d\d USDT \(limit 12 % of equity\) – clipped to 1,199\.\d\d USDT", clip[3]
    ), clip[3]
    assert re.fullmatch(
        rf"exposure 22\.[5-9] % ≥ limit 22\.5 % – signal {sid['XRP_USDT']} rejected", reject[3]
    ), reject[3]
    assert reject[5] is None  # no order for a rejection
    assert stop[3].startswith("stop loss hit: BTC_USDT at 58200 ≤ stop 58829.4"), stop[3]
    assert halt[0][3].startswith("daily loss limit exceeded – trading halted: drawdown")
    assert blocked[3] == f"daily loss breaker engaged – signal {sid['BNB_USDT']} blocked"

    # -- orders and paper fills -------------------------------------------------------------
    orders = db.rows(
        "SELECT client_id, symbol, side, quantity, status, mode, signal_id FROM orders ORDER BY id"
    )
    assert [(o[1], o[2], o[4], o[5]) for o in orders] == [
        ("BTC_USDT", "BUY", "FILLED", "paper"),
        ("SOL_USDT", "BUY", "FILLED", "paper"),
        ("BTC_USDT", "SELL", "FILLED", "paper"),
        ("SOL_USDT", "SELL", "FILLED", "paper"),
    ]
    assert [o[0] for o in orders] == [approve[5], clip[5], stop[5], sol_exit[5]]
    assert orders[0][3] == pytest.approx(btc_qty, rel=1e-9)
    assert orders[1][3] == pytest.approx(sol_qty, rel=1e-6)
    assert orders[1][3] * 150.0 < sol_value  # never a hair above the limit
    assert orders[2][3] == pytest.approx(btc_qty, rel=1e-9)  # the whole position
    assert orders[3][3] == pytest.approx(orders[1][3], rel=1e-9)
    assert [o[6] for o in orders] == [sid["BTC_USDT"], sid["SOL_USDT"], None, None]

    trades = db.rows("SELECT client_id, symbol, side, quantity, price, fee FROM trades ORDER BY id")
    expected_prices = [
        60_000 * (1 + SLIP),
        150 * (1 + SLIP),
        58_200 * (1 - SLIP),
        112.5 * (1 - SLIP),
    ]
    assert [t[0] for t in trades] == [o[0] for o in orders]  # exactly one fill per order
    for trade, order, price in zip(trades, orders, expected_prices, strict=True):
        assert trade[3] == pytest.approx(order[3], rel=1e-9)
        assert trade[4] == pytest.approx(price, rel=1e-9)
        assert trade[5] == pytest.approx(trade[3] * trade[4] * FEE, rel=1e-6)
    results = db.rows(
        "SELECT client_id, status, mode, filled_quantity FROM order_results ORDER BY ts, id"
    )
    assert sorted(r[0] for r in results) == sorted(o[0] for o in orders)
    assert {(r[1], r[2]) for r in results} == {("FILLED", "paper")}

    # -- the book: flat, cash = start − fees − losses ---------------------------------------
    positions = db.rows("SELECT symbol, quantity FROM positions ORDER BY symbol")
    assert [(s, pytest.approx(0.0, abs=1e-12)) for s, _ in positions] == [
        ("BTC_USDT", 0.0),
        ("SOL_USDT", 0.0),
    ]
    cash = db.one("SELECT free FROM balances WHERE asset = 'USDT'")
    flows = sum((-1 if t[2] == "BUY" else 1) * t[3] * t[4] - t[5] for t in trades)
    assert cash == pytest.approx(10_000.0 + flows, rel=1e-9)
    assert 10_000.0 - cash > 200  # lost more than 2 % of the day's start

    # -- breaker: tripped by drawdown, persisted, mirrored in Redis --------------------------
    breaker = {k.decode(): v.decode() for k, v in redis_client.hgetall(BREAKER_KEY).items()}
    assert breaker["engaged"] == "1" and breaker["drawdown"] == "1"
    assert breaker["manual"] == "0" and breaker["kill_switch"] == "0"
    assert db.one("SELECT count(*) FROM service_state WHERE service = 'risk'") >= 1
    assert risk.status()["breaker"]["engaged"] == "1"

    # -- alerts: persisted and logged by the notifier -----------------------------------------
    alerts = db.rows(
        "SELECT level, code, message FROM alerts WHERE source = 'risk' ORDER BY ts, id"
    )
    assert [(a[0], a[1]) for a in alerts] == [
        ("WARNING", "RISK_LIMIT"),
        ("WARNING", "STOP_LOSS"),
        ("CRITICAL", "DAILY_LOSS_LIMIT"),
    ]
    assert alerts[2][2] == "daily loss limit exceeded – trading halted"
    wait_until(
        lambda: (
            pipeline["notifier"].status()["alerts_logged"] >= db.one("SELECT count(*) FROM alerts")
        ),
        message="notifier logged every alert",
    )

    # -- health checks from every service ---------------------------------------------------
    wait_until(
        lambda: (
            {r[0] for r in db.rows("SELECT DISTINCT service FROM health_checks")}
            >= set(START_ORDER)
        ),
        message="a health row from every service",
    )
    assert execution.status()["fail_closed"] is False
    assert db.one("SELECT count(*) FROM risk_events") == 7  # nothing happened besides
    assert redis_client.xlen("dead_letter") == 0


def test_cdb_up_shows_signals_and_paper_fills():
    root = Path(tempfile.mkdtemp(prefix="cdb-e2e-up-"))
    root.chmod(0o755)  # as root, PostgreSQL runs as 'postgres'
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("REDIS_", "POSTGRES_", "SIGNAL_", "MAX_", "FEED_", "RISK_"))
    }
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "cdb",
            "up",
            "--duration",
            "75",
            "--http-port-base",
            "0",
            "--data-dir",
            str(root / "data"),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    final = done.stdout.split("stopping services…", 1)[1]
    counts = re.search(r"signals (\d+) \| orders (\d+) \| fills (\d+)\b", final)
    assert counts, final
    signals, orders, fills = map(int, counts.groups())
    assert signals >= 1 and orders >= 1 and fills >= 1, final
    assert re.search(r"last fill: \S+ [A-Z]+_USDT (BUY|SELL) ", final), final
    assert "last signal:" in final and "Momentum: +" in final
    for name in ("feed", "signal", "risk", "execution", "persistence", "notifier"):
        assert re.search(rf"^{name}\s+\d+\s+ok\b", final, re.M), final
    assert final.rstrip().endswith("stopped.")

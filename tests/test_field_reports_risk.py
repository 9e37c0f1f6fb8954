"""Field reports against the risk manager (docs/reliability.md, "Field reports").

Faults users of other bots hit, replayed against ``cdb run risk`` as a real process on
real Redis and PostgreSQL; the test plays the feed and execution (see test_risk_service).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request

import psycopg2
from helpers import wait_until
from test_risk_service import events, price, signal, wait_decision, wait_orders, world, xadd

from cdb.bus import HELD_KEY
from cdb.events import Order, OrderResult

__all__ = ["world"]  # the fixture, imported for the tests below


def http_text(port: int, path: str) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
        return response.read().decode()


def partial_fill(ledger, order: Order, quantity: float, px: float) -> None:
    """Execution's record of a closing order that filled only ``quantity``: row, book, result."""
    with psycopg2.connect(ledger.dsn) as conn, conn.cursor() as cur:
        cur.execute(
            "INSERT INTO orders (client_id, ts, symbol, side, quantity, price, status,"
            " filled_quantity, avg_price) VALUES (%s,%s,%s,%s,%s,%s,'PARTIALLY_FILLED',%s,%s)",
            (order.client_id, order.timestamp, order.symbol, order.side, order.quantity,
             order.price, quantity, px),
        )  # fmt: skip
        cur.execute(
            "UPDATE positions SET quantity = quantity - %s WHERE symbol = %s",
            (quantity, order.symbol),
        )
        cur.execute("UPDATE balances SET free = free + %s WHERE asset = 'USDT'", (quantity * px,))
    xadd(
        ledger.client,
        OrderResult(
            client_id=order.client_id,
            symbol=order.symbol,
            side="SELL",
            status="PARTIALLY_FILLED",
            filled_quantity=quantity,
            avg_price=px,
        ),
    )


def test_partially_filled_closing_order_raises_exit_failed(world, redis_client):
    """Input: a stop-loss SELL fills 40 %. Before: a second WARNING only. Now: CRITICAL."""
    start, ledger = world
    r = redis_client
    proc = start(RISK_EXIT_RETRY_S="1")
    price(r, "BTC_USDT", 100.0)
    signal(r, "p1", "BTC_USDT", 0.5, 100.0)
    (entry,) = wait_orders(r, 1)
    ledger.fill(entry, 100.0)
    wait_until(lambda: proc.status()["positions"], message="position")
    price(r, "BTC_USDT", 97.0)
    first_exit = wait_orders(r, 2)[1]
    partial_fill(ledger, first_exit, first_exit.quantity * 0.4, 97.0)
    decision, _, severity, text, _ = wait_decision(ledger, f"exit_failed:{first_exit.client_id}")
    assert (decision, severity) == ("exit_failed", "CRITICAL")
    assert "still held" in text
    alert = wait_until(
        lambda: [a for a in events(r, "alerts") if a.code == "EXIT_FAILED"], message="alert"
    )[0]
    assert alert.level == "CRITICAL"
    second_exit = wait_orders(r, 3)[2]  # the rest, under the next id
    assert second_exit.client_id != first_exit.client_id
    assert abs(second_exit.quantity - first_exit.quantity * 0.6) < 1e-9


def test_a_held_symbol_without_prices_is_reported_warning_then_critical(world, redis_client):
    """Input 4: hold SOL_USDT, then only BTC_USDT prices for 12 s with
    RISK_MARKET_DATA_MAX_AGE_S=5. Before: no alert, /health 200, nothing on /status. Now:
    WARNING then CRITICAL POSITION_BLIND, /status and /health say so, a metric counts it,
    and the feed is told the symbol is held."""
    start, ledger = world
    r = redis_client
    proc = start(RISK_MARKET_DATA_MAX_AGE_S="5")
    price(r, "SOL_USDT", 10.0)
    signal(r, "b1", "SOL_USDT", 0.5, 10.0)
    (entry,) = wait_orders(r, 1)
    ledger.fill(entry, 10.0)
    wait_until(lambda: proc.status()["positions"], message="position")
    wait_until(lambda: json.loads(r.get(HELD_KEY) or "[]") == ["SOL_USDT"], message="mirror")
    assert proc.health()[1]["status"] == "ok"
    deadline = time.monotonic() + 12
    while time.monotonic() < deadline:
        price(r, "BTC_USDT", 100.0)
        time.sleep(0.5)
    blind = [a for a in events(r, "alerts") if a.code == "POSITION_BLIND"]
    assert [a.level for a in blind] == ["WARNING", "CRITICAL"]
    assert "SOL_USDT" in blind[0].message and "stop loss cannot fire" in blind[0].message
    assert proc.status()["blind_positions"]["SOL_USDT"]["level"] == "CRITICAL"
    code, body = proc.health()
    assert code == 200 and body["status"] == "degraded"  # a restart would not cure it
    assert any("SOL_USDT" in w for w in body["warnings"])
    metrics = http_text(proc.port, "/metrics")
    assert "cdb_risk_blind_positions 1.0" in metrics
    price(r, "SOL_USDT", 10.0)  # prices again: an INFO row, the warning is gone
    wait_until(lambda: not proc.status()["blind_positions"], message="seen again")
    assert proc.health()[1]["status"] == "ok"


def test_restop_moves_the_stops_of_open_positions(world, redis_client, pg_env):
    """Input 7: STOP_LOSS_PCT changed from 2 to 5 with a position open. Its stop stays
    where it was (documented); ``python -m cdb.risk.restop --apply`` moves it, and the
    risk manager uses the new stop from its next start."""
    start, ledger = world
    ledger.query(
        "INSERT INTO positions (symbol, quantity, avg_price, stop_loss, opened_ts, updated_ts)"
        " VALUES ('BTC_USDT', 1, 100, 98, 1, 1) RETURNING symbol"
    )
    env = {**pg_env, "STOP_LOSS_PCT": "5", "PATH": os.environ["PATH"]}
    env["PYTHONPATH"] = os.environ.get("PYTHONPATH", "")
    dry = subprocess.run(
        [sys.executable, "-m", "cdb.risk.restop"], env=env, capture_output=True, text=True
    )
    assert dry.returncode == 0 and "stop 98.0 -> 95" in dry.stdout and "dry run" in dry.stdout
    assert ledger.query("SELECT stop_loss FROM positions") == [(98.0,)]
    done = subprocess.run(
        [sys.executable, "-m", "cdb.risk.restop", "--apply"],
        env=env,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    assert ledger.query("SELECT stop_loss FROM positions") == [(95.0,)]
    assert ledger.query("SELECT decision FROM risk_events WHERE rule = 'stop_loss'") == [
        ("restop",)
    ]
    proc = start(STOP_LOSS_PCT="5")
    assert proc.status()["positions"]["BTC_USDT"]["stop_loss"] == 95.0

"""The execution service as a real process on real Redis and PostgreSQL (paper exchange).

Covers the fill arithmetic end to end, rejections, idempotency under redelivery, a
SIGKILL inside the window between reading an order and acknowledging it (made
deterministic by the test-only pause), fail-closed start on an unknown order and
its resolution, the refusal to trade live without keys, the single-writer lock and
the paper exchange's fault switch.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest
from helpers import ServiceProcess, wait_until
from test_execution_helpers import (
    alerts,
    migrated,
    order,
    publisher,
    results,
    run_cdb,
    sql,
    tick,
)

from cdb.exchange.paper import FAULT_KEY
from cdb.execution import resolve
from cdb.execution.lock import LOCK_KEY
from cdb.execution.service import PAUSED_KEY
from cdb.risk.portfolio import Portfolio


@pytest.fixture
def logs() -> Path:
    path = Path(tempfile.mkdtemp(prefix="cdb-exec-logs-"))
    return path


@pytest.fixture
def env(redis_env, pg_env) -> dict[str, str]:
    migrated(pg_env)
    return {
        **redis_env,
        **pg_env,
        "TRADING_MODE": "paper",
        "PAPER_START_BALANCE": "10000",
        "PAPER_FEE_PCT": "0.1",
        "PAPER_SLIPPAGE_PCT": "0.5",
        "LOCK_TTL_S": "2",
        "HEALTH_INTERVAL_S": "1",
        "UNKNOWN_RECHECK_S": "0.5",
        "EXCHANGE_BACKOFF_MAX_S": "0.5",
    }


@pytest.fixture
def service(env, logs):
    procs: list[ServiceProcess] = []

    def start(wait_healthy: bool = True, **extra: str) -> ServiceProcess:
        proc = ServiceProcess("execution", {**env, **extra}, logs)
        procs.append(proc)
        return proc.start(wait_healthy=wait_healthy)

    yield start
    for proc in procs:
        proc.kill()


def one_result(redis_client, client_id: str):
    found = wait_until(lambda: results(redis_client, client_id), message=f"result of {client_id}")
    return found[0]


def cash(pg_env) -> float:
    return sql(pg_env, "SELECT free FROM balances WHERE asset = 'USDT'")[0][0]


def position(pg_env, symbol: str = "BTC_USDT") -> tuple[float, float, float]:
    return sql(
        pg_env,
        "SELECT quantity, avg_price, realized_pnl FROM positions WHERE symbol = %s",
        (symbol,),
    )[0]


def test_paper_fill_math_and_rejections(service, redis_client, pg_env):
    service()
    bus = publisher(redis_client)
    bus.publish(tick("BTC_USDT", 100.0))
    bus.publish(order("buy-1", "BUY", 10, price=99.0, stop_loss=98.0))
    buy = one_result(redis_client, "buy-1")
    # market 100 (not the reference 99), +0.5 % slippage, 0.1 % fee
    assert (buy.status, buy.mode) == ("FILLED", "paper")
    assert buy.avg_price == pytest.approx(100.5)
    assert buy.fee == pytest.approx(1.005)
    assert cash(pg_env) == pytest.approx(10000 - 1005 - 1.005)
    assert position(pg_env) == pytest.approx((10, 100.5, -1.005))
    # the order's stop distance (98 / 99) below the position's average entry (100.5)
    assert sql(pg_env, "SELECT stop_loss FROM positions")[0][0] == pytest.approx(100.5 * 98 / 99)

    bus.publish(tick("BTC_USDT", 110.0))
    bus.publish(order("sell-1", "SELL", 4, price=110.0))
    sell = one_result(redis_client, "sell-1")
    assert sell.avg_price == pytest.approx(109.45)
    assert sell.fee == pytest.approx(0.4378)
    realised = (109.45 - 100.5) * 4 - 0.4378
    trade = sql(
        pg_env, "SELECT realized_pnl, quantity, price FROM trades WHERE client_id = 'sell-1'"
    )
    assert trade == [(pytest.approx(realised), 4.0, pytest.approx(109.45))]
    assert position(pg_env) == pytest.approx((6, 100.5, -1.005 + realised))
    assert cash(pg_env) == pytest.approx(10000 - 1006.005 + 437.8 - 0.4378)

    before = cash(pg_env)
    bus.publish(order("buy-too-big", "BUY", 1000, price=110.0))
    bus.publish(order("sell-too-big", "SELL", 7, price=110.0))
    too_big = one_result(redis_client, "buy-too-big")
    assert too_big.status == "REJECTED" and "insufficient cash" in too_big.error
    oversell = one_result(redis_client, "sell-too-big")
    assert oversell.status == "REJECTED" and "exceeds the position" in oversell.error
    assert cash(pg_env) == pytest.approx(before)
    assert position(pg_env)[0] == pytest.approx(6)
    assert sql(pg_env, "SELECT count(*) FROM trades")[0][0] == 2
    # no market price seen for ETH_USDT yet: the order's reference price is the basis
    bus.publish(order("eth-no-md", "BUY", 1, price=50.0, symbol="ETH_USDT"))
    assert one_result(redis_client, "eth-no-md").avg_price == pytest.approx(50.25)
    statuses = dict(sql(pg_env, "SELECT client_id, status FROM orders WHERE symbol = 'BTC_USDT'"))
    assert statuses == {
        "buy-1": "FILLED",
        "sell-1": "FILLED",
        "buy-too-big": "REJECTED",
        "sell-too-big": "REJECTED",
    }


def test_the_stored_stop_is_the_risk_managers_after_a_slipped_fill_and_an_add(
    service, redis_client, pg_env
):
    """Risk puts a position's stop STOP_LOSS_PCT below its average entry at each buy fill
    (cdb.risk.portfolio) and reads ``positions.stop_loss`` back at start: what execution
    stores must be that stop, not the last order's (which sat 15 % above the average once
    an add came at a higher price, and jumped there when the risk manager restarted)."""
    service()
    bus = publisher(redis_client)
    pct = 2.0
    book = Portfolio(cash=10_000.0)
    for client_id, market, quantity in (("add-1", 60_000.0, 0.01), ("add-2", 75_000.0, 0.01)):
        bus.publish(tick("BTC_USDT", market))
        reference = market * 0.999  # the signal's price: the fill slips from it
        stop = reference * (1 - pct / 100)  # as cdb.risk.rules prices a BUY's stop
        bus.publish(order(client_id, "BUY", quantity, price=reference, stop_loss=stop))
        book.apply(one_result(redis_client, client_id), stop_loss_pct=pct)
    risk_stop = book.positions["BTC_USDT"].stop_loss
    (stored,) = sql(pg_env, "SELECT stop_loss FROM positions WHERE symbol = 'BTC_USDT'")[0]
    assert stored == pytest.approx(risk_stop, rel=1e-12)
    avg = position(pg_env)[1]
    assert stored == pytest.approx(avg * (1 - pct / 100), rel=1e-12)
    # a sell keeps the stop of what is left
    bus.publish(order("trim-1", "SELL", 0.005, price=75_000.0))
    assert one_result(redis_client, "trim-1").status == "FILLED"
    assert sql(pg_env, "SELECT stop_loss FROM positions")[0][0] == pytest.approx(stored)


def test_same_entry_delivered_twice_fills_once(service, redis_client, pg_env):
    service()
    bus = publisher(redis_client)
    bus.publish(tick("BTC_USDT", 100.0))
    same = order("dup-1", "BUY", 2)
    bus.publish(same)
    bus.publish(same)  # a redelivery: the same event again
    wait_until(lambda: len(results(redis_client, "dup-1")) == 2, message="two results")
    first, second = results(redis_client, "dup-1")
    assert first.model_dump(exclude={"timestamp"}) == second.model_dump(exclude={"timestamp"})
    assert sql(pg_env, "SELECT count(*) FROM trades WHERE client_id = 'dup-1'")[0][0] == 1
    assert position(pg_env)[0] == pytest.approx(2)


def test_an_order_that_waited_too_long_is_rejected_not_sent(service, redis_client, pg_env):
    """After an outage the market has moved on: a stale order is refused, a fresh one fills."""
    import time

    service(ORDER_MAX_AGE_S="60")
    bus = publisher(redis_client)
    bus.publish(tick("BTC_USDT", 100.0))
    bus.publish(order("stale-1", "BUY", 1, timestamp=int(time.time()) - 600))
    bus.publish(order("fresh-1", "BUY", 1))
    stale = one_result(redis_client, "stale-1")
    assert stale.status == "REJECTED"
    assert "ORDER_MAX_AGE_S" in stale.error
    assert one_result(redis_client, "fresh-1").status == "FILLED"
    assert sql(pg_env, "SELECT count(*) FROM trades WHERE client_id = 'stale-1'")[0][0] == 0


@pytest.mark.parametrize("point", ["after_sent", "after_fill"])
def test_sigkill_between_read_and_ack_then_restart_fills_once(service, redis_client, pg_env, point):
    paused = service(EXECUTION_TEST_PAUSE_AT=point)
    bus = publisher(redis_client)
    bus.publish(tick("BTC_USDT", 100.0))
    bus.publish(order("kill-1", "BUY", 3))
    wait_until(
        lambda: redis_client.get(PAUSED_KEY) == f"{point}:kill-1".encode(),
        message=f"the pause at {point}",
    )
    # Inside the window: read, written to PostgreSQL, neither published nor acknowledged.
    status = sql(pg_env, "SELECT status FROM orders WHERE client_id = 'kill-1'")[0][0]
    assert status == ("SENT" if point == "after_sent" else "FILLED")
    assert results(redis_client, "kill-1") == []
    assert redis_client.xpending("orders", "execution")["pending"] == 1
    paused.kill()

    service()  # the same consumer name: its pending entry is redelivered to it
    result = one_result(redis_client, "kill-1")
    assert result.status == "FILLED" and result.filled_quantity == 3
    wait_until(
        lambda: redis_client.xpending("orders", "execution")["pending"] == 0,
        message="the entry acknowledged",
    )
    assert sql(pg_env, "SELECT count(*) FROM trades WHERE client_id = 'kill-1'")[0][0] == 1
    assert position(pg_env)[0] == pytest.approx(3)
    assert cash(pg_env) == pytest.approx(10000 - 3 * 100.5 * 1.001)
    assert len(results(redis_client, "kill-1")) == 1


def test_unknown_order_at_start_fails_closed_until_resolved(
    service, env, redis_client, pg_env, monkeypatch, capsys
):
    sql(
        pg_env,
        "INSERT INTO orders (client_id, ts, symbol, side, quantity, price, status, mode) "
        "VALUES ('lost-live-1', 1, 'BTC_USDT', 'BUY', 0.5, 100, 'SENT', 'live')",
    )
    proc = service(wait_healthy=False)
    wait_until(
        lambda: proc.health()[0] == 503 and "fail-closed" in str(proc.health()[1]),
        message="fail-closed health",
    )
    assert (
        sql(pg_env, "SELECT status FROM orders WHERE client_id = 'lost-live-1'")[0][0] == "UNKNOWN"
    )
    critical = [a for a in alerts(redis_client) if a["code"] == "ORDER_UNKNOWN"]
    assert critical and critical[0]["level"] == "CRITICAL"
    assert "lost-live-1" in critical[0]["message"]

    bus = publisher(redis_client)
    bus.publish(order("while-closed", "BUY", 1))
    refused = one_result(redis_client, "while-closed")
    assert refused.status == "REJECTED" and "fail-closed" in refused.error
    assert sql(pg_env, "SELECT count(*) FROM trades")[0][0] == 0

    for key, value in env.items():  # the resolve command, in-process, same environment
        monkeypatch.setenv(key, value)
    assert resolve.main(["--list"]) == 0
    assert "lost-live-1" in capsys.readouterr().out
    assert resolve.main(["lost-live-1", "--status", "FILLED"]) == 2  # no quantity, no price
    assert resolve.main(["while-closed", "--status", "CANCELLED"]) == 1  # not UNKNOWN
    assert resolve.main(["lost-live-1", "--status", "CANCELLED", "--note", "not on MEXC"]) == 0
    assert one_result(redis_client, "lost-live-1").status == "CANCELLED"
    wait_until(lambda: proc.health()[0] == 200, message="healthy after the resolution")
    bus.publish(order("after-resolve", "BUY", 1))
    assert one_result(redis_client, "after-resolve").status == "FILLED"


@pytest.mark.parametrize("mode", ["live", "validate"])
def test_refuses_live_or_validate_without_keys(env, mode):
    key = "mx0vgl-THIS-KEY-MUST-NOT-LEAK"
    full_env = {**os.environ, **env, "TRADING_MODE": mode, "MEXC_API_KEY": key}
    full_env.pop("MEXC_API_SECRET", None)
    done = run_cdb(full_env, "run", "execution")
    assert done.returncode == 2
    lines = [line for line in (done.stdout + done.stderr).splitlines() if line.strip()]
    assert len(lines) == 1 and "MEXC_API_SECRET" in lines[0], lines
    assert key not in done.stdout + done.stderr


def test_single_writer_lock(service, redis_client, pg_env):
    first = service(CDB_CONSUMER_NAME="exec-a")
    second = service(wait_healthy=False, CDB_CONSUMER_NAME="exec-b")
    wait_until(lambda: "standby" in str(second.health()[1]), message="second copy in standby")
    assert second.health()[0] == 503
    assert second.status()["active"] is False
    bus = publisher(redis_client)
    bus.publish(order("lock-1", "BUY", 1, price=100.0))
    assert one_result(redis_client, "lock-1").status == "FILLED"
    assert first.status()["active"] is True
    assert second.status()["consumed"] == {}  # the standby read nothing

    first.kill()  # its lease runs out (LOCK_TTL_S=2) and the standby takes over
    wait_until(lambda: second.health()[0] == 200, message="standby took over")
    bus.publish(order("lock-2", "BUY", 1, price=100.0))
    assert one_result(redis_client, "lock-2").status == "FILLED"
    assert second.status()["active"] is True
    assert sql(pg_env, "SELECT count(*) FROM trades")[0][0] == 2
    assert second.stop() == 0
    assert redis_client.get(LOCK_KEY) is None  # released at a graceful stop


def test_fault_switch_never_fills_twice(service, redis_client, pg_env):
    proc = service(EXCHANGE_RETRIES="2")
    bus = publisher(redis_client)
    bus.publish(tick("BTC_USDT", 100.0))
    held = 0.0
    for kind, remaining in (
        ("timeout_after_fill", 1),
        ("error", 5),
        ("rate_limit", 2),
        ("timeout", 1),
    ):
        client_id = f"fault-{kind}".replace("_", "-")
        redis_client.hset(FAULT_KEY, mapping={"kind": kind, "remaining": remaining, "delay_s": 0.2})
        bus.publish(order(client_id, "BUY", 2))
        result = one_result(redis_client, client_id)
        held += 2
        assert result.status == "FILLED", kind
        assert int(redis_client.hget(FAULT_KEY, "remaining")) <= 0, kind  # every fault was hit
        trades = sql(pg_env, "SELECT count(*) FROM trades WHERE client_id = %s", (client_id,))
        assert trades[0][0] == 1, kind
        assert position(pg_env)[0] == pytest.approx(held), kind
        assert len(results(redis_client, client_id)) == 1, kind
    wait_until(lambda: proc.health()[0] == 200, message="healthy after the faults")

"""``cdb run risk`` as a real process on real Redis and PostgreSQL.

The test plays the other services: it XADDs market data, signals and controls,
and plays execution for fills (writes ``orders``, ``positions`` and ``balances``
the way execution does, then XADDs the ``OrderResult``). It asserts the orders
the risk manager publishes, its ``risk_events`` rows, alerts, the breaker hash and
``BreakerState`` events, and that a restart keeps a tripped breaker tripped.
"""

from __future__ import annotations

from typing import Any

import psycopg2
import pytest
from helpers import ServiceProcess, wait_until

from cdb.bus import BREAKER_KEY, STREAM_OF_TYPE
from cdb.db.migrate import migrate
from cdb.events import (
    Control,
    Event,
    MarketData,
    Order,
    OrderResult,
    Signal,
    dump_event,
    now,
    parse_event,
    stable_id,
)
from cdb.settings import PostgresSettings


def xadd(client, event: Event) -> None:
    client.xadd(STREAM_OF_TYPE[event.type], {"data": dump_event(event)})


def events(client, stream: str, type_: str | None = None) -> list[Any]:
    out = [parse_event(f[b"data"]) for _, f in client.xrange(stream)]
    return [e for e in out if type_ is None or e.type == type_]


def price(client, symbol: str, value: float) -> None:
    xadd(client, MarketData(symbol=symbol, price=value, volume=1e6, pct_change=0.0, source="test"))


def signal(client, sid: str, symbol: str, confidence: float, px: float, side="BUY", ts=None):
    xadd(
        client,
        Signal(
            signal_id=sid,
            symbol=symbol,
            side=side,
            confidence=confidence,
            price=px,
            pct_change=confidence * 10,
            reason="test",
            timestamp=ts if ts is not None else now(),
        ),
    )


class Ledger:
    """PostgreSQL as execution leaves it after a fill: order, position, cash, then the result."""

    def __init__(self, dsn: str, client) -> None:
        self.dsn = dsn
        self.client = client

    def query(self, sql: str, *args) -> list[tuple]:
        with psycopg2.connect(self.dsn) as conn, conn.cursor() as cur:
            cur.execute(sql, args or None)
            return cur.fetchall() if cur.description else []

    def fill(self, order: Order, px: float, fee: float = 0.0) -> None:
        ts = now()
        with psycopg2.connect(self.dsn) as conn, conn.cursor() as cur:
            cur.execute(
                "INSERT INTO orders (client_id, signal_id, ts, symbol, side, quantity, price,"
                " stop_loss, status, filled_quantity, avg_price, fee)"
                " VALUES (%s,%s,%s,%s,%s,%s,%s,%s,'FILLED',%s,%s,%s)",
                (order.client_id, order.signal_id, order.timestamp, order.symbol, order.side,
                 order.quantity, order.price, order.stop_loss, order.quantity, px, fee),
            )  # fmt: skip
            cur.execute("SELECT free FROM balances WHERE asset = 'USDT'")
            row = cur.fetchone()
            cash = row[0] if row else 10_000.0
            cur.execute(
                "SELECT quantity, avg_price FROM positions WHERE symbol = %s", (order.symbol,)
            )
            qty, avg = cur.fetchone() or (0.0, 0.0)
            if order.side == "BUY":
                cash -= order.quantity * px + fee
                avg = (qty * avg + order.quantity * px) / (qty + order.quantity)
                qty += order.quantity
            else:
                cash += order.quantity * px - fee
                qty = max(0.0, qty - order.quantity)
            cur.execute(
                "INSERT INTO positions (symbol, quantity, avg_price, stop_loss, opened_ts, updated_ts)"
                " VALUES (%s,%s,%s,%s,%s,%s) ON CONFLICT (symbol) DO UPDATE SET"
                " quantity = EXCLUDED.quantity, avg_price = EXCLUDED.avg_price,"
                " stop_loss = COALESCE(EXCLUDED.stop_loss, positions.stop_loss),"
                " updated_ts = EXCLUDED.updated_ts",
                (order.symbol, qty, avg, order.stop_loss, ts, ts),
            )
            cur.execute(
                "INSERT INTO balances (asset, free, updated_ts) VALUES ('USDT', %s, %s)"
                " ON CONFLICT (asset) DO UPDATE SET free = EXCLUDED.free",
                (cash, ts),
            )
        xadd(
            self.client,
            OrderResult(
                client_id=order.client_id,
                symbol=order.symbol,
                side=order.side,
                status="FILLED",
                filled_quantity=order.quantity,
                avg_price=px,
                fee=fee,
            ),
        )

    def reject(self, order: Order, error: str) -> None:
        """What execution records and publishes when the exchange refuses an order."""
        with psycopg2.connect(self.dsn) as conn, conn.cursor() as cur:
            cur.execute(
                "INSERT INTO orders (client_id, ts, symbol, side, quantity, price, status, error)"
                " VALUES (%s,%s,%s,%s,%s,%s,'REJECTED',%s)",
                (order.client_id, order.timestamp, order.symbol, order.side, order.quantity,
                 order.price, error),
            )  # fmt: skip
        xadd(
            self.client,
            OrderResult(
                client_id=order.client_id,
                symbol=order.symbol,
                side=order.side,
                status="REJECTED",
                error=error,
            ),
        )

    def decision(self, key: str) -> tuple | None:
        rows = self.query(
            "SELECT decision, rule, severity, description, client_id FROM risk_events"
            " WHERE event_key = %s",
            key,
        )
        return rows[0] if rows else None


@pytest.fixture
def world(redis_env, pg_env, redis_client, tmp_path, monkeypatch):
    for key, value in pg_env.items():
        monkeypatch.setenv(key, value)
    settings = PostgresSettings()
    migrate(settings)
    env = {**redis_env, **pg_env, "HEALTH_INTERVAL_S": "1", "MAX_EXPOSURE_PCT": "25"}
    ledger = Ledger(settings.postgres_dsn(), redis_client)
    procs: list[ServiceProcess] = []

    def start(**extra: str) -> ServiceProcess:
        proc = ServiceProcess("risk", {**env, **extra}, tmp_path).start()
        procs.append(proc)
        return proc

    yield start, ledger
    for proc in procs:
        proc.stop()


def wait_orders(client, n: int) -> list[Order]:
    return wait_until(lambda: len(o := events(client, "orders")) >= n and o, message=f"{n} orders")


def wait_decision(ledger: Ledger, key: str) -> tuple:
    return wait_until(lambda: ledger.decision(key), message=f"risk event {key}")


def breaker(client) -> dict[str, str]:
    return {k.decode(): v.decode() for k, v in client.hgetall(BREAKER_KEY).items()}


def test_orders_clipping_exposure_stop_loss_drawdown_and_restart(world, redis_client):
    start, ledger = world
    r = redis_client
    proc = start()
    assert breaker(r)["engaged"] == "0"
    for symbol, px in (("BTC_USDT", 100.0), ("ETH_USDT", 10.0), ("SOL_USDT", 1.0)):
        price(r, symbol, px)
    price(r, "ADA_USDT", 0.5)

    # approve: confidence 0.5 → 20 % x 0.5 = 10 % of 10,000 → 10 BTC, stop 2 % below
    signal(r, "s1", "BTC_USDT", 0.5, 100.0)
    (o1,) = wait_orders(r, 1)
    assert (o1.side, o1.symbol, o1.signal_id, o1.client_id) == (
        "BUY",
        "BTC_USDT",
        "s1",
        stable_id("s1"),
    )
    assert o1.quantity == pytest.approx(10.0) and o1.stop_loss == pytest.approx(98.0)
    assert wait_decision(ledger, "signal:s1")[:3] == ("approve", "approved", "INFO")
    ledger.fill(o1, 100.0)

    # clip: confidence 0.8 asks for 16 % → clipped to the 10 % position limit
    signal(r, "s2", "ETH_USDT", 0.8, 10.0)
    o2 = wait_orders(r, 2)[1]
    assert o2.quantity * 10.0 == pytest.approx(1000.0)
    decision, rule, severity, text, _ = wait_decision(ledger, "signal:s2")
    assert (decision, rule, severity) == ("clip", "position", "INFO")
    assert "clipped to 1,000.00 USDT" in text
    ledger.fill(o2, 10.0)

    # clip by exposure: 20 % used of the 25 % limit leaves 5 %
    signal(r, "s3", "SOL_USDT", 0.5, 1.0)
    o3 = wait_orders(r, 3)[2]
    assert o3.quantity * 1.0 == pytest.approx(500.0)
    assert wait_decision(ledger, "signal:s3")[:2] == ("clip", "exposure")
    ledger.fill(o3, 1.0)

    # exposure at the limit: rejected with a WARNING alert
    signal(r, "s4", "ADA_USDT", 0.5, 0.5)
    decision, rule, severity, text, cid = wait_decision(ledger, "signal:s4")
    assert (decision, rule, severity, cid) == ("reject", "exposure", "WARNING", None)
    assert text == "exposure 25 % ≥ limit 25 % – signal s4 rejected"
    alert = wait_until(lambda: events(r, "alerts"), message="alert")[-1]
    assert (alert.level, alert.code, alert.message) == ("WARNING", "RISK_LIMIT", text)

    # stop loss: BTC below 98 → one closing order, not one per tick
    price(r, "BTC_USDT", 97.9)
    price(r, "BTC_USDT", 97.5)
    exit1 = wait_orders(r, 4)[3]
    assert (exit1.side, exit1.symbol, exit1.quantity) == ("SELL", "BTC_USDT", o1.quantity)
    assert exit1.client_id.startswith("x") and "stop loss" in exit1.reason
    price(r, "BTC_USDT", 97.4)
    wait_until(lambda: proc.status()["positions"]["BTC_USDT"]["price"] == 97.4, message="tick")
    assert len(events(r, "orders")) == 4
    assert wait_decision(ledger, f"exit:{exit1.client_id}")[:3] == ("exit", "stop_loss", "WARNING")
    ledger.fill(exit1, 97.5)
    wait_until(lambda: "BTC_USDT" not in proc.status()["positions"], message="BTC closed")

    # a crash in ETH: equity falls more than 5 % below the day's start → breaker, close all
    price(r, "ETH_USDT", 4.5)
    decision, rule, severity, text, _ = wait_decision(ledger, f"halt:{proc.status()['day']}")
    assert (decision, rule, severity) == ("halt", "drawdown", "CRITICAL")
    assert text.startswith("daily loss limit exceeded – trading halted")
    critical = wait_until(
        lambda: [a for a in events(r, "alerts") if a.level == "CRITICAL"], message="critical"
    )
    assert critical[0].message == "daily loss limit exceeded – trading halted"
    assert critical[0].code == "DAILY_LOSS_LIMIT"
    assert breaker(r)["engaged"] == "1" and breaker(r)["drawdown"] == "1"
    states = events(r, "control", "breaker_state")
    assert states[-1].engaged and states[-1].drawdown
    closing = wait_orders(r, 6)[4:]
    assert sorted((o.side, o.symbol) for o in closing) == [
        ("SELL", "ETH_USDT"),
        ("SELL", "SOL_USDT"),
    ]

    metrics = proc.metrics()
    assert 'cdb_risk_decisions_total{decision="approve",rule="approved"} 1.0' in metrics
    assert 'cdb_risk_decisions_total{decision="clip",rule="position"} 1.0' in metrics
    assert "cdb_risk_breaker_engaged 1.0" in metrics
    assert 'cdb_risk_decisions_total{decision="reject",rule="open_positions"} 0.0' in metrics
    assert "cdb_risk_limit_drawdown_ratio " in metrics and 'cdb_risk_equity{currency="' in metrics

    # the next signal is blocked
    signal(r, "s5", "BTC_USDT", 0.5, 97.5)
    assert wait_decision(ledger, "signal:s5")[:2] == ("halt", "drawdown")

    # releasing a manual breaker does not release the drawdown trip
    xadd(r, Control(action="release_breaker", source="operator", control_id="rel-1"))
    wait_until(lambda: breaker(r)["control_id"] == "rel-1", message="release applied")
    assert breaker(r)["engaged"] == "1" and breaker(r)["drawdown"] == "1"
    assert "until the next UTC day" in breaker(r)["reason"]

    # restart (with the Redis mirror wiped): the breaker comes back from PostgreSQL
    before = proc.status()
    assert proc.stop() == 0
    r.delete(BREAKER_KEY)
    proc = start()
    after = proc.status()
    assert after["cash"] == before["cash"] == pytest.approx(10_000 - 1000 - 1000 - 500 + 975)
    assert after["day_start_equity"] == before["day_start_equity"] == pytest.approx(10_000)
    assert set(after["positions"]) == {"ETH_USDT", "SOL_USDT"}
    assert breaker(r)["engaged"] == "1" and breaker(r)["drawdown"] == "1"
    assert proc.status()["breaker"]["engaged"] == "1"
    signal(r, "s6", "BTC_USDT", 0.5, 97.5)
    assert wait_decision(ledger, "signal:s6")[:2] == ("halt", "drawdown")
    # the exits still in flight were remembered: no second closing order after the restart
    assert sorted(proc.status()["pending_exits"]) == ["ETH_USDT", "SOL_USDT"]
    assert len(events(r, "orders")) == 6
    assert len(ledger.query("SELECT 1 FROM risk_events WHERE event_key LIKE 'halt:%'")) == 1


def test_control_engage_release_kill_and_restart(world, redis_client):
    start, ledger = world
    r = redis_client
    proc = start()
    price(r, "BTC_USDT", 100.0)

    xadd(r, Control(action="engage_breaker", source="operator", reason="maint", control_id="c1"))
    wait_until(lambda: breaker(r).get("control_id") == "c1", message="engage applied")
    hash_ = breaker(r)
    assert (hash_["engaged"], hash_["manual"], hash_["drawdown"], hash_["kill_switch"]) == (
        "1", "1", "0", "0",
    )  # fmt: skip
    assert hash_["reason"] == "maint" and int(hash_["updated_at"]) > 0
    confirm = wait_until(
        lambda: [e for e in events(r, "control", "breaker_state") if e.control_id == "c1"],
        message="BreakerState c1",
    )
    assert confirm[0].engaged and confirm[0].manual
    signal(r, "m1", "BTC_USDT", 0.5, 100.0)
    assert wait_decision(ledger, "signal:m1")[:2] == ("halt", "manual_breaker")

    # a manual breaker survives a restart too (the Redis hash is rebuilt from PostgreSQL)
    proc.stop()
    r.delete(BREAKER_KEY)
    proc = start()
    assert breaker(r)["engaged"] == "1" and breaker(r)["manual"] == "1"

    xadd(r, Control(action="release_breaker", source="cli", control_id="c2"))
    wait_until(lambda: breaker(r).get("control_id") == "c2", message="release applied")
    assert breaker(r)["engaged"] == "0"
    # the same control entry delivered again is only confirmed, not obeyed a second time
    confirmations = len(events(r, "control", "breaker_state"))
    xadd(r, Control(action="engage_breaker", source="operator", reason="maint", control_id="c1"))
    wait_until(
        lambda: len(events(r, "control", "breaker_state")) > confirmations, message="confirmed"
    )
    assert breaker(r)["engaged"] == "0" and breaker(r)["control_id"] == "c2"
    price(r, "BTC_USDT", 100.0)
    signal(r, "m2", "BTC_USDT", 0.5, 100.0)
    (order,) = wait_orders(r, 1)
    assert order.signal_id == "m2"
    ledger.fill(order, 100.0)
    wait_until(lambda: "BTC_USDT" in proc.status()["positions"], message="position")

    # kill switch: nothing at all is sent, not even a stop-loss exit
    xadd(r, Control(action="kill_switch", source="operator", control_id="k1"))
    wait_until(lambda: breaker(r).get("kill_switch") == "1", message="kill switch")
    price(r, "BTC_USDT", 97.0)
    signal(r, "m3", "BTC_USDT", 0.5, 97.0, side="SELL")
    assert wait_decision(ledger, "signal:m3")[:2] == ("halt", "kill_switch")
    assert len(events(r, "orders")) == 1
    kill_alert = [a for a in events(r, "alerts") if a.code == "KILL_SWITCH"]
    assert kill_alert and kill_alert[0].level == "CRITICAL"

    # released: the stop loss is enforced at once (continuously, not only on signals)
    xadd(r, Control(action="release_breaker", source="operator", control_id="k2"))
    exit_order = wait_orders(r, 2)[1]
    assert (exit_order.side, exit_order.symbol) == ("SELL", "BTC_USDT")

    # a stale signal is rejected
    signal(r, "m4", "ETH_USDT", 0.5, 10.0, ts=now() - 3600)
    assert wait_decision(ledger, "signal:m4")[:2] == ("reject", "stale_signal")


def test_redelivered_signal_gets_its_first_decision(world, redis_client):
    """A signal seen twice (new id in the stream, same signal_id) is decided once."""
    start, ledger = world
    r = redis_client
    proc = start()
    price(r, "BTC_USDT", 100.0)
    signal(r, "d1", "BTC_USDT", 0.5, 100.0)
    (first,) = wait_orders(r, 1)
    signal(r, "d1", "BTC_USDT", 0.5, 100.0)
    second = wait_orders(r, 2)[1]
    assert second.client_id == first.client_id and second.quantity == first.quantity
    assert len(ledger.query("SELECT 1 FROM risk_events WHERE signal_id = 'd1'")) == 1

    # a redelivered OrderResult is applied once: cash and position do not change twice
    ledger.fill(first, 100.0, fee=1.0)
    status = wait_until(lambda: (s := proc.status())["positions"] and s, message="filled")
    assert status["cash"] == pytest.approx(10_000 - 1000 - 1.0, abs=0.01)
    result = events(r, "order_result")[-1]
    xadd(r, result)
    price(r, "BTC_USDT", 100.5)
    wait_until(lambda: proc.status()["positions"]["BTC_USDT"]["price"] == 100.5, message="tick")
    status = proc.status()
    assert status["cash"] == pytest.approx(10_000 - 1000 - 1.0, abs=0.01)
    assert status["positions"]["BTC_USDT"]["quantity"] == pytest.approx(first.quantity)
    assert proc.log().count(f"fill {first.client_id}") == 1


def test_postgres_outage_delays_decisions_and_loses_none(
    own_postgres, redis_env, redis_client, tmp_path
):
    """With PostgreSQL down a decision cannot be recorded, so none is made: the signal waits
    in the stream, /health says why, and it is decided once the database is back."""
    r = redis_client
    settings = PostgresSettings(**own_postgres.env())
    migrate(settings)
    ledger = Ledger(settings.postgres_dsn(), r)
    proc = ServiceProcess("risk", {**redis_env, **own_postgres.env()}, tmp_path).start()
    try:
        price(r, "BTC_USDT", 100.0)
        signal(r, "p1", "BTC_USDT", 0.2, 100.0)
        wait_orders(r, 1)
        own_postgres.stop("fast")
        price(r, "BTC_USDT", 100.0)
        signal(r, "p2", "BTC_USDT", 0.2, 100.0)
        code, body = wait_until(
            lambda: (h := proc.health())[0] == 503 and h, message="unhealthy without postgres"
        )
        assert any("postgres" in p for p in body["problems"])
        assert len(events(r, "orders")) == 1
        own_postgres.start()
        second = wait_orders(r, 2)[1]
        assert second.signal_id == "p2"
        assert wait_decision(ledger, "signal:p2")[0] == "approve"
        wait_until(lambda: proc.health()[0] == 200, message="healthy again")
    finally:
        proc.stop()


def test_bad_setting_stops_with_one_line(redis_env, pg_env, tmp_path):
    env = {**redis_env, **pg_env, "MAX_POSITION_PCT": "0"}
    proc = ServiceProcess("risk", env, tmp_path).start(wait_healthy=False)
    assert proc.proc.wait(timeout=30) == 2
    assert "configuration error: MAX_POSITION_PCT must be > 0, got 0" in proc.log()


def test_failed_closing_order_is_retried_under_a_new_id(world, redis_client):
    start, ledger = world
    r = redis_client
    proc = start(RISK_EXIT_RETRY_S="1")
    price(r, "BTC_USDT", 100.0)
    signal(r, "f1", "BTC_USDT", 0.5, 100.0)
    (entry,) = wait_orders(r, 1)
    ledger.fill(entry, 100.0)
    wait_until(lambda: proc.status()["positions"], message="position")
    price(r, "BTC_USDT", 97.0)
    first_exit = wait_orders(r, 2)[1]
    ledger.reject(first_exit, "insufficient balance")
    decision, rule, severity, text, _ = wait_decision(ledger, f"exit_failed:{first_exit.client_id}")
    assert (decision, severity) == ("exit_failed", "CRITICAL") and "insufficient balance" in text
    alert = wait_until(
        lambda: [a for a in events(r, "alerts") if a.code == "EXIT_FAILED"], message="alert"
    )[0]
    assert alert.level == "CRITICAL"
    second_exit = wait_orders(r, 3)[2]
    assert second_exit.client_id != first_exit.client_id
    assert (second_exit.side, second_exit.quantity) == ("SELL", first_exit.quantity)
    ledger.fill(second_exit, 97.0)
    wait_until(lambda: not proc.status()["positions"], message="closed")
    assert len(events(r, "orders")) == 3

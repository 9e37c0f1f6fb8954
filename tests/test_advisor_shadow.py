"""Shadow mode, provably: the strongest ML signals never become an order.

The real pipeline (persistence, notifier, execution, risk, signal and the advisor, each a
process on real Redis and PostgreSQL) gets ml_signals with probability 1.0 on the
``ml_signals`` stream, and one pushed onto ``signals`` by mistake; none becomes an order.
A rule signal sent afterwards does become one (so the pipeline could trade: the test can
fail). The services' code is checked too: no trading service reads ``ml_signals``.
"""

from __future__ import annotations

import importlib
import json
import tempfile
import time
from pathlib import Path

import psycopg2
import pytest
from advisor_data import model_file
from helpers import ServiceProcess, wait_until

from cdb.bus import ML_SIGNALS, Bus
from cdb.cli import SERVICES
from cdb.db.migrate import migrate
from cdb.events import FeatureContribution, MarketData, MlSignal, dump_event, parse_event
from cdb.settings import PostgresSettings

START = ("persistence", "notifier", "execution", "risk", "signal", "advisor")


def _strong(symbol: str, price: float, n: int) -> MlSignal:
    return MlSignal(
        signal_id=f"ml-strong-{symbol}-{n}",
        symbol=symbol,
        side="BUY",
        probability=1.0,
        threshold=0.5,
        model_version="lr-000000000000",
        price=price,
        rule_signal=False,
        contributions=[FeatureContribution(feature="ret_1", value=9.0, contribution=12.0)],
    )


def test_trading_services_never_read_ml_signals():
    readers = {
        name for name, module in SERVICES.items()
        if ML_SIGNALS in importlib.import_module(module).SERVICE.streams
    }  # fmt: skip
    assert readers == {"persistence"}
    for package in ("risk", "execution", "signal"):
        for path in (Path(importlib.import_module(f"cdb.{package}").__file__).parent).glob("*.py"):
            text = path.read_text()
            assert "ML_SIGNALS" not in text and "MlSignal" not in text, path


def test_strong_ml_signals_through_the_real_pipeline_never_become_orders(
    redis_env, redis_client, pg_env
):
    migrate(PostgresSettings(**pg_env))
    log_dir = Path(tempfile.mkdtemp(prefix="cdb-shadow-"))
    env = {
        **redis_env,
        **pg_env,
        "ADVISOR_MODEL_PATH": str(model_file(log_dir, 15, candles=600)),
        "PAPER_START_BALANCE": "10000",
        "HEALTH_INTERVAL_S": "1",
    }
    procs = {name: ServiceProcess(name, env, log_dir).start(timeout=60) for name in START}
    dsn = PostgresSettings(**pg_env).postgres_dsn()

    def sql(query: str) -> list[tuple]:
        with psycopg2.connect(dsn) as conn, conn.cursor() as cur:
            cur.execute(query)
            found = cur.fetchall()
        conn.close()
        return found

    try:
        bus = Bus(redis_client, service="test")
        now = int(time.time())
        prices = {"BTC_USDT": 60_000.0, "ETH_USDT": 3_000.0, "SOL_USDT": 150.0}
        # quiet market data (no rule signal), so the risk manager knows the prices
        bus.publish_many(
            [
                MarketData(symbol=s, price=p, volume=5e6, pct_change=0.5, timestamp=now)
                for s, p in prices.items()
            ]
        )
        strong = [_strong(s, p, n) for n in range(3) for s, p in prices.items()]
        bus.publish_many(strong)  # → ml_signals, where they belong
        misrouted = _strong("BTC_USDT", 60_000.0, 99)
        redis_client.xadd("signals", {"data": dump_event(misrouted)})  # by mistake
        wait_until(
            lambda: len(sql("SELECT signal_id FROM ml_signals")) == len(strong),
            timeout=30,
            message="the writer persisted every ml_signal",
        )
        # the misrouted one is refused (dead-lettered) by every reader of `signals`
        wait_until(
            lambda: (
                {
                    f[b"consumer"].decode().split("/")[0]
                    for _, f in redis_client.xrange("dead_letter")
                }
                >= {"risk", "persistence"}
            ),
            timeout=30,
            message="risk and persistence dead-lettered the ml_signal found on signals",
        )
        # positive control: a real rule signal does trade
        bus.publish(
            MarketData(
                symbol="ETH_USDT", price=3000.0, volume=5e6, pct_change=5.0, timestamp=now + 1
            )
        )
        wait_until(
            lambda: sql("SELECT status FROM orders") == [("FILLED",)],
            timeout=30,
            message="the rule signal's order filled",
        )
        time.sleep(1.0)  # give any ML-driven order every chance to appear
        orders = [parse_event(f[b"data"]) for _, f in redis_client.xrange("orders")]
        rule_ids = {parse_event(f[b"data"]).signal_id for _, f in redis_client.xrange("signals")
                    if json.loads(f[b"data"])["type"] == "signal"}  # fmt: skip
        assert len(orders) == 1 and orders[0].signal_id in rule_ids
        ml_ids = {s.signal_id for s in [*strong, misrouted]}
        assert not ml_ids & {r[0] for r in sql("SELECT signal_id FROM orders")}
        assert not ml_ids & {r[0] for r in sql("SELECT signal_id FROM risk_events")}
        groups = {g["name"].decode() for g in redis_client.xinfo_groups("ml_signals")}
        assert groups == {"persistence"}, groups
    finally:
        codes = {name: proc.stop(timeout=30) for name, proc in reversed(procs.items())}
    assert all(code == 0 for code in codes.values()), f"{codes} (logs: {log_dir})"


@pytest.mark.parametrize("stream", ["signals", "orders", "control", "market_data"])
def test_the_bus_refuses_an_ml_signal_anywhere_but_ml_signals(redis_client, stream):
    bus = Bus(redis_client, service="reader")
    bus.subscribe([stream, ML_SIGNALS])
    redis_client.xadd(stream, {"data": dump_event(_strong("BTC_USDT", 1.0, 0))})
    redis_client.xadd(ML_SIGNALS, {"data": dump_event(_strong("BTC_USDT", 1.0, 1))})
    got = bus.read(block_ms=200)
    assert [(d.stream, d.event.signal_id) for d in got] == [(ML_SIGNALS, "ml-strong-BTC_USDT-1")]
    (_, dead), *_ = redis_client.xrange("dead_letter")
    assert dead[b"reason"] == (
        f"event type 'ml_signal' does not belong on stream '{stream}'".encode()
    )

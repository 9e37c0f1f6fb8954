"""Fuzz every consumer with hostile entries (hypothesis), each running on the real runtime loop.

Each service runs in a thread exactly as ``cdb run`` runs it (real Redis, a migrated real
PostgreSQL), and receives, on every stream it reads, a mix of garbage (bad JSON, wrong
types, NaN/Infinity, negative prices, unknown types, deep nesting, huge strings) and
valid but extreme events. The promises: the loop never dies, every invalid entry is in
``dead_letter`` with its reason, no valid entry makes a handler fail, and every entry is
acknowledged.
"""

from __future__ import annotations

import importlib
import threading

import pytest
import redis
from helpers import wait_until
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_fuzz_bus import garbage

from cdb.bus import DEAD_LETTER, STREAM_OF_TYPE, Bus
from cdb.cli import SERVICES
from cdb.db.migrate import migrate
from cdb.events import (
    MAX_TIMESTAMP,
    Alert,
    Control,
    FeatureContribution,
    Health,
    MarketData,
    MarketStatus,
    MlSignal,
    Order,
    OrderResult,
    Signal,
    dump_event,
    now,
)
from cdb.runtime import Runtime
from cdb.settings import PostgresSettings, load_settings

SYMBOLS = st.sampled_from(["BTC_USDT", "ETH_USDT", "Z9_USDT", "A_B"])
PRICES = st.floats(min_value=1e-9, max_value=1e12, allow_nan=False, allow_infinity=False)
AMOUNTS = st.floats(min_value=0, max_value=1e15, allow_nan=False, allow_infinity=False)
# up to the contract's last second: a time ahead of the reader's clock is valid to build
# but dead-lettered when read (is_valid_on counts it as bad)
TIMES = st.integers(min_value=0, max_value=MAX_TIMESTAMP) | st.just(now())
IDS = st.text(alphabet="abcdef0123456789", min_size=1, max_size=24)
TEXT = st.text(st.characters(exclude_characters="\x00", exclude_categories=("Cs",)), max_size=200)

VALID = {
    "market_data": st.one_of(
        st.builds(
            MarketData,
            symbol=SYMBOLS,
            price=PRICES,
            volume=AMOUNTS,
            pct_change=st.floats(-100, 10_000),
            timestamp=TIMES,
        ),
        st.builds(
            MarketStatus,
            status=st.sampled_from(["ok", "unreachable", "stale"]),
            reason=TEXT,
            timestamp=TIMES,
        ),
    ),
    "signals": st.builds(
        Signal,
        signal_id=IDS,
        symbol=SYMBOLS,
        side=st.sampled_from(["BUY", "SELL"]),
        confidence=st.floats(0, 1),
        price=PRICES,
        pct_change=st.floats(-100, 10_000),
        volume=AMOUNTS,
        reason=TEXT,
        timestamp=TIMES,
    ),
    "orders": st.builds(
        Order,
        client_id=IDS,
        symbol=SYMBOLS,
        side=st.sampled_from(["BUY", "SELL"]),
        quantity=PRICES,
        price=st.none() | PRICES,
        stop_loss=st.none() | PRICES,
        signal_id=st.none() | IDS,
        reason=TEXT,
        timestamp=TIMES,
    ),
    "order_result": st.builds(
        OrderResult,
        client_id=IDS,
        symbol=SYMBOLS,
        side=st.sampled_from(["BUY", "SELL"]),
        status=st.sampled_from(["FILLED", "PARTIALLY_FILLED", "REJECTED", "ERROR", "CANCELLED"]),
        filled_quantity=AMOUNTS,
        avg_price=AMOUNTS,
        fee=AMOUNTS,
        error=st.none() | TEXT,
        timestamp=TIMES,
    ),
    "alerts": st.builds(
        Alert,
        level=st.sampled_from(["INFO", "WARNING", "CRITICAL"]),
        code=st.from_regex(r"\A[A-Z_]{1,20}\Z"),
        message=TEXT,
        context=st.dictionaries(TEXT.map(lambda t: t[:10]), st.integers() | TEXT, max_size=5),
        timestamp=TIMES,
    ),
    "health": st.builds(
        Health,
        service=st.text(max_size=20),
        status=st.sampled_from(["ok", "degraded", "down"]),
        timestamp=TIMES,
    ),
    "ml_signals": st.builds(
        MlSignal,
        signal_id=IDS,
        symbol=SYMBOLS,
        side=st.sampled_from(["BUY", "SELL"]),
        probability=st.floats(0, 1),
        threshold=st.floats(0, 1),
        model_version=IDS,
        price=PRICES,
        rule_signal=st.booleans(),
        contributions=st.lists(
            st.builds(
                FeatureContribution,
                feature=TEXT.filter(bool).map(lambda t: t[:64]),
                value=st.floats(-1e300, 1e300),
                contribution=st.floats(-1e300, 1e300),
            ),
            max_size=20,
        ),
        timestamp=TIMES,
    ),
    "control": st.builds(
        Control,
        action=st.sampled_from(["engage_breaker", "release_breaker", "kill_switch"]),
        reason=TEXT,
        source=st.sampled_from(["operator", "cli", "dashboard"]),
        control_id=st.none() | IDS,
        timestamp=TIMES,
    ),
}


def entries(stream: str):
    valid = VALID[stream].map(lambda e: (dump_event(e), True))
    return st.lists(st.one_of(valid, garbage.map(lambda p: (p, False))), min_size=1, max_size=6)


def is_valid_on(stream: str, payload: bytes) -> bool:
    event, _ = Bus._validate(stream, payload)
    return event is not None


@pytest.mark.parametrize(
    "name", ["signal", "risk", "execution", "persistence", "notifier", "advisor"]
)
def test_consumer_survives_hostile_entries(
    name, redis_env, pg_env, clean_env, monkeypatch, tmp_path
):
    env = {
        **redis_env,
        **pg_env,
        "HTTP_PORT": "0",
        "LOG_LEVEL": "WARNING",
        "CDB_CONSUMER_NAME": f"{name}-fuzz",
    }
    if name == "advisor":  # it needs a model to start
        from advisor_data import model_file

        env["ADVISOR_MODEL_PATH"] = str(model_file(tmp_path, candles=600))
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    migrate(PostgresSettings())
    module = importlib.import_module(SERVICES[name])
    service_settings = load_settings(module.SERVICE.settings_class)
    client = redis.Redis(port=int(redis_env["REDIS_PORT"]))
    bus = Bus(redis.Redis(port=int(redis_env["REDIS_PORT"])), service=module.SERVICE.name)
    service = module.SERVICE(service_settings, bus)
    runtime = Runtime(service)
    thread = threading.Thread(target=runtime.run, daemon=True)
    thread.start()
    # "running" is not "reading": execution subscribes only once it holds its lock and has
    # reconciled (a tick later), and sampling from its streams before that found none
    wait_until(
        lambda: runtime.state == "running" and service.streams,
        timeout=30,
        message=f"{name} running and reading",
    )
    streams = service.streams
    counts = {"bad": 0, "good": 0}

    def drained() -> bool:
        for stream in streams:
            for group in client.xinfo_groups(stream):
                if group["name"] == service.name.encode() and (group["pending"] or group["lag"]):
                    return False
        return True

    @settings(
        max_examples=20, deadline=None, database=None, suppress_health_check=list(HealthCheck)
    )
    @given(data=st.data())
    def check(data):
        stream = data.draw(st.sampled_from(streams))
        batch = data.draw(entries(stream))
        dead_before = client.xlen(DEAD_LETTER)
        pipe = client.pipeline()
        for payload, _ in batch:
            pipe.xadd(stream, {"data": payload})
        pipe.execute()
        bad = sum(not is_valid_on(stream, p) for p, _ in batch)
        wait_until(drained, timeout=30, message=f"{name} acknowledged everything")
        assert thread.is_alive(), f"{name}'s loop died"
        new_dead = client.xrange(DEAD_LETTER)[dead_before:]
        reasons = [f[b"reason"].decode() for _, f in new_dead]
        handler_errors = [r for r in reasons if r.startswith("handler error")]
        assert handler_errors == [], f"a valid event broke {name}'s handler: {handler_errors}"
        assert len(new_dead) == bad, (reasons, batch)
        assert all(reasons), "every dead letter says why"
        counts["bad"] += bad
        counts["good"] += len(batch) - bad

    try:
        check()
    finally:
        runtime.request_stop()
        thread.join(timeout=20)
        client.close()
    assert not thread.is_alive(), f"{name} stopped on request"
    assert counts["bad"] > 0 and counts["good"] > 0, counts
    assert set(streams) <= set(STREAM_OF_TYPE.values())

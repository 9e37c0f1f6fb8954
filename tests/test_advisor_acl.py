"""The advisor's own Redis user (cdb.redis_acl) on a real redis-server.

The advisor runs as a real process logged in as ``cdb-advisor`` beside a feed logged in as
the default user, long enough to read, publish and skip a malformed tick; Redis' own ACL
log must then be empty (the rules cover everything it does). A client holding the
advisor's credentials is refused every command that could trade, blind the risk manager
(acknowledging, claiming or trimming its ticks), silence alerts or crash the services.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import pytest
import redis
from advisor_data import model_file
from helpers import ServiceProcess, wait_until

from cdb.localservers import RedisServer
from cdb.redis_acl import ADVISOR_USER, advisor_user_line

PASSWORD = "bus-secret-1234"
ADVISOR_PASSWORD = "advisor-secret-5678"


@pytest.fixture(scope="module")
def acl_redis():
    root = Path(tempfile.mkdtemp(prefix="cdb-acl-"))
    server = RedisServer(
        root / "redis", password=PASSWORD, users=(advisor_user_line(ADVISOR_PASSWORD),)
    ).start()
    yield server
    server.stop()
    shutil.rmtree(root, ignore_errors=True)


def _client(server: RedisServer, **auth) -> redis.Redis:
    return redis.Redis(port=server.port, socket_timeout=5, **auth)


@pytest.fixture
def admin(acl_redis):
    client = _client(acl_redis, password=PASSWORD)
    client.flushall()
    client.acl_log_reset()
    yield client
    client.close()


@pytest.fixture
def as_advisor(acl_redis, admin):
    client = _client(acl_redis, username=ADVISOR_USER, password=ADVISOR_PASSWORD)
    yield client
    client.close()


def test_the_advisor_runs_as_its_own_user_and_redis_refuses_it_nothing_it_needs(
    acl_redis, admin, tmp_path
):
    model = model_file(tmp_path, 15)
    common = {
        **{k: v for k, v in acl_redis.env().items() if k != "REDIS_PASSWORD"},
        "SYMBOLS": "BTC_USDT,ETH_USDT",
        "HEALTH_INTERVAL_S": "1",
        "EVENT_MAX_LEAD_S": "604800",  # 50 candles a second: stamps run ahead of the clock
    }
    advisor = ServiceProcess(
        "advisor",
        {
            **common,
            "REDIS_USERNAME": ADVISOR_USER,
            "REDIS_PASSWORD": ADVISOR_PASSWORD,
            "ADVISOR_MODEL_PATH": str(model),
            "ADVISOR_COOLDOWN_S": "0",
        },
        tmp_path,
    )
    feed = ServiceProcess(
        "feed",
        {
            **common,
            "REDIS_PASSWORD": PASSWORD,
            "FEED_SOURCE": "synthetic",
            "FEED_SYNTHETIC_PERIOD_S": "0.02",
        },
        tmp_path,
    )
    # a malformed tick from before the advisor started, inside its warm-up window
    admin.xadd("market_data", {"data": b"{not json"})
    advisor.start(timeout=60)
    feed.start(timeout=60)
    try:
        wait_until(lambda: admin.xlen("ml_signals") >= 5, timeout=60, message="ml_signals")
        wait_until(
            lambda: 'cdb_events_dead_lettered_total{stream="market_data"} 1.0' in advisor.metrics(),
            timeout=30,
            message="the malformed tick skipped and counted",
        )
        assert advisor.health()[0] == 200
        assert advisor.status()["consumed"]["market_data"] > 0
    finally:
        codes = [feed.stop(), advisor.stop()]
    denied = [e for e in admin.acl_log() if e.get("username") == ADVISOR_USER]
    assert denied == [], denied
    assert codes == [0, 0], f"logs: {tmp_path}"
    # it left no trace on market_data: no consumer group, nothing written
    assert admin.xinfo_groups("market_data") == []
    assert not admin.exists("dead_letter")
    beats = {json.loads(f[b"data"])["service"] for _, f in admin.xrange("health")}
    assert beats == {"feed"}  # the feed's heartbeats; the advisor sends none


@pytest.mark.parametrize(
    "command",
    [
        # what could trade
        ("XADD", "orders", "*", "data", "{}"),
        ("XADD", "signals", "*", "data", "{}"),
        ("XADD", "market_data", "*", "data", "{}"),
        ("XADD", "control", "*", "data", "{}"),
        ("XADD", "order_result", "*", "data", "{}"),
        # what could blind the risk manager's stop losses or the other readers of ticks
        ("XREADGROUP", "GROUP", "risk", "evil", "STREAMS", "market_data", ">"),
        ("XACK", "market_data", "risk", "1-1"),
        ("XAUTOCLAIM", "market_data", "risk", "evil", "0", "0-0"),
        ("XCLAIM", "market_data", "risk", "evil", "0", "1-1"),
        ("XGROUP", "CREATE", "market_data", "evil", "$"),
        ("XGROUP", "SETID", "market_data", "risk", "$"),
        ("XDEL", "market_data", "1-1"),
        # what could crash the services (an exhausted stream id) or silence alerts
        ("XADD", "health", "18446744073709551615-18446744073709551615", "data", "x"),
        ("XADD", "alerts", "MAXLEN", "0", "*", "data", "x"),
        ("XADD", "dead_letter", "*", "data", "x"),
        ("SET", "cdb:outage:postgres:ongoing", "x"),
        ("HSET", "cdb:readiness", "risk", "{}"),
        ("HSET", "cdb:risk:breaker", "kill_switch", "false"),
        ("DEL", "cdb:risk:breaker"),
        ("DEL", "market_data"),
        ("XTRIM", "market_data", "MAXLEN", "0"),
        ("XGROUP", "DESTROY", "market_data", "risk"),
        ("XRANGE", "orders", "-", "+"),
        ("XREADGROUP", "GROUP", "execution", "x", "STREAMS", "orders", ">"),
        ("GET", "cdb:execution:refused"),
        ("KEYS", "*"),
        ("FLUSHALL",),
        ("CONFIG", "SET", "requirepass", "x"),
        ("ACL", "SETUSER", ADVISOR_USER, "+@all"),
        ("SHUTDOWN",),
        ("PUBLISH", "orders", "{}"),
    ],
    ids=lambda c: " ".join(c[:2]),
)
def test_redis_refuses_the_advisor_what_could_trade_or_blind_the_bot(as_advisor, command):
    with pytest.raises(redis.exceptions.NoPermissionError):
        as_advisor.execute_command(*command)


def test_a_password_redis_would_split_is_refused():
    for bad in ("", "two words", "tab\there"):
        with pytest.raises(ValueError, match="advisor's Redis password"):
            advisor_user_line(bad)

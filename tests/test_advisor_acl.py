"""The advisor's own Redis user (cdb.redis_acl) on a real redis-server.

The advisor runs as a real process logged in as ``cdb-advisor`` beside a feed logged in as
the default user, long enough to read, publish, acknowledge, claim and dead-letter; Redis'
own ACL log must then be empty (the rules cover everything it does). A client holding the
advisor's credentials is refused every write that could trade or blind the bot.
"""

from __future__ import annotations

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
            "CLAIM_IDLE_MS": "1000",  # claims a dead consumer's entries while the test runs
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
    # a dead consumer of the advisor's group left an entry pending: the advisor claims it
    admin.xgroup_create("market_data", "advisor", id="0", mkstream=True)
    admin.xadd("market_data", {"data": b"{not json"})
    admin.xreadgroup("advisor", "advisor-dead", {"market_data": ">"})
    advisor.start(timeout=60)
    feed.start(timeout=60)
    try:
        wait_until(lambda: admin.xlen("ml_signals") >= 5, timeout=60, message="ml_signals")
        wait_until(
            lambda: any(
                f[b"consumer"].decode().startswith("advisor")
                for _, f in admin.xrange("dead_letter")
            ),
            timeout=30,
            message="the dead consumer's malformed entry claimed and dead-lettered",
        )
        assert admin.xlen("health") > 0 and admin.hget("cdb:readiness", "advisor")
        assert advisor.health()[0] == 200
        wait_until(
            lambda: admin.xpending("market_data", "advisor")["pending"] == 0,
            timeout=30,
            message="the advisor acknowledged what it read",
        )
        # and an outage alert, as the advisor raises it after OUTAGE_ALERT_S
        with _client(acl_redis, username=ADVISOR_USER, password=ADVISOR_PASSWORD) as c:
            assert c.set("cdb:outage:bus:ongoing", "advisor", nx=True, ex=60)
            c.xadd("alerts", {"data": b"{}"})
    finally:
        codes = [feed.stop(), advisor.stop()]
    denied = [e for e in admin.acl_log() if e.get("username") == ADVISOR_USER]
    assert denied == [], denied
    assert codes == [0, 0], f"logs: {tmp_path}"
    assert admin.xlen("orders") == 0 and admin.xlen("signals") == 0


@pytest.mark.parametrize(
    "command",
    [
        ("XADD", "orders", "*", "data", "{}"),
        ("XADD", "signals", "*", "data", "{}"),
        ("XADD", "market_data", "*", "data", "{}"),
        ("XADD", "control", "*", "data", "{}"),
        ("XADD", "order_result", "*", "data", "{}"),
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

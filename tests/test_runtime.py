"""The runtime as a real process: endpoints, Redis outages, redelivery after SIGKILL, SIGTERM."""

import sys
from pathlib import Path

import pytest
import redis
from helpers import ServiceProcess, wait_until

from cdb.bus import MARKET_DATA, SIGNALS, Bus
from cdb.events import MarketData, Signal

PROBE = [sys.executable, str(Path(__file__).with_name("probe_service.py"))]


def probe(env, tmp_path, **extra) -> ServiceProcess:
    return ServiceProcess("probe", {**env, **extra}, tmp_path, args=PROBE)


def signal_event(i: int) -> Signal:
    return Signal(
        signal_id=f"sig-{i}",
        symbol="ETH_USDT",
        side="BUY",
        confidence=0.5,
        price=10.0,
        pct_change=5.0,
        reason="test",
        timestamp=1_700_000_000 + i,
    )


def test_health_status_metrics(redis_env, redis_client, tmp_path):
    svc = probe(redis_env, tmp_path).start()
    try:
        bus = Bus(redis_client, service="producer")
        bus.publish(MarketData(symbol="BTC_USDT", price=1.0, volume=1.0, pct_change=0.0))
        redis_client.xadd(MARKET_DATA, {"data": b"garbage"})
        wait_until(lambda: svc.status()["handled"] == 1, message="one entry handled")
        status, body = svc.health()
        assert status == 200
        assert body["status"] == "ok" and body["service"] == "probe" and body["version"]
        st = svc.status()
        assert st["state"] == "running"
        assert isinstance(st["started_at"], int)
        assert st["last_event"]["type"] == "market_data"
        assert st["consumed"] == {"market_data": 1}
        dead = 'cdb_events_dead_lettered_total{stream="market_data"} 1.0'
        wait_until(lambda: dead in svc.metrics(), message="the dead letter counted")
        text = svc.metrics()
        # no `service` label: the scraper's target labels name the service (cdb/metrics.py)
        assert 'cdb_events_consumed_total{stream="market_data"} 1.0' in text
        assert "cdb_handler_seconds_bucket" in text
        assert "cdb_redis_up 1.0" in text
        assert "process_resident_memory_bytes" in text and "python_info{" in text
        assert 'cdb_build_info{python_version="' in text
        # it publishes health events for the persistence writer
        wait_until(lambda: redis_client.xlen("health") >= 1, message="a health event")
        assert "Werkzeug" not in svc.log(), "served by waitress, not Flask's dev server"
    finally:
        assert svc.stop() == 0


def test_health_turns_503_while_redis_is_down_and_recovers(own_redis, tmp_path):
    svc = probe(own_redis.env(), tmp_path, HEALTH_INTERVAL_S="1").start()
    try:
        own_redis.stop()
        wait_until(lambda: svc.health()[0] == 503, message="/health 503 while Redis is down")
        assert "redis unreachable" in " ".join(svc.health()[1]["problems"])
        assert svc.proc.poll() is None, "no crash while Redis is down"
        own_redis.start()
        wait_until(lambda: svc.health()[0] == 200, timeout=40, message="/health 200 again")
        client = redis.Redis(port=own_redis.port)
        Bus(client, service="producer").publish(signal_event(1))
        wait_until(lambda: svc.status()["handled"] == 1, message="consuming again")
    finally:
        assert svc.stop() == 0


def test_killed_between_read_and_ack_redelivers_and_takes_effect_once(
    redis_env, redis_client, tmp_path
):
    bus = Bus(redis_client, service="producer")
    bus.publish_many(signal_event(i) for i in range(10))
    svc = probe(redis_env, tmp_path, PROBE_DIE_AFTER="4", READ_BATCH="10")
    svc.start(wait_healthy=False)
    assert svc.proc.wait(timeout=30) == -9, "killed itself mid-batch, before acknowledging"
    assert redis_client.xpending(SIGNALS, "probe")["pending"] == 10, "nothing was acked"
    delivered_before = redis_client.llen("probe:deliveries")
    assert delivered_before == 4
    svc = probe(redis_env, tmp_path).start()
    try:
        wait_until(
            lambda: redis_client.xpending(SIGNALS, "probe")["pending"] == 0,
            message="all entries acked after restart",
        )
        deliveries = [d.decode() for d in redis_client.lrange("probe:deliveries", 0, -1)]
        assert len(deliveries) == 14, "the 4 handled before the kill were delivered again"
        assert len(set(deliveries)) == 10
        assert redis_client.scard("probe:effects") == 10, "each event took effect once"
    finally:
        assert svc.stop() == 0


def test_sigterm_finishes_in_flight_work_and_exits_zero(redis_env, redis_client, tmp_path):
    svc = probe(redis_env, tmp_path).start()
    Bus(redis_client, service="producer").publish_many(signal_event(i) for i in range(50))
    wait_until(lambda: svc.status()["handled"] == 50)
    assert svc.stop(timeout=15) == 0
    assert redis_client.xpending(SIGNALS, "probe")["pending"] == 0
    assert "stopped" in svc.log()


@pytest.mark.parametrize(
    ("var", "value", "line"),
    [
        ("REDIS_PORT", "0", "REDIS_PORT must be >= 1, got 0"),
        ("REDIS_PORT", "abc", "REDIS_PORT must be an integer, got abc"),
        ("READ_BATCH", "-5", "READ_BATCH must be >= 1, got -5"),
        ("LOG_LEVEL", "LOUD", "LOG_LEVEL must match"),
        ("PROBE_DIE_AFTER", "x", "PROBE_DIE_AFTER must be an integer, got x"),
    ],
)
def test_bad_setting_exits_2_with_one_line(redis_env, tmp_path, var, value, line):
    import subprocess

    env = {**redis_env, var: value}
    import os

    result = subprocess.run(
        PROBE, env={**os.environ, **env}, capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert line in lines[0]
    assert lines[0].startswith(f"configuration error: {var} ")


def test_secret_values_never_reach_the_log(own_redis, tmp_path):
    own_redis.stop()
    own_redis.password = "s3cr3t-Redis-pw!"
    own_redis.start()
    svc = probe(own_redis.env(), tmp_path).start()
    try:
        client = redis.Redis(port=own_redis.port, password=own_redis.password)
        Bus(client, service="producer").publish(signal_event(1))
        wait_until(lambda: svc.status()["handled"] == 1)
        status_text = str(svc.status()) + svc.metrics()
    finally:
        svc.stop()
    log = svc.log()
    assert "connecting with password ***" in log, "the careless line was logged, redacted"
    assert own_redis.password not in log
    assert own_redis.password not in status_text

"""Liveness, readiness and outage alerts: the rules alone, then real processes on real servers.

Liveness (``/livez``) must stay 200 while Redis or PostgreSQL is down (the servers are
really stopped) and turn 503 when the process is wedged (a handler blocks forever, a vital
thread dies: the hooks of ``tests/probe_service.py``). Readiness (``/readyz``, ``/health``)
reports the dependency. An outage longer than ``OUTAGE_ALERT_S`` raises one alert.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from pathlib import Path

import redis
from helpers import ServiceProcess, http_get, wait_until

from cdb.bus import ALERTS, Bus
from cdb.db.migrate import migrate
from cdb.events import Signal
from cdb.outages import DependencyWatch
from cdb.probes import READINESS_KEY, OutageTracker, dependency_of, liveness_problems
from cdb.settings import PostgresSettings

PROBE = [sys.executable, str(Path(__file__).with_name("probe_service.py"))]


def probe(env, tmp_path, **extra) -> ServiceProcess:
    return ServiceProcess("probe", {**env, **extra}, tmp_path, args=PROBE)


def command(reason: str, i: int = 1) -> Signal:
    return Signal(
        signal_id=f"hook-{reason}-{i}",
        symbol="ETH_USDT",
        side="BUY",
        confidence=0.5,
        price=10.0,
        pct_change=5.0,
        reason=reason,
    )


def alerts(client: redis.Redis, code: str) -> list[dict]:
    out = []
    for _, fields in client.xrange(ALERTS):
        event = json.loads(fields[b"data"])
        if event["code"] == code:
            out.append(event)
    return out


def watch_liveness(svc: ServiceProcess, seconds: float) -> list[int]:
    """/livez sampled every 0.25 s for ``seconds``: every status seen."""
    seen = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        seen.append(http_get(svc.port, "/livez")[0])
        time.sleep(0.25)
    return seen


# -- the rules ------------------------------------------------------------------------------------


def test_dependency_of_names_the_dependency_of_outage_problems_only():
    assert dependency_of("postgres unreachable: connection refused") == "postgres"
    assert dependency_of("postgres unavailable: OperationalError") == "postgres"
    assert dependency_of("redis unreachable: ConnectionError") == "redis"
    assert dependency_of("exchange unavailable: RequestTimeout") == "exchange"
    assert dependency_of("database schema missing; run `cdb db migrate`") == "postgres"
    assert dependency_of("fail-closed: 1 order(s) in state UNKNOWN (c1)") is None
    assert dependency_of("standby: another execution copy holds the lock (x)") is None


def test_liveness_looks_at_the_loop_and_the_threads_only():
    alive = threading.Thread(target=time.sleep, args=(5,), daemon=True)
    alive.start()
    dead = threading.Thread(target=lambda: None, name="worker")
    dead.start()
    dead.join()
    assert liveness_problems(100.0, 90.0, 60.0, [alive]) == []
    assert liveness_problems(100.0, 30.0, 60.0) == ["main loop has not ticked for 70s (bound 60s)"]
    assert liveness_problems(100.0, 99.0, 60.0, [alive, dead]) == ["thread worker died"]


def test_outage_tracker_alerts_only_past_the_threshold_and_the_bus_only_when_back():
    tracker = OutageTracker(threshold_s=60)
    assert tracker.observe({"postgres": "refused"}, 0, 1000) == []
    assert tracker.observe({}, 30, 1030) == [], "a short outage raises nothing"
    assert tracker.observe({"postgres": "refused", "redis": "refused"}, 100, 1100) == []
    ongoing = tracker.observe({"postgres": "refused", "redis": "refused"}, 161, 1161)
    assert [(n.dependency, n.kind, n.length_s) for n in ongoing] == [("postgres", "ongoing", 61)]
    assert tracker.observe({"postgres": "refused", "redis": "x"}, 200, 1200) == [], "raised once"
    over = tracker.observe({}, 250, 1250)
    assert sorted((n.dependency, n.kind, n.length_s) for n in over) == [
        ("postgres", "over", 150),
        ("redis", "over", 150),
    ]
    assert {n.started_at for n in over} == {1100} and {n.ended_at for n in over} == {1250}
    assert tracker.observe({}, 300, 1300) == []


def test_one_alert_per_outage_however_many_services_saw_it(redis_client):
    watches = [
        DependencyWatch(Bus(redis_client, service=name), name, threshold_s=0.2)
        for name in ("signal", "risk", "execution")
    ]
    for watch in watches:
        watch.observe({"redis": "ConnectionError"})
    time.sleep(0.3)
    for watch in watches:
        watch.observe({})
    (alert,) = alerts(redis_client, "DEPENDENCY_RECOVERED")
    assert alert["level"] == "WARNING"
    assert alert["context"]["dependency"] == "redis" and alert["context"]["outage_s"] >= 0
    assert "redis was unreachable for" in alert["message"]


# -- real processes, real outages -----------------------------------------------------------------


def test_liveness_stays_200_while_redis_is_down_and_an_alert_follows_the_outage(
    own_redis, tmp_path
):
    svc = probe(
        own_redis.env(),
        tmp_path,
        LIVENESS_TIMEOUT_S="5",  # as short as allowed: a loop that stalled would show
        HEALTH_INTERVAL_S="0.5",
        OUTAGE_ALERT_S="2",
    ).start()
    try:
        assert http_get(svc.port, "/livez") == (
            200,
            {"status": "ok", "service": "probe", "version": svc.health()[1]["version"]},
        )
        own_redis.stop()
        wait_until(lambda: http_get(svc.port, "/readyz")[0] == 503, message="NotReady")
        status, body = http_get(svc.port, "/readyz")
        assert any("redis unreachable" in p for p in body["problems"]), body
        assert svc.health() == (status, body), "/health keeps its meaning: readiness"
        seen = watch_liveness(svc, 8)  # longer than LIVENESS_TIMEOUT_S
        assert set(seen) == {200}, seen
        own_redis.start()
        back = time.monotonic()
        wait_until(lambda: http_get(svc.port, "/readyz")[0] == 200, timeout=15)
        assert time.monotonic() - back < 10, "ready within 10 s of Redis' return"
        client = redis.Redis(port=own_redis.port)
        wait_until(lambda: alerts(client, "DEPENDENCY_RECOVERED"), message="the outage alert")
        (alert,) = alerts(client, "DEPENDENCY_RECOVERED")
        assert alert["context"]["dependency"] == "redis"
        assert alert["context"]["outage_s"] >= 8, alert
        assert alert["source"] == "probe" and alert["level"] == "WARNING"
        Bus(client, service="producer").publish(command("after"))
        wait_until(lambda: svc.status()["handled"] == 1, message="consuming again")
        assert svc.proc.poll() is None
    finally:
        assert svc.stop() == 0


def test_liveness_stays_200_while_postgres_is_down_readiness_names_it(
    redis_env, redis_client, own_postgres, tmp_path
):
    own_postgres.create_database("probes")
    pg_env = own_postgres.env("probes")
    migrate(PostgresSettings(**pg_env))
    env = {**redis_env, **pg_env, "HEALTH_INTERVAL_S": "0.5", "OUTAGE_ALERT_S": "2"}
    svc = ServiceProcess("persistence", {**env, "LIVENESS_TIMEOUT_S": "5"}, tmp_path).start()
    try:
        own_postgres.stop()
        # the writer notices when it next writes: give it something to write
        Bus(redis_client, service="producer").publish(command("while-down"))
        wait_until(lambda: http_get(svc.port, "/readyz")[0] == 503, message="NotReady")
        problems = http_get(svc.port, "/readyz")[1]["problems"]
        assert any("postgres unreachable" in p for p in problems), problems
        assert set(watch_liveness(svc, 7)) == {200}
        # Redis is up: the alert goes out while the outage lasts, and the operator can read
        # which dependency the service waits for.
        (down,) = wait_until(lambda: alerts(redis_client, "DEPENDENCY_DOWN"))
        assert down["context"]["dependency"] == "postgres" and down["source"] == "persistence"
        report = json.loads(redis_client.hget(READINESS_KEY, "persistence"))
        assert report["ready"] is False and report["dependencies"] == ["postgres"]
        own_postgres.start()
        back = time.monotonic()
        wait_until(lambda: http_get(svc.port, "/readyz")[0] == 200, timeout=15)
        assert time.monotonic() - back < 10, "ready within 10 s of PostgreSQL's return"
        (over,) = wait_until(lambda: alerts(redis_client, "DEPENDENCY_RECOVERED"))
        assert over["context"]["dependency"] == "postgres" and over["level"] == "INFO"
        assert svc.proc.poll() is None, "never restarted"
    finally:
        assert svc.stop() == 0


def test_liveness_fails_when_the_loop_is_frozen(redis_env, redis_client, tmp_path):
    svc = probe(redis_env, tmp_path, LIVENESS_TIMEOUT_S="5").start()
    try:
        assert http_get(svc.port, "/livez")[0] == 200
        frozen_at = time.monotonic()
        Bus(redis_client, service="producer").publish(command("freeze"))
        wait_until(lambda: http_get(svc.port, "/livez")[0] == 503, timeout=20, message="/livez 503")
        # the last tick came before the blocking read that picked the command up (≤ 1 s)
        assert time.monotonic() - frozen_at >= 5 - 1.5, "not before the bound"
        problems = http_get(svc.port, "/livez")[1]["problems"]
        assert problems[0].startswith("main loop has not ticked for"), problems
        assert http_get(svc.port, "/readyz")[0] == 503
    finally:
        svc.kill()  # a wedged loop does not answer SIGTERM: that is what the restart is for


def test_liveness_fails_when_a_vital_thread_dies(redis_env, redis_client, tmp_path):
    svc = probe(redis_env, tmp_path).start()
    try:
        Bus(redis_client, service="producer").publish(command("stop-worker"))
        wait_until(lambda: http_get(svc.port, "/livez")[0] == 503, message="/livez 503")
        assert http_get(svc.port, "/livez")[1]["problems"] == ["thread probe-worker died"]
    finally:
        assert svc.stop() == 0


def test_a_slow_setup_is_bounded_by_the_startup_timeout_not_the_liveness_one(redis_env, tmp_path):
    svc = probe(
        redis_env, tmp_path, PROBE_SETUP_S="8", LIVENESS_TIMEOUT_S="5", STARTUP_TIMEOUT_S="60"
    ).start(wait_healthy=False)
    try:
        wait_until(lambda: http_get(svc.port, "/livez")[0] == 200, message="HTTP up")
        status, body = http_get(svc.port, "/readyz")
        assert status == 503 and "state is connecting" in body["problems"], body
        assert set(watch_liveness(svc, 6.5)) == {200}, "longer than LIVENESS_TIMEOUT_S"
        wait_until(lambda: http_get(svc.port, "/readyz")[0] == 200, message="ready after setup")
    finally:
        assert svc.stop() == 0


def test_slow_readiness_checks_never_hold_up_liveness(redis_env, tmp_path):
    """Probes pile up when a dependency answers slowly; /livez must still answer at once."""
    from concurrent.futures import ThreadPoolExecutor

    svc = probe(redis_env, tmp_path, PROBE_SLOW_HEALTH_S="6").start(wait_healthy=False)
    try:
        wait_until(lambda: http_get(svc.port, "/livez")[0] == 200, message="HTTP up")
        with ThreadPoolExecutor(8) as pool:
            slow = [pool.submit(http_get, svc.port, "/readyz", 10) for _ in range(8)]
            time.sleep(0.5)  # every waitress thread would now be busy, without the guard
            started = time.monotonic()
            assert http_get(svc.port, "/livez", timeout=3)[0] == 200
            assert time.monotonic() - started < 2
            answers = [f.result() for f in slow]
        busy = [a for a in answers if a[0] == 503 and "still running" in a[1]["problems"][0]]
        assert len(busy) >= 6, answers  # all but the one that ran (and one per HTTP thread)
    finally:
        assert svc.stop() == 0

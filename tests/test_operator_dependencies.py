"""The operator names the dependency a running bot waits for: Degraded / DependencyUnavailable.

The services' side of the contract (``cdb.outages.DependencyWatch.report``) writes the
reports into a real Redis; the operator's side reads them back, or finds Redis stopped.
"""

from __future__ import annotations

import time

from cdb.bus import Bus
from cdb.outages import DependencyWatch
from cdb_operator import conditions, dependencies
from cdb_operator.breaker import RedisAddress
from cdb_operator.conditions import Cond

RUNNING = [{"type": "Ready", "status": "True", "reason": "AllComponentsReady"}]
CREATING = [{"type": "Ready", "status": "False", "reason": "ComponentsNotReady"}]


def components(not_ready: set[str]) -> dict[str, dict]:
    names = ["redis", "postgres", "feed", "signal", "risk", "execution", "persistence", "notifier"]
    return {n: {"ready": n not in not_ready} for n in names}


def base(comps: dict[str, dict]) -> list[Cond]:
    return conditions.component_conditions(comps, None)


def by_type(conds: list[Cond]) -> dict[str, Cond]:
    return {c.type: c for c in conds}


def test_postgres_outage_names_postgres_and_the_services_waiting():
    comps = components({"persistence", "risk"})
    now = time.time()
    reports = {
        "persistence": {"ready": False, "dependencies": ["postgres"], "at": now},
        "risk": {"ready": False, "dependencies": ["postgres"], "at": now},
        "feed": {"ready": True, "dependencies": [], "at": now},
    }
    down = dependencies.waiting_for(comps, reports, None, now)
    assert down == {"postgres": ["persistence", "risk"]}
    conds = by_type(dependencies.conditions(base(comps), down))
    assert (
        conds["Degraded"].status == "True" and conds["Degraded"].reason == "DependencyUnavailable"
    )
    assert conds["Degraded"].message.startswith("postgres unavailable; waiting: persistence, risk")
    assert conds["Progressing"].status == "False"
    assert conds["Ready"].status == "False"
    assert conditions.phase(list(conds.values())) == "Degraded"


def test_redis_unreachable_means_every_notready_service_waits_for_it():
    comps = components({"feed", "signal", "risk", "execution", "persistence", "notifier"})
    down = dependencies.waiting_for(comps, {}, "TimeoutError", time.time())
    assert down == {"redis": ["execution", "feed", "notifier", "persistence", "risk", "signal"]}
    message = by_type(dependencies.conditions(base(comps), down, "TimeoutError"))[
        "Degraded"
    ].message
    assert "redis unavailable (the operator cannot reach it: TimeoutError)" in message


def test_stale_reports_and_own_problems_name_no_dependency():
    comps = components({"execution"})
    old = time.time() - 600
    reports = {"execution": {"ready": False, "dependencies": ["exchange"], "at": old}}
    assert dependencies.waiting_for(comps, reports, None, time.time()) == {}
    fresh = {"execution": {"ready": False, "dependencies": [], "at": time.time()}}  # fail-closed
    down = dependencies.waiting_for(comps, fresh, None, time.time())
    assert dependencies.conditions(base(comps), down) == base(comps)


def test_a_bot_being_created_is_progressing_not_degraded(redis_env):
    comps = components({"redis", "feed"})
    address = RedisAddress("127.0.0.1", 1)  # nothing listens: would read as an outage
    assert dependencies.observe(base(comps), comps, address, CREATING) == base(comps)
    assert dependencies.observe(base(comps), comps, address, None) == base(comps)
    after = by_type(dependencies.observe(base(comps), comps, address, RUNNING))
    assert after["Degraded"].reason == "DependencyUnavailable"


def test_reads_what_the_services_report_from_a_real_redis(redis_env, redis_client):
    watch = DependencyWatch(Bus(redis_client, service="persistence"), "persistence", 60)
    watch.report(False, ["postgres unreachable: connection refused"], ["postgres"])
    address = RedisAddress("127.0.0.1", int(redis_env["REDIS_PORT"]))
    reports, error = dependencies.read_reports(address)
    assert error is None and reports["persistence"]["dependencies"] == ["postgres"]
    comps = components({"persistence"})
    conds = by_type(dependencies.observe(base(comps), comps, address, RUNNING))
    assert conds["Degraded"].message.startswith("postgres unavailable; waiting: persistence")
    comps = components(set())  # back: all Ready, nothing read, nothing degraded
    assert dependencies.observe(base(comps), comps, address, RUNNING) == base(comps)


def test_a_stopped_redis_is_reported_by_the_operator_itself(own_redis):
    address = RedisAddress("127.0.0.1", own_redis.port)
    own_redis.stop()
    reports, error = dependencies.read_reports(address, timeout=1)
    assert reports == {} and error == "ConnectionError"

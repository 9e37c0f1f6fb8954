"""The breaker's pure planning and conditions, and its Redis link against a real Redis."""

from __future__ import annotations

import redis as redislib

from cdb.bus import BREAKER_KEY, CONTROL, REFUSED_KEY
from cdb.events import parse_event
from cdb_operator import breaker, conditions
from cdb_operator.breaker import Observed, RedisAddress, plan
from cdb_operator.model import CircuitBreaker

UID = "uid-1"


def engaged(on: bool, reason: str = "") -> CircuitBreaker:
    return CircuitBreaker(engaged=on, reason=reason)


def test_nothing_is_sent_while_nothing_was_asked() -> None:
    send, status = plan(UID, 1, engaged(False), {}, None, 100.0, 30.0)
    assert send is None and status["state"] == "Unknown"
    cond = breaker.condition(status)
    assert (cond.status, cond.reason) == ("Unknown", "NotReported")
    send, status = plan(UID, 1, engaged(False), {}, Observed(engaged=False), 100.0, 30.0)
    assert send is None and breaker.condition(status).reason == "Released"


def test_an_engage_request_is_pending_until_its_control_id_is_confirmed() -> None:
    send, status = plan(UID, 2, engaged(True, "manual"), {}, None, 100.0, 30.0)
    assert send is not None and send.action == "engage_breaker" and send.reason == "manual"
    status = breaker.after_send(status, True, "", 100.0)
    assert status["state"] == "Pending" and status["delivered"] and status["sentAt"] == 100
    cond = breaker.condition(status)
    assert (cond.status, cond.reason) == ("Unknown", "DeliveryPending")
    # a retry of the same request computes the same id (racing reconciles agree)
    again, _ = plan(UID, 2, engaged(True, "manual"), {}, None, 100.0, 30.0)
    assert again.control_id == send.control_id
    # not due yet: nothing resent; someone else's confirmation does not count
    other = Observed(engaged=True, manual=True, control_id="someone-else")
    resend, status = plan(UID, 2, engaged(True, "manual"), status, other, 110.0, 30.0)
    assert resend is None and breaker.condition(status).reason == "DeliveryPending"
    # due: resent with the same id
    resend, _ = plan(UID, 2, engaged(True, "manual"), status, None, 131.0, 30.0)
    assert resend is not None and resend.control_id == send.control_id
    ours = Observed(engaged=True, manual=True, reason="manual", control_id=send.control_id)
    resend, status = plan(UID, 2, engaged(True, "manual"), status, ours, 140.0, 30.0)
    assert resend is None and status["confirmed"] and status["state"] == "Engaged"
    cond = breaker.condition(status)
    assert (cond.status, cond.reason) == ("True", "ManualHalt")
    assert status["engagedBy"] == ["manual"]


def test_an_undelivered_request_is_resent_at_once() -> None:
    send, status = plan(UID, 1, engaged(True), {}, None, 100.0, 30.0)
    status = breaker.after_send(status, False, "connection refused", 100.0)
    assert status["error"] == "connection refused" and not status["delivered"]
    assert "not yet delivered" in breaker.condition(status).message
    again, _ = plan(UID, 1, engaged(True), status, None, 100.5, 30.0)
    assert again is not None and again.control_id == send.control_id


def test_release_keeps_a_drawdown_trip_and_says_so() -> None:
    _, status = plan(UID, 1, engaged(True), {}, None, 100.0, 30.0)
    first = status["controlId"]
    status = {**status, "confirmed": True}
    send, status = plan(UID, 2, engaged(False, "all clear"), status, None, 200.0, 30.0)
    assert send.action == "release_breaker" and send.control_id != first
    tripped = Observed(engaged=True, drawdown=True, reason="daily loss", control_id=send.control_id)
    _, status = plan(UID, 2, engaged(False, "all clear"), status, tripped, 201.0, 30.0)
    cond = breaker.condition(status)
    assert (cond.status, cond.reason) == ("True", "DrawdownTrip")
    assert "next UTC day" in cond.message and status["engagedBy"] == ["risk-manager"]


def test_a_halted_spec_reasserts_when_someone_else_released() -> None:
    send, status = plan(UID, 1, engaged(True), {}, None, 100.0, 30.0)
    ours = Observed(engaged=True, manual=True, control_id=send.control_id)
    _, status = plan(
        UID, 1, engaged(True), breaker.after_send(status, True, "", 100), ours, 101, 30
    )
    released = Observed(engaged=False, control_id="dashboard-1")
    again, status = plan(UID, 1, engaged(True), status, released, 102.0, 30.0)
    assert again is not None and again.action == "engage_breaker"
    assert again.control_id != send.control_id and status["state"] == "Pending"


def test_self_trip_and_kill_switch_reasons() -> None:
    _, status = plan(UID, 1, engaged(False), {}, Observed(engaged=True, drawdown=True), 1.0, 30.0)
    assert breaker.condition(status).reason == "DrawdownTrip"
    killed = Observed(engaged=True, kill_switch=True, manual=True)
    _, status = plan(UID, 1, engaged(False), {}, killed, 1.0, 30.0)
    assert breaker.condition(status).reason == "KillSwitch"
    assert status["engagedBy"] == ["manual", "kill-switch"]


def test_parse_hash_of_the_risk_managers_fields() -> None:
    raw = {
        b"engaged": b"1",
        b"manual": b"0",
        b"drawdown": b"1",
        b"kill_switch": b"0",
        b"reason": b"loss",
        b"control_id": b"c1",
        b"updated_at": b"1700000000",
    }
    assert breaker.parse_hash(raw) == Observed(True, False, True, False, "loss", "c1", 1700000000)
    assert breaker.parse_hash({}) is None


def test_link_sends_a_durable_control_and_reads_the_hash(redis_env: dict[str, str]) -> None:
    port = int(redis_env["REDIS_PORT"])
    link = breaker.BreakerLink(RedisAddress("127.0.0.1", port))
    client = redislib.Redis(port=port)
    try:
        assert link.read() is None
        link.send(breaker.Send("engage_breaker", "manual", "cid-1"))
        ((_, fields),) = client.xrange(CONTROL)
        event = parse_event(fields[b"data"])
        assert (event.action, event.control_id, event.source) == (
            "engage_breaker",
            "cid-1",
            "operator",
        )
        client.hset(BREAKER_KEY, mapping={"engaged": "1", "manual": "1", "control_id": "cid-1"})
        assert link.read() == Observed(engaged=True, manual=True, control_id="cid-1")
        # execution's count of orders the breaker or kill switch refused (REFUSED_KEY)
        client.hset(
            REFUSED_KEY,
            mapping={"count": "2", "client_id": "ab12", "side": "BUY", "symbol": "BTC_USDT",
                     "reason": "kill switch engaged (x): no orders of any kind"},
        )  # fmt: skip
        observed = link.read()
        assert observed.refused_orders == 2
        assert (
            observed.last_refused
            == "ab12 BUY BTC_USDT: kill switch engaged (x): no orders of any kind"
        )
        status = breaker.with_observed({}, observed)
        assert (status["refusedOrders"], status["lastRefused"]) == (2, observed.last_refused)
    finally:
        link.close()
        client.close()


def test_link_reports_an_unreachable_redis() -> None:
    from cdb.localservers import free_port

    link = breaker.BreakerLink(RedisAddress("127.0.0.1", free_port()), timeout=1)
    try:
        for call in (link.read, lambda: link.send(breaker.Send("engage_breaker", "", "x"))):
            try:
                call()
            except breaker.BreakerUnreachable as exc:
                assert "Connection" in str(exc) or "connect" in str(exc)
            else:
                raise AssertionError("no error from an unreachable Redis")
    finally:
        link.close()


def test_conditions_keep_transition_times_and_name_the_phase() -> None:
    comps = {"redis": {"ready": True}, "risk": {"ready": False}}
    first = conditions.component_conditions(comps, None)
    merged = conditions.merge(None, first, 1000.0, 3)
    assert {c["type"]: c["status"] for c in merged} == {
        "Ready": "False",
        "Progressing": "True",
        "Degraded": "False",
    }
    assert all(c["observedGeneration"] == 3 and c["lastTransitionTime"] for c in merged)
    again = conditions.merge(merged, conditions.component_conditions(comps, None), 2000.0, 4)
    assert [c["lastTransitionTime"] for c in again] == [c["lastTransitionTime"] for c in merged]
    ready = conditions.component_conditions({"redis": {"ready": True}}, None)
    changed = conditions.merge(merged, ready, 3000.0, 4)
    assert changed[0]["lastTransitionTime"] != merged[0]["lastTransitionTime"]
    assert [c.type for c in conditions.transitions(merged, ready)] == ["Ready", "Progressing"]
    halted = [*ready, conditions.Cond("CircuitBreakerEngaged", "True", "ManualHalt")]
    assert conditions.phase(halted) == "Halted" and conditions.phase(ready) == "Running"
    failed = conditions.component_conditions({}, "boom", "ApiError")
    assert conditions.phase(failed) == "Failed"

"""What the operator observes in each bot's Redis, and how fast: breaker, errors, market data.

The operator runs in-process against kmock with the fallback poll set to minutes, so
whatever happens within seconds here is driven by events: the spec change (kopf's watch)
and the risk manager's confirmation on the bot's ``control`` stream. The risk manager's
side is played with its own code: ``cdb.risk.breaker.Breaker`` applies the control and
yields the hash fields and the ``BreakerState`` event it publishes.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
import redis
from test_operator_handlers import declare, eventually, running_operator

from cdb.bus import BREAKER_KEY, Bus
from cdb.events import MarketData, MarketStatus
from cdb.risk.breaker import Breaker, utc_day
from cdb_operator.handlers import Options

#: Polls and resyncs far beyond the test's timeouts: only events can move status.
EVENTS_ONLY = Options(resync_seconds=600.0, breaker_poll_seconds=600.0, debounce_seconds=0.1)
BREAKER = "CircuitBreakerEngaged"


def risk_manager_applies(client: redis.Redis, control: Any) -> None:
    """What the risk manager does with a control: new state in the hash, then its event."""
    now = int(time.time())
    day = utc_day(now)
    state = Breaker().apply_control(control.action, control.reason, control.control_id, now, day)
    client.hset(BREAKER_KEY, mapping=state.redis_fields(day))
    Bus(client, service="risk", consumer="risk").publish(state.event(day))


def requests(c: Any) -> list[Any]:
    """The operator's controls on the stream (the risk manager's confirmations left out)."""
    return [e for e in c.controls() if e.type == "control"]


@pytest.mark.asyncio
async def test_confirmation_reaches_status_without_any_poll(kmock: Any, redis_env: dict) -> None:
    declare(kmock)
    port = int(redis_env["REDIS_PORT"])
    async with running_operator(kmock, port, options=EVENTS_ONLY) as c:
        await c.create_bot({})
        await eventually(lambda: c.condition(BREAKER), what="first status")
        for round_, engaged in enumerate((True, False, True), start=1):
            await c.patch_spec({"circuitBreaker": {"engaged": engaged, "reason": f"r{round_}"}})
            controls = await eventually(
                lambda n=round_: len(requests(c)) >= n and requests(c), what="the control"
            )
            await eventually(lambda: c.status()["breaker"].get("state") == "Pending")
            started = time.monotonic()
            risk_manager_applies(c.redis, controls[-1])
            await eventually(
                lambda cid=controls[-1].control_id: (
                    c.status()["breaker"].get("confirmed")
                    and c.status()["breaker"].get("controlId") == cid
                ),
                timeout=10,
                what="the confirmation in status",
            )
            took = time.monotonic() - started
            print(f"confirmation → status: {took * 1000:.0f} ms")
            # a breaker-only change is applied without a pass over the children, and still
            # advances observedGeneration (no child is rendered from the breaker)
            await eventually(
                lambda: c.status().get("observedGeneration") == c.bot()["metadata"]["generation"],
                what="observedGeneration",
            )
            want = "True" if engaged else "False"
            assert c.condition(BREAKER)["status"] == want
            assert c.status()["breaker"]["observedAt"] >= int(time.time()) - 30


@pytest.mark.asyncio
async def test_a_breaker_error_clears_when_redis_answers_again(kmock: Any, own_redis: Any) -> None:
    """status.breaker.error reflects the last observation, not the first failure."""
    declare(kmock)
    own_redis.stop()
    async with running_operator(kmock, own_redis.port, options=EVENTS_ONLY) as c:
        await c.create_bot({})
        down = await eventually(
            lambda: c.condition(BREAKER).get("reason") == "Unreachable" and c.condition(BREAKER),
            what="the Unreachable condition",
        )
        assert "since" in down["message"] and c.status()["breaker"]["error"]
        failed_at = c.status()["breaker"]["observedAt"]
        own_redis.start()
        # the stream watcher reconnects and observes at once (the poll is 10 minutes away)
        await eventually(
            lambda: c.status()["breaker"].get("error") == "",
            timeout=30,
            what="the error cleared",
        )
        assert c.condition(BREAKER)["reason"] == "NotReported"
        assert c.status()["breaker"]["observedAt"] >= failed_at


@pytest.mark.asyncio
async def test_market_data_condition_follows_the_feed(kmock: Any, redis_env: dict) -> None:
    declare(kmock)
    client = redis.Redis(port=int(redis_env["REDIS_PORT"]))
    bus = Bus(client, service="feed", consumer="feed")
    options = Options(resync_seconds=600.0, breaker_poll_seconds=0.3, debounce_seconds=0.1)
    async with running_operator(kmock, int(redis_env["REDIS_PORT"]), options=options) as c:
        await c.create_bot({"feedSource": "live"})
        none = await eventually(lambda: c.condition("MarketData"), what="MarketData")
        assert (none["status"], none["reason"]) == ("False", "NoData")
        assert "no market data received yet" in none["message"]
        bus.publish(MarketStatus(exchange="mexc", status="ok"))
        bus.publish(MarketData(symbol="BTC_USDT", price=1.0, volume=1.0, pct_change=0.1))
        ok = await eventually(
            lambda: c.condition("MarketData").get("status") == "True" and c.condition("MarketData")
        )
        assert ok["reason"] == "Receiving"
        bus.publish(MarketStatus(exchange="mexc", status="unreachable", reason="no route"))
        gone = await eventually(
            lambda: c.condition("MarketData").get("status") == "False" and c.condition("MarketData")
        )
        assert gone["reason"] == "NoData" and "unreachable: no route" in gone["message"]
    client.close()


def test_market_condition_ages_out_and_has_no_running_clock() -> None:
    from cdb_operator.market import Seen, condition

    now = 1_800_000_000.0
    fresh = condition(Seen(last_data_at=now - 10), now, stale_after=300)
    assert (fresh.status, fresh.reason) == ("True", "Receiving")
    stale = [condition(Seen(last_data_at=now - 400), now + d, 300) for d in (0, 60)]
    assert stale[0] == stale[1] and stale[0].reason == "NoData"  # no write per poll
    unknown = condition(None, now, 300, "cannot read market data: ConnectionError")
    assert (unknown.status, unknown.reason) == ("Unknown", "NotReported")


def test_printer_columns_show_market_data() -> None:
    from cdb_operator import crd

    columns = crd.crd()["spec"]["versions"][0]["additionalPrinterColumns"]
    data = next(col for col in columns if col["name"] == "Data")
    assert "MarketData" in data["jsonPath"] and not data.get("priority")


@pytest.mark.asyncio
async def test_the_observe_loop_survives_its_periodic_passes(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The supervisor task that polls breakers must never die or fail quietly."""
    import asyncio

    from cdb_operator.apply import Kube
    from cdb_operator.breaker import RedisAddress
    from cdb_operator.reconcile import Context
    from cdb_operator.supervisor import Tracker, observe

    ctx = Context(
        kube=Kube.for_url("http://127.0.0.1:1"),
        redis_address=lambda ns, name, pw: RedisAddress("127.0.0.1", 1, None),
    )
    tracker = Tracker()
    tracker.loop = asyncio.get_running_loop()
    options = Options(breaker_poll_seconds=0.05, watch_breakers=False)
    task = asyncio.create_task(observe(ctx, tracker, options))
    await asyncio.sleep(0.5)  # ten periodic passes
    assert not task.done(), task.exception() if task.done() else None
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert "observing the bots failed" not in caplog.text

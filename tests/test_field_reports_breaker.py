"""Field report: the kill switch must stop orders approved before it (docs/reliability.md).

Input: execution stopped; a signal approved (its entry waits on ``orders``); then
``control kill_switch`` confirmed by the risk manager; then execution starts within
ORDER_MAX_AGE_S. Before: the BUY was FILLED, though the docs promise "no orders of any
kind". Now: execution reads the breaker the risk manager persisted before every send
and every resend, refuses with the reason in the order's row and result, and counts it
on /status.
"""

from __future__ import annotations

import os

from helpers import ServiceProcess, wait_until
from test_execution_helpers import migrated, results, run_cdb, sql
from test_execution_live import (
    FILLED,
    LOOKUPS,
    NOT_FOUND,
    TIMEOUT,
    RecordedMexc,
    _env,
    ledger,
    live_order,
    make_executor,
)
from test_risk_service import breaker, events, price, signal, wait_orders, xadd

from cdb.bus import REFUSED_KEY
from cdb.events import Control
from cdb.execution.safety import halt_reason

__all__ = ["ledger"]  # the fixture, imported for the tests below


def test_kill_switch_engaged_while_execution_was_down_stops_the_approved_entry(
    redis_env, pg_env, redis_client, tmp_path
):
    migrated(pg_env)
    r = redis_client
    env = {**redis_env, **pg_env, "HEALTH_INTERVAL_S": "1"}
    risk = ServiceProcess("risk", env, tmp_path).start()
    execution = None
    try:
        price(r, "BTC_USDT", 100.0)
        signal(r, "k1", "BTC_USDT", 0.5, 100.0)
        (entry,) = wait_orders(r, 1)
        xadd(r, Control(action="kill_switch", reason="field report", source="cli"))
        wait_until(lambda: breaker(r).get("kill_switch") == "1", message="kill switch confirmed")
        execution = ServiceProcess(
            "execution", {**env, "TRADING_MODE": "paper", "LOCK_TTL_S": "2"}, tmp_path
        ).start()
        (result,) = wait_until(lambda: results(r, entry.client_id), message="order result")
        assert result.status == "REJECTED"
        assert "kill switch engaged" in result.error
        assert sql(pg_env, "SELECT count(*) FROM trades")[0][0] == 0
        row = sql(
            pg_env, "SELECT status, error FROM orders WHERE client_id = %s", (entry.client_id,)
        )
        assert row[0][0] == "REJECTED" and "field report" in row[0][1]
        status = execution.status()
        assert status["refused_by_breaker"] == 1
        assert status["last_refused"]["client_id"] == entry.client_id
        assert not [a for a in events(r, "order_result") if a.status == "FILLED"]
        # what the operator shows on the TradingBot (status.breaker.refusedOrders/lastRefused)
        refused = {k.decode(): v.decode() for k, v in r.hgetall(REFUSED_KEY).items()}
        assert refused["count"] == "1" and refused["client_id"] == entry.client_id
        assert "kill switch engaged" in refused["reason"]
        # `cdb status` (the README's command) lists the refused order with its status
        shown = run_cdb({**os.environ, **env}, "status", "--data-dir", str(tmp_path / "none"))
        line = next(x for x in shown.stdout.splitlines() if entry.client_id in x)
        assert "REJECTED" in line and "BUY" in line, shown.stdout
    finally:
        for proc in (execution, risk):
            if proc is not None:
                proc.stop()


def test_kill_switch_engaged_during_the_retries_stops_the_resend(ledger):
    """The first create timed out; the lookups prove it absent; meanwhile the kill switch
    was engaged: the resend is not sent, and the order ends REJECTED with the reason."""
    mexc = RecordedMexc(create=[TIMEOUT], query=[NOT_FOUND] * LOOKUPS + [FILLED])
    executor = make_executor(ledger, mexc.venue())
    executor.halt = lambda side: halt_reason(ledger.risk_breaker(), side, 0)

    def engage(*_):
        sql(
            _env(ledger),
            "INSERT INTO service_state (service, key, value) VALUES ('risk', 'breaker', "
            """'{"kill_switch": true, "reason": "operator"}') ON CONFLICT (service, key) DO UPDATE"""
            " SET value = EXCLUDED.value",
        )

    executor.fence = lambda: engage() if mexc.calls.get("create") else None
    result = executor.execute(live_order(), 65000.123)
    assert result.status == "REJECTED" and "not resent: kill switch engaged" in result.error
    assert len(mexc.calls["create"]) == 1

"""Field reports against execution: unknown order states and resends (docs/reliability.md).

The real executor, ledger (real PostgreSQL) and ``CcxtVenue`` on a real ``ccxt.mexc``
whose HTTP session answers as MEXC's spot v3 API does (test_execution_live), including
its awkward parts: the order query lags the order entry ("Order does not exist", -2013,
right after an acknowledged create) and a second create under a used client id is
refused ("Duplicate clientOrderId", -2010).
"""

from __future__ import annotations

import threading

import pytest
from helpers import wait_until
from test_execution_helpers import alerts, migrated, order, publisher, results, sql
from test_execution_live import (
    CREATED,
    EXCHANGE_INFO,
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

from cdb.bus import Bus
from cdb.execution.reconcile import reconcile
from cdb.execution.service import ExecutionService
from cdb.execution.settings import ExecutionSettings
from cdb.runtime import Runtime
from cdb.settings import load_settings

__all__ = ["ledger"]  # the fixture, imported for the tests below

#: What ccxt parses into {"id": "1", "clientOrderId": CID, "status": None, "filled": None}.
ACKNOWLEDGED = {"symbol": "BTCUSDT", "orderId": "1", "orderListId": -1}
DUPLICATE = (400, {"msg": "Duplicate clientOrderId", "code": -2010})


def _trades(ledger) -> int:
    return sql(_env(ledger), "SELECT count(*) FROM trades")[0][0]


def _status(ledger, client_id: str = "cid-1") -> str:
    return sql(_env(ledger), "SELECT status FROM orders WHERE client_id = %s", (client_id,))[0][0]


def test_acknowledged_order_not_found_becomes_unknown_not_error(ledger):
    """Input 1. Before: one -2013 lookup stored the order as final ERROR, nothing booked,
    while the exchange held the coins. Now: bounded lookups, then UNKNOWN, a CRITICAL
    alert, no new order sent until the exchange reports it, then it is settled."""
    mexc = RecordedMexc(create=[ACKNOWLEDGED], query=[NOT_FOUND])
    raised: list = []
    executor = make_executor(ledger, mexc.venue(), raised)
    assert executor.execute(live_order(), 65000.123) is None
    assert _status(ledger) == "UNKNOWN"
    assert len(mexc.calls["create"]) == 1
    assert len(mexc.calls["query"]) == 1 + LOOKUPS  # the create's own, then the series
    assert [(lvl, code) for lvl, code, *_ in raised] == [("CRITICAL", "ORDER_UNKNOWN")]
    assert raised[0][3]["symbol"] == "BTC_USDT"
    assert executor.problems.fail_closed

    # fail closed: a new entry (this symbol or any other: its cash may be spent) and any
    # order for the symbol are refused without a request; the UNKNOWN order's
    # redelivery is never sent again
    refused = executor.execute(live_order("cid-2"), 65000.123)
    assert refused.status == "REJECTED" and "UNKNOWN" in refused.error
    sell = executor.execute(order("cid-3", "SELL", 0.01, price=65000.0), 65000.0)
    assert sell.status == "REJECTED" and "UNKNOWN" in sell.error
    assert executor.execute(live_order(), 65000.123) is None
    assert len(mexc.calls["create"]) == 1

    # the exchange catches up: the periodic re-check settles it and books the fill
    mexc.scripts["query"] = [{**FILLED, "orderId": "1"}]
    (settled,) = executor.refresh_unknown(look_up=True)
    assert (settled.client_id, settled.status) == ("cid-1", "FILLED")
    assert _trades(ledger) == 1
    assert not executor.problems.fail_closed
    assert [code for _, code, *_ in raised][-1] == "ORDER_SETTLED"
    assert executor.execute(live_order(), 65000.123).status == "FILLED"  # redelivery: stored
    assert len(mexc.calls["create"]) == 1


def test_acknowledged_order_is_never_resent_after_an_outage_during_its_lookups(ledger):
    down = (503, "<html>503 Service Temporarily Unavailable</html>")
    mexc = RecordedMexc(create=[ACKNOWLEDGED, CREATED], query=[NOT_FOUND, down, NOT_FOUND])
    assert make_executor(ledger, mexc.venue()).execute(live_order(), 65000.123) is None
    assert _status(ledger) == "UNKNOWN"
    assert len(mexc.calls["create"]) == 1


def test_query_lag_shorter_than_the_lookups_finds_the_fill(ledger):
    mexc = RecordedMexc(create=[ACKNOWLEDGED], query=[NOT_FOUND, NOT_FOUND, FILLED])
    result = make_executor(ledger, mexc.venue()).execute(live_order(), 65000.123)
    assert result.status == "FILLED" and _trades(ledger) == 1
    assert len(mexc.calls["create"]) == 1


def test_resend_answered_duplicate_client_id_is_looked_up(ledger):
    """Input 2. create times out (placed in fact); one lookup says -2013; the resend is
    answered -2010. Before: ERROR, 0 filled. Now: the lookups find the fill; no resend."""
    mexc = RecordedMexc(create=[TIMEOUT, DUPLICATE], query=[NOT_FOUND, FILLED])
    result = make_executor(ledger, mexc.venue()).execute(live_order(), 65000.123)
    assert result.status == "FILLED"
    assert result.filled_quantity == pytest.approx(0.0123)
    assert len(mexc.calls["create"]) == 1
    assert _trades(ledger) == 1


def test_venue_accepting_the_resend_never_sees_a_second_create(ledger):
    """Input 2, other venue. Before: two creates for one client id, one fill booked."""
    mexc = RecordedMexc(create=[TIMEOUT, CREATED], query=[NOT_FOUND, FILLED])
    result = make_executor(ledger, mexc.venue()).execute(live_order(), 65000.123)
    assert result.status == "FILLED"
    assert len(mexc.calls["create"]) == 1


def test_duplicate_answer_after_proven_absence_is_looked_up_not_failed(ledger):
    mexc = RecordedMexc(
        create=[TIMEOUT, DUPLICATE], query=[NOT_FOUND] * LOOKUPS + [NOT_FOUND, FILLED]
    )
    result = make_executor(ledger, mexc.venue()).execute(live_order(), 65000.123)
    assert result.status == "FILLED" and _trades(ledger) == 1


def test_duplicate_never_reported_is_unknown(ledger):
    mexc = RecordedMexc(create=[DUPLICATE], query=[NOT_FOUND])
    raised: list = []
    assert make_executor(ledger, mexc.venue(), raised).execute(live_order(), 65000.1) is None
    assert _status(ledger) == "UNKNOWN"
    assert "Duplicate clientOrderId" in sql(_env(ledger), "SELECT error FROM orders")[0][0]
    assert [code for _, code, *_ in raised] == ["ORDER_UNKNOWN"]


def test_start_up_reconciliation_finds_orders_and_balances_the_book_does_not_know(ledger):
    """Input 2, start-up. Before: only positions the book has were checked."""
    sql(
        _env(ledger),
        "INSERT INTO positions (symbol, quantity, avg_price, updated_ts, mode) "
        "VALUES ('BTC_USDT', 0.0123, 65000, 1, 'live')",
    )
    foreign = {**FILLED, "clientOrderId": "web-123", "status": "NEW", "executedQty": "0"}
    account = {
        "balances": [
            {"asset": "USDT", "free": "512.5", "locked": "0"},
            {"asset": "BTC", "free": "0.0123", "locked": "0"},
            {"asset": "ETH", "free": "2", "locked": "0"},
        ]
    }
    mexc = RecordedMexc(open_orders=[[foreign]], account=[account])
    raised: list = []
    executor = make_executor(ledger, mexc.venue(), raised)
    reconcile(executor)
    assert mexc.calls["open_orders"][0]["symbol"] == ["BTCUSDT"]
    assert executor.problems.fail_closed
    assert "web-123" in executor.problems.mismatches[0]
    assert executor.problems.findings == ["the account holds 2 ETH, the book has no position in it"]
    assert sorted((code, level) for level, code, *_ in raised) == [
        ("POSITION_MISMATCH", "CRITICAL"),
        ("UNTRACKED_BALANCE", "WARNING"),
    ]
    refused = executor.execute(live_order("cid-9"), 65000.123)
    assert refused.status == "REJECTED" and "web-123" in refused.error


def test_execution_service_loop_fails_closed_on_the_lagging_order_then_settles_it(
    redis_env, pg_env, redis_client, clean_env, monkeypatch
):
    """Input 1 through the service's real loop (runtime, bus, ledger, reconciliation), the
    exchange scripted in-process: ORDER_UNKNOWN on the alerts stream, the order listed on
    /status, the next order refused, then the periodic re-check settles it and publishes
    its result."""
    env = {
        **redis_env,
        **pg_env,
        "TRADING_MODE": "live",
        "MEXC_API_KEY": "mx0-test-key",
        "MEXC_API_SECRET": "test-secret-value",
        "ORDER_LOOKUPS": "3",
        "ORDER_LOOKUP_BACKOFF_S": "0.01",
        "UNKNOWN_RECHECK_S": "0.3",
        "HTTP_PORT": "0",
        "CDB_CONSUMER_NAME": "execution-field",
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    migrated(pg_env)
    mexc = RecordedMexc(create=[ACKNOWLEDGED], query=[NOT_FOUND])
    service = ExecutionService(
        load_settings(ExecutionSettings), Bus(redis_client, service="execution")
    )
    service.venue = service.executor.venue = mexc.venue()  # the scripted exchange, no network
    runtime = Runtime(service)
    thread = threading.Thread(target=runtime.run, daemon=True)
    thread.start()
    try:
        wait_until(lambda: service.active, message="execution active")
        bus = publisher(redis_client)
        bus.publish(live_order())
        wait_until(
            lambda: [a for a in alerts(redis_client) if a["code"] == "ORDER_UNKNOWN"],
            message="ORDER_UNKNOWN alert",
        )
        assert service.status()["unknown_orders"] == ["cid-1"]
        assert service.status()["fail_closed"] is True
        assert results(redis_client, "cid-1") == []
        bus.publish(live_order("cid-2"))
        (refused,) = wait_until(lambda: results(redis_client, "cid-2"), message="cid-2 result")
        assert refused.status == "REJECTED" and "UNKNOWN" in refused.error
        assert len(mexc.calls["create"]) == 1

        mexc.scripts["query"] = [{**FILLED, "orderId": "1"}]  # the exchange catches up
        (settled,) = wait_until(lambda: results(redis_client, "cid-1"), message="settled")
        assert settled.status == "FILLED" and settled.filled_quantity == pytest.approx(0.0123)
        wait_until(lambda: not service.status()["fail_closed"], message="open again")
        assert len(mexc.calls["create"]) == 1
    finally:
        runtime.request_stop()
        thread.join(timeout=20)


def test_an_unknown_order_still_lets_other_positions_close(ledger):
    """Fail-closed blocks entries and the unknown order's symbol, not the stop losses of
    other positions: a closing order for ETH still goes out."""
    eth = {
        **EXCHANGE_INFO["symbols"][0],
        "symbol": "ETHUSDT",
        "baseAsset": "ETH",
    }
    markets = {**EXCHANGE_INFO, "symbols": [*EXCHANGE_INFO["symbols"], eth]}

    def by_id(params):
        if params["origClientOrderId"] == ["cid-eth"]:
            return {**FILLED, "symbol": "ETHUSDT", "clientOrderId": "cid-eth", "side": "SELL"}
        return NOT_FOUND

    mexc = RecordedMexc(markets=[markets], create=[ACKNOWLEDGED, CREATED], query=[by_id])
    executor = make_executor(ledger, mexc.venue())
    assert executor.execute(live_order(), 65000.123) is None  # BTC: UNKNOWN
    closing = order("cid-eth", "SELL", 0.0123, price=65000.0, symbol="ETH_USDT")
    assert executor.execute(closing, 65000.0).status == "FILLED"
    assert len(mexc.calls["create"]) == 2

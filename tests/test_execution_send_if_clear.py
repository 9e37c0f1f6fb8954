"""Execution's one-statement send and the paper fault switch read with the fence, on a real
PostgreSQL (migrated) and a real Redis, through the execution service's own wiring.

The service is built in-process (``ExecutionService``: its ledger, paper exchange,
executor with ``halt_state``, single-writer lock and ``_fence``) without its loop, so each
rule is driven directly:

- ``Ledger.send_if_clear`` commits a new order ``SENT`` in one statement only while the
  risk manager's persisted breaker (``service_state`` risk/breaker) is clear; otherwise it
  writes nothing and ``Executor.execute`` takes the general path (a BUY refused and stored
  ``REJECTED``, a SELL through a manual breaker, a redelivery republished from its row).
- ``Ledger.record`` after a fill hands back the row ``fill_once`` just committed, without
  reading it: that row must equal the stored one, field by field.
- ``ExecutionService._fence`` reads the paper fault switch in the lock refresh's round
  trip; the next venue call uses that reply once, unless it is older than
  ``PREFETCH_VALID_S`` (then the switch is read again). A fault is consumed exactly once
  per venue call.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Iterator

import pytest
import redis
from test_execution_helpers import migrated, order, sql

from cdb.bus import ORDERS, REFUSED_KEY, Bus, Delivery
from cdb.exchange.errors import ExchangeUnavailable
from cdb.exchange.paper import FAULT_KEY, PREFETCH_VALID_S, PaperExchange
from cdb.exchange.trading import OrderRequest
from cdb.execution.ledger import Ledger, StoredOrder
from cdb.execution.lock import LOCK_KEY
from cdb.execution.service import ExecutionService
from cdb.execution.settings import ExecutionSettings
from cdb.risk.breaker import Breaker, utc_day
from cdb.service import TransientError
from cdb.settings import load_settings

START_CASH = 10_000.0


@pytest.fixture
def svc(redis_env, pg_env, redis_client, clean_env) -> Iterator[ExecutionService]:
    """The execution service's parts on a migrated database, holding the lock, with cash."""
    migrated(pg_env)
    settings = load_settings(
        ExecutionSettings,
        **redis_env,
        **pg_env,
        TRADING_MODE="paper",
        PAPER_FEE_PCT=0.1,
        PAPER_SLIPPAGE_PCT=0.5,
        EXCHANGE_RETRIES=3,
        EXCHANGE_BACKOFF_MAX_S=0.05,
        LOCK_TTL_S=30,
        HTTP_PORT=0,
    )
    service = ExecutionService(settings, Bus(redis_client, service="execution", consumer="t"))
    assert service.lock.acquire()
    service.ledger.ensure_cash(START_CASH)
    yield service
    service.close()


def set_breaker(pg_env, breaker: Breaker) -> None:
    """Persist the risk manager's breaker as the risk service does (service_state)."""
    sql(
        pg_env,
        "INSERT INTO service_state (service, key, value) VALUES ('risk', 'breaker', %s) "
        "ON CONFLICT (service, key) DO UPDATE SET value = EXCLUDED.value",
        (json.dumps(breaker.to_json()),),
    )


def rows(pg_env, client_id: str) -> list[tuple]:
    return sql(pg_env, "SELECT status, error FROM orders WHERE client_id = %s", (client_id,))


def trades(pg_env, client_id: str | None = None) -> int:
    if client_id is None:
        return sql(pg_env, "SELECT count(*) FROM trades")[0][0]
    return sql(pg_env, "SELECT count(*) FROM trades WHERE client_id = %s", (client_id,))[0][0]


def fresh_get(settings, client_id: str) -> StoredOrder | None:
    """The row as the database holds it, read on a connection of its own."""
    other = Ledger(settings, "USDT", "paper")
    try:
        with other.statement() as cur:
            return other.get(cur, client_id)
    finally:
        other.close()


def spy(monkeypatch, ledger: Ledger, *names: str) -> list[str]:
    """Record which ledger methods ``execute`` calls; each still runs on PostgreSQL."""
    calls: list[str] = []
    for name in names:
        real = getattr(ledger, name)

        def wrapper(*args, _real=real, _name=name, **kw):
            calls.append(_name)
            return _real(*args, **kw)

        monkeypatch.setattr(ledger, name, wrapper)
    return calls


def fault(client: redis.Redis) -> dict[str, str]:
    return {k.decode(): v.decode() for k, v in client.hgetall(FAULT_KEY).items()}


#: the breaker's causes that refuse a BUY (built when used: "today" is the day of the test)
ENGAGED = ("kill_switch", "manual", "drawdown_today")


def engaged(cause: str) -> Breaker:
    if cause == "kill_switch":
        return Breaker(kill_switch=True, reason="kill switch by test")
    if cause == "manual":
        return Breaker(manual=True, reason="engaged by test")
    assert cause == "drawdown_today"
    return Breaker(drawdown_day=utc_day(time.time()), reason="daily loss by test")


# -- send_if_clear ---------------------------------------------------------------------------------


def test_send_if_clear_commits_a_new_order_sent_in_one_statement(svc, pg_env):
    """No breaker row: one call inserts the order SENT and commits it (another connection
    sees it) before anything is sent; a second call writes nothing (the row is past NEW)."""
    o = order("sic-1", "BUY", 2, price=100.0, stop_loss=95.0, take_profit=120.0)
    sent, breaker = svc.ledger.send_if_clear(o)
    assert breaker is None
    assert sent is not None and sent.status == "SENT"
    assert (sent.client_id, sent.symbol, sent.side, sent.quantity, sent.price) == (
        "sic-1",
        "BTC_USDT",
        "BUY",
        2.0,
        100.0,
    )
    assert (sent.stop_loss, sent.take_profit, sent.mode, sent.ts) == (
        95.0,
        120.0,
        "paper",
        o.timestamp,
    )
    assert rows(pg_env, "sic-1") == [("SENT", None)], "committed: visible to another connection"
    assert fresh_get(svc.settings, "sic-1") == sent, "returned as stored"
    again, _ = svc.ledger.send_if_clear(o)
    assert again is None, "a row past NEW is never sent again by send_if_clear"
    assert rows(pg_env, "sic-1") == [("SENT", None)]


def test_send_if_clear_moves_a_new_row_to_sent(svc, pg_env):
    """The persistence writer may record the order NEW first: it is moved to SENT."""
    o = order("sic-new", "BUY", 1, price=100.0)
    assert svc.ledger.claim(o).status == "NEW"
    sent, _ = svc.ledger.send_if_clear(o)
    assert sent is not None and sent.status == "SENT"
    assert rows(pg_env, "sic-new") == [("SENT", None)]


def test_a_released_breaker_row_is_clear(svc, pg_env):
    """A breaker row with no cause set (released) does not hold the order back; the value
    read in the same statement is returned with it."""
    released = Breaker(reason="released by hand", updated_at=1)
    set_breaker(pg_env, released)
    sent, breaker = svc.ledger.send_if_clear(order("sic-rel", "BUY", 1, price=100.0))
    assert sent is not None and sent.status == "SENT"
    assert Breaker.from_json(breaker) == released


@pytest.mark.parametrize("cause", [*ENGAGED, "drawdown_other_day"])
def test_send_if_clear_writes_nothing_while_a_breaker_cause_is_set(svc, pg_env, cause):
    """Kill switch, manual engage or a drawdown trip of any day: nothing is written and the
    breaker as read is returned, for the general path to decide."""
    state = engaged(cause) if cause in ENGAGED else Breaker(drawdown_day="2001-01-01", reason="old")
    set_breaker(pg_env, state)
    sent, breaker = svc.ledger.send_if_clear(order("sic-b", "BUY", 1, price=100.0))
    assert sent is None
    assert Breaker.from_json(breaker) == state
    assert rows(pg_env, "sic-b") == [], "nothing written"


# -- execute ----------------------------------------------------------------------------------------


def test_execute_fills_a_new_order_through_send_if_clear(svc, pg_env, monkeypatch):
    """The common case: send_if_clear, then the venue; the general path is not taken."""
    calls = spy(monkeypatch, svc.ledger, "send_if_clear", "prepare", "record_sent", "claim")
    result = svc.executor.execute(order("ex-1", "BUY", 2, price=99.0), 100.0)
    assert (result.status, result.filled_quantity) == ("FILLED", 2.0)
    assert result.avg_price == pytest.approx(100.5)
    assert calls == ["send_if_clear"]
    assert rows(pg_env, "ex-1") == [("FILLED", None)]
    assert trades(pg_env, "ex-1") == 1
    assert sql(pg_env, "SELECT free FROM balances")[0][0] == pytest.approx(START_CASH - 201.201)


@pytest.mark.parametrize("cause", ENGAGED)
def test_an_engaged_breaker_refuses_a_buy_on_the_general_path(
    svc, pg_env, redis_client, monkeypatch, cause
):
    """With the breaker engaged send_if_clear writes nothing; execute then reads the order
    and breaker (prepare), refuses the BUY, stores it REJECTED with the reason and sends
    nothing (no trade, cash unchanged)."""
    set_breaker(pg_env, engaged(cause))
    calls = spy(monkeypatch, svc.ledger, "send_if_clear", "prepare", "record_sent")
    result = svc.executor.execute(order("ex-b", "BUY", 1, price=100.0), 100.0)
    assert result.status == "REJECTED"
    expected = "kill switch engaged" if cause == "kill_switch" else "breaker engaged"
    assert expected in result.error and engaged(cause).reason in result.error
    assert calls == ["send_if_clear", "prepare"], "general path, never record_sent"
    (status, error), *_ = rows(pg_env, "ex-b")
    assert status == "REJECTED" and expected in error, "the refusal is stored with its row"
    assert trades(pg_env) == 0
    assert sql(pg_env, "SELECT free FROM balances")[0][0] == START_CASH
    assert svc.executor.problems.refused == 1
    assert redis_client.hget(REFUSED_KEY, "client_id") == b"ex-b", "shown to the operator"


def test_a_drawdown_trip_of_another_day_lets_the_buy_through_the_general_path(
    svc, pg_env, monkeypatch
):
    """send_if_clear holds back on any drawdown day; the general path sees that yesterday's
    trip no longer applies and sends the order."""
    set_breaker(pg_env, Breaker(drawdown_day="2001-01-01", reason="old trip"))
    calls = spy(monkeypatch, svc.ledger, "send_if_clear", "prepare", "record_sent")
    result = svc.executor.execute(order("ex-old", "BUY", 1, price=100.0), 100.0)
    assert result.status == "FILLED"
    assert calls == ["send_if_clear", "prepare", "record_sent"]
    assert trades(pg_env, "ex-old") == 1


def test_a_manual_breaker_blocks_entries_only_a_sell_still_closes(svc, pg_env):
    """Buy while clear, engage the breaker by hand, then sell: the exit goes through (the
    breaker blocks entries), a further BUY is refused; the kill switch stops the SELL too."""
    assert svc.executor.execute(order("pos-buy", "BUY", 4, price=100.0), 100.0).status == ("FILLED")
    set_breaker(pg_env, engaged("manual"))
    sell = svc.executor.execute(order("pos-sell", "SELL", 1, price=110.0), 110.0)
    assert sell.status == "FILLED" and sell.filled_quantity == 1.0
    assert sql(pg_env, "SELECT quantity FROM positions WHERE symbol = 'BTC_USDT'")[0][0] == 3.0
    assert svc.executor.execute(order("pos-buy2", "BUY", 1, price=100.0), 100.0).status == (
        "REJECTED"
    )
    set_breaker(pg_env, engaged("kill_switch"))
    stopped = svc.executor.execute(order("pos-sell2", "SELL", 1, price=110.0), 110.0)
    assert stopped.status == "REJECTED" and "kill switch" in stopped.error
    assert sql(pg_env, "SELECT quantity FROM positions WHERE symbol = 'BTC_USDT'")[0][0] == 3.0
    assert trades(pg_env) == 2


def test_a_redelivered_filled_order_is_republished_not_traded_again(svc, pg_env, monkeypatch):
    """The same order again (a redelivery): send_if_clear writes nothing, execute returns
    the stored result, and there is still one trade and one debit."""
    o = order("redo-1", "BUY", 2, price=100.0)
    first = svc.executor.execute(o, 100.0)
    assert first.status == "FILLED"
    cash = sql(pg_env, "SELECT free FROM balances")[0][0]
    assert svc.ledger.send_if_clear(o) == (None, None)
    calls = spy(monkeypatch, svc.ledger, "send_if_clear", "prepare", "record_sent")
    again = svc.executor.execute(o, 120.0)  # another price: must not matter
    assert again == first
    assert calls == ["send_if_clear", "prepare"]
    assert trades(pg_env, "redo-1") == 1
    assert sql(pg_env, "SELECT free FROM balances")[0][0] == cash


# -- record: the remembered final row ----------------------------------------------------------------


@pytest.mark.parametrize("side", ["BUY", "SELL"])
def test_record_after_a_fill_returns_the_row_as_stored(svc, pg_env, side):
    """fill_once remembers the row it committed; record hands it back instead of reading
    it. It must be the stored row, field by field (status, fill, fee, exchange id, error,
    and the untouched order fields)."""
    if side == "SELL":  # a position to sell from
        assert svc.executor.execute(order("rec-pre", "BUY", 3, price=100.0), 100.0).status == (
            "FILLED"
        )
    o = order("rec-1", side, 1.5, price=101.0, stop_loss=90.0, take_profit=130.0)
    sent, _ = svc.ledger.send_if_clear(o)
    assert sent is not None
    report = svc.venue.place(OrderRequest("rec-1", "BTC_USDT", side, 1.5, 101.0))
    assert "rec-1" in svc.ledger._finals, "fill_once remembered the committed row"
    recorded = svc.ledger.record("rec-1", report)
    assert "rec-1" not in svc.ledger._finals, "taken once"
    stored = fresh_get(svc.settings, "rec-1")
    assert stored is not None
    for f in dataclasses.fields(StoredOrder):
        assert getattr(recorded, f.name) == getattr(stored, f.name), f.name
    assert recorded.status == "FILLED" and recorded.exchange_order_id == "paper-rec-1"
    assert recorded.to_result() == stored.to_result()
    # a second record (nothing remembered now) reads the same final row
    assert svc.ledger.record("rec-1", report) == stored


# -- the fault switch read with the fence -------------------------------------------------------------


def sent_request(svc, client_id: str, side: str = "BUY") -> OrderRequest:
    """A recorded (SENT) order the paper venue may fill, and its request."""
    sent, _ = svc.ledger.send_if_clear(order(client_id, side, 1, price=100.0))
    assert sent is not None
    return OrderRequest(client_id, "BTC_USDT", side, 1, 100.0)


def test_execution_reads_the_ticks_before_an_order_read_with_them(svc):
    """Execution keeps the default (market_data_first): the tick that triggered an order is
    read with it, so a paper fill is priced at that tick, not at the one before it (the
    live-vs-backtest test showed the fill one candle stale without it)."""
    assert svc.bus.market_data_first is True


def test_an_armed_fault_read_with_the_fence_fails_the_next_call_once(svc, redis_client, pg_env):
    """Armed (error, remaining 2): after the fence, place fails with ExchangeUnavailable and
    the counter goes down by exactly one; the next fence + place fails again (0), the third
    fills."""
    request = sent_request(svc, "f-1")
    redis_client.hset(FAULT_KEY, mapping={"kind": "error", "remaining": 2})
    for left in ("1", "0"):
        svc._fence()
        with pytest.raises(ExchangeUnavailable):
            svc.venue.place(request)
        assert fault(redis_client)["remaining"] == left
    assert trades(pg_env, "f-1") == 0
    svc._fence()
    assert svc.venue.place(request).status == "FILLED"
    assert fault(redis_client)["remaining"] == "0"
    assert trades(pg_env, "f-1") == 1


def test_the_reply_read_with_the_fence_is_used_once(svc, redis_client, pg_env):
    """The switch read with the fence counts for the call right after it (within
    PREFETCH_VALID_S), and for that call only: armed after the fence, the fault is seen
    by the following call, which reads the switch itself."""
    request = sent_request(svc, "f-2")
    started = time.monotonic()
    svc._fence()  # reads the switch: off
    redis_client.hset(FAULT_KEY, mapping={"kind": "error", "remaining": 1})
    report = svc.venue.place(request)
    if time.monotonic() - started >= PREFETCH_VALID_S:
        pytest.skip("the machine stalled past PREFETCH_VALID_S: the reply was rightly stale")
    assert report.status == "FILLED", "the call used the switch as read with the fence"
    assert fault(redis_client)["remaining"] == "1", "not consumed by that call"
    with pytest.raises(ExchangeUnavailable):  # no fence: the switch is read again
        svc.venue.lookup(request)
    assert fault(redis_client)["remaining"] == "0"


def test_a_stale_reply_is_ignored_and_the_switch_read_again(svc, redis_client, pg_env):
    """A reply older than PREFETCH_VALID_S does not count: the call reads the switch
    itself and the armed fault applies (simulated age, then a real wait after the fence)."""
    request = sent_request(svc, "f-3")
    redis_client.hset(FAULT_KEY, mapping={"kind": "error", "remaining": 2})
    svc.venue._prefetched = ({}, time.monotonic() - 1)  # "off", read a second ago
    with pytest.raises(ExchangeUnavailable):
        svc.venue.place(request)
    assert fault(redis_client)["remaining"] == "1"
    redis_client.delete(FAULT_KEY)
    svc._fence()  # reads the switch: off
    redis_client.hset(FAULT_KEY, mapping={"kind": "error", "remaining": 1})
    time.sleep(PREFETCH_VALID_S + 0.3)
    with pytest.raises(ExchangeUnavailable):
        svc.venue.place(request)
    assert fault(redis_client)["remaining"] == "0"
    assert trades(pg_env, "f-3") == 0


def test_execute_consumes_one_fault_per_attempt(svc, redis_client, pg_env):
    """Through the executor (fence before every attempt, EXCHANGE_RETRIES=3): one armed
    fault costs one attempt and the order fills; five armed faults outlast the three
    attempts, each consuming exactly one (5 → 2), the order stays SENT, unfilled, for a
    later retry."""
    redis_client.hset(FAULT_KEY, mapping={"kind": "error", "remaining": 1})
    ok = svc.executor.execute(order("fx-1", "BUY", 1, price=100.0), 100.0)
    assert ok.status == "FILLED"
    assert fault(redis_client)["remaining"] == "0"
    redis_client.hset(FAULT_KEY, mapping={"kind": "error", "remaining": 5})
    with pytest.raises(TransientError):
        svc.executor.execute(order("fx-2", "BUY", 1, price=100.0), 100.0)
    assert fault(redis_client)["remaining"] == "2"
    assert rows(pg_env, "fx-2") == [("SENT", None)]
    assert trades(pg_env, "fx-2") == 0


def test_a_lost_lock_stops_the_send_before_the_venue_is_called(svc, redis_client, pg_env):
    """The fence's lock refresh fails (another copy holds the lock): TransientError, the
    service goes to standby, the venue is never called (the armed fault is untouched)."""
    redis_client.hset(FAULT_KEY, mapping={"kind": "error", "remaining": 1})
    svc.active = True
    redis_client.set(LOCK_KEY, "elsewhere/1/abcdef12")
    with pytest.raises(TransientError):
        svc.executor.execute(order("lost-1", "BUY", 1, price=100.0), 100.0)
    assert svc.active is False and svc.lock.held is False
    assert fault(redis_client)["remaining"] == "1", "no venue call was made"
    assert rows(pg_env, "lost-1") == [("SENT", None)]
    assert trades(pg_env) == 0


def test_a_venue_without_a_fault_switch_gets_a_plain_fence(svc, redis_client, pg_env):
    """Only a venue with a FAULT_READ gets the switch read in the fence's round trip:
    the paper venue does (the reply is handed to it), and the refresh alone still holds
    the lock for any other venue."""
    assert isinstance(svc.venue, PaperExchange)
    svc._fence()
    assert svc.venue._prefetched is not None and svc.venue._prefetched[0] == {}
    svc.venue = svc.executor.venue = object()  # type: ignore[assignment]
    svc.lock.also_replies = []
    svc._fence()
    assert svc.lock.held


# -- the fence's round trip overlapping the SENT commit ---------------------------------------


def in_use(svc) -> int:
    """Redis connections of the service's pool taken and not given back."""
    return len(svc.bus.client.connection_pool._in_use_connections)


def test_the_fence_sent_before_the_sent_commit_is_read_and_given_back(svc, pg_env):
    """A new order: the refresh goes out before the SENT commit (``_fence_begin``) and is
    read at the fence (the order fills); after the order nothing is left unread and the
    connection is back in the pool. A refused order (no venue call) has its refresh read
    by the drain after the order, and the lease is still held."""
    svc.active = True
    result = svc.executor.execute(order("ov-1", "BUY", 1, price=100.0), 100.0)
    svc._fence_drain()
    assert result is not None and result.status == "FILLED"
    assert svc._sent_fence is None and in_use(svc) == 0
    set_breaker(pg_env, Breaker(kill_switch=True, reason="test"))
    result = svc.executor.execute(order("ov-2", "BUY", 1, price=100.0), 100.0)
    assert result is not None and result.status == "REJECTED"
    assert svc._sent_fence is not None, "sent before the breaker said no, unread so far"
    svc._fence_drain()
    assert svc._sent_fence is None and in_use(svc) == 0
    assert svc.lock.held and svc.active


def test_an_early_fence_answer_older_than_the_renewal_period_is_not_trusted(
    svc, redis_client, pg_env
):
    """The early refresh said "held", but by the call more than the renewal period has passed
    since it was sent: the fence refreshes again, finds another holder, goes to standby
    and never calls the venue (the row stays SENT, nothing is traded)."""
    svc.active = True
    svc._fence_begin()  # Redis renews the lease for us now...
    # ...but the answer is read as if the SENT commit had stalled for a whole lease,
    # during which another copy took the lock over
    svc._sent_fence = svc._sent_fence._replace(sent_at=time.monotonic() - svc.settings.LOCK_TTL_S)
    redis_client.set(LOCK_KEY, "elsewhere/1/abcdef12")
    with pytest.raises(TransientError):
        svc.executor.execute(order("ov-3", "BUY", 1, price=100.0), 100.0)
    assert svc.active is False and svc.lock.held is False
    assert rows(pg_env, "ov-3") == [("SENT", None)]
    assert trades(pg_env) == 0


def test_a_lease_found_lost_after_an_order_stops_the_batch(svc, redis_client, pg_env):
    """The early refresh of a refused order (no venue call, so read by the drain) says
    another copy holds the lock: the order's result still goes out, then the batch stops
    (TransientError) before the next order writes anything in the ledger."""
    svc.active = True
    set_breaker(pg_env, Breaker(kill_switch=True, reason="test"))
    redis_client.set(LOCK_KEY, "elsewhere/1/abcdef12")
    first = Delivery(ORDERS, "1-0", order("lost-a", "BUY", 1, price=100.0))
    second = Delivery(ORDERS, "2-0", order("lost-b", "BUY", 1, price=100.0))
    done: list[Delivery] = []
    with pytest.raises(TransientError):
        svc.handle_batch([first, second], done.append)
    assert done == [first], "the first was handled (and is acknowledged)"
    assert rows(pg_env, "lost-a")[0][0] == "REJECTED"
    assert rows(pg_env, "lost-b") == [], "nothing written for the second by a non-holder"
    assert svc.active is False


def test_a_breaker_value_that_is_not_a_boolean_is_not_clear(svc, pg_env):
    """A hand-edited breaker whose kill switch is the text "engaged" is not "clear" for the
    one-statement send (no SQL error, no row written there); the general path's
    halt_reason reads it as engaged and refuses the order, explained in its row."""
    sql(
        pg_env,
        "INSERT INTO service_state (service, key, value) VALUES ('risk', 'breaker', %s) "
        "ON CONFLICT (service, key) DO UPDATE SET value = EXCLUDED.value",
        (json.dumps({"kill_switch": "engaged", "reason": "by hand"}),),
    )
    sent, breaker = svc.ledger.send_if_clear(order("odd-1", "BUY", 1, price=100.0))
    assert sent is None and breaker["kill_switch"] == "engaged"
    assert rows(pg_env, "odd-1") == []
    result = svc.executor.execute(order("odd-1", "BUY", 1, price=100.0), 100.0)
    assert result is not None and result.status == "REJECTED"
    assert "kill switch" in (result.error or "")
    assert trades(pg_env) == 0

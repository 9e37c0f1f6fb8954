"""The risk manager's state: breaker transitions, the in-memory book, the market view, and
the rebuild of all of it from a real PostgreSQL database."""

from __future__ import annotations

import re

import psycopg2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cdb.db.migrate import migrate
from cdb.events import CLIENT_ID_PATTERN, OrderResult
from cdb.risk.breaker import Breaker, utc_day
from cdb.risk.market import MarketView, MoveWindow
from cdb.risk.portfolio import PendingOrder, Portfolio
from cdb.risk.settings import RiskSettings
from cdb.risk.state import RiskEvent, Store

DAY1 = 1_800_000_000  # 2027-01-15 08:00 UTC
DAY2 = DAY1 + 86_400


# -- breaker -------------------------------------------------------------------------------------


def test_manual_engage_and_release():
    day = utc_day(DAY1)
    b = Breaker().apply_control("engage_breaker", "maintenance", "c1", DAY1, day)
    assert b.engaged(day) and b.manual and b.control_id == "c1"
    b = b.apply_control("release_breaker", "", "c2", DAY1 + 5, day)
    assert not b.engaged(day) and b.control_id == "c2" and b.updated_at == DAY1 + 5


def test_drawdown_trip_survives_a_manual_release_until_the_next_utc_day():
    day, day2 = utc_day(DAY1), utc_day(DAY2)
    b = Breaker().trip_drawdown(day, "loss", DAY1)
    b = b.apply_control("engage_breaker", "", "c1", DAY1, day)
    b = b.apply_control("release_breaker", "", "c2", DAY1, day)
    assert b.engaged(day) and b.drawdown(day) and not b.manual
    assert "stays engaged until the next UTC day" in b.reason
    assert not b.engaged(day2)  # the trip is dated: it does not hold tomorrow
    rolled = b.roll_day(day2, DAY2)
    assert rolled.drawdown_day is None and "new UTC day" in rolled.reason
    assert b.roll_day(day, DAY1) is b  # same day: nothing changes


def test_kill_switch_and_the_redis_fields():
    day = utc_day(DAY1)
    b = Breaker().apply_control("kill_switch", "panic", "k1", DAY1, day)
    fields = b.redis_fields(day)
    assert fields == {
        "engaged": "1",
        "manual": "0",
        "drawdown": "0",
        "kill_switch": "1",
        "reason": "panic",
        "control_id": "k1",
        "updated_at": str(DAY1),
    }
    assert Breaker.from_json(b.to_json()) == b
    event = b.event(day)
    assert event.engaged and event.kill_switch and event.control_id == "k1"
    assert not b.apply_control("release_breaker", "", "k2", DAY1, day).engaged(day)


# -- the book ------------------------------------------------------------------------------------


def result(
    cid, side="BUY", qty=2.0, price=100.0, fee=0.2, status="FILLED", ts=DAY1, sym="BTC_USDT"
):
    return OrderResult(
        client_id=cid,
        symbol=sym,
        side=side,
        status=status,
        filled_quantity=qty,
        avg_price=price,
        fee=fee,
        timestamp=ts,
    )


def test_fills_apply_once_by_client_id():
    book = Portfolio(cash=10_000.0)
    book.entries["b1"] = PendingOrder("b1", "BTC_USDT", "BUY", 2.0, 100.0, DAY1)
    assert book.reserved() == pytest.approx(200.0)
    fill = book.apply(result("b1"), stop_loss_pct=2.0)
    assert fill is not None and fill.opened
    assert book.cash == pytest.approx(10_000 - 200 - 0.2)
    assert book.positions["BTC_USDT"].quantity == 2.0
    assert book.positions["BTC_USDT"].stop_loss == pytest.approx(98.0)
    assert book.entries == {}  # the reservation ends with the final result
    assert book.apply(result("b1"), stop_loss_pct=2.0) is None  # redelivered: nothing added
    assert book.cash == pytest.approx(10_000 - 200.2)
    assert book.equity({"BTC_USDT": 110.0}) == pytest.approx(10_000 - 200.2 + 220.0)


def test_partial_fills_add_only_what_is_new():
    book = Portfolio(cash=1_000.0)
    book.apply(result("b1", qty=1.0, fee=0.1, status="PARTIALLY_FILLED"), 2.0)
    book.apply(result("b1", qty=3.0, fee=0.3), 2.0)
    assert book.positions["BTC_USDT"].quantity == pytest.approx(3.0)
    assert book.cash == pytest.approx(1_000 - 300 - 0.3)


def test_sell_closes_and_failed_exit_moves_to_a_new_client_id():
    book = Portfolio(cash=1_000.0)
    book.apply(result("b1"), 2.0)
    first = book.exit_client_id("BTC_USDT")
    assert re.fullmatch(CLIENT_ID_PATTERN, first) and len(first) <= 32
    assert first == book.exit_client_id("BTC_USDT")  # deterministic: one order per position
    book.exits["BTC_USDT"] = PendingOrder(first, "BTC_USDT", "SELL", 2.0, 97.0, DAY1)
    book.apply(result(first, side="SELL", qty=0.0, price=0.0, fee=0.0, status="REJECTED"), 2.0)
    assert "BTC_USDT" not in book.exits and book.exit_client_id("BTC_USDT") != first
    second = book.exit_client_id("BTC_USDT")
    book.exits["BTC_USDT"] = PendingOrder(second, "BTC_USDT", "SELL", 2.0, 97.0, DAY1)
    fill = book.apply(result(second, side="SELL", price=97.0, fee=0.1), 2.0)
    assert fill is not None and fill.closed and book.positions == {} and book.exits == {}
    assert book.cash == pytest.approx(1_000 - 200.2 + 194 - 0.1)
    # a new position opened in the same second does not reuse a finished closing id
    book.apply(result("b2", ts=DAY1), 2.0)
    assert book.exit_client_id("BTC_USDT") not in {first, second}


def test_orders_without_result_expire():
    book = Portfolio(cash=1_000.0)
    book.entries["b1"] = PendingOrder("b1", "ETH_USDT", "BUY", 1.0, 10.0, DAY1)
    book.exits["BTC_USDT"] = PendingOrder("x1", "BTC_USDT", "SELL", 1.0, 10.0, DAY1 + 100)
    assert [o.client_id for o in book.expire(DAY1 + 301, 300)] == ["b1"]
    assert [o.client_id for o in book.expire(DAY1 + 401, 300)] == ["x1"]
    assert book.entries == {} and book.exits == {}


# -- market --------------------------------------------------------------------------------------


def test_move_window_sees_a_ten_percent_move_within_five_minutes_only():
    w = MoveWindow(300)
    assert w.add(DAY1, 100.0) == 0.0
    assert w.add(DAY1 + 100, 105.0) == pytest.approx(5.0)
    assert w.add(DAY1 + 200, 110.5) == pytest.approx(10.5)
    # 100.0 falls out of the window: the range is 105 → 110.5 now
    assert w.add(DAY1 + 350, 110.0) == pytest.approx((110.5 - 105.0) / 105.0 * 100)
    slow = MoveWindow(300)
    for minute in range(0, 60):  # +0.5 % a minute: 30 % in an hour, never 10 % in 5 min
        move = slow.add(DAY1 + minute * 60, 100.0 * 1.005**minute)
        assert move < 3.0


def test_market_view_keeps_latest_price_and_event_time():
    m = MarketView(300)
    m.update("BTC_USDT", 100.0, DAY1)
    m.update("BTC_USDT", 101.0, DAY1 + 1)
    assert m.prices["BTC_USDT"] == 101.0 and m.times["BTC_USDT"] == DAY1 + 1
    assert m.move_pct("BTC_USDT") == pytest.approx(1.0) and m.move_pct("ETH_USDT") == 0.0


# -- rebuild from PostgreSQL ---------------------------------------------------------------------


@pytest.fixture
def store(pg_env, monkeypatch):
    for key, value in pg_env.items():
        monkeypatch.setenv(key, value)
    settings = RiskSettings()
    migrate(settings)
    s = Store(settings)
    yield s
    s.close()


def _sql(store: Store, sql: str, *args) -> None:
    conn = store.conn()
    with conn, conn.cursor() as cur:
        cur.execute(sql, args)


def test_empty_database_starts_with_the_paper_balance(store):
    loaded = store.load(DAY1)
    assert loaded.portfolio.cash == 10_000.0 and loaded.portfolio.positions == {}
    assert loaded.breaker == Breaker() and loaded.day_start is None


def test_rebuild_reads_the_book_the_fills_and_our_own_state(store):
    _sql(store, "INSERT INTO balances (asset, free, updated_ts) VALUES ('USDT', 8000, %s)", DAY1)
    _sql(
        store,
        "INSERT INTO positions (symbol, quantity, avg_price, stop_loss, opened_ts, updated_ts)"
        " VALUES ('BTC_USDT', 10, 100, 98, %s, %s), ('ETH_USDT', 0, 0, NULL, NULL, %s)",
        DAY1,
        DAY1,
        DAY1,
    )
    orders = [
        ("b1", "BTC_USDT", "BUY", 10, 100, "FILLED", 10, DAY1),
        ("b2", "SOL_USDT", "BUY", 5, 20, "SENT", 0, DAY1 + 5),
        ("x-old", "BTC_USDT", "SELL", 10, 97, "REJECTED", 0, DAY1 + 10),
    ]
    for cid, sym, side, qty, price, status, filled, ts in orders:
        _sql(
            store,
            "INSERT INTO orders (client_id, ts, symbol, side, quantity, price, status,"
            " filled_quantity, avg_price) VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s)",
            cid, ts, sym, side, qty, price, status, filled, price if filled else 0,
        )  # fmt: skip
    # approved by the risk manager, not yet seen by execution
    store.record(
        RiskEvent(
            "signal:s9", DAY1 + 20, "INFO", "approve", "approved", "ok", "s9", "b9", "ADA_USDT",
            {"quantity": 100.0, "price": 0.5},
        )
    )  # fmt: skip
    tripped = Breaker().trip_drawdown(utc_day(DAY1), "loss", DAY1 + 30)
    store.record(RiskEvent("halt:x", DAY1 + 30, "CRITICAL", "halt", "drawdown", "x"), tripped)
    store.save_day_start(utc_day(DAY1), 10_500.0)

    loaded = store.load(DAY1 + 60)
    book = loaded.portfolio
    assert book.cash == 8000.0
    assert set(book.positions) == {"BTC_USDT"}
    pos = book.positions["BTC_USDT"]
    assert (pos.quantity, pos.avg_price, pos.stop_loss, pos.opened_ts) == (10, 100, 98, DAY1)
    assert book.finished_sells == {"x-old"}  # a closing id with a final result is used up
    assert book.applied == {"b1": (10.0, 0.0)}
    assert set(book.entries) == {"b2", "b9"}
    assert book.reserved() == pytest.approx(5 * 20 + 100 * 0.5)
    assert loaded.breaker == tripped and loaded.breaker.drawdown(utc_day(DAY1))
    assert loaded.day_start == (utc_day(DAY1), 10_500.0)
    # the redelivered result of a fill the database already reflects adds nothing
    assert book.apply(result("b1", qty=10, fee=0.0), 2.0) is None
    assert book.cash == 8000.0
    # an approval older than the TTL is not held any more
    assert "b9" not in store.load(DAY1 + 20 + 301).portfolio.entries


def test_decisions_are_recorded_once(store):
    event = RiskEvent("signal:a", DAY1, "WARNING", "reject", "exposure", "exposure 52 %")
    assert store.record(event) is True
    assert store.record(event) is False
    assert store.find("signal:a")["decision"] == "reject"
    assert store.find("signal:b") is None


def test_a_database_outage_is_transient_and_reported(store):
    store.conn().close()  # the connection drops; the next call reopens it
    assert store.find("nothing") is None and store.last_error is None
    bad = Store(store.settings.model_copy(update={"POSTGRES_PORT": 1}))
    with pytest.raises(psycopg2.OperationalError):
        bad.find("x")
    assert bad.last_error and "postgres unavailable" in bad.last_error


def test_breaker_state_row_is_json(store):
    store.record(
        RiskEvent("control:c1", DAY1, "WARNING", "engage_breaker", "control", "engaged"),
        Breaker(manual=True, control_id="c1", updated_at=DAY1),
    )
    conn = store.conn()
    with conn, conn.cursor() as cur:
        cur.execute("SELECT value FROM service_state WHERE service='risk' AND key='breaker'")
        value = cur.fetchone()[0]
    assert value["manual"] is True and value["control_id"] == "c1"


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["BTC_USDT", "ETH_USDT"]),
            st.sampled_from(["BUY", "SELL"]),
            st.floats(0.01, 5.0),
            st.floats(1.0, 200.0),
            st.floats(0.0, 1.0),
        ),
        min_size=1,
        max_size=12,
    ),
    st.lists(st.integers(0, 11), max_size=12),
)
def test_redelivered_results_never_change_the_book(fills, redeliver):
    """Any order of fills, with any of them delivered again later, gives the same book."""
    results = [
        result(f"c{i}", side=side, qty=qty, price=px, fee=fee, sym=sym)
        for i, (sym, side, qty, px, fee) in enumerate(fills)
    ]
    once, twice = Portfolio(cash=1e6), Portfolio(cash=1e6)
    for r in results:
        once.apply(r, 2.0)
        twice.apply(r, 2.0)
        twice.apply(r, 2.0)
    for i in redeliver:
        if i < len(results):
            twice.apply(results[i], 2.0)
    assert twice.cash == pytest.approx(once.cash)
    assert {s: p.quantity for s, p in twice.positions.items()} == pytest.approx(
        {s: p.quantity for s, p in once.positions.items()}
    )

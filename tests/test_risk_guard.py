"""The risk service in-process on real Redis and PostgreSQL, with a clock the test moves.

What needs time to pass — a new UTC day releasing the daily-loss breaker, stale market
data, orders that never get a result, the start of a day after a restart — is driven here
by an injected clock instead of waiting for it.
"""

from __future__ import annotations

import pytest

from cdb.bus import BREAKER_KEY, Bus, Delivery
from cdb.db.migrate import migrate
from cdb.events import Event, MarketData, MarketStatus, OrderResult, Signal, parse_event
from cdb.risk.service import RiskService
from cdb.risk.settings import RiskSettings

DAY1 = 1_800_000_000 - 1_800_000_000 % 86_400 + 23 * 3600  # 23:00 UTC
MIDNIGHT = DAY1 + 3600


class Clock:
    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def make(redis_env, pg_env, redis_client, monkeypatch):
    for key, value in {**redis_env, **pg_env}.items():
        monkeypatch.setenv(key, value)
    settings = RiskSettings()
    migrate(settings)
    made: list[RiskService] = []

    def build(clock: Clock) -> RiskService:
        svc = RiskService(settings, Bus(redis_client, service="risk"), clock=clock)
        svc.setup()
        made.append(svc)
        return svc

    yield build
    for svc in made:
        svc.close()


def feed(svc: RiskService, *events: Event) -> None:
    for i, event in enumerate(events):
        svc.handle(Delivery("test", f"{i}-0", event))


def md(symbol: str, price: float, ts: int) -> MarketData:
    return MarketData(
        symbol=symbol, price=price, volume=1e6, pct_change=0.0, timestamp=ts, source="test"
    )


def sig(sid: str, ts: int, symbol="BTC_USDT", confidence=0.5, price=100.0) -> Signal:
    return Signal(
        signal_id=sid,
        symbol=symbol,
        side="BUY",
        confidence=confidence,
        price=price,
        pct_change=5.0,
        reason="t",
        timestamp=ts,
    )


def filled(order, price: float, ts: int) -> OrderResult:
    return OrderResult(
        client_id=order.client_id,
        symbol=order.symbol,
        side=order.side,
        status="FILLED",
        filled_quantity=order.quantity,
        avg_price=price,
        timestamp=ts,
    )


def orders(client) -> list:
    return [parse_event(f[b"data"]) for _, f in client.xrange("orders")]


def decision(svc: RiskService, key: str) -> str | None:
    row = svc.store.find(key)
    return row and f"{row['decision']}/{row['rule']}"


def test_a_new_utc_day_releases_the_daily_loss_breaker(make, redis_client):
    clock = Clock(DAY1)
    svc = make(clock)
    assert svc.day_start == 10_000.0
    feed(svc, md("BTC_USDT", 100.0, DAY1), sig("a", DAY1))
    (buy,) = orders(redis_client)
    feed(svc, filled(buy, 100.0, DAY1))
    # a gap down: −60 % on a 10 % position is a 6 % day → breaker, the position is closed
    clock.t += 10
    feed(svc, md("BTC_USDT", 40.0, DAY1 + 10))
    assert svc.breaker.drawdown(svc.day)
    assert decision(svc, f"halt:{svc.day}") == "halt/drawdown"
    sell = orders(redis_client)[-1]
    assert sell.side == "SELL"
    feed(svc, filled(sell, 40.0, DAY1 + 11))
    clock.t += 20
    feed(svc, md("BTC_USDT", 40.0, DAY1 + 30), sig("b", DAY1 + 30, price=40.0))
    assert decision(svc, "signal:b") == "halt/drawdown"

    clock.t = MIDNIGHT + 1
    svc.sweep()
    day2 = svc.day
    assert not svc.breaker.engaged(day2)
    assert redis_client.hget(BREAKER_KEY, "engaged") == b"0"
    assert decision(svc, f"newday:{day2}") == "release/drawdown"
    assert svc.day_start == pytest.approx(10_000 - 1000 + 400)  # today's start: after the loss
    feed(svc, md("BTC_USDT", 40.0, MIDNIGHT + 1), sig("c", MIDNIGHT + 1, price=40.0))
    assert decision(svc, "signal:c") == "approve/approved"


def test_restart_on_a_new_day_waits_for_prices_before_fixing_the_day_start(make, redis_client):
    clock = Clock(DAY1)
    svc = make(clock)
    feed(svc, md("BTC_USDT", 100.0, DAY1), sig("a", DAY1))
    (buy,) = orders(redis_client)
    feed(svc, filled(buy, 100.0, DAY1))
    # execution's rows, as it writes them before publishing the result
    conn = svc.store.conn()
    with conn, conn.cursor() as cur:
        cur.execute("INSERT INTO balances (asset, free, updated_ts) VALUES ('USDT', 9000, 0)")
        cur.execute(
            "INSERT INTO positions (symbol, quantity, avg_price, stop_loss, opened_ts, updated_ts)"
            " VALUES ('BTC_USDT', %s, 100, 98, %s, %s)",
            (buy.quantity, DAY1, DAY1),
        )
    svc.close()

    clock.t = MIDNIGHT + 60
    again = make(clock)
    assert again.day_start is None  # BTC has no price yet: valuing it at cost would be a guess
    feed(again, md("BTC_USDT", 120.0, MIDNIGHT + 61))
    again.sweep()
    assert again.day_start == pytest.approx(9000 + buy.quantity * 120.0)


def test_stale_prices_and_market_status_pause_entries(make, redis_client):
    clock = Clock(DAY1)
    svc = make(clock)
    feed(svc, md("BTC_USDT", 100.0, DAY1))
    clock.t = DAY1 + 121
    feed(svc, sig("old-price", DAY1 + 121))
    assert decision(svc, "signal:old-price") == "pause/stale_market_data"

    feed(svc, MarketStatus(status="unreachable", reason="timeout", timestamp=DAY1 + 121))
    feed(svc, md("BTC_USDT", 100.0, DAY1 + 121), sig("down", DAY1 + 121))
    assert decision(svc, "signal:down") == "pause/market_status"
    alerts = [parse_event(f[b"data"]) for _, f in redis_client.xrange("alerts")]
    assert {a.code for a in alerts} == {"MARKET_PAUSED"}

    feed(svc, MarketStatus(status="ok", timestamp=DAY1 + 122), sig("up", DAY1 + 122))
    assert decision(svc, "signal:up") == "approve/approved"


def test_an_abnormal_move_pauses_only_that_symbol(make, redis_client):
    clock = Clock(DAY1)
    svc = make(clock)
    feed(svc, md("BTC_USDT", 100.0, DAY1), md("ETH_USDT", 10.0, DAY1))
    feed(svc, md("BTC_USDT", 111.0, DAY1 + 120))
    assert svc.paused == {"BTC_USDT"}
    clock.t = DAY1 + 120
    feed(svc, sig("btc", DAY1 + 120, price=111.0))
    feed(svc, sig("eth", DAY1 + 120, symbol="ETH_USDT", price=10.0))
    assert decision(svc, "signal:btc") == "pause/abnormal_move"
    assert decision(svc, "signal:eth") == "approve/approved"
    # five minutes later the move has left the window
    feed(svc, md("BTC_USDT", 111.0, DAY1 + 500))
    assert svc.paused == set()


def test_an_entry_without_result_holds_its_room_until_the_ttl(make, redis_client):
    clock = Clock(DAY1)
    svc = make(clock)
    prices = [md(s, 1.0, DAY1) for s in ("A_USDT", "B_USDT", "C_USDT", "D_USDT", "E_USDT")]
    feed(svc, *prices)
    feed(svc, *(sig(f"s{i}", DAY1, symbol=p.symbol, price=1.0) for i, p in enumerate(prices)))
    assert len(orders(redis_client)) == 5  # 5 x 10 %: exposure and count at their limits
    feed(svc, md("F_USDT", 1.0, DAY1), sig("s5", DAY1, symbol="F_USDT", price=1.0))
    assert decision(svc, "signal:s5") == "reject/exposure"
    clock.t = DAY1 + 301  # no result for any of them: the room is released
    svc.sweep()
    assert svc.book.entries == {}
    feed(svc, md("F_USDT", 1.0, DAY1 + 301), sig("s6", DAY1 + 301, symbol="F_USDT", price=1.0))
    assert decision(svc, "signal:s6") == "approve/approved"

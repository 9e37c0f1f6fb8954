"""The live and validate-only adapter on a real ccxt ``mexc`` object fed recorded responses.

No network: the exchange's HTTP session answers from the MEXC spot v3 response
bodies below (shaped like the examples ccxt documents for each endpoint). The
executor and the ledger around it are the real ones on a real PostgreSQL, so these
tests prove the client-order-id and lookup-before-resend logic as it runs live.
"""

from __future__ import annotations

import json
from collections import defaultdict
from typing import Any
from urllib.parse import parse_qs, urlparse

import ccxt
import pytest
import requests
from test_execution_helpers import migrated, order, sql

from cdb.exchange.trading import CcxtVenue, OrderRequest
from cdb.execution.executor import Executor
from cdb.execution.ledger import Ledger
from cdb.execution.reconcile import reconcile
from cdb.service import TransientError

EXCHANGE_INFO = {
    "timezone": "CST",
    "serverTime": 1732230000000,
    "rateLimits": [],
    "exchangeFilters": [],
    "symbols": [
        {
            "symbol": "BTCUSDT",
            "status": "1",
            "baseAsset": "BTC",
            "baseAssetPrecision": "4",
            "quoteAsset": "USDT",
            "quoteAssetPrecision": "2",
            "orderTypes": ["LIMIT", "MARKET", "LIMIT_MAKER"],
            "quoteOrderQtyMarketAllowed": False,
            "isSpotTradingAllowed": True,
            "isMarginTradingAllowed": False,
            "permissions": ["SPOT"],
            "filters": [],
            "baseSizePrecision": "0.0001",
            "maxQuoteAmount": "2000000",
            "makerCommission": "0",
            "takerCommission": "0.0005",
            "quoteAmountPrecision": "1",
        },
        {
            "symbol": "DEADUSDT",
            "status": "2",
            "baseAsset": "DEAD",
            "baseAssetPrecision": "2",
            "quoteAsset": "USDT",
            "quoteAssetPrecision": "4",
            "orderTypes": ["LIMIT"],
            "quoteOrderQtyMarketAllowed": False,
            "isSpotTradingAllowed": False,
            "isMarginTradingAllowed": False,
            "permissions": ["SPOT"],
            "filters": [],
            "baseSizePrecision": "1",
            "maxQuoteAmount": "100000",
            "makerCommission": "0",
            "takerCommission": "0.0005",
            "quoteAmountPrecision": "1",
        },
    ],
}
CREATED = {"symbol": "BTCUSDT", "orderId": "C02__443776347957968896", "orderListId": -1}
FILLED = {
    "symbol": "BTCUSDT",
    "orderId": "C02__443776347957968896",
    "orderListId": "-1",
    "clientOrderId": "cid-1",
    "price": "65325.12",
    "origQty": "0.0123",
    "executedQty": "0.0123",
    "cummulativeQuoteQty": "800.00",
    "status": "FILLED",
    "timeInForce": None,
    "type": "IMMEDIATE_OR_CANCEL",
    "side": "BUY",
    "stopPrice": None,
    "icebergQty": None,
    "time": 1732230001000,
    "updateTime": 1732230001100,
    "isWorking": True,
    "origQuoteOrderQty": "0",
}
NOT_FOUND = (400, {"code": -2013, "msg": "Order does not exist."})
ACCOUNT = {
    "canTrade": True,
    "canWithdraw": True,
    "canDeposit": True,
    "updateTime": None,
    "accountType": "SPOT",
    "balances": [
        {"asset": "USDT", "free": "512.5", "locked": "0"},
        {"asset": "BTC", "free": "0.0123", "locked": "0"},
    ],
    "permissions": ["SPOT"],
}
TIMEOUT = requests.exceptions.ReadTimeout("read timed out")
#: Lookups of an order in doubt before it counts as absent (ORDER_LOOKUPS in the tests).
LOOKUPS = 3
ROUTES = {  # (method, path) → endpoint name used by the scripts below
    ("GET", "/api/v3/exchangeInfo"): "markets",
    ("GET", "/api/v1/contract/detail"): "contracts",
    ("GET", "/api/v3/capital/config/getall"): "currencies",
    ("POST", "/api/v3/order"): "create",
    ("POST", "/api/v3/order/test"): "test",
    ("GET", "/api/v3/order"): "query",
    ("GET", "/api/v3/account"): "account",
    ("GET", "/api/v3/openOrders"): "open_orders",
}


class RecordedMexc:
    """A real ``ccxt.mexc`` whose HTTP session replays scripted responses and logs requests."""

    def __init__(self, **scripts: list[Any]) -> None:
        self.scripts: dict[str, list[Any]] = {
            "markets": [EXCHANGE_INFO],
            "contracts": [{"success": True, "code": 0, "data": []}],
            "currencies": [[]],
            "account": [ACCOUNT],
            "open_orders": [[]],
            **scripts,
        }
        self.calls: dict[str, list[dict[str, list[str]]]] = defaultdict(list)
        self.exchange = ccxt.mexc({"apiKey": "mx0-test-key", "secret": "test-secret-value"})
        self.exchange.enableRateLimit = False  # replayed answers need no throttling
        self.exchange.session.request = self._request

    def _request(self, method: str, url: str, **_: Any) -> requests.Response:
        parsed = urlparse(url)
        name = ROUTES[(method, parsed.path)]
        self.calls[name].append(parse_qs(parsed.query))
        script = self.scripts[name]
        answer = script.pop(0) if len(script) > 1 else script[0]
        if callable(answer):  # answers that depend on the request, e.g. by client order id
            answer = answer(parse_qs(parsed.query))
        if isinstance(answer, Exception):
            raise answer
        status, body = answer if isinstance(answer, tuple) else (200, answer)
        response = requests.Response()
        response.status_code, response.url = status, url
        response.reason = "OK" if status == 200 else "Error"
        response._content = (
            json.dumps(body).encode() if not isinstance(body, str) else body.encode()
        )
        return response

    def venue(self, mode: str = "live") -> CcxtVenue:
        venue = CcxtVenue(self.exchange, mode, max_slippage_pct=0.5)  # type: ignore[arg-type]
        venue.start()
        return venue


@pytest.fixture
def ledger(pg_env):
    book = Ledger(migrated(pg_env), "USDT", "live")
    book.set_cash(1000.0)
    yield book
    book.close()


def make_executor(ledger: Ledger, venue: CcxtVenue, alerts: list | None = None) -> Executor:
    ledger.mode = venue.mode
    return Executor(
        ledger,
        venue,
        retries=3,
        backoff_max_s=0.01,
        lookups=LOOKUPS,
        lookup_backoff_s=0.001,
        alert=lambda *a: alerts.append(a) if alerts is not None else None,
    )


def live_order(client_id: str = "cid-1", **kw: Any):
    return order(client_id, "BUY", 0.012345678, price=65000.123, **kw)


def test_place_passes_client_order_id_rounds_and_reads_the_fill():
    mexc = RecordedMexc(create=[CREATED], query=[FILLED])
    report = mexc.venue().place(OrderRequest("cid-1", "BTC_USDT", "BUY", 0.012345678, 65000.123))
    sent = mexc.calls["create"][0]
    assert sent["newClientOrderId"] == ["cid-1"]
    assert sent["type"] == ["IMMEDIATE_OR_CANCEL"]
    assert sent["quantity"] == ["0.0123"]  # amount_to_precision: 4 decimals, truncated
    assert sent["price"] == ["65325.12"]  # 65000.123 * 1.005, price_to_precision: 2 decimals
    assert mexc.calls["query"][0]["origClientOrderId"] == ["cid-1"]
    assert report.status == "FILLED"
    assert report.filled_quantity == pytest.approx(0.0123)
    assert report.avg_price == pytest.approx(800 / 0.0123)
    assert report.fee == pytest.approx(800 * 0.0005)  # not reported: the market's taker rate
    assert report.exchange_order_id == "C02__443776347957968896"


def test_timeout_then_found_is_never_resent(ledger):
    mexc = RecordedMexc(create=[TIMEOUT], query=[FILLED])
    result = make_executor(ledger, mexc.venue()).execute(live_order(), 65000.123)
    assert result.status == "FILLED" and result.mode == "live"
    assert len(mexc.calls["create"]) == 1
    assert sql(_env(ledger), "SELECT count(*) FROM trades")[0][0] == 1
    held = sql(_env(ledger), "SELECT quantity, avg_price FROM positions WHERE symbol = 'BTC_USDT'")
    assert held == [(pytest.approx(0.0123), pytest.approx(800 / 0.0123))]
    cash = sql(_env(ledger), "SELECT free FROM balances WHERE asset = 'USDT'")[0][0]
    assert cash == pytest.approx(1000 - 800 - 0.4)


def test_timeout_then_proven_absent_is_resent_once(ledger):
    mexc = RecordedMexc(create=[TIMEOUT, CREATED], query=[NOT_FOUND] * LOOKUPS + [FILLED])
    result = make_executor(ledger, mexc.venue()).execute(live_order(), 65000.123)
    assert result.status == "FILLED"
    assert len(mexc.calls["create"]) == 2
    assert len(mexc.calls["query"]) == LOOKUPS + 1
    assert [c["newClientOrderId"] for c in mexc.calls["create"]] == [["cid-1"], ["cid-1"]]
    assert sql(_env(ledger), "SELECT count(*) FROM trades")[0][0] == 1


def test_rate_limit_backs_off_and_looks_up_before_resending(ledger):
    mexc = RecordedMexc(
        create=[(429, {"code": 429, "msg": "Too Many Requests"}), CREATED],
        query=[NOT_FOUND] * LOOKUPS + [FILLED],
    )
    result = make_executor(ledger, mexc.venue()).execute(live_order(), 65000.123)
    assert result.status == "FILLED"
    assert len(mexc.calls["create"]) == 2 and len(mexc.calls["query"]) == LOOKUPS + 1


def test_exchange_down_leaves_the_order_sent_and_the_redelivery_looks_it_up(ledger):
    down = (503, "<html>503 Service Temporarily Unavailable</html>")
    mexc = RecordedMexc(create=[down], query=[down])
    executor = make_executor(ledger, mexc.venue())
    with pytest.raises(TransientError):
        executor.execute(live_order(), 65000.123)
    assert sql(_env(ledger), "SELECT status FROM orders")[0][0] == "SENT"
    assert "exchange unavailable" in executor.problems.describe()[0]
    sends = len(mexc.calls["create"])
    mexc.scripts["query"] = [FILLED]  # the exchange is back: it had filled the first send
    result = executor.execute(live_order(), 65000.123)  # the entry's redelivery
    assert result.status == "FILLED"
    assert len(mexc.calls["create"]) == sends  # looked up, not resent
    assert executor.problems.describe() == []


def test_validate_mode_uses_the_order_test_endpoint_and_executes_nothing(ledger):
    mexc = RecordedMexc(test=[{}])
    result = make_executor(ledger, mexc.venue("validate")).execute(live_order(), 65000.123)
    assert result.status == "CANCELLED" and result.mode == "validate"
    assert "nothing was executed" in result.error
    assert mexc.calls["test"][0]["newClientOrderId"] == ["cid-1"]
    assert "create" not in mexc.calls and "query" not in mexc.calls
    assert sql(_env(ledger), "SELECT count(*) FROM trades")[0][0] == 0


def test_inactive_market_and_dust_are_rejected_without_a_request(ledger):
    mexc = RecordedMexc()
    executor = make_executor(ledger, mexc.venue())
    dead = executor.execute(order("cid-dead", "BUY", 5, price=1.0, symbol="DEAD_USDT"), 1.0)
    assert dead.status == "REJECTED" and "not active" in dead.error
    dust = executor.execute(order("cid-dust", "BUY", 0.00001, price=65000.0), 65000.0)
    assert dust.status == "REJECTED"
    assert "create" not in mexc.calls


def test_reconcile_marks_an_unreported_order_unknown_and_fails_closed(ledger, pg_env):
    for client_id in ("cid-lost", "cid-done"):
        sql(
            pg_env,
            "INSERT INTO orders (client_id, ts, symbol, side, quantity, price, status, mode)"
            " VALUES (%s, 1, 'BTC_USDT', 'BUY', 0.0123, 65000, 'SENT', 'live')",
            (client_id,),
        )

    def by_id(params):
        if params["origClientOrderId"] == ["cid-done"]:
            return {**FILLED, "clientOrderId": "cid-done"}
        return NOT_FOUND

    mexc = RecordedMexc(query=[by_id])
    raised: list = []
    executor = make_executor(ledger, mexc.venue(), raised)
    republished = reconcile(executor)
    assert [(r.client_id, r.status) for r in republished] == [("cid-done", "FILLED")]
    statuses = dict(sql(pg_env, "SELECT client_id, status FROM orders"))
    assert statuses == {"cid-lost": "UNKNOWN", "cid-done": "FILLED"}
    assert [(level, code) for level, code, *_ in raised] == [("CRITICAL", "ORDER_UNKNOWN")]
    assert executor.problems.fail_closed
    assert sql(pg_env, "SELECT free FROM balances WHERE asset = 'USDT'")[0][0] == 512.5

    refused = executor.execute(live_order("cid-new"), 65000.123)
    assert refused.status == "REJECTED" and "UNKNOWN" in refused.error
    assert "create" not in mexc.calls
    # the UNKNOWN order's redelivery is never sent either
    assert executor.execute(live_order("cid-lost"), 65000.123) is None
    assert "create" not in mexc.calls


def test_reconcile_fails_closed_on_a_position_the_account_does_not_hold(ledger, pg_env):
    sql(
        pg_env,
        "INSERT INTO positions (symbol, quantity, avg_price, updated_ts, mode) "
        "VALUES ('ETH_USDT', 2, 3000, 1, 'live'), ('BTC_USDT', 0.0123, 65000, 1, 'live')",
    )
    raised: list = []
    executor = make_executor(ledger, RecordedMexc().venue(), raised)
    reconcile(executor)
    assert executor.problems.mismatches == [
        "position ETH_USDT 2 in the ledger, the account holds 0"
    ]
    assert [code for _, code, *_ in raised] == ["POSITION_MISMATCH"]


def _env(ledger: Ledger) -> dict[str, str]:
    s = ledger.settings
    return {
        "POSTGRES_HOST": s.POSTGRES_HOST,
        "POSTGRES_PORT": str(s.POSTGRES_PORT),
        "POSTGRES_USER": s.POSTGRES_USER,
        "POSTGRES_PASSWORD": s.POSTGRES_PASSWORD.get_secret_value() if s.POSTGRES_PASSWORD else "",
        "POSTGRES_DB": s.POSTGRES_DB,
    }


def test_no_code_path_can_withdraw():
    """No attribute, call or name containing 'withdraw' in the exchange and execution code."""
    import ast
    from pathlib import Path

    import cdb.exchange
    import cdb.execution

    found = []
    for package in (cdb.exchange, cdb.execution):
        for path in Path(package.__path__[0]).glob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                name = getattr(node, "attr", None) or getattr(node, "id", None)
                if isinstance(node, ast.Constant) and isinstance(node.value, str):
                    name = node.value if " " not in node.value else None  # getattr(x, "...")
                if name and "withdraw" in name.lower():
                    found.append(f"{path.name}: {name}")
    assert found == []

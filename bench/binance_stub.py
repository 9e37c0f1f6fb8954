"""A loopback server answering Binance's ``GET /api/v3/exchangeInfo`` for the freqtrade benchmark.

``freqtrade backtesting`` loads the exchange's markets before it reads a single candle
and refuses to start without them; this machine has no route to Binance. The benchmark
points freqtrade's ccxt at this server (``ccxt_config.urls``, loopback only), which
answers exchangeInfo in Binance's documented spot format for the benchmark's symbols
(filters: PRICE_FILTER, LOT_SIZE, NOTIONAL) and 404 for anything else. Backtesting
needs nothing more: candles come from the feather files.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def exchange_info(symbols: list[str]) -> dict:
    """Binance's exchangeInfo for ``BASE_QUOTE`` symbols (spot, trading)."""
    entries = []
    for symbol in symbols:
        base, quote = symbol.split("_")
        entries.append(
            {
                "symbol": f"{base}{quote}",
                "status": "TRADING",
                "baseAsset": base,
                "baseAssetPrecision": 8,
                "quoteAsset": quote,
                "quotePrecision": 8,
                "quoteAssetPrecision": 8,
                "orderTypes": ["LIMIT", "MARKET", "STOP_LOSS_LIMIT"],
                "icebergAllowed": True,
                "ocoAllowed": True,
                "isSpotTradingAllowed": True,
                "isMarginTradingAllowed": False,
                "filters": [
                    {
                        "filterType": "PRICE_FILTER",
                        "minPrice": "0.00000100",
                        "maxPrice": "1000000.00000000",
                        "tickSize": "0.00000100",
                    },
                    {
                        "filterType": "LOT_SIZE",
                        "minQty": "0.00001000",
                        "maxQty": "90000000.00000000",
                        "stepSize": "0.00001000",
                    },
                    {
                        "filterType": "NOTIONAL",
                        "minNotional": "5.00000000",
                        "applyMinToMarket": True,
                        "maxNotional": "9000000.00000000",
                        "applyMaxToMarket": False,
                        "avgPriceMins": 5,
                    },
                ],  # fmt: skip
                "permissions": [],
                "permissionSets": [["SPOT"]],
                "defaultSelfTradePreventionMode": "EXPIRE_MAKER",
                "allowedSelfTradePreventionModes": ["EXPIRE_MAKER"],
            }
        )
    return {
        "timezone": "UTC",
        "serverTime": 1_735_689_600_000,
        "rateLimits": [],
        "exchangeFilters": [],
        "symbols": entries,
    }


class BinanceStub:
    """``with BinanceStub(symbols) as url:`` → the ``urls.api`` mapping for ccxt."""

    def __init__(self, symbols: list[str]) -> None:
        body = json.dumps(exchange_info(symbols)).encode()

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                found = self.path.split("?")[0].endswith("/api/v3/exchangeInfo")
                data = body if found else b'{"code": -1, "msg": "not emulated"}'
                self.send_response(200 if found else 404)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> dict[str, str]:
        self.thread.start()
        base = f"http://127.0.0.1:{self.server.server_address[1]}"
        return {
            key: f"{base}/api/v3"
            for key in ("public", "private", "v1", "v3", "sapi", "sapiV2", "sapiV3", "sapiV4")
        }

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

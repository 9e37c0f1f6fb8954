"""Deterministic synthetic ``market_data`` in the feed's format, with a chosen signal density.

Each entry is a valid ``MarketData`` event (``source="synthetic"``) serialised
with orjson straight from a dict: the producer must not be the bottleneck of a
benchmark of the consumers. A fraction ``fire`` of the events is a strong move
on real volume (``pct_change >= threshold`` and ``volume >= min_volume``), i.e.
what the momentum rule turns into a signal; prices walk so slowly that the risk
manager's abnormal-move check never pauses a symbol.
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterator

import orjson


def symbols(n: int) -> list[str]:
    """``n`` distinct symbols that match the event contract (``S0001_USDT`` ...)."""
    return [f"S{i:04d}_USDT" for i in range(n)]


class MarketGen:
    """Round-robin over the symbols; ``next()`` gives (symbol, timestamp, fires, payload)."""

    def __init__(
        self,
        n_symbols: int = 200,
        fire: float = 0.01,
        threshold: float = 3.0,
        min_volume: float = 100_000.0,
        seed: int = 7,
    ) -> None:
        self.symbols = symbols(n_symbols)
        self.fire = fire
        self.threshold = threshold
        self.min_volume = min_volume
        self.rng = random.Random(seed)
        self.prices = {s: 1.0 + self.rng.random() * 100 for s in self.symbols}
        self.i = 0
        #: last second in which each symbol had a firing event (keeps (symbol, ts) unique)
        self.last_fire: dict[str, int] = {}

    def next(self, ts: int | None = None) -> tuple[str, int, bool, bytes]:
        rng = self.rng
        symbol = self.symbols[self.i % len(self.symbols)]
        self.i += 1
        ts = int(time.time()) if ts is None else ts
        price = self.prices[symbol] * (1 + (rng.random() - 0.5) * 1e-4)
        self.prices[symbol] = price
        fires = rng.random() < self.fire and self.last_fire.get(symbol) != ts
        if fires:
            self.last_fire[symbol] = ts
            pct = self.threshold + rng.random() * 5
            volume = self.min_volume * (1 + rng.random() * 20)
        else:
            pct = (rng.random() - 0.5) * 2 * self.threshold * 0.9
            volume = rng.random() * self.min_volume * 20
        payload = orjson.dumps(
            {
                "type": "market_data",
                "timestamp": ts,
                "symbol": symbol,
                "price": round(price, 8),
                "volume": round(volume, 2),
                "pct_change": round(pct, 4),
                "interval": "1m",
                "source": "synthetic",
            }
        )
        return symbol, ts, fires, payload

    def payloads(self, n: int, ts: int | None = None) -> Iterator[bytes]:
        for _ in range(n):
            yield self.next(ts)[3]


def fill(client, stream: str, payloads, batch: int = 1000) -> int:
    """XADD every payload (pipelined, untrimmed); returns how many were added."""
    n = 0
    pipe = client.pipeline(transaction=False)
    for payload in payloads:
        pipe.xadd(stream, {"data": payload})
        n += 1
        if n % batch == 0:
            pipe.execute()
    pipe.execute()
    return n

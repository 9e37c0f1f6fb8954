"""Pure rules of the streaming feed: closed candles out of kline updates, and shards.

An exchange's kline stream pushes the *forming* candle again and again as trades
happen; a candle is closed once the stream moves on to a later one. The tracker keeps
each symbol's forming candle and hands out the one that closed, unless it was
*tainted*: a candle that was forming while the connection dropped or was renewed
may have missed updates, so it is never used as is — the source takes it from REST.

Shards: a MEXC spot websocket connection carries at most 30 subscriptions
(https://www.mexc.com/api-docs/spot-v3/websocket-market-streams, "Each connection
can subscribe to a maximum of 30 streams"), so the symbols are split across
connections; a symbol keeps its connection while the set changes, so one symbol
arriving or leaving renews one connection, not all of them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

from cdb.feed.candles import Candle

#: MEXC's limit of subscriptions on one websocket connection (see the module docstring).
MAX_SUBSCRIPTIONS = 30
#: MEXC closes a websocket connection after 24 h; ours are renewed before that.
MAX_CONNECTION_S = 24 * 3600


class Closed(NamedTuple):
    """A candle the stream closed; ``trusted`` False when it formed across a disconnect.

    ``next_open_ms``: the open of the candle whose first frame closed it — later than
    ``candle.open_ms`` + one interval when the candles between went unseen.
    """

    symbol: str
    candle: Candle
    trusted: bool
    next_open_ms: int


class KlineTracker:
    """Each symbol's forming candle; ``update`` returns the candles that closed (oldest first)."""

    def __init__(self) -> None:
        self.forming: dict[str, Candle] = {}
        self.tainted: set[str] = set()

    def update(self, symbol: str, row: Sequence) -> list[Closed]:
        """One kline row ``[open_ms, open, high, low, close, base_volume]`` from the stream.

        A row of the forming candle replaces it; a row of a later candle closes it; a row
        of an earlier candle (a late frame) is ignored.
        """
        candle = Candle(int(row[0]), *(float(v) for v in row[1:5]), float(row[5] or 0.0))
        current = self.forming.get(symbol)
        if current is not None and candle.open_ms < current.open_ms:
            return []
        self.forming[symbol] = candle
        if current is None or candle.open_ms == current.open_ms:
            return []
        trusted = symbol not in self.tainted
        self.tainted.discard(symbol)
        return [Closed(symbol, current, trusted, candle.open_ms)]

    def taint(self, symbols: Sequence[str]) -> None:
        """The connection of ``symbols`` dropped: their forming candles may lack updates."""
        for symbol in symbols:
            if symbol in self.forming:
                self.tainted.add(symbol)

    def forget(self, symbol: str) -> None:
        self.forming.pop(symbol, None)
        self.tainted.discard(symbol)


def assign_shards(current: Sequence[Sequence[str]], wanted: Sequence[str], size: int) -> list:
    """Split ``wanted`` into connections of at most ``size`` symbols, keeping ``current`` ones.

    Symbols no longer wanted leave their shard; new ones fill the first shards with room,
    then new shards. Empty shards are dropped. Returns ``list[list[str]]``; ``size`` must
    be ≥ 1 (``ValueError``).
    """
    if size < 1:
        raise ValueError("a connection carries at least one subscription")
    want = list(dict.fromkeys(wanted))
    keep = set(want)
    shards = [[s for s in shard if s in keep][:size] for shard in current]
    placed = {s for shard in shards for s in shard}
    for symbol in want:
        if symbol in placed:
            continue
        room = next((shard for shard in shards if len(shard) < size), None)
        if room is None:
            room = []
            shards.append(room)
        room.append(symbol)
        placed.add(symbol)
    return [shard for shard in shards if shard]


def backoff_s(failures: int, base: float, cap: float, draw: float) -> float:
    """Seconds before reconnect attempt ``failures`` (≥ 1): exponential, capped, with jitter.

    ``draw`` is a uniform number in [0, 1) (``random.random()``): the wait lies in
    ``[ceiling / 2, ceiling)`` so connections dropped together do not return together.
    """
    ceiling = min(cap, base * 2 ** max(0, failures - 1))
    return ceiling * (0.5 + 0.5 * draw)

"""The ``MarketData`` condition: is market data reaching the bot?

A bot whose feed gets nothing from the exchange (no route, a ban, a wrong symbol) has
every pod Ready, yet trades nothing. The operator looks at the newest entries of the
bot's ``market_data`` stream, which carries the feed's ``market_data`` and its
``market_status`` events (``cdb.bus.STREAM_OF_TYPE``): the age of the newest
``market_data`` entry comes from its stream id (milliseconds at which Redis appended it,
so replayed history counts by when it arrived), and the newest ``market_status`` says
whether the feed itself reports the exchange unreachable or stale.

:func:`condition` is pure. Its message never contains a running age, so an unchanged
situation gives an unchanged condition and no status write.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from cdb_operator.conditions import MARKET_DATA, Cond, rfc3339

#: How many of the newest stream entries are looked at (market_status hides among data).
SCAN = 50


@dataclass(frozen=True)
class Seen:
    """What the newest entries of the bot's ``market_data`` stream say."""

    #: Unix seconds at which the newest ``market_data`` entry was appended (None: none seen).
    last_data_at: float | None = None
    #: The newest ``market_status`` among them: "ok", "unreachable" or "stale" (None: none).
    feed_status: str | None = None
    feed_reason: str = ""


def parse_entries(entries: list[tuple[Any, dict[Any, Any]]]) -> Seen:
    """``XREVRANGE market_data + - COUNT n`` (newest first) → :class:`Seen`.

    Entries that are not valid JSON events are skipped (the consumers dead-letter them).
    """
    last_data_at: float | None = None
    status: str | None = None
    reason = ""
    for entry_id, fields in entries:
        raw = fields.get(b"data", fields.get("data"))
        try:
            event = json.loads(raw)
        except (TypeError, ValueError):
            continue
        kind = event.get("type") if isinstance(event, dict) else None
        if kind == "market_data" and last_data_at is None:
            ident = entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)
            last_data_at = int(ident.split("-", 1)[0]) / 1000.0
        elif kind == "market_status" and status is None:
            status, reason = str(event.get("status", "")), str(event.get("reason", ""))
        if last_data_at is not None and status is not None:
            break
    return Seen(last_data_at, status, reason[:300])


def condition(seen: Seen | None, now: float, stale_after: float, error: str = "") -> Cond:
    """``MarketData``: True while data arrives; False with reason ``NoData`` otherwise.

    ``seen`` None means the bot's Redis could not be read (``error`` says why): Unknown.
    Data older than ``stale_after`` seconds, none at all, or a feed that reports the
    exchange unreachable/stale (newer than its last data) make it False.
    """
    if seen is None:
        return Cond(MARKET_DATA, "Unknown", "NotReported", error or "the bot's Redis not read yet")
    feed_says = ""
    if seen.feed_status and seen.feed_status != "ok":
        feed_says = f"; the feed reports the exchange {seen.feed_status}: {seen.feed_reason}"
    if seen.last_data_at is None:
        return Cond(MARKET_DATA, "False", "NoData", f"no market data received yet{feed_says}")
    if now - seen.last_data_at > stale_after or feed_says:
        since = rfc3339(seen.last_data_at)
        return Cond(MARKET_DATA, "False", "NoData", f"no market data since {since}{feed_says}")
    return Cond(MARKET_DATA, "True", "Receiving", "market data is arriving")

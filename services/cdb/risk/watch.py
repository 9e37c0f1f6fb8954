"""The risk manager's watch over its held positions: blind ones, and the feed's list of them.

A position whose symbol gets no prices cannot be stopped out. ``Watch`` (mixed into
``Guard``) raises a WARNING, then a CRITICAL ``POSITION_BLIND`` alert when a held
symbol's latest price is older than ``RISK_MARKET_DATA_MAX_AGE_S`` (twice that), and
writes the held symbols to ``HELD_KEY`` so the live feed always polls them.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from cdb.bus import BREAKER_KEY, HELD_KEY
from cdb.risk.state import RiskEvent

if TYPE_CHECKING:
    from cdb.bus import Bus
    from cdb.risk.breaker import Breaker
    from cdb.risk.market import MarketView
    from cdb.risk.portfolio import Portfolio
    from cdb.risk.rules import Limits


class Watch:
    """Blind-position checks and the held-symbols mirror; needs ``Guard``'s state and ``decide``."""

    bus: Bus
    book: Portfolio
    market: MarketView
    breaker: Breaker
    limits: Limits
    day: str
    restored_at: int
    blind: dict[str, str]
    _held_mirror: tuple[list[str], int]

    def decide(self, event: RiskEvent, *args, **kwargs) -> None:  # pragma: no cover - Guard's
        raise NotImplementedError

    def mirror_held(self, now: int) -> None:
        """Tell the feed which symbols are held (``HELD_KEY``): on a change and every 10 s.

        Every 10 s the breaker hash is rewritten too (same content), so a Redis that lost
        its data (restart without persistence, FLUSHALL) shows both again within seconds.
        """
        held = sorted(self.book.positions)
        written, at = self._held_mirror
        if held != written or now - at >= 10:
            pipe = self.bus.client.pipeline(transaction=False)
            pipe.set(HELD_KEY, json.dumps(held))
            if now - at >= 10:
                pipe.hset(BREAKER_KEY, mapping=self.breaker.redis_fields(self.day))
            pipe.execute()
            self._held_mirror = (held, now)

    def price_ages(self, now: int) -> dict[str, int]:
        """Seconds since the last price of each held symbol (since the start if none came)."""
        times = self.market.times
        return {s: now - times.get(s, self.restored_at) for s in self.book.positions}

    def check_blind(self, now: int) -> None:
        """A held symbol without a fresh price cannot be stopped out: say so, louder with time.

        WARNING once its last price is older than ``RISK_MARKET_DATA_MAX_AGE_S``, CRITICAL
        past twice that, an INFO row when prices come back; each once per episode (the
        event key names the last price's time). Shown on /status, /health and a metric.
        """
        limit = self.limits.market_data_max_age_s
        for symbol, age in self.price_ages(now).items():
            level = "CRITICAL" if age > 2 * limit else "WARNING" if age > limit else None
            before = self.blind.get(symbol)
            since = self.market.times.get(symbol, self.restored_at)
            if level is None:
                if before is not None:
                    del self.blind[symbol]
                    text = f"{symbol}: prices again ({age} s old) – its stop loss is watched again"
                    self.decide(
                        RiskEvent(
                            f"blind_end:{symbol}:{since}", now, "INFO", "resume",
                            "stale_position", text, symbol=symbol,
                        )
                    )  # fmt: skip
                continue
            if level == before or before == "CRITICAL":
                continue
            self.blind[symbol] = level
            text = (
                f"held {symbol} has no price for {age} s (limit {limit} s): its stop loss "
                "cannot fire – check that the feed includes it"
            )
            context = {"age_s": age, "limit_s": limit, "last_price_ts": since}
            self.decide(
                RiskEvent(
                    f"blind:{symbol}:{since}:{level}", now, level, "blind", "stale_position",
                    text, symbol=symbol, context=context,
                )
            )  # fmt: skip
        for symbol in set(self.blind) - set(self.book.positions):
            del self.blind[symbol]

"""The circuit breaker as a value: its three causes and the transitions between them.

A breaker is engaged while any cause holds: a manual engage, the kill switch,
or a drawdown trip dated to the current UTC day. Releasing clears the manual
causes only; a drawdown trip ends by itself when the UTC day changes. The
service persists the value in ``service_state`` and mirrors it into the Redis
hash ``BREAKER_KEY`` and a ``BreakerState`` event (the operator's contract).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass, replace
from typing import Any

from cdb.events import BreakerState


def utc_day(ts: float) -> str:
    """The UTC calendar day of a Unix time, e.g. ``2026-11-22``."""
    return dt.datetime.fromtimestamp(ts, dt.UTC).date().isoformat()


def next_utc_midnight(ts: float) -> int:
    return (int(ts) // 86_400 + 1) * 86_400


@dataclass(frozen=True, slots=True)
class Breaker:
    manual: bool = False
    kill_switch: bool = False
    drawdown_day: str | None = None
    reason: str = ""
    control_id: str | None = None
    updated_at: int = 0

    def drawdown(self, day: str) -> bool:
        """A drawdown trip holds for the UTC day it happened on."""
        return self.drawdown_day == day

    def engaged(self, day: str) -> bool:
        return self.manual or self.kill_switch or self.drawdown(day)

    # -- transitions -----------------------------------------------------------------------

    def apply_control(
        self, action: str, reason: str, control_id: str | None, now: int, day: str
    ) -> Breaker:
        """Obey a ``Control`` action; a release leaves a same-day drawdown trip in place."""
        if action == "engage_breaker":
            return replace(
                self,
                manual=True,
                reason=reason or "engaged by hand",
                control_id=control_id,
                updated_at=now,
            )
        if action == "kill_switch":
            return replace(
                self,
                kill_switch=True,
                reason=reason or "kill switch",
                control_id=control_id,
                updated_at=now,
            )
        if action == "release_breaker":
            text = reason or "released by hand"
            if self.drawdown(day):
                text = f"{text}; daily loss breaker stays engaged until the next UTC day"
            return replace(
                self,
                manual=False,
                kill_switch=False,
                reason=text[:200],
                control_id=control_id,
                updated_at=now,
            )
        raise ValueError(f"unknown control action {action!r}")

    def trip_drawdown(self, day: str, reason: str, now: int) -> Breaker:
        return replace(self, drawdown_day=day, reason=reason[:200], updated_at=now)

    def roll_day(self, day: str, now: int) -> Breaker:
        """A new UTC day clears an older drawdown trip (the manual causes stay)."""
        if self.drawdown_day is None or self.drawdown_day == day:
            return self
        reason = "new UTC day: daily loss breaker released"
        if self.manual or self.kill_switch:
            reason += "; manual breaker still engaged"
        return replace(self, drawdown_day=None, reason=reason, updated_at=now)

    # -- views -----------------------------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, value: dict[str, Any]) -> Breaker:
        known = {k: value[k] for k in cls.__dataclass_fields__ if k in value}
        return cls(**known)

    def redis_fields(self, day: str) -> dict[str, str]:
        """The hash at ``BREAKER_KEY``: string fields, as the operator reads them."""
        return {
            "engaged": "1" if self.engaged(day) else "0",
            "manual": "1" if self.manual else "0",
            "drawdown": "1" if self.drawdown(day) else "0",
            "kill_switch": "1" if self.kill_switch else "0",
            "reason": self.reason,
            "control_id": self.control_id or "",
            "updated_at": str(self.updated_at),
        }

    def event(self, day: str) -> BreakerState:
        return BreakerState(
            engaged=self.engaged(day),
            manual=self.manual,
            drawdown=self.drawdown(day),
            kill_switch=self.kill_switch,
            reason=self.reason,
            control_id=self.control_id,
        )

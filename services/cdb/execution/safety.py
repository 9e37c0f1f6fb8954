"""Why execution refuses to send an order: its fail-closed state and the risk manager's breaker.

``Problems`` is what the service itself knows is wrong (orders in state ``UNKNOWN``,
mismatches between the book and the account, an exchange that stayed unavailable) and
which orders that blocks; ``halt_reason`` reads the kill switch and breaker the risk
manager persisted. Both are asked before every send and every resend.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from cdb.risk.breaker import Breaker, utc_day


def halt_reason(breaker: dict | None, side: str, now: float) -> str | None:
    """Why an order of ``side`` must not be sent, given the risk manager's persisted breaker.

    ``breaker`` is the ``service_state`` value (risk/breaker, ``Breaker.to_json``), read
    from PostgreSQL before every send and resend, so a control engaged while execution
    was down or behind on its streams is obeyed all the same. The kill switch stops every
    order, the breaker (manual, or the daily loss limit of the current UTC day) every entry.
    """
    if not breaker:
        return None
    state = Breaker.from_json(breaker)
    if state.kill_switch:
        return f"kill switch engaged ({state.reason}): no orders of any kind"
    if side == "BUY" and state.engaged(utc_day(now)):
        return f"breaker engaged ({state.reason}): no new entries"
    return None


class OrderInDoubt(Exception):
    """The exchange has the order (it acknowledged it) but will not say what became of it."""


@dataclass
class Problems:
    """Why the service refuses new orders (fail-closed) or cannot reach the exchange."""

    unknown: dict[str, str] = field(default_factory=dict)  # client_id → reason
    unknown_symbols: dict[str, str] = field(default_factory=dict)  # client_id → symbol
    mismatches: list[str] = field(default_factory=list)  # positions the exchange does not hold
    exchange: str | None = None  # the last exhausted exchange error, cleared on success
    #: orders refused by the kill switch or breaker: count and the latest (for /status)
    refused: int = 0
    last_refused: dict | None = None
    #: what start-up reconciliation found at the exchange that the book does not know
    findings: list[str] = field(default_factory=list)

    @property
    def fail_closed(self) -> bool:
        return bool(self.unknown or self.mismatches)

    def refusal(self, side: str, symbol: str) -> str | None:
        """Why an order must not be sent while fail-closed, or None if it may go.

        A mismatch means the book cannot be trusted: nothing is sent. An ``UNKNOWN``
        order may have spent cash and changed its symbol's position: no entry (BUY) and no
        order for that symbol is sent, but closing orders of other symbols still go out,
        so their stop losses keep working.
        """
        if self.mismatches or (
            self.unknown and (side == "BUY" or symbol in self.unknown_symbols.values())
        ):
            return "; ".join(self.describe())[:500]
        return None

    def describe(self) -> list[str]:
        out = []
        if self.unknown:
            ids = ", ".join(sorted(self.unknown)[:5])
            out.append(
                f"fail-closed: {len(self.unknown)} order(s) in state UNKNOWN ({ids}); "
                "resolve with `python -m cdb.execution.resolve` (docs/services/execution.md)"
            )
        out.extend(f"fail-closed: {m}" for m in self.mismatches)
        if self.exchange:
            out.append(f"exchange unavailable: {self.exchange}")
        return out

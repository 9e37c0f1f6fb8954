"""Observe a bot's own Redis: the risk manager's breaker (and send its control) and market data.

Called by the full reconcile and by the fast breaker path alike
(:func:`cdb_operator.reconcile.poll_breaker`); one short-lived connection per call.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from cdb_operator import breaker, market
from cdb_operator.conditions import Cond
from cdb_operator.model import TradingBotSpec

if TYPE_CHECKING:
    from cdb_operator.reconcile import Context


def clean(value: Any) -> Any:
    """Drop ``None`` values: a merge patch deletes them, so the server never shows them."""
    if isinstance(value, dict):
        return {k: clean(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [clean(v) for v in value]
    return value


def sync_breaker(
    ctx: Context,
    body: dict[str, Any],
    spec: TradingBotSpec,
    previous: dict[str, Any],
    password: str | None,
) -> tuple[dict[str, Any], Cond]:
    """Observe the bot's Redis: the risk manager's breaker (sending a control when needed)
    and whether market data arrives. Returns ``status.breaker`` and the MarketData condition.

    ``error`` always reflects this observation (cleared as soon as Redis answers again), and
    ``observedAt`` (Unix seconds) is when the status last changed: an unchanged observation
    writes nothing, so a quiet bot costs no API writes.
    """
    ns, name = body["metadata"]["namespace"], body["metadata"]["name"]
    meta = body["metadata"]
    link = breaker.BreakerLink(ctx.address(ns, name, password))
    now = ctx.clock()
    errors: list[str] = []
    seen: market.Seen | None = None
    try:
        try:
            observed = link.read()
            seen = market.parse_entries(link.market())
        except breaker.BreakerUnreachable as exc:
            observed = None
            errors.append(str(exc))
        send, status = breaker.plan(
            meta.get("uid", ""),
            meta.get("generation"),
            spec.circuit_breaker,
            previous,
            observed,
            now,
            ctx.resend_after,
        )
        if send is not None:
            try:
                link.send(send)
                status = breaker.after_send(status, True, "", now)
            except breaker.BreakerUnreachable as exc:
                status = breaker.after_send(status, False, str(exc), now)
                errors.append(str(exc))
    finally:
        link.close()
    status["error"] = "; ".join(dict.fromkeys(errors))[:300]
    before = {k: v for k, v in previous.items() if k != "observedAt"}
    after = {k: v for k, v in status.items() if k != "observedAt"}
    if clean(before) != clean(after) or not previous.get("observedAt"):
        status["observedAt"] = int(now)
    market_cond = market.condition(seen, now, ctx.market_stale_after, status["error"])
    return status, market_cond

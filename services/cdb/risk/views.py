"""How the risk manager shows itself: the alert for a decision and the ``/status`` fields.

Pure functions of its state, so the wording people read is in one place.
"""

from __future__ import annotations

from typing import Any

from cdb.events import Alert
from cdb.risk import rules
from cdb.risk.breaker import Breaker
from cdb.risk.market import MarketView
from cdb.risk.portfolio import Portfolio
from cdb.risk.state import RiskEvent

#: Alert code per rule; the notifier and dashboards group alerts by it.
ALERT_CODES = {
    "drawdown": "DAILY_LOSS_LIMIT",
    "exposure": "RISK_LIMIT",
    "open_positions": "RISK_LIMIT",
    "market_status": "MARKET_PAUSED",
    "stale_market_data": "MARKET_PAUSED",
    "abnormal_move": "MARKET_PAUSED",
    "stop_loss": "STOP_LOSS",
    "stale_position": "POSITION_BLIND",
    "control": "BREAKER",
    "exit": "EXIT_FAILED",
}


def alert_for(event: RiskEvent) -> Alert:
    """The alert a WARNING or CRITICAL decision raises."""
    message = event.description
    if event.rule == "drawdown" and event.decision == "halt":
        message = "daily loss limit exceeded – trading halted"
    code = "KILL_SWITCH" if event.decision == "kill_switch" else ALERT_CODES.get(event.rule, "RISK")
    context: dict[str, Any] = {
        "event_key": event.event_key[:200],
        "rule": event.rule,
        "detail": event.description[:1000],
    }
    if event.symbol:
        context["symbol"] = event.symbol
    return Alert(
        level=event.severity, code=code, message=message[:500], context=context, source="risk"
    )


def status_fields(
    book: Portfolio,
    market: MarketView,
    breaker: Breaker,
    day: str,
    day_start: float | None,
    paused: set[str],
) -> dict[str, Any]:
    """Book, breaker and market as ``/status`` shows them."""
    prices = market.prices
    equity = book.equity(prices)
    exposure = book.exposure_value(prices) / equity * 100 if equity > 0 else None
    return {
        "equity": round(equity, 2),
        "cash": round(book.cash, 2),
        "day": day,
        "day_start_equity": day_start,
        "drawdown_pct": round(rules.drawdown_pct(equity, day_start), 3),
        "exposure_pct": round(exposure, 3) if exposure is not None else None,
        "positions": {
            s: {
                "quantity": p.quantity,
                "avg_price": p.avg_price,
                "stop_loss": p.stop_loss,
                "price": prices.get(s),
            }
            for s, p in book.positions.items()
        },
        "pending_entries": len(book.entries),
        "pending_exits": sorted(book.exits),
        "breaker": breaker.redis_fields(day) if day else None,
        "market_problem": market.problem,
        "paused_symbols": sorted(paused),
        "symbols_seen": len(prices),
    }

"""The "why" of one order: its signal and reason, every risk check with value and limit,
the order, each fill and its fee.

Pure: :func:`build` turns rows of the audit trail (as :mod:`cdb.dashboard.queries` reads
them) into one JSON-friendly dict; :func:`to_text` renders that dict for a terminal. The
dashboard's explanation page and ``cdb explain CLIENT_ID`` both show exactly this.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

#: Human names of the checks the risk manager records (``cdb.risk.checks``).
CHECK_NAMES = {
    "kill_switch": "kill switch",
    "drawdown": "daily drawdown",
    "manual_breaker": "manual breaker",
    "market_status": "exchange status",
    "market_data_age": "market data age",
    "abnormal_move": "abnormal move",
    "signal_age": "signal age",
    "exposure": "exposure before",
    "open_positions": "open positions",
    "position_size": "position size",
    "exposure_after": "exposure after",
    "cash": "free cash",
    "min_order_value": "minimum order value",
    "position_held": "position held",
    "exit_pending": "already closing",
    "stop_loss": "stop loss",
}
#: ``risk_events.rule`` → the check that rule is about (the one that decided).
RULE_CHECK = {
    "kill_switch": "kill_switch",
    "drawdown": "drawdown",
    "manual_breaker": "manual_breaker",
    "market_status": "market_status",
    "stale_market_data": "market_data_age",
    "abnormal_move": "abnormal_move",
    "stale_signal": "signal_age",
    "exposure": "exposure",
    "open_positions": "open_positions",
    "min_order_value": "min_order_value",
    "no_position": "position_held",
    "exit_pending": "exit_pending",
    "stop_loss": "stop_loss",
}
#: A clipped order's rule names the room that bound it (``rules.size_entry``).
CLIP_CHECK = {"position": "position_size", "exposure": "exposure_after", "cash": "cash"}


def decided_check(decision: str, rule: str) -> str | None:
    """The check a decision's rule is about (``None`` for approvals)."""
    if decision == "clip":
        return CLIP_CHECK.get(rule)
    return RULE_CHECK.get(rule)


def _iso(ts: int | None) -> str | None:
    if ts is None:
        return None
    return dt.datetime.fromtimestamp(int(ts), dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def build(
    client_id: str | None,
    signal: dict[str, Any] | None,
    decision: dict[str, Any] | None,
    order: dict[str, Any] | None,
    result: dict[str, Any] | None,
    fills: list[dict[str, Any]],
) -> dict[str, Any]:
    """The explanation of ``client_id`` from its rows (each a column → value dict); for a
    signal that got no order, ``client_id`` is ``None`` and ``signal`` / ``decision`` say why.

    Returns ``{"client_id", "found", "signal", "decision", "checks", "order", "result",
    "fills", "fees", "realized_pnl", "summary"}``; ``checks`` items carry ``decided``
    (the check whose rule made the decision). ``found`` is False when no row names it.
    """
    found = any(x is not None for x in (signal, decision, order, result)) or bool(fills)
    context = (decision or {}).get("context") or {}
    decided = decided_check((decision or {}).get("decision", ""), (decision or {}).get("rule", ""))
    checks = []
    for item in context.get("checks") or []:
        name = item.get("check", "")
        checks.append(
            {
                **item,
                "name": CHECK_NAMES.get(name, name),
                "decided": name == decided,
            }
        )
    fees = round(sum(float(f.get("fee") or 0) for f in fills), 10)
    pnl = round(sum(float(f.get("realized_pnl") or 0) for f in fills), 10)
    out = {
        "client_id": client_id,
        "found": found,
        "signal": _with_time(signal),
        "decision": _with_time(
            {k: v for k, v in decision.items() if k != "context"} | {"context": context}
            if decision
            else None
        ),
        "checks": checks,
        "order": _with_time(order),
        "result": _with_time(result),
        "fills": [_with_time(f) for f in fills],
        "fees": fees,
        "realized_pnl": pnl,
    }
    out["summary"] = summary(out)
    return out


def _with_time(row: dict[str, Any] | None) -> dict[str, Any] | None:
    if row is None:
        return None
    return {**row, "time": _iso(row.get("ts"))}


def summary(expl: dict[str, Any]) -> str:
    """One sentence: what was decided, by which rule, and what became of the order."""
    if not expl["found"]:
        return f"no order, signal or decision with id {expl['client_id'] or 'given'}"
    parts = []
    sig = expl["signal"]
    if sig:
        parts.append(f"{sig['side']} signal on {sig['symbol']} ({sig['reason']})")
    dec = expl["decision"]
    if dec:
        parts.append(f"risk: {dec['decision']} by rule {dec['rule']}")
    order = expl["order"]
    if order:
        parts.append(
            f"order {order['side']} {order['quantity']:g} {order['symbol']} {order['status']}"
        )
    if expl["fills"]:
        parts.append(f"{len(expl['fills'])} fill(s), fees {expl['fees']:g}")
    return "; ".join(parts)


def _fmt(value: Any, unit: str = "") -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        value = f"{value:.6g}"
    return f"{value} {unit}".strip()


def to_text(expl: dict[str, Any]) -> str:
    """The explanation as lines for a terminal (what ``cdb explain`` prints)."""
    head = f"order {expl['client_id']}" if expl["client_id"] else "signal (no order)"
    lines = [f"{head}: {expl['summary']}"]
    sig = expl["signal"]
    if sig:
        lines += [
            "",
            f"signal   {sig['signal_id']} at {sig['time']}",
            f"         {sig['side']} {sig['symbol']} @ {_fmt(sig['price'])}, "
            f"confidence {sig['confidence']:.2f}, strategy {sig['strategy']}",
            f"         reason: {sig['reason']}",
        ]
    dec = expl["decision"]
    if dec:
        lines += [
            "",
            f"decision {dec['decision']} (rule {dec['rule']}, {dec['severity']}) at {dec['time']}",
            f"         {dec['description']}",
        ]
    if expl["checks"]:
        lines += ["", "checks   (value / limit)"]
        for c in expl["checks"]:
            mark = "ok  " if c.get("ok") else "FAIL"
            star = "  <- decided" if c.get("decided") else ""
            lines.append(
                f"  {mark} {c['name']:<20} {_fmt(c.get('value'), c.get('unit', '')):>18} / "
                f"{_fmt(c.get('limit'), c.get('unit', ''))}{star}"
            )
    elif dec:
        lines.append("         (no checks recorded for this decision)")
    order = expl["order"]
    if order:
        lines += [
            "",
            f"order    {order['side']} {_fmt(order['quantity'])} {order['symbol']} "
            f"ref price {_fmt(order.get('price'))}, stop {_fmt(order.get('stop_loss'))}, "
            f"status {order['status']} ({order['mode']})",
        ]
        if order.get("error"):
            lines.append(f"         error: {order['error']}")
    for f in expl["fills"]:
        lines.append(
            f"fill     {f['time']} {f['side']} {_fmt(f['quantity'])} @ {_fmt(f['price'])}, "
            f"fee {_fmt(f['fee'])}, realized P&L {_fmt(f['realized_pnl'])}"
        )
    if expl["fills"]:
        lines.append(
            f"total    fees {_fmt(expl['fees'])}, realized P&L {_fmt(expl['realized_pnl'])}"
        )
    return "\n".join(lines)

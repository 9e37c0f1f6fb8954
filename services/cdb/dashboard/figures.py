"""The dashboard's figures from the audit trail's rows: pure arithmetic, no I/O.

Cash and positions are what execution wrote (``balances``, ``positions``); prices are
the latest ``market_data`` per symbol. The same identity as the execution ledger's
(``cdb.execution.accounting``): equity = cash + Σ quantity × price = starting cash +
realised P&L (fees included) + unrealised P&L. The equity curve is the starting cash
plus the cumulative realised P&L after each fill, ending at today's equity at market.
"""

from __future__ import annotations

from typing import Any

from cdb.risk.rules import drawdown_pct


def positions(rows: list[dict[str, Any]], prices: dict[str, dict[str, Any]]) -> list[dict]:
    """Open positions with ``price`` (latest, or ``None``), ``value`` and ``unrealized_pnl``.

    ``rows``: ``positions`` rows (symbol, quantity, avg_price, stop_loss, take_profit,
    opened_ts); ``prices``: symbol → ``{"price", "ts"}``. A position without a known price
    is valued at its entry (``priced`` False), so equity never jumps to zero.
    """
    out = []
    for row in rows:
        if row["quantity"] <= 0:
            continue
        known = prices.get(row["symbol"])
        price = known["price"] if known else None
        mark = price if price is not None else row["avg_price"]
        out.append(
            {
                **row,
                "price": price,
                "priced": price is not None,
                "value": row["quantity"] * mark,
                "unrealized_pnl": row["quantity"] * (mark - row["avg_price"]),
            }
        )
    return out


def account(
    cash: float,
    open_positions: list[dict[str, Any]],
    day_start_equity: float | None,
    max_drawdown_pct: float,
) -> dict[str, Any]:
    """Cash, equity, exposure and the UTC day's drawdown against its limit (all in quote)."""
    value = sum(p["value"] for p in open_positions)
    equity = cash + value
    dd = drawdown_pct(equity, day_start_equity)
    return {
        "cash": cash,
        "positions_value": value,
        "equity": equity,
        "unrealized_pnl": sum(p["unrealized_pnl"] for p in open_positions),
        "exposure_pct": value / equity * 100.0 if equity > 0 else None,
        "day_start_equity": day_start_equity,
        "drawdown_pct": dd,
        "drawdown_limit_pct": max_drawdown_pct,
        "drawdown_used_pct": dd / max_drawdown_pct * 100.0 if max_drawdown_pct else None,
    }


def equity_curve(
    start_cash: float, cumulative: list[tuple[int, float]], now: int, equity_now: float
) -> list[list[float]]:
    """``[[ts, equity], ...]``: start, then after each fill (``cumulative`` realised P&L),
    then ``now`` at market. The first point sits one second before the first fill."""
    points: list[list[float]] = []
    if cumulative:
        points.append([cumulative[0][0] - 1, start_cash])
    points += [[ts, start_cash + pnl] for ts, pnl in cumulative]
    if not points or now >= points[-1][0]:
        points.append([now, equity_now])
    return points


def market_ages(prices: dict[str, dict[str, Any]], now: int) -> list[dict[str, Any]]:
    """Per symbol: latest price, its event time and age in seconds, sorted by symbol."""
    return [
        {"symbol": s, "price": p["price"], "ts": p["ts"], "age_s": max(0, now - p["ts"])}
        for s, p in sorted(prices.items())
    ]


def services_health(
    beats: dict[str, dict[str, Any]], now: int, stale_after: float
) -> list[dict[str, Any]]:
    """Per service: its last heartbeat's status, age, and ``stale`` past ``stale_after`` s."""
    out = []
    for name, beat in sorted(beats.items()):
        age = max(0, now - beat["ts"])
        status = beat["status"] if age <= stale_after else "stale"
        out.append({"service": name, "status": status, "age_s": age, "details": beat["details"]})
    return out

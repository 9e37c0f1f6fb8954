"""The report's figures from fills and an equity curve (a backtest's or the live audit trail's).

* **trades** are round trips: a position from its first BUY to the SELL that closes it;
  its P&L is what the SELLs brought in minus what the BUYs cost, fees included
  (``Σ sell qty×price − fee − Σ buy qty×price + fee``); a win is P&L > 0;
* **max drawdown**: the largest fall of equity from its running peak, percent of the peak;
* **Sharpe / Sortino**: daily returns of equity at UTC day ends (the last sample of
  each day, carried over days without one), mean over standard deviation (Sortino:
  over the root mean square of the negative returns), × √365 (crypto trades every day),
  risk-free rate 0; ``None`` with fewer than two daily returns or no dispersion;
* **exposure**: value of open positions in percent of equity, from the samples.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable
from typing import Any

DAY = 86_400


def round_trips(fills: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Fills (time order) → closed round trips per symbol, plus still-open ones (``open``)."""
    books: dict[str, dict[str, Any]] = {}
    out: list[dict[str, Any]] = []
    for f in fills:
        sym, qty, value, fee = f["symbol"], f["quantity"], f["quantity"] * f["price"], f["fee"]
        t = books.get(sym)
        if f["side"] == "BUY":
            if t is None:
                t = books[sym] = {
                    "symbol": sym, "open_ts": f["ts"], "close_ts": None, "quantity": 0.0,
                    "cost": 0.0, "proceeds": 0.0, "fees": 0.0, "sold": 0.0, "exit_rule": None,
                }  # fmt: skip
            t["quantity"] += qty
            t["cost"] += value
            t["fees"] += fee
        elif t is not None:
            t["sold"] += qty
            t["proceeds"] += value
            t["fees"] += fee
            if t["sold"] >= t["quantity"] * (1 - 1e-9):
                t["close_ts"], t["exit_rule"] = f["ts"], f.get("rule")
                t["pnl"] = t["proceeds"] - t["cost"] - t["fees"]
                out.append(books.pop(sym))
    for t in books.values():
        t["open"] = True
        out.append(t)
    return out


def daily_equity(curve: list[tuple[int, float, float]]) -> list[tuple[int, float]]:
    """Equity at each UTC day's end (day index, equity), days without a sample carried over."""
    if not curve:
        return []
    last: dict[int, float] = {}
    for ts, equity, _ in curve:
        last[ts // DAY] = equity
    first, end = min(last), max(last)
    out, value = [], last[first]
    for day in range(first, end + 1):
        value = last.get(day, value)
        out.append((day, value))
    return out


def ratios(
    daily: list[tuple[int, float]], start_equity: float
) -> tuple[float | None, float | None]:
    """(Sharpe, Sortino) of daily returns, annualised with √365; see the module docstring."""
    values = [start_equity] + [v for _, v in daily]
    rets = [b / a - 1.0 for a, b in zip(values, values[1:], strict=False) if a > 0]
    if len(rets) < 2:
        return None, None
    mean = sum(rets) / len(rets)
    sd = math.sqrt(sum((r - mean) ** 2 for r in rets) / (len(rets) - 1))
    down = math.sqrt(sum(min(r, 0.0) ** 2 for r in rets) / len(rets))
    sharpe = mean / sd * math.sqrt(365) if sd > 0 else None
    sortino = mean / down * math.sqrt(365) if down > 0 else None
    return sharpe, sortino


def drawdown_series(curve: list[tuple[int, float, float]]) -> list[float]:
    """Drawdown from the running peak, percent, per curve sample."""
    out, peak = [], -math.inf
    for _, equity, _ in curve:
        peak = max(peak, equity)
        out.append((peak - equity) / peak * 100.0 if peak > 0 else 0.0)
    return out


def summarize(result: dict[str, Any]) -> dict[str, Any]:
    """The report's figures from a run's plain values (``RunResult`` as a dict)."""
    fills = result["fills"]
    trips = round_trips(fills)
    closed = [t for t in trips if not t.get("open")]
    wins = [t for t in closed if t["pnl"] > 0]
    per_symbol: dict[str, dict[str, float]] = defaultdict(
        lambda: {"trades": 0, "wins": 0, "pnl": 0.0, "fees": 0.0}
    )
    for t in closed:
        row = per_symbol[t["symbol"]]
        row["trades"] += 1
        row["wins"] += t["pnl"] > 0
        row["pnl"] += t["pnl"]
        row["fees"] += t["fees"]
    start, end = result["start_equity"], result["end_equity"]
    curve = result["curve"]
    daily = daily_equity(curve)
    sharpe, sortino = ratios(daily, start)
    exposures = [e for _, _, e in curve]
    return {
        "candles": result["candles"],
        "period": {"first_ts": result["first_ts"], "last_ts": result["last_ts"]},
        "symbols": len(result["symbols"]),
        "signals": result["signals"],
        "fills": len(fills),
        "trades": len(closed),
        "open_trades": len(trips) - len(closed),
        "wins": len(wins),
        "win_rate_pct": len(wins) / len(closed) * 100.0 if closed else None,
        "start_equity": start,
        "end_equity": end,
        "pnl_total": end - start,
        "pnl_total_pct": (end / start - 1.0) * 100.0 if start else None,
        "pnl_closed_trades": sum(t["pnl"] for t in closed),
        "fees_paid": sum(f["fee"] for f in fills),
        "max_drawdown_pct": result["max_drawdown_pct"],
        "max_drawdown_ts": result["max_drawdown_ts"],
        "sharpe": sharpe,
        "sortino": sortino,
        "exposure_avg_pct": sum(exposures) / len(exposures) if exposures else 0.0,
        "exposure_max_pct": max(exposures) if exposures else 0.0,
        "breaker_trips": result["trips"],
        "abnormal_market_pauses": result["pauses"],
        "decisions": result["decisions"],
        "per_symbol": {s: per_symbol[s] for s in sorted(per_symbol)},
        "exits": dict(sorted(_count(t.get("exit_rule") or "?" for t in closed).items())),
    }


def _count(items: Iterable[str]) -> dict[str, int]:
    out: dict[str, int] = {}
    for item in items:
        out[item] = out.get(item, 0) + 1
    return out

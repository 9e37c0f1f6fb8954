"""Read a period of the audit trail (PostgreSQL) into the shape the backtest report uses.

What really happened: fills from ``trades`` (each with the rule of the decision that
sent it, from ``risk_events``), signals, decisions, breaker trips (``halt:`` rows),
abnormal-market pauses (``abnormal:`` / ``abnormal_end:`` and ``market:`` rows). The
equity curve is rebuilt from the fills: cash at the period's start is the quote
balance now minus every later cash flow (``PAPER_START_BALANCE`` when execution has
written no balance yet), and positions are marked at the last price seen in a fill or
a signal (the trail keeps no ticks, so the curve moves only at those moments).
"""

from __future__ import annotations

from typing import Any

from cdb.backtest.sim import Recorder, pause_event


def _rows(cur: Any, query: str, args: tuple = ()) -> list[tuple]:
    cur.execute(query, args)
    return cur.fetchall()


def load(conn: Any, since: int, until: int, quote: str, start_balance: float) -> dict[str, Any]:
    """The period ``[since, until)`` (Unix seconds) as a ``RunResult``-like dict."""
    with conn.cursor() as cur:
        trades = _rows(
            cur,
            "SELECT t.ts, t.client_id, t.symbol, t.side, t.quantity, t.price, t.fee, "
            "  (SELECT rule FROM risk_events r WHERE r.client_id = t.client_id "
            "   AND r.decision IN ('approve', 'clip', 'exit') ORDER BY r.id LIMIT 1) "
            "FROM trades t WHERE t.ts < %s ORDER BY t.ts, t.id",
            (until,),
        )
        balance = _rows(cur, "SELECT free + locked FROM balances WHERE asset = %s", (quote,))
        later = _rows(
            cur,
            "SELECT coalesce(sum(CASE WHEN side = 'BUY' THEN -(quantity * price) - fee "
            "ELSE quantity * price - fee END), 0) FROM trades WHERE ts >= %s",
            (until,),
        )
        signals = _rows(
            cur,
            "SELECT ts, symbol, price FROM signals WHERE ts >= %s AND ts < %s ORDER BY ts, id",
            (since, until),
        )
        events = _rows(
            cur,
            "SELECT ts, event_key, decision, rule, symbol, description, context FROM risk_events "
            "WHERE ts >= %s AND ts < %s ORDER BY ts, id",
            (since, until),
        )
    # cash before any trade: the balance now minus every flow since (or the start setting)
    flows_all = sum(_flow(t) for t in trades) + float(later[0][0])
    cash = (float(balance[0][0]) - flows_all) if balance else start_balance
    positions: dict[str, float] = {}
    prices: dict[str, float] = {}
    fills, curve = [], []
    obs = sorted(
        [(t[0], 0, t) for t in trades] + [(s[0], 1, s) for s in signals], key=lambda x: x[:2]
    )

    def equity() -> tuple[float, float]:
        value = sum(q * prices.get(s, 0.0) for s, q in positions.items())
        total = cash + value
        return total, (value / total * 100.0 if total > 0 else 0.0)

    start_equity = None
    for ts, kind, row in obs:
        if ts >= since and start_equity is None:
            start_equity = equity()[0]
            curve.append((since, start_equity, equity()[1]))
        if kind == 1:
            prices[row[1]] = float(row[2])
        else:
            _, cid, sym, side, qty, price, fee, rule = row
            cash += _flow(row)
            positions[sym] = positions.get(sym, 0.0) + (qty if side == "BUY" else -qty)
            if positions[sym] <= 1e-12 * max(1.0, qty):
                positions.pop(sym)
            prices[sym] = float(price)
            if ts >= since:
                fills.append(
                    {"ts": ts, "client_id": cid, "symbol": sym, "side": side, "quantity": qty,
                     "price": price, "fee": fee, "rule": rule or "", "reason": ""}
                )  # fmt: skip
        if ts >= since:
            curve.append((ts, *equity()))
    if start_equity is None:
        start_equity = equity()[0]
        curve.append((since, start_equity, equity()[1]))
    end_equity, end_exposure = equity()
    curve.append((until, end_equity, end_exposure))
    peak, max_dd, max_dd_ts = -1.0, 0.0, None
    for ts, eq, _ in curve:
        peak = max(peak, eq)
        dd = (peak - eq) / peak * 100.0 if peak > 0 else 0.0
        if dd > max_dd:
            max_dd, max_dd_ts = dd, ts
    rec = Recorder()
    for ts, key, decision, rule, symbol, text, context in events:
        if key.startswith(("abnormal:", "abnormal_end:")):
            pause_event(rec, decision, symbol or "", ts, context)
        elif key.startswith("market:"):
            pause_event(rec, decision, "(exchange)", ts, context)
            rec.decisions[(decision, rule)] += 1
        else:
            rec.decisions[(decision, rule)] += 1
            if key.startswith("halt:"):
                rec.trips.append({"ts": ts, "reason": text, **(context or {})})
    return {
        "settings": {"QUOTE_ASSET": quote, "period_since": since, "period_until": until},
        "files": [],
        "symbols": sorted({f["symbol"] for f in fills} | {s[1] for s in signals}),
        "candles": 0,
        "first_ts": since,
        "last_ts": until,
        "signals": len(signals),
        "start_equity": start_equity,
        "end_equity": end_equity,
        "max_drawdown_pct": max_dd,
        "max_drawdown_ts": max_dd_ts,
        "curve": curve,
        "fills": fills,
        "trips": rec.trips,
        "pauses": rec.pauses,
        "decisions": {f"{d}/{r}": n for (d, r), n in sorted(rec.decisions.items())},
        "open_positions": {
            s: {"quantity": q, "price": prices.get(s)} for s, q in positions.items()
        },
    }


def _flow(trade: tuple) -> float:
    """Cash change of one fill: a BUY pays value and fee, a SELL receives value minus fee."""
    side, qty, price, fee = trade[3], trade[4], trade[5], trade[6]
    return -(qty * price) - fee if side == "BUY" else qty * price - fee

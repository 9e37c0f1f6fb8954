"""Rule compliance of a period: every order traced to its decision and checked against the limits.

Per order (``orders``): its decision row (``risk_events`` with its ``client_id``) must
exist; an entry must come from a recorded signal, be worth no more than
``MAX_POSITION_PCT`` of the equity the decision saw, be decided with fewer than
``MAX_OPEN_POSITIONS`` open and exposure under ``MAX_EXPOSURE_PCT``, and not while the
breaker was engaged (a ``halt:`` trip that day, or an engage/kill switch not yet
released); a stop-loss exit must be at or below its stop. Each check's outcome is
listed; a failed one is a violation. Limits are the services' settings (environment).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from cdb.risk.rules import Limits

SLACK = 1e-6  # relative: sizes are shaved by 1e-9 below limits, never above


def _day(ts: int) -> str:
    return dt.datetime.fromtimestamp(ts, dt.UTC).date().isoformat()


def check(conn: Any, since: int, until: int, limits: Limits) -> dict[str, Any]:
    """``{"orders", "traced", "checks": [...], "violations": [...]}`` for ``[since, until)``."""
    with conn.cursor() as cur:
        cur.execute(
            "SELECT o.client_id, o.signal_id, o.ts, o.symbol, o.side, o.quantity, o.price, "
            "o.status, r.ts, r.decision, r.rule, r.context, "
            "EXISTS (SELECT 1 FROM signals s WHERE s.signal_id = o.signal_id) "
            "FROM orders o LEFT JOIN LATERAL (SELECT * FROM risk_events r "
            "  WHERE r.client_id = o.client_id AND r.decision IN ('approve', 'clip', 'exit') "
            "  ORDER BY r.id LIMIT 1) r ON true "
            "WHERE o.ts >= %s AND o.ts < %s ORDER BY o.ts, o.id",
            (since, until),
        )
        orders = cur.fetchall()
        cur.execute(
            "SELECT ts, event_key, decision FROM risk_events WHERE ts < %s AND "
            "(event_key LIKE 'halt:%%' OR decision IN "
            "('engage_breaker', 'kill_switch', 'release_breaker')) ORDER BY ts, id",
            (until,),
        )
        breaker_events = cur.fetchall()
    checks, violations = [], []
    traced = 0
    for (
        cid,
        _sid,
        ts,
        sym,
        side,
        qty,
        price,
        status,
        dts,
        decision,
        rule,
        ctx,
        has_signal,
    ) in orders:
        ctx = ctx or {}
        results: dict[str, bool] = {"decision_recorded": decision is not None}
        if decision is not None:
            traced += 1
        if side == "BUY":
            equity = ctx.get("equity") or 0.0
            value = qty * (ctx.get("price") or price or 0.0)
            results["from_a_signal"] = bool(has_signal)
            results["position_limit"] = (
                equity > 0 and value <= equity * limits.max_position_pct / 100 * (1 + SLACK)
            )
            results["open_positions_limit"] = (
                ctx.get("open_positions") or 0
            ) < limits.max_open_positions
            exposure = ctx.get("exposure_pct")
            results["exposure_limit"] = exposure is None or exposure < limits.max_exposure_pct
            results["breaker_released"] = not _engaged(
                breaker_events, dts if dts is not None else ts
            )
        elif rule == "stop_loss":
            stop, at = ctx.get("stop_loss"), ctx.get("price")
            results["at_or_below_stop"] = (
                stop is not None and at is not None and at <= stop * (1 + SLACK)
            )
        row = {"client_id": cid, "ts": ts, "symbol": sym, "side": side, "status": status,
               "decision": decision, "rule": rule, "checks": results}  # fmt: skip
        checks.append(row)
        failed = [k for k, ok in results.items() if not ok]
        if failed:
            violations.append({**row, "failed": failed})
    return {"orders": len(orders), "traced": traced, "checks": checks, "violations": violations}


def _engaged(events: list[tuple], ts: int) -> bool:
    """Was the breaker engaged at ``ts``: a trip that UTC day, or a manual engage not released."""
    manual = False
    for ets, key, decision in events:
        if ets > ts:
            break
        if key.startswith("halt:") and _day(ets) == _day(ts):
            return True
        if decision in ("engage_breaker", "kill_switch"):
            manual = True
        elif decision == "release_breaker":
            manual = False
    return manual

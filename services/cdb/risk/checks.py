"""Every risk check a signal met, with the value it saw and the limit it was held against.

``rules.evaluate`` stops at the first check that decides; a person asking "why" also
wants the checks that passed. :func:`record` lists them all for one decision, in the
rules' order of priority, as plain JSON stored in the decision's ``risk_events.context``
(key ``checks``), so an explanation shows the limits in force *when* it was decided,
not today's settings. Pure: the same inputs as ``rules.evaluate`` plus its decision.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from cdb.events import Signal
from cdb.risk import rules


def _check(name: str, value: Any, limit: Any, ok: bool, unit: str = "", text: str = "") -> dict:
    """One entry: ``{"check", "value", "limit", "unit", "ok", "text"}`` (numbers rounded)."""
    if isinstance(value, float):
        value = round(value, 6)
    if isinstance(limit, float):
        limit = round(limit, 6)
    return {"check": name, "value": value, "limit": limit, "unit": unit, "ok": ok, "text": text}


def record(
    signal: Signal, snap: rules.Snapshot, limits: rules.Limits, decision: rules.Decision
) -> list[dict[str, Any]]:
    """The checks of ``decision`` for ``signal``: a list of at most 13 small dicts.

    ``ok`` is whether the value was within its limit; the check named by
    ``decision.rule`` is the one that decided (the rules stop there).
    """
    out = [
        _check(
            "kill_switch",
            "engaged" if snap.kill_switch else "off",
            "off",
            not snap.kill_switch,
            text="no orders at all while engaged",
        )
    ]
    age_s = snap.now - signal.timestamp
    if signal.side == "SELL":
        out.append(
            _check(
                "position_held",
                snap.symbol_quantity,
                "> 0",
                snap.symbol_quantity > 0,
                text="spot: only a held position can be sold",
            )
        )
        out.append(
            _check(
                "exit_pending",
                "closing" if snap.exit_pending else "no",
                "no",
                not snap.exit_pending,
                text="a position already being closed is not sold twice",
            )
        )
        out.append(
            _check(
                "signal_age", age_s, limits.signal_max_age_s, age_s <= limits.signal_max_age_s, "s"
            )
        )
        return out
    dd = rules.drawdown_pct(snap.equity, snap.day_start_equity)
    out.append(
        _check(
            "drawdown",
            dd,
            limits.max_daily_drawdown_pct,
            dd < limits.max_daily_drawdown_pct and not snap.drawdown_breaker,
            "%",
            "loss since the UTC day's start",
        )
    )
    out.append(
        _check(
            "manual_breaker",
            "engaged" if snap.manual_breaker else "off",
            "off",
            not snap.manual_breaker,
        )
    )
    out.append(
        _check(
            "market_status",
            snap.market_problem or "ok",
            "ok",
            not snap.market_problem,
        )
    )
    if snap.price_ts is not None:
        md_age = snap.now - snap.price_ts
        out.append(
            _check(
                "market_data_age",
                md_age,
                limits.market_data_max_age_s,
                md_age <= limits.market_data_max_age_s,
                "s",
            )
        )
    out.append(
        _check(
            "abnormal_move",
            snap.move_pct,
            limits.abnormal_move_pct,
            snap.move_pct <= limits.abnormal_move_pct,
            "%",
            "price range within the window",
        )
    )
    out.append(
        _check("signal_age", age_s, limits.signal_max_age_s, age_s <= limits.signal_max_age_s, "s")
    )
    exposure = snap.exposure_value / snap.equity * 100.0 if snap.equity > 0 else None
    out.append(
        _check(
            "exposure",
            exposure,
            limits.max_exposure_pct,
            exposure is not None and exposure < limits.max_exposure_pct - rules.PCT_SLACK,
            "%",
            "positions and pending entries, % of equity, before this order",
        )
    )
    out.append(
        _check(
            "open_positions",
            snap.open_positions,
            limits.max_open_positions,
            snap.open_positions < limits.max_open_positions,
        )
    )
    sized = decision
    if decision.rule == "min_order_value":  # the size it would have had, without the minimum
        sized = rules.size_entry(signal, snap, replace(limits, min_order_value=0.0))
    if sized.kind not in ("approve", "clip") or not sized.price or snap.equity <= 0:
        if decision.rule == "min_order_value":
            out.append(_check("min_order_value", 0.0, limits.min_order_value, False))
        return out
    value = sized.quantity * sized.price
    target = rules.target_value(signal, snap.equity, limits)
    share = (snap.symbol_value + value) / snap.equity * 100.0
    out.append(
        _check(
            "position_size",
            share,
            limits.max_position_pct,
            share <= limits.max_position_pct + rules.PCT_SLACK,
            "%",
            f"this symbol after the order, % of equity (asked "
            f"{target / snap.equity * 100.0:.4g} %: confidence {signal.confidence:.2f} × "
            f"{limits.target_position_pct:g} %)",
        )
    )
    after = (snap.exposure_value + value) / snap.equity * 100.0
    out.append(
        _check(
            "exposure_after",
            after,
            limits.max_exposure_pct,
            after <= limits.max_exposure_pct + rules.PCT_SLACK,
            "%",
            "all positions after the order, % of equity",
        )
    )
    out.append(
        _check(
            "cash",
            value,
            snap.cash,
            value <= snap.cash * (1 + rules.EPS),
            limits.quote_asset,
            "order value against free cash (after the fee buffer)",
        )
    )
    out.append(
        _check(
            "min_order_value",
            value,
            limits.min_order_value,
            value >= limits.min_order_value,
            limits.quote_asset,
            "orders worth less are not sent",
        )
    )
    return out


def exit_checks(
    rule: str, price: float | None, stop_loss: float, drawdown_tripped: bool, quote: str
) -> list[dict[str, Any]]:
    """The checks behind a closing order (``maybe_exit``): the daily drawdown trip, then the
    position's stop, with the price seen and the stop it was held against.

    ``rule`` is the exit's rule (``"drawdown"`` or ``"stop_loss"``); ``ok`` is False for
    the check that closed the position (the one ``rule`` names).
    """
    return [
        _check(
            "drawdown",
            "tripped" if drawdown_tripped else "no",
            "no",
            not drawdown_tripped,
            text="a tripped daily breaker closes every position",
        ),
        _check(
            "stop_loss",
            price if price is not None else "no price",
            stop_loss,
            rule != "stop_loss",
            unit=quote,
            text="a price at or below the position's stop closes it",
        ),
    ]

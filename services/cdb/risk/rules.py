"""The risk rules: pure functions from (signal, snapshot, limits) to one decision.

Each check looks at one concern and returns a ``Decision`` when it applies, or
``None``; ``evaluate`` runs them in the design's order of priority and the
first that applies decides (breaker, abnormal market, stale signal, exposure
and position count, then sizing with clipping). Nothing here reads a clock,
a database or a stream: the service builds a ``Snapshot`` and publishes what
comes back, so the property tests can drive every rule directly.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from cdb.events import Signal

DecisionKind = Literal["approve", "clip", "reject", "halt", "pause", "exit"]
Severity = Literal["INFO", "WARNING", "CRITICAL"]

#: Relative slack for float comparisons: a size equal to a limit is not "above" it.
EPS = 1e-9
#: Percentage points below a limit that already count as "at the limit": orders are shaved
#: by EPS so that rounding never lands them above a limit, which leaves them a hair below it.
PCT_SLACK = 1e-6


@dataclass(frozen=True, slots=True)
class Limits:
    """The limits and thresholds the rules apply (built from ``RiskSettings``)."""

    max_position_pct: float = 10.0
    max_exposure_pct: float = 50.0
    max_open_positions: int = 5
    max_daily_drawdown_pct: float = 5.0
    stop_loss_pct: float = 2.0
    target_position_pct: float = 20.0
    min_order_value: float = 5.0
    signal_max_age_s: int = 60
    market_data_max_age_s: int = 120
    abnormal_move_pct: float = 10.0
    quote_asset: str = "USDT"


@dataclass(frozen=True, slots=True)
class Snapshot:
    """What the rules see of the world when a signal arrives.

    Values are in the quote asset at the latest known prices. ``exposure_value``,
    ``open_positions``, ``symbol_value`` and ``cash`` already count entry orders
    that are approved but not yet filled, so two quick signals cannot both use
    the same room.
    """

    now: int
    equity: float
    day_start_equity: float | None
    cash: float
    exposure_value: float
    open_positions: int
    symbol_value: float = 0.0
    symbol_quantity: float = 0.0
    exit_pending: bool = False
    manual_breaker: bool = False
    kill_switch: bool = False
    drawdown_breaker: bool = False
    market_problem: str | None = None
    price: float | None = None
    price_ts: int | None = None
    move_pct: float = 0.0


@dataclass(frozen=True, slots=True)
class Decision:
    """The outcome for one signal (or one exit), with a reason a person can read."""

    kind: DecisionKind
    rule: str
    severity: Severity
    reason: str
    quantity: float = 0.0
    price: float | None = None
    stop_loss: float | None = None

    @property
    def sends_order(self) -> bool:
        return self.kind in ("approve", "clip", "exit")


def drawdown_pct(equity: float, day_start_equity: float | None) -> float:
    """Loss since the day's start in percent of the starting equity (0 when up or unknown)."""
    if not day_start_equity or day_start_equity <= 0:
        return 0.0
    return max(0.0, (day_start_equity - equity) / day_start_equity * 100.0)


def stop_price(entry_price: float, limits: Limits) -> float:
    """The stop loss of a long position: STOP_LOSS_PCT below its entry price."""
    return entry_price * (1.0 - limits.stop_loss_pct / 100.0)


def _pct(value: float) -> str:
    return f"{value:.1f}".rstrip("0").rstrip(".")


def _money(value: float, limits: Limits) -> str:
    return f"{value:,.2f} {limits.quote_asset}"


# -- the checks, in order of priority -----------------------------------------------------------


def check_breaker(signal: Signal, snap: Snapshot, limits: Limits) -> Decision | None:
    """(1) The breaker, engaged or due: no new entries."""
    sid = signal.signal_id
    if snap.kill_switch:
        return Decision(
            "halt", "kill_switch", "INFO", f"kill switch engaged – signal {sid} blocked"
        )
    if snap.drawdown_breaker:
        return Decision(
            "halt", "drawdown", "INFO", f"daily loss breaker engaged – signal {sid} blocked"
        )
    dd = drawdown_pct(snap.equity, snap.day_start_equity)
    if dd >= limits.max_daily_drawdown_pct:
        return Decision(
            "halt",
            "drawdown",
            "CRITICAL",
            f"daily loss limit exceeded – trading halted: drawdown {_pct(dd)} % ≥ limit "
            f"{_pct(limits.max_daily_drawdown_pct)} % – signal {sid} rejected",
        )
    if snap.manual_breaker:
        return Decision(
            "halt", "manual_breaker", "INFO", f"breaker engaged by hand – signal {sid} blocked"
        )
    return None


def check_market(signal: Signal, snap: Snapshot, limits: Limits) -> Decision | None:
    """(2) An abnormal market pauses entries: exchange not ok, stale prices, a violent move."""
    sid, sym = signal.signal_id, signal.symbol
    if snap.market_problem:
        return Decision(
            "pause",
            "market_status",
            "WARNING",
            f"market paused ({snap.market_problem}) – signal {sid} rejected",
        )
    if snap.price_ts is not None:
        age = snap.now - snap.price_ts
        if age > limits.market_data_max_age_s:
            return Decision(
                "pause",
                "stale_market_data",
                "WARNING",
                f"market data for {sym} is {age} s old (limit {limits.market_data_max_age_s} s)"
                f" – signal {sid} rejected",
            )
    if snap.move_pct > limits.abnormal_move_pct:
        return Decision(
            "pause",
            "abnormal_move",
            "WARNING",
            f"abnormal move in {sym}: {_pct(snap.move_pct)} % > limit "
            f"{_pct(limits.abnormal_move_pct)} % within the window – signal {sid} rejected",
        )
    return None


def check_signal_age(signal: Signal, snap: Snapshot, limits: Limits) -> Decision | None:
    """(2b) A signal older than the limit describes a market that has moved on."""
    age = snap.now - signal.timestamp
    if age > limits.signal_max_age_s:
        return Decision(
            "reject",
            "stale_signal",
            "INFO",
            f"signal {signal.signal_id} is {age} s old (limit {limits.signal_max_age_s} s) "
            "– rejected",
        )
    return None


def check_exposure(signal: Signal, snap: Snapshot, limits: Limits) -> Decision | None:
    """(3) Total exposure or the number of open positions at their limit: reject."""
    sid = signal.signal_id
    if snap.equity <= 0:
        return Decision("reject", "exposure", "WARNING", f"no equity left – signal {sid} rejected")
    exposure = snap.exposure_value / snap.equity * 100.0
    if exposure >= limits.max_exposure_pct - PCT_SLACK:
        return Decision(
            "reject",
            "exposure",
            "WARNING",
            f"exposure {_pct(exposure)} % ≥ limit {_pct(limits.max_exposure_pct)} % "
            f"– signal {sid} rejected",
        )
    if snap.open_positions >= limits.max_open_positions:
        return Decision(
            "reject",
            "open_positions",
            "WARNING",
            f"open positions {snap.open_positions} ≥ limit {limits.max_open_positions} "
            f"– signal {sid} rejected",
        )
    return None


def target_value(signal: Signal, equity: float, limits: Limits) -> float:
    """The sizing rule: confidence × RISK_TARGET_POSITION_PCT of equity, before any clipping."""
    return max(0.0, equity) * limits.target_position_pct / 100.0 * signal.confidence


def size_entry(signal: Signal, snap: Snapshot, limits: Limits) -> Decision:
    """(4)+(5) Size the entry; clip it to every limit it would cross, or approve it as asked.

    The room is the smallest of: the position limit minus what this symbol already
    holds, the exposure limit minus the current exposure, and the free cash.
    """
    sid = signal.signal_id
    price = snap.price if snap.price is not None else signal.price
    want = target_value(signal, snap.equity, limits)
    held = (
        f", {_pct(snap.symbol_value / snap.equity * 100.0)} % held in {signal.symbol}"
        if snap.symbol_value > 0 and snap.equity > 0
        else ""
    )
    exposed = (
        f", exposure {_pct(snap.exposure_value / snap.equity * 100.0)} %"
        if snap.exposure_value > 0 and snap.equity > 0
        else ""
    )
    rooms = {
        "position": (
            snap.equity * limits.max_position_pct / 100.0 - snap.symbol_value,
            f"limit {_pct(limits.max_position_pct)} % of equity{held}",
        ),
        "exposure": (
            snap.equity * limits.max_exposure_pct / 100.0 - snap.exposure_value,
            f"room left under the exposure limit {_pct(limits.max_exposure_pct)} %{exposed}",
        ),
        "cash": (snap.cash, f"free cash {_money(snap.cash, limits)}"),
    }
    binding = min(rooms, key=lambda k: rooms[k][0])
    room, room_text = rooms[binding]
    stop = stop_price(price, limits)
    if want <= room * (1 + EPS):
        value, kind, rule = want, "approve", "approved"
        share = value / snap.equity * 100.0
        reason = (
            f"signal {sid} approved: buy {_money(value, limits)} of {signal.symbol} "
            f"({_pct(share)} % of equity, confidence {signal.confidence:.2f})"
        )
    else:
        value, kind, rule = max(0.0, room), "clip", binding
        # the room is what crosses the limit, not the size alone: "8.9 % > limit 10 %" read
        # false while 8.1 % of the symbol was already held
        reason = (
            f"size {_money(want, limits)} ({_pct(want / snap.equity * 100.0)} % of equity) "
            f"> room {_money(max(0.0, room), limits)} ({room_text}) – clipped to "
            f"{_money(value, limits)} – signal {sid}"
        )
    if value < max(limits.min_order_value, 0.0) or value <= 0:
        return Decision(
            "reject",
            "min_order_value",
            "INFO",
            f"order worth {_money(value, limits)} is below the minimum "
            f"{_money(limits.min_order_value, limits)} – signal {sid} rejected",
        )
    quantity = value / price * (1 - EPS)  # never a hair above the room through rounding
    return Decision(kind, rule, "INFO", reason, quantity=quantity, price=price, stop_loss=stop)


def evaluate_entry(signal: Signal, snap: Snapshot, limits: Limits) -> Decision:
    """A BUY signal: the first check that applies decides; otherwise it is sized."""
    for check in (check_breaker, check_market, check_signal_age, check_exposure):
        decision = check(signal, snap, limits)
        if decision is not None:
            return decision
    return size_entry(signal, snap, limits)


def evaluate_exit(signal: Signal, snap: Snapshot, limits: Limits) -> Decision:
    """A SELL signal closes the whole long position; exits pass the breaker (spot: no shorts)."""
    sid, sym = signal.signal_id, signal.symbol
    if snap.kill_switch:
        return Decision(
            "halt", "kill_switch", "INFO", f"kill switch engaged – signal {sid} blocked"
        )
    if snap.symbol_quantity <= 0:
        return Decision(
            "reject",
            "no_position",
            "INFO",
            f"no open {sym} position to sell (spot, no short selling) – signal {sid} rejected",
        )
    if snap.exit_pending:
        return Decision(
            "reject",
            "exit_pending",
            "INFO",
            f"{sym} is already being closed – signal {sid} ignored",
        )
    stale = check_signal_age(signal, snap, limits)
    if stale is not None:
        return stale
    price = snap.price if snap.price is not None else signal.price
    return Decision(
        "exit",
        "sell_signal",
        "INFO",
        f"signal {sid}: close {sym} position of {snap.symbol_quantity:g}",
        quantity=snap.symbol_quantity,
        price=price,
    )


def check_quote(signal: Signal, limits: Limits) -> Decision | None:
    """Prices of another quote currency cannot be valued against equity: refuse them."""
    if signal.symbol.rsplit("_", 1)[-1] != limits.quote_asset:
        return Decision(
            "reject",
            "quote_asset",
            "INFO",
            f"{signal.symbol} is not quoted in {limits.quote_asset} – signal "
            f"{signal.signal_id} rejected",
        )
    return None


def evaluate(signal: Signal, snap: Snapshot, limits: Limits) -> Decision:
    """The decision for one signal."""
    wrong_quote = check_quote(signal, limits)
    if wrong_quote is not None:
        return wrong_quote
    if signal.side == "SELL":
        return evaluate_exit(signal, snap, limits)
    return evaluate_entry(signal, snap, limits)


def stop_hit(price: float, stop_loss: float | None) -> bool:
    """A long position whose price fell to or below its stop loss must be closed."""
    return stop_loss is not None and price <= stop_loss

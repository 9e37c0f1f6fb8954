"""A pure in-process backtest: generated 1-minute candles through the real strategy and risk rules.

No Redis, no database, no clock: each candle becomes a ``MarketData`` event (the
feed's format, 15-minute lookback) that goes through the signal engine
(``cdb.signal.engine.SignalEngine`` with the configured strategies and its
cooldown) and the risk manager's pure parts (``MarketView`` for prices and
moves, ``Portfolio`` for the book, the snapshot the risk service builds,
``rules.evaluate`` / ``rules.stop_hit``). Approved orders fill at once at the
candle's close (a paper fill without fee or slippage), so the book, exposure
and drawdown evolve as they would. Candles are generated deterministically
(numpy, seeded per symbol), in chunks, so a year of 20 symbols needs little memory.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from types import SimpleNamespace

import numpy as np

from cdb.events import MarketData, OrderResult, stable_id
from cdb.risk import rules
from cdb.risk.breaker import Breaker, utc_day
from cdb.risk.guard import Guard
from cdb.risk.market import MarketView
from cdb.risk.portfolio import Portfolio
from cdb.risk.settings import RiskSettings
from cdb.signal.engine import SignalEngine
from cdb.signal.settings import SignalSettings
from cdb.signal.strategy import load_strategies

LOOKBACK = 15  # minutes, the feed's SIGNAL_LOOKBACK_MIN default
START = 1_735_689_600  # 2025-01-01T00:00:00Z


@dataclass
class Chunk:
    """``minutes`` consecutive candles of every symbol, minute-major Python lists (fast access)."""

    timestamps: list[int]
    close: list[list[float]]  # [minute][symbol]
    volume: list[list[float]]  # quote volume over the lookback
    pct: list[list[float]]  # percent move over the lookback


class CandleGen:
    """Geometric random walks with rare strong moves (either way, so no drift) and
    log-normal quote volume per minute."""

    def __init__(self, n_symbols: int, seed: int = 42) -> None:
        self.rngs = [np.random.default_rng([seed, i]) for i in range(n_symbols)]
        self.symbols = [f"C{i:03d}_USDT" for i in range(n_symbols)]
        # carried between chunks: the last LOOKBACK closes and minute volumes
        self.tail_close = [np.full(LOOKBACK, 10.0 + 10 * i) for i in range(n_symbols)]
        self.tail_vol = [np.full(LOOKBACK, 20_000.0) for _ in range(n_symbols)]
        self.minute = 0

    def chunk(self, minutes: int) -> Chunk:
        closes, vols, pcts = [], [], []
        for i, rng in enumerate(self.rngs):
            ret = rng.normal(0.0, 0.0008, minutes)
            jumps = rng.random(minutes) < 1 / 3000  # a strong move, up or down, no drift
            n_jumps = int(jumps.sum())
            ret[jumps] += rng.choice([-1.0, 1.0], n_jumps) * rng.normal(0.04, 0.015, n_jumps)
            close = self.tail_close[i][-1] * np.exp(np.cumsum(ret))
            minute_vol = rng.lognormal(np.log(15_000), 0.8, minutes)
            all_close = np.concatenate([self.tail_close[i], close])
            all_vol = np.concatenate([self.tail_vol[i], minute_vol])
            csum = np.cumsum(all_vol)
            vol15 = csum[LOOKBACK:] - csum[:-LOOKBACK]
            pct = (all_close[LOOKBACK:] / all_close[:-LOOKBACK] - 1.0) * 100.0
            self.tail_close[i], self.tail_vol[i] = all_close[-LOOKBACK:], all_vol[-LOOKBACK:]
            closes.append(close.round(8))
            vols.append(vol15.round(2))
            pcts.append(pct.round(4))
        ts = [START + (self.minute + k) * 60 for k in range(minutes)]
        self.minute += minutes
        rows = [np.stack(a, axis=1).tolist() for a in (closes, vols, pcts)]
        return Chunk(ts, *rows)

    def chunks(self, total_minutes: int, size: int = 14_400) -> Iterator[Chunk]:
        done = 0
        while done < total_minutes:
            n = min(size, total_minutes - done)
            yield self.chunk(n)
            done += n


_FIELDS = frozenset(MarketData.model_fields)
_new = object.__new__
_set = object.__setattr__


def trusted_market_data(**values) -> MarketData:
    """A ``MarketData`` without validation, for values valid by construction (the generator's).

    pydantic's own ``model_construct`` is slower than validating (it is pure Python);
    this sets the same four attributes it sets. Used only to show what event
    construction costs; the default path validates every event.
    """
    md = _new(MarketData)
    _set(md, "__dict__", {"type": "market_data", **values})
    _set(md, "__pydantic_fields_set__", _FIELDS)
    _set(md, "__pydantic_extra__", None)
    _set(md, "__pydantic_private__", None)
    return md


@dataclass
class Backtest:
    """The real signal engine and risk rules over candles, with an instantly filled paper book."""

    signal_settings: SignalSettings
    risk_settings: RiskSettings
    trusted: bool = False
    candles: int = 0
    signals: int = 0
    decisions: Counter = field(default_factory=Counter)
    fills: int = 0

    def __post_init__(self) -> None:
        self.engine = SignalEngine(
            load_strategies(self.signal_settings), self.signal_settings.SIGNAL_COOLDOWN_S
        )
        self.limits = self.risk_settings.limits()
        self.market = MarketView(self.risk_settings.RISK_ABNORMAL_MOVE_WINDOW_S)
        self.book = Portfolio(cash=self.risk_settings.PAPER_START_BALANCE)
        # The risk service's own snapshot code, run on this object's market and book.
        self.view = SimpleNamespace(
            market=self.market, book=self.book, breaker=Breaker(), day="", day_start=None
        )

    def _fill(self, client_id: str, symbol: str, side: str, qty: float, price: float, ts: int):
        result = OrderResult(
            timestamp=ts,
            client_id=client_id,
            symbol=symbol,
            side=side,
            status="FILLED",
            filled_quantity=qty,
            avg_price=price,
        )
        self.book.apply(result, self.limits.stop_loss_pct)
        self.fills += 1

    def _day(self, ts: int) -> None:
        day = utc_day(ts)
        if day != self.view.day:
            self.view.day = day
            self.view.day_start = self.book.equity(self.market.prices)

    def run_chunk(self, chunk: Chunk, symbols: list[str]) -> int:
        """Every candle of the chunk, minute by minute across symbols; returns how many."""
        evaluate, update = self.engine.evaluate, self.market.update
        positions = self.book.positions
        stop_hit = rules.stop_hit
        make = trusted_market_data if self.trusted else MarketData
        # minute-major rows: (close, volume, pct) of every symbol at each minute
        rows = zip(chunk.close, chunk.volume, chunk.pct, strict=True)
        for ts, (closes, volumes, pcts) in zip(chunk.timestamps, rows, strict=True):
            if ts % 86_400 == 0:
                self._day(ts)
            for symbol, price, volume, pct in zip(symbols, closes, volumes, pcts, strict=True):
                md = make(
                    timestamp=ts,
                    symbol=symbol,
                    price=price,
                    volume=volume,
                    pct_change=pct,
                    interval="1m",
                    source="replay",
                )
                update(symbol, price, ts)
                if positions:
                    pos = positions.get(symbol)
                    if pos is not None and stop_hit(price, pos.stop_loss):
                        self.decisions["exit/stop_loss"] += 1
                        cid = self.book.exit_client_id(symbol)
                        self._fill(cid, symbol, "SELL", pos.quantity, price, ts)
                found = evaluate(md)
                if found:
                    self._signals(found, ts)
        n = len(chunk.timestamps) * len(symbols)
        self.candles += n
        return n

    def _signals(self, found, ts: int) -> None:
        self.engine.published(found)
        for signal in found:
            self.signals += 1
            snap = Guard.snapshot(self.view, signal.symbol, ts)
            decision = rules.evaluate(signal, snap, self.limits)
            self.decisions[f"{decision.kind}/{decision.rule}"] += 1
            if decision.sends_order:
                side = "SELL" if decision.kind == "exit" else "BUY"
                cid = stable_id(signal.signal_id)
                self._fill(cid, signal.symbol, side, decision.quantity, decision.price, ts)

    def equity(self) -> float:
        return self.book.equity(self.market.prices)

"""The risk manager's PostgreSQL side: rebuild its state at start, persist its decisions.

Nothing the risk manager needs lives only in memory. At start ``Store.load``
rebuilds, in one repeatable-read snapshot, the book that execution wrote
(``balances`` cash, ``positions``, the ``orders`` whose fills are already in
them, orders still in flight) and the risk manager's own state
(``service_state``: the breaker and the day's starting equity; ``risk_events``:
orders it approved that execution has not recorded yet). Decisions are rows in
``risk_events`` keyed by a natural ``event_key``, written *before* the order is
published, so a redelivered signal finds its decision instead of making a new one.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import psycopg2
import psycopg2.errors
import psycopg2.extensions
from psycopg2.extras import Json

from cdb.db.connect import connect
from cdb.risk.breaker import Breaker
from cdb.risk.portfolio import FINAL, PendingOrder, Portfolio, Position
from cdb.risk.settings import RiskSettings
from cdb.service import TransientError

log = logging.getLogger(__name__)

SERVICE = "risk"
#: Orders execution has recorded but not finished (UNKNOWN waits for a person).
IN_FLIGHT = ("NEW", "SENT", "UNKNOWN")


@dataclass(frozen=True, slots=True)
class RiskEvent:
    """One row of ``risk_events``: a decision and the reason a person reads."""

    event_key: str
    ts: int
    severity: str
    decision: str
    rule: str
    description: str
    signal_id: str | None = None
    client_id: str | None = None
    symbol: str | None = None
    context: dict[str, Any] = field(default_factory=dict)


@dataclass
class Loaded:
    portfolio: Portfolio
    breaker: Breaker
    day_start: tuple[str, float] | None  # (UTC day, equity at its start)


class Store:
    """One PostgreSQL connection, reopened after a failure; every write commits at once."""

    def __init__(self, settings: RiskSettings) -> None:
        self.settings = settings
        self._conn: psycopg2.extensions.connection | None = None
        #: why the last database call failed (None once one succeeds), for /health
        self.last_error: str | None = None

    def conn(self) -> psycopg2.extensions.connection:
        if self._conn is None or self._conn.closed:
            self._conn = connect(self.settings, application_name="cdb-risk")
            # A lone statement commits by itself in one round trip (psycopg2's implicit
            # BEGIN and COMMIT would make it three); ``_run`` still wraps a transaction.
            self._conn.autocommit = True
        return self._conn

    def close(self) -> None:
        if self._conn is not None and not self._conn.closed:
            self._conn.close()
        self._conn = None

    def _run(self, fn, *args, single: bool = False):
        """Run ``fn(cursor, *args)`` in one transaction; a lost connection is transient.

        ``single``: ``fn`` runs one statement, which is its own transaction (one round trip).
        """
        try:
            conn = self.conn()
            if single:
                with conn.cursor() as cur:
                    result = fn(cur, *args)
            else:
                with conn, conn.cursor() as cur:
                    result = fn(cur, *args)
        except (psycopg2.OperationalError, psycopg2.InterfaceError) as exc:
            self.last_error = f"postgres unavailable: {type(exc).__name__}"
            self.close()
            raise
        except psycopg2.errors.UndefinedTable as exc:
            self.last_error = "database schema missing; run `cdb db migrate`"
            raise TransientError(f"database schema missing ({exc}); run `cdb db migrate`") from exc
        self.last_error = None
        return result

    def ping(self) -> None:
        """A trivial query, so /health notices a lost database even when nothing is decided."""
        self._run(lambda cur: cur.execute("SELECT 1"), single=True)

    # -- writes ----------------------------------------------------------------------------

    def record(self, event: RiskEvent, breaker: Breaker | None = None) -> bool:
        """Insert a decision and save the breaker it set, atomically; False if the row existed.

        One statement, committed on its own: one round trip and one commit per decision.
        """
        row = (
            event.event_key,
            event.ts,
            event.severity,
            event.decision,
            event.rule,
            event.description,
            event.signal_id,
            event.client_id,
            event.symbol,
            Json(event.context),
        )
        insert = (
            "INSERT INTO risk_events (event_key, ts, severity, decision, rule, description,"
            " signal_id, client_id, symbol, context)"
            " VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s) ON CONFLICT (event_key) DO NOTHING"
        )

        def one(cur) -> bool:
            if breaker is None:
                cur.execute(insert, row)
                return cur.rowcount == 1
            # both in one statement, so they commit together
            cur.execute(
                f"WITH decided AS ({insert} RETURNING 1), state AS ({PUT_STATE} RETURNING 1)"
                " SELECT (SELECT count(*) FROM decided), (SELECT count(*) FROM state)",
                (*row, SERVICE, "breaker", Json(breaker.to_json())),
            )
            return cur.fetchone()[0] == 1

        return self._run(one, single=True)

    def record_figures(self, ts: int, figures: dict[str, float], labels: dict[str, str]) -> None:
        """The equity history: one ``metrics`` row per figure (``name``, ``value``), time ``ts``
        (Unix seconds), the same ``labels`` on each; read by the dashboard and reports."""
        rows = [(ts, name, float(value), Json(labels)) for name, value in figures.items()]
        self._run(
            lambda cur: cur.executemany(
                "INSERT INTO metrics (ts, name, value, labels) VALUES (%s,%s,%s,%s)", rows
            )
        )

    def save_day_start(self, day: str, equity: float) -> None:
        self._run(
            lambda cur: _put_state(cur, "day_start", {"day": day, "equity": equity}), single=True
        )

    def find(self, event_key: str) -> dict[str, Any] | None:
        """A decision already made under ``event_key`` (a redelivered signal), or None."""

        def tx(cur):
            cur.execute(
                "SELECT decision, rule, severity, client_id, context FROM risk_events"
                " WHERE event_key = %s",
                (event_key,),
            )
            row = cur.fetchone()
            if row is None:
                return None
            return dict(
                zip(("decision", "rule", "severity", "client_id", "context"), row, strict=True)
            )

        return self._run(tx, single=True)

    # -- the rebuild -----------------------------------------------------------------------

    def load(self, now: int) -> Loaded:
        """The whole state from one consistent snapshot of the database."""
        return self._run(_load, self.settings, now)


#: Upsert of one ``service_state`` row (service, key, value).
PUT_STATE = (
    "INSERT INTO service_state (service, key, value, updated_at) VALUES (%s,%s,%s, now())"
    " ON CONFLICT (service, key) DO UPDATE SET value = EXCLUDED.value, updated_at = now()"
)


def _put_state(cur, key: str, value: dict[str, Any]) -> None:
    cur.execute(PUT_STATE, (SERVICE, key, Json(value)))


def _load(cur, settings: RiskSettings, now: int) -> Loaded:
    # one snapshot: execution commits a fill's order, position and balance together
    cur.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
    cur.execute("SELECT free FROM balances WHERE asset = %s", (settings.QUOTE_ASSET,))
    row = cur.fetchone()
    cash = float(row[0]) if row else settings.PAPER_START_BALANCE
    book = Portfolio(cash=cash)

    cur.execute(
        "SELECT symbol, quantity, avg_price, stop_loss, coalesce(opened_ts, updated_ts)"
        " FROM positions WHERE quantity > 0"
    )
    for symbol, qty, avg, stop, opened in cur.fetchall():
        if stop is None:
            stop = avg * (1 - settings.STOP_LOSS_PCT / 100.0)
        book.positions[symbol] = Position(symbol, float(qty), float(avg), float(stop), int(opened))

    cur.execute(
        "SELECT client_id FROM orders WHERE side = 'SELL' AND status = ANY(%s)", (sorted(FINAL),)
    )
    book.finished_sells = {cid for (cid,) in cur.fetchall()}

    # fills already reflected in balances/positions: a redelivered result must not add them again
    cur.execute("SELECT client_id, filled_quantity, fee FROM orders WHERE filled_quantity > 0")
    book.applied = {cid: (float(q), float(f)) for cid, q, f in cur.fetchall()}

    cur.execute(
        "SELECT client_id, symbol, side, quantity, coalesce(price, 0), ts, filled_quantity"
        " FROM orders WHERE status = ANY(%s)",
        (list(IN_FLIGHT),),
    )
    for cid, symbol, side, qty, price, ts, filled in cur.fetchall():
        _add_pending(book, PendingOrder(cid, symbol, side, qty, price, int(ts), float(filled)))

    # approved by us, not yet recorded by execution (it may still be reading its stream)
    cur.execute(
        "SELECT r.client_id, r.symbol, r.decision, r.context, r.ts FROM risk_events r"
        " LEFT JOIN orders o ON o.client_id = r.client_id"
        " WHERE r.decision IN ('approve', 'clip', 'exit') AND r.client_id IS NOT NULL"
        " AND o.client_id IS NULL AND r.ts >= %s",
        (now - settings.RISK_PENDING_ORDER_TTL_S,),
    )
    for cid, symbol, decision, ctx, ts in cur.fetchall():
        side = "SELL" if decision == "exit" else "BUY"
        order = PendingOrder(
            cid, symbol, side, float(ctx.get("quantity", 0)), float(ctx.get("price", 0)), int(ts)
        )
        _add_pending(book, order)

    cur.execute("SELECT key, value FROM service_state WHERE service = %s", (SERVICE,))
    state = dict(cur.fetchall())
    breaker = Breaker.from_json(state.get("breaker") or {})
    day = state.get("day_start")
    day_start = (day["day"], float(day["equity"])) if day else None
    log.info(
        "state rebuilt: cash %.2f, %d positions, %d orders in flight, breaker %s",
        book.cash,
        len(book.positions),
        len(book.entries) + len(book.exits),
        breaker,
    )
    return Loaded(book, breaker, day_start)


def _add_pending(book: Portfolio, order: PendingOrder) -> None:
    if order.side == "BUY":
        book.entries[order.client_id] = order
    else:
        book.exits[order.symbol] = order

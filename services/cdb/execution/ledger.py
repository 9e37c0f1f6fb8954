"""The execution ledger in PostgreSQL: orders by ``client_id``, trades, positions and cash.

Every state change of an order is one short transaction, and a fill changes the
order, its trade, the position and the cash in *one* transaction, so a crash
leaves either all of a fill or none of it. The order row is the idempotency
record: ``NEW`` (recorded, not sent), ``SENT`` (committed before the exchange is
called: from here the outcome is unknown until a result is stored), ``UNKNOWN``
(the exchange has or may have it but does not report it: settled when it does, or by a
person), then a final ``order_result`` status. Only ``NEW`` is ever sent; a final row is never
changed again.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import psycopg2
import psycopg2.extensions

from cdb.db.connect import connect
from cdb.events import Order, OrderResult
from cdb.exchange.trading import ExecutionReport
from cdb.execution.accounting import Book, apply_trade, position_stop
from cdb.settings import PostgresSettings

log = logging.getLogger(__name__)

FINAL = frozenset({"FILLED", "PARTIALLY_FILLED", "REJECTED", "ERROR", "CANCELLED"})
NEW, SENT, UNKNOWN = "NEW", "SENT", "UNKNOWN"

_ORDER_COLUMNS = (
    "client_id, symbol, side, quantity, price, status, mode, filled_quantity, avg_price, fee, "
    "exchange_order_id, error, stop_loss, take_profit, ts"
)


@dataclass(frozen=True, slots=True)
class StoredOrder:
    """One row of ``orders``."""

    client_id: str
    symbol: str
    side: str
    quantity: float
    price: float | None
    status: str
    mode: str
    filled_quantity: float
    avg_price: float
    fee: float
    exchange_order_id: str | None
    error: str | None
    stop_loss: float | None
    take_profit: float | None
    ts: int

    @property
    def final(self) -> bool:
        return self.status in FINAL

    def to_result(self) -> OrderResult:
        """The ``order_result`` event for a final row (what a redelivery republishes)."""
        if not self.final:
            raise ValueError(f"order {self.client_id} is {self.status}, not final")
        return OrderResult(
            client_id=self.client_id,
            symbol=self.symbol,
            side=self.side,  # type: ignore[arg-type]
            status=self.status,  # type: ignore[arg-type]
            filled_quantity=self.filled_quantity,
            avg_price=self.avg_price,
            fee=self.fee,
            error=(self.error or None) and self.error[:500],
            exchange_order_id=self.exchange_order_id and self.exchange_order_id[:64],
            mode=self.mode if self.mode in ("paper", "validate", "live") else "paper",  # type: ignore[arg-type]
        )


def trade_report(client_id: str, rows: list) -> ExecutionReport | None:
    """An order's fill from its ``trades`` rows (trade_id, quantity, price, fee), or None."""
    if not rows:
        return None
    qty = sum(r[1] for r in rows)
    avg = sum(r[1] * r[2] for r in rows) / qty
    return ExecutionReport(client_id, "FILLED", qty, avg, sum(r[3] for r in rows), rows[0][0])


def base_asset(symbol: str) -> str:
    return symbol.split("_", 1)[0]


class Ledger:
    """PostgreSQL access of the execution service; reconnects after a dropped connection."""

    def __init__(self, settings: PostgresSettings, quote_asset: str, mode: str) -> None:
        self.settings = settings
        self.quote_asset = quote_asset
        self.mode = mode
        self._conn: psycopg2.extensions.connection | None = None
        #: final rows this process just committed (``fill_once``), so ``record`` need not
        #: read them back: a final row never changes again. Taken once, at most a few kept.
        self._finals: dict[str, StoredOrder] = {}

    # -- connection ---------------------------------------------------------------------------

    def _connection(self) -> psycopg2.extensions.connection:
        if self._conn is None or self._conn.closed:
            self._conn = connect(self.settings, application_name="cdb-execution")
            # A lone statement is its own transaction: one round trip, where psycopg2's
            # implicit BEGIN and COMMIT would make it three (docs/benchmarks.md).
            # ``transaction()`` still wraps several statements in BEGIN/COMMIT.
            self._conn.autocommit = True
        return self._conn

    @contextlib.contextmanager
    def transaction(self) -> Iterator[psycopg2.extensions.cursor]:
        """One transaction: committed on success, rolled back on error, reconnect if it broke."""
        conn = self._connection()
        try:
            with conn, conn.cursor() as cur:
                yield cur
        except (psycopg2.OperationalError, psycopg2.InterfaceError):
            self.close()
            raise

    @contextlib.contextmanager
    def statement(self) -> Iterator[psycopg2.extensions.cursor]:
        """A cursor for one statement that is its own transaction (one round trip)."""
        conn = self._connection()
        try:
            with conn.cursor() as cur:
                yield cur
        except (psycopg2.OperationalError, psycopg2.InterfaceError):
            self.close()
            raise

    def close(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(Exception):
                self._conn.close()
        self._conn = None

    # -- orders --------------------------------------------------------------------------------

    @staticmethod
    def _row(row: tuple[Any, ...] | None) -> StoredOrder | None:
        return StoredOrder(*row) if row else None

    def get(
        self, cur: psycopg2.extensions.cursor, client_id: str, lock: bool = False
    ) -> StoredOrder | None:
        cur.execute(
            f"SELECT {_ORDER_COLUMNS} FROM orders WHERE client_id = %s"
            + (" FOR UPDATE" if lock else ""),
            (client_id,),
        )
        return self._row(cur.fetchone())

    def claim(self, order: Order) -> StoredOrder:
        """Record the order as ``NEW`` unless it exists (the persistence writer may have been first)."""
        with self.transaction() as cur:
            cur.execute(
                "INSERT INTO orders (client_id, signal_id, ts, symbol, side, quantity, price, "
                "stop_loss, take_profit, reason, status, mode) "
                "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, 'NEW', %s) "
                "ON CONFLICT (client_id) DO NOTHING",
                self._insert_params(order),
            )
            stored = self.get(cur, order.client_id)
        assert stored is not None
        return stored

    def _insert_params(self, order: Order) -> tuple[Any, ...]:
        """The values of an ``INSERT INTO orders`` row for ``order`` in this ledger's mode."""
        return (
            order.client_id,
            order.signal_id,
            order.timestamp,
            order.symbol,
            order.side,
            order.quantity,
            order.price,
            order.stop_loss,
            order.take_profit,
            order.reason,
            self.mode,
        )

    def prepare(self, client_id: str) -> tuple[StoredOrder | None, dict[str, Any] | None]:
        """The order's row (None if not recorded yet) and the risk manager's persisted breaker
        (``risk_breaker``), read in one round trip before deciding whether to send."""
        with self.statement() as cur:
            cur.execute(
                "SELECT "
                + ", ".join(f"o.{c.strip()}" for c in _ORDER_COLUMNS.split(","))
                + ", (SELECT value FROM service_state WHERE service = 'risk' AND key = 'breaker')"
                " FROM (VALUES (1)) AS one LEFT JOIN orders o ON o.client_id = %s",
                (client_id,),
            )
            *row, breaker = cur.fetchone()
        return (StoredOrder(*row) if row[0] is not None else None), breaker

    def send_if_clear(self, order: Order) -> tuple[StoredOrder | None, dict[str, Any] | None]:
        """The common case of ``prepare`` then ``record_sent`` in one committed statement.

        The order's row is inserted as, or moved from ``NEW`` to, ``SENT`` only while the
        risk manager's persisted breaker (read in the same statement) is clear: no kill
        switch, no manual engage, no drawdown trip of any day. Returns (the ``SENT`` row,
        or None when nothing was written; the breaker as read). None means the caller
        takes the general path (``prepare``): a redelivery (the row is past ``NEW``) or a
        breaker that may refuse the order. Like ``record_sent`` it commits before the venue
        is called; the breaker read and the write are one snapshot, so the check that
        allowed the send is the one the row was written under. One round trip, one commit,
        where ``prepare`` + ``record_sent`` are two.
        """
        with self.statement() as cur:
            cur.execute(
                "WITH b AS (SELECT value FROM service_state"
                "  WHERE service = 'risk' AND key = 'breaker'),"
                " up AS (INSERT INTO orders (client_id, signal_id, ts, symbol, side, quantity,"
                "  price, stop_loss, take_profit, reason, status, mode)"
                "  SELECT %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, 'SENT', %s"
                # clear = each cause exactly false/null; any other value (even one that
                # is not a boolean) is "maybe engaged" and goes to the general path
                "  WHERE NOT EXISTS (SELECT 1 FROM b WHERE"
                "   coalesce(b.value->'kill_switch', 'false'::jsonb) <> 'false'::jsonb"
                "   OR coalesce(b.value->'manual', 'false'::jsonb) <> 'false'::jsonb"
                "   OR coalesce(b.value->'drawdown_day', 'null'::jsonb) <> 'null'::jsonb)"
                "  ON CONFLICT (client_id) DO UPDATE SET status = 'SENT', mode = EXCLUDED.mode,"
                "  updated_at = now() WHERE orders.status = 'NEW'"
                f"  RETURNING {_ORDER_COLUMNS})"
                " SELECT (SELECT value FROM b), up.* FROM (VALUES (1)) AS one"
                " LEFT JOIN up ON true",
                self._insert_params(order),
            )
            breaker, *row = cur.fetchone()
        return (StoredOrder(*row) if row[0] is not None else None), breaker

    def record_sent(self, order: Order) -> StoredOrder | None:
        """Record the order as ``SENT`` (inserted, or moved from ``NEW``) in one committed
        statement, before the venue is called; None if its row is past ``NEW`` already.

        The same durability as ``claim`` then ``mark_sent``, in one round trip and one
        commit: an order is never sent before a committed row says it may have been.
        """
        with self.statement() as cur:
            cur.execute(
                "INSERT INTO orders (client_id, signal_id, ts, symbol, side, quantity, price, "
                "stop_loss, take_profit, reason, status, mode) "
                "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, 'SENT', %s) "
                "ON CONFLICT (client_id) DO UPDATE SET status = 'SENT', mode = EXCLUDED.mode, "
                "updated_at = now() WHERE orders.status = 'NEW' "
                f"RETURNING {_ORDER_COLUMNS}",
                self._insert_params(order),
            )
            return self._row(cur.fetchone())

    def mark_sent(self, client_id: str) -> bool:
        """``NEW`` → ``SENT``, committed before the exchange is called; False if not ``NEW``."""
        with self.transaction() as cur:
            cur.execute(
                "UPDATE orders SET status = 'SENT', mode = %s, updated_at = now() "
                "WHERE client_id = %s AND status = 'NEW'",
                (self.mode, client_id),
            )
            return cur.rowcount == 1

    def set_status(self, client_id: str, expected: str, status: str, error: str | None) -> bool:
        """Move an order from ``expected`` to a state without a fill (UNKNOWN, CANCELLED...)."""
        with self.transaction() as cur:
            cur.execute(
                "UPDATE orders SET status = %s, error = %s, updated_at = now() "
                "WHERE client_id = %s AND status = %s",
                (status, error, client_id, expected),
            )
            return cur.rowcount == 1

    def with_status(self, *statuses: str) -> list[StoredOrder]:
        with self.transaction() as cur:
            cur.execute(
                f"SELECT {_ORDER_COLUMNS} FROM orders WHERE status = ANY(%s) ORDER BY id",
                (list(statuses),),
            )
            return [StoredOrder(*row) for row in cur.fetchall()]

    def find_trade(self, cur: psycopg2.extensions.cursor, client_id: str) -> ExecutionReport | None:
        """The fill recorded for an order, as a report (the paper book's order lookup)."""
        cur.execute(
            "SELECT trade_id, quantity, price, fee FROM trades WHERE client_id = %s ORDER BY id",
            (client_id,),
        )
        return trade_report(client_id, cur.fetchall())

    def fill_once(
        self,
        client_id: str,
        symbol: str,
        fill: Callable[[StoredOrder, Book], ExecutionReport],
    ) -> ExecutionReport:
        """The paper venue's fill of a recorded order, in one transaction of two round trips.

        The first locks the order row, the cash row and the symbol's position and reads
        them with the order's earlier trades (BEGIN rides along); ``fill(order, book)``
        prices the fill in between (it may raise, which rolls everything back); the
        second writes trade, position, cash and order status and commits. An order with
        a trade already is not filled again: its first fill is returned. Raises
        ``KeyError`` when the order was never recorded.
        """
        conn = self._connection()
        cols = ", ".join(f"o.{c.strip()}" for c in _ORDER_COLUMNS.split(","))
        params = {"c": client_id, "q": self.quote_asset, "s": symbol}
        try:
            with conn.cursor() as cur:
                try:
                    cur.execute(
                        "BEGIN;"
                        " SELECT 1 FROM orders WHERE client_id = %(c)s FOR UPDATE;"
                        " SELECT 1 FROM balances WHERE asset = %(q)s FOR UPDATE;"
                        " SELECT 1 FROM positions WHERE symbol = %(s)s FOR UPDATE;"
                        f" SELECT {cols}, (SELECT free FROM balances WHERE asset = %(q)s),"
                        " p.quantity, p.avg_price, p.realized_pnl,"
                        " (SELECT json_agg(json_build_array(trade_id, quantity, price, fee)"
                        "  ORDER BY id) FROM trades WHERE client_id = %(c)s)"
                        " FROM (VALUES (1)) AS one LEFT JOIN orders o ON o.client_id = %(c)s"
                        " LEFT JOIN positions p ON p.symbol = %(s)s",
                        params,
                    )
                    row = cur.fetchone()
                    n = len(_ORDER_COLUMNS.split(","))
                    if row[0] is None:
                        raise KeyError(f"no order {client_id}")
                    order = StoredOrder(*row[:n])
                    cash, qty, avg, pnl, trades = row[n:]
                    existing = trade_report(client_id, trades or [])
                    if existing is not None:
                        cur.execute("ROLLBACK")  # a duplicate client id: the first fill stands
                        return existing
                    book = Book(cash if cash is not None else 0.0)
                    if qty is not None:
                        book = Book(book.cash, qty, avg, pnl)
                    report = fill(order, book)
                    self.apply(cur, order, report, book, commit=True)
                    self._remember_final(order, report)
                except BaseException:
                    if not conn.closed:
                        with contextlib.suppress(psycopg2.Error):
                            cur.execute("ROLLBACK")
                    raise
        except (psycopg2.OperationalError, psycopg2.InterfaceError):
            self.close()
            raise
        return report

    def risk_breaker(self) -> dict[str, Any] | None:
        """The risk manager's persisted breaker (``service_state`` risk/breaker), or None.

        The durable copy, not a message: execution reads it before every send, so a kill
        switch engaged while execution was down is obeyed by its first order.
        """
        with self.transaction() as cur:
            cur.execute(
                "SELECT value FROM service_state WHERE service = 'risk' AND key = 'breaker'"
            )
            row = cur.fetchone()
        return row[0] if row else None

    def known_client_ids(self, client_ids: list[str]) -> set[str]:
        """Which of these client ids the ledger has an order for."""
        with self.transaction() as cur:
            cur.execute(
                "SELECT client_id FROM orders WHERE client_id = ANY(%s)", (list(client_ids),)
            )
            return {r[0] for r in cur.fetchall()}

    def recent_symbols(self, since_ts: int) -> set[str]:
        """Symbols of orders since ``since_ts`` and of open positions (where to look for orders)."""
        with self.transaction() as cur:
            cur.execute(
                "SELECT symbol FROM orders WHERE ts >= %s UNION "
                "SELECT symbol FROM positions WHERE quantity > 0",
                (since_ts,),
            )
            return {r[0] for r in cur.fetchall()}

    # -- the book ------------------------------------------------------------------------------

    def ensure_cash(self, amount: float) -> None:
        """Create the cash row with the starting balance once; an existing one is kept."""
        with self.transaction() as cur:
            cur.execute(
                "INSERT INTO balances (asset, free, updated_ts, mode) VALUES (%s, %s, %s, %s) "
                "ON CONFLICT (asset) DO NOTHING",
                (self.quote_asset, amount, int(time.time()), self.mode),
            )

    def set_cash(self, amount: float) -> None:
        """Overwrite cash with what the exchange reports (live reconciliation)."""
        with self.transaction() as cur:
            cur.execute(
                "INSERT INTO balances (asset, free, updated_ts, mode) VALUES (%s, %s, %s, %s) "
                "ON CONFLICT (asset) DO UPDATE SET free = EXCLUDED.free, "
                "updated_ts = EXCLUDED.updated_ts, mode = EXCLUDED.mode",
                (self.quote_asset, amount, int(time.time()), self.mode),
            )

    def lock_book(self, cur: psycopg2.extensions.cursor, symbol: str) -> Book:
        """Cash and the symbol's position, locked until the transaction ends."""
        cur.execute("SELECT free FROM balances WHERE asset = %s FOR UPDATE", (self.quote_asset,))
        cash_row = cur.fetchone()
        cur.execute(
            "SELECT quantity, avg_price, realized_pnl FROM positions WHERE symbol = %s FOR UPDATE",
            (symbol,),
        )
        pos = cur.fetchone()
        cash = cash_row[0] if cash_row else 0.0
        return Book(cash, *pos) if pos else Book(cash)

    def cash(self) -> float | None:
        with self.transaction() as cur:
            cur.execute("SELECT free FROM balances WHERE asset = %s", (self.quote_asset,))
            row = cur.fetchone()
        return row[0] if row else None

    def open_positions(self) -> dict[str, tuple[float, float, str]]:
        """symbol → (quantity, avg_price, mode) of every position that is not flat."""
        with self.transaction() as cur:
            cur.execute(
                "SELECT symbol, quantity, avg_price, mode FROM positions WHERE quantity > 0"
            )
            return {r[0]: (r[1], r[2], r[3]) for r in cur.fetchall()}

    def apply(
        self,
        cur: psycopg2.extensions.cursor,
        order: StoredOrder,
        report: ExecutionReport,
        book: Book | None = None,
        commit: bool = False,
    ) -> None:
        """Write a final outcome inside the caller's transaction: trade, position, cash, order.

        ``book`` is the cash and position the caller already locked in this transaction
        (``lock_book``), or None to lock them here. The writes go in one round trip;
        ``commit`` adds the caller's explicit ``COMMIT`` to it (``fill_once``).
        """
        now = int(time.time())
        writes: list[bytes] = []
        if report.status in ("FILLED", "PARTIALLY_FILLED") and report.filled_quantity > 0:
            if book is None:
                book = self.lock_book(cur, order.symbol)
            effect = apply_trade(
                book, order.side, report.filled_quantity, report.avg_price, report.fee
            )
            after = effect.book
            writes.append(
                cur.mogrify(
                    "INSERT INTO trades (trade_id, client_id, ts, symbol, side, quantity, price,"
                    " fee, realized_pnl, mode) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                    (
                        f"{order.client_id}-1",
                        order.client_id,
                        now,
                        order.symbol,
                        order.side,
                        report.filled_quantity,
                        report.avg_price,
                        report.fee,
                        effect.realized_pnl,
                        order.mode,
                    ),
                )
            )
            opened = book.quantity <= 0 and after.quantity > 0
            writes.append(
                cur.mogrify(
                    "INSERT INTO positions (symbol, quantity, avg_price, stop_loss, take_profit, "
                    "realized_pnl, opened_ts, updated_ts, mode) "
                    "VALUES (%(s)s, %(q)s, %(a)s, %(sl)s, %(tp)s, %(r)s, %(o)s, %(now)s, %(m)s) "
                    "ON CONFLICT (symbol) DO UPDATE SET quantity = EXCLUDED.quantity, "
                    "avg_price = EXCLUDED.avg_price, realized_pnl = EXCLUDED.realized_pnl, "
                    "stop_loss = CASE WHEN %(buy)s "
                    "  THEN COALESCE(EXCLUDED.stop_loss, positions.stop_loss) "
                    "  WHEN EXCLUDED.quantity = 0 THEN NULL ELSE positions.stop_loss END, "
                    "take_profit = CASE WHEN %(buy)s "
                    "  THEN COALESCE(EXCLUDED.take_profit, positions.take_profit) "
                    "  WHEN EXCLUDED.quantity = 0 THEN NULL ELSE positions.take_profit END, "
                    "opened_ts = CASE WHEN EXCLUDED.quantity = 0 THEN NULL "
                    "  WHEN %(opened)s THEN EXCLUDED.opened_ts ELSE positions.opened_ts END, "
                    "updated_ts = EXCLUDED.updated_ts, mode = EXCLUDED.mode",
                    {
                        "s": order.symbol,
                        "q": after.quantity,
                        "a": after.avg_price,
                        "sl": position_stop(order, after.avg_price),
                        "tp": order.take_profit if order.side == "BUY" else None,
                        "r": after.realized_pnl,
                        "o": now if after.quantity > 0 else None,
                        "now": now,
                        "m": order.mode,
                        "buy": order.side == "BUY",
                        "opened": opened,
                    },
                )
            )
            writes.append(
                cur.mogrify(
                    "INSERT INTO balances (asset, free, updated_ts, mode) VALUES (%s, %s, %s, %s) "
                    "ON CONFLICT (asset) DO UPDATE SET free = EXCLUDED.free, "
                    "updated_ts = EXCLUDED.updated_ts",
                    (self.quote_asset, after.cash, now, order.mode),
                )
            )
        writes.append(
            cur.mogrify(
                "UPDATE orders SET status = %s, filled_quantity = %s, avg_price = %s, fee = %s, "
                "exchange_order_id = %s, error = %s, updated_at = now() WHERE client_id = %s",
                (
                    report.status,
                    report.filled_quantity,
                    report.avg_price,
                    report.fee,
                    report.exchange_order_id,
                    report.error,
                    order.client_id,
                ),
            )
        )
        cur.execute(b";\n".join([*writes, b"COMMIT"] if commit else writes))

    def _remember_final(self, order: StoredOrder, report: ExecutionReport) -> None:
        """The row ``apply`` just committed for ``order``, as ``get`` would read it back."""
        if report.status not in FINAL:
            return
        if len(self._finals) >= 64:  # only ever the order in hand: a leftover is dropped
            self._finals.clear()
        self._finals[order.client_id] = dataclasses.replace(
            order,
            status=report.status,
            filled_quantity=report.filled_quantity,
            avg_price=report.avg_price,
            fee=report.fee,
            exchange_order_id=report.exchange_order_id,
            error=report.error,
        )

    def record(self, client_id: str, report: ExecutionReport) -> StoredOrder:
        """Store an order's final outcome once; a second report for a final order changes nothing."""
        known = self._finals.pop(client_id, None)  # committed by this process a moment ago
        if known is not None:
            return known
        with self.statement() as cur:  # a final row never changes: no lock, no commit needed
            known = self.get(cur, client_id)
        if known is not None and known.final:
            return known
        with self.transaction() as cur:
            order = self.get(cur, client_id, lock=True)
            if order is None:
                raise KeyError(f"no order {client_id}")
            if not order.final:
                self.apply(cur, order, report)
                order = self.get(cur, client_id)
        assert order is not None
        return order

"""Pure mapping from stream entries to table rows: which table, which columns, which key.

Every table the writer fills has a natural unique key (``signal_id``, ``client_id`` or
the stream entry id), so writing the same entry twice adds no row. Nothing here talks
to a database; ``writer.py`` turns these rows into SQL.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import orjson

from cdb.bus import Delivery
from cdb.events import Alert, Event, Health, MlSignal, Order, OrderResult, Signal


@dataclass(frozen=True, slots=True)
class Table:
    """How one event type lands in its table."""

    name: str
    columns: tuple[str, ...]
    key: str
    #: SQL after ``ON CONFLICT (key)``; ``DO NOTHING`` unless a later event may replace a row.
    on_conflict: str = "DO NOTHING"
    #: Per-column placeholder casts for ``execute_values`` (JSON text → jsonb).
    casts: tuple[str, ...] = ()

    def template(self) -> str:
        casts = self.casts or ("",) * len(self.columns)
        return "(" + ",".join(f"%s{cast}" for cast in casts) + ")"

    def insert_sql(self) -> str:
        return (
            f"INSERT INTO {self.name} ({', '.join(self.columns)}) VALUES %s "
            f"ON CONFLICT ({self.key}) {self.on_conflict}"
        )


def _jsonb_casts(columns: tuple[str, ...], json_columns: set[str]) -> tuple[str, ...]:
    return tuple("::jsonb" if c in json_columns else "" for c in columns)


SIGNALS = Table(
    "signals",
    (
        "signal_id",
        "ts",
        "symbol",
        "side",
        "confidence",
        "price",
        "pct_change",
        "volume",
        "reason",
        "strategy",
    ),
    key="signal_id",
)
# The execution service owns an order's status; the writer only makes sure the row exists.
ORDERS = Table(
    "orders",
    (
        "client_id",
        "signal_id",
        "ts",
        "symbol",
        "side",
        "quantity",
        "price",
        "stop_loss",
        "take_profit",
        "reason",
    ),
    key="client_id",
)
_RESULT_COLUMNS = (
    "client_id",
    "ts",
    "symbol",
    "side",
    "status",
    "filled_quantity",
    "avg_price",
    "fee",
    "error",
    "exchange_order_id",
    "mode",
)
# One row per order: a partial fill may be replaced by a later result, a final one never is.
ORDER_RESULTS = Table(
    "order_results",
    _RESULT_COLUMNS,
    key="client_id",
    on_conflict=(
        "DO UPDATE SET "
        + ", ".join(f"{c} = EXCLUDED.{c}" for c in _RESULT_COLUMNS if c != "client_id")
        + " WHERE order_results.status = 'PARTIALLY_FILLED'"
        " AND (EXCLUDED.status <> 'PARTIALLY_FILLED'"
        " OR EXCLUDED.filled_quantity > order_results.filled_quantity)"
    ),
)
_ALERT_COLUMNS = ("stream_id", "ts", "level", "code", "message", "source", "context")
ALERTS = Table(
    "alerts", _ALERT_COLUMNS, key="stream_id", casts=_jsonb_casts(_ALERT_COLUMNS, {"context"})
)
_HEALTH_COLUMNS = ("stream_id", "ts", "service", "status", "details")
HEALTH_CHECKS = Table(
    "health_checks",
    _HEALTH_COLUMNS,
    key="stream_id",
    casts=_jsonb_casts(_HEALTH_COLUMNS, {"details"}),
)

_ML_COLUMNS = (
    "signal_id",
    "ts",
    "symbol",
    "side",
    "probability",
    "threshold",
    "model_version",
    "price",
    "rule_signal",
    "contributions",
)
ML_SIGNALS = Table(
    "ml_signals", _ML_COLUMNS, key="signal_id", casts=_jsonb_casts(_ML_COLUMNS, {"contributions"})
)

#: Tables in the order they are written within one transaction.
TABLES: tuple[Table, ...] = (SIGNALS, ORDERS, ORDER_RESULTS, ALERTS, HEALTH_CHECKS, ML_SIGNALS)
TABLE_OF_TYPE: dict[str, Table] = {
    "signal": SIGNALS,
    "ml_signal": ML_SIGNALS,
    "order": ORDERS,
    "order_result": ORDER_RESULTS,
    "alert": ALERTS,
    "health": HEALTH_CHECKS,
}

Row = tuple[object, ...]


def _json(value: dict) -> str:
    return orjson.dumps(value, default=str).decode()


def row_of(delivery: Delivery) -> tuple[Table, Row] | None:
    """The table and row for one entry; None for an event type the writer does not keep."""
    e: Event = delivery.event
    if isinstance(e, Signal):
        row: Row = (
            e.signal_id,
            e.timestamp,
            e.symbol,
            e.side,
            e.confidence,
            e.price,
            e.pct_change,
            e.volume,
            e.reason,
            e.strategy,
        )
        return SIGNALS, row
    if isinstance(e, Order):
        row = (
            e.client_id,
            e.signal_id,
            e.timestamp,
            e.symbol,
            e.side,
            e.quantity,
            e.price,
            e.stop_loss,
            e.take_profit,
            e.reason,
        )
        return ORDERS, row
    if isinstance(e, OrderResult):
        row = (
            e.client_id,
            e.timestamp,
            e.symbol,
            e.side,
            e.status,
            e.filled_quantity,
            e.avg_price,
            e.fee,
            e.error,
            e.exchange_order_id,
            e.mode,
        )
        return ORDER_RESULTS, row
    if isinstance(e, Alert):
        row = (
            delivery.entry_id,
            e.timestamp,
            e.level,
            e.code,
            e.message,
            e.source,
            _json(e.context),
        )
        return ALERTS, row
    if isinstance(e, MlSignal):
        return ML_SIGNALS, (
            e.signal_id,
            e.timestamp,
            e.symbol,
            e.side,
            e.probability,
            e.threshold,
            e.model_version,
            e.price,
            e.rule_signal,
            orjson.dumps([c.model_dump() for c in e.contributions]).decode(),
        )
    if isinstance(e, Health):
        return HEALTH_CHECKS, (
            delivery.entry_id,
            e.timestamp,
            e.service,
            e.status,
            _json(e.details),
        )
    return None


def rows_by_table(deliveries: Iterable[Delivery]) -> dict[str, list[Row]]:
    """Group a batch's rows per table, keeping one row per key (the last one read wins).

    One row per key matters for ``ON CONFLICT DO UPDATE``, which PostgreSQL refuses when a
    single statement would touch the same row twice.
    """
    keyed: dict[str, dict[object, Row]] = {}
    for delivery in deliveries:
        found = row_of(delivery)
        if found is None:
            continue
        table, row = found
        keyed.setdefault(table.name, {})[row[table.columns.index(table.key)]] = row
    return {t.name: list(keyed[t.name].values()) for t in TABLES if t.name in keyed}

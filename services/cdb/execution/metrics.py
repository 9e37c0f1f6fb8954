"""The execution service's ``/metrics``: order results, cash, realized P&L, fail-closed.

Money is in the quote asset named by the ``currency`` label. Every order status has its
``cdb_execution_orders_total`` series from the start, at 0 (``rate``/``increase`` then see
the first rejection, and the orders-rejected alert has a series to watch).
"""

from __future__ import annotations

from typing import get_args

from prometheus_client import CollectorRegistry, Counter, Gauge

from cdb.events import OrderResult
from cdb.execution.ledger import Ledger
from cdb.metrics import zero

#: The statuses an order result can carry (the event schema's list).
STATUSES: tuple[str, ...] = get_args(OrderResult.model_fields["status"].annotation)


class ExecutionMetrics:
    """The metric objects, registered on the service's registry."""

    def __init__(self, registry: CollectorRegistry, quote_asset: str) -> None:
        self.results = Counter(
            "cdb_execution_orders", "Order results published", ["status"], registry=registry
        )
        zero(self.results, ((s,) for s in STATUSES))
        self.cash = Gauge(
            "cdb_execution_cash", "Free cash in the ledger", ["currency"], registry=registry
        ).labels(quote_asset)
        self.realized_pnl = Gauge(
            "cdb_execution_realized_pnl",
            "Realized P&L of all positions, fees included (the positions table's sum)",
            ["currency"],
            registry=registry,
        ).labels(quote_asset)
        self.fail_closed = Gauge(
            "cdb_execution_fail_closed", "1 while new orders are refused", registry=registry
        )

    def read_ledger(self, ledger: Ledger) -> None:
        """Set cash and realized P&L from PostgreSQL (one short transaction)."""
        cash = ledger.cash()
        if cash is not None:
            self.cash.set(cash)
        with ledger.transaction() as cur:
            cur.execute("SELECT coalesce(sum(realized_pnl), 0) FROM positions")
            self.realized_pnl.set(float(cur.fetchone()[0]))

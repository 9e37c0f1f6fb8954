"""The operator's own Prometheus metrics (``cdb-operator --metrics-port N``).

Counts reconciles by outcome and times them, and exports each bot's breaker as the
operator last saw it, so an alert can fire when a requested halt stays unconfirmed.
"""

from __future__ import annotations

import contextlib

from prometheus_client import Counter, Gauge, Histogram, start_http_server

RECONCILES = Counter(
    "cdb_operator_reconciles_total", "Full reconciles of a TradingBot", ["outcome"]
)
RECONCILES.labels("ok")  # the series exists from the start, at 0
RECONCILE_SECONDS = Histogram("cdb_operator_reconcile_seconds", "Duration of one full reconcile")
BREAKER_PENDING = Gauge(
    "cdb_operator_breaker_pending",
    "1 while a breaker request awaits the risk manager's confirmation",
    ["namespace", "name"],
)
BREAKER_ENGAGED = Gauge(
    "cdb_operator_breaker_engaged",
    "The risk manager's breaker as last read (1 engaged, 0 released, -1 unknown)",
    ["namespace", "name"],
)


def observe_breaker(namespace: str, name: str, breaker: dict) -> None:
    pending = bool(breaker.get("controlId")) and not breaker.get("confirmed")
    BREAKER_PENDING.labels(namespace, name).set(1 if pending else 0)
    engaged = breaker.get("engaged")
    BREAKER_ENGAGED.labels(namespace, name).set(-1 if engaged is None else int(bool(engaged)))


def forget(namespace: str, name: str) -> None:
    """Drop a deleted bot's series (otherwise they stay until the operator restarts)."""
    for gauge in (BREAKER_PENDING, BREAKER_ENGAGED):
        with contextlib.suppress(KeyError):
            gauge.remove(namespace, name)


def serve(port: int) -> None:
    start_http_server(port)

"""Status conditions and phase: pure builders, one place (like CloudNativePG's cluster_conditions).

``Ready``, ``Progressing``, ``Degraded`` come from the last reconcile and the
components' readiness; ``CircuitBreakerEngaged`` from :mod:`cdb_operator.breaker`;
``MarketData`` from :mod:`cdb_operator.market` (both observed in the bot's Redis).
A condition keeps its ``lastTransitionTime`` while its status does not change.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

READY = "Ready"
PROGRESSING = "Progressing"
DEGRADED = "Degraded"
BREAKER = "CircuitBreakerEngaged"
#: Whether market data reaches the bot (:mod:`cdb_operator.market`).
MARKET_DATA = "MarketData"
#: Data stores the operator does not run itself (:mod:`cdb_operator.stores`).
POSTGRES_READY = "PostgresReady"
REDIS_READY = "RedisReady"
BUS_DURABLE = "BusDurable"
TYPES = (
    READY,
    PROGRESSING,
    DEGRADED,
    BREAKER,
    MARKET_DATA,
    POSTGRES_READY,
    REDIS_READY,
    BUS_DURABLE,
)


@dataclass(frozen=True)
class Cond:
    type: str
    status: str  # "True" | "False" | "Unknown"
    reason: str
    message: str = ""


def rfc3339(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def merge(
    previous: list[dict[str, Any]] | None,
    new: list[Cond],
    now: float,
    generation: int | None,
) -> list[dict[str, Any]]:
    """The conditions to write: ``new`` in TYPES order, keeping unchanged transition times."""
    old = {c.get("type"): c for c in previous or []}
    out = []
    for cond in sorted(new, key=lambda c: TYPES.index(c.type) if c.type in TYPES else 99):
        before = old.get(cond.type)
        changed = before is None or before.get("status") != cond.status
        item: dict[str, Any] = {
            "type": cond.type,
            "status": cond.status,
            "reason": cond.reason,
            "message": cond.message[:1000],
            "lastTransitionTime": rfc3339(now)
            if changed
            else before.get("lastTransitionTime") or rfc3339(now),
        }
        if generation is not None:
            item["observedGeneration"] = generation
        out.append(item)
    return out


def transitions(previous: list[dict[str, Any]] | None, new: list[Cond]) -> list[Cond]:
    """Conditions whose status changed (each becomes a Kubernetes Event)."""
    old = {c.get("type"): c.get("status") for c in previous or []}
    return [c for c in new if old.get(c.type) != c.status]


def component_conditions(
    components: dict[str, dict[str, Any]], error: str | None, error_reason: str | None = None
) -> list[Cond]:
    """Ready / Progressing / Degraded from per-component readiness and the reconcile error."""
    not_ready = sorted(name for name, c in components.items() if not c.get("ready"))
    if error:
        reason = error_reason or "ReconcileFailed"
        return [
            Cond(READY, "False", reason, error),
            Cond(PROGRESSING, "False", reason, "reconciliation is retried with backoff"),
            Cond(DEGRADED, "True", reason, error),
        ]
    if not components:
        return [
            Cond(READY, "False", "Pending", "nothing applied yet"),
            Cond(PROGRESSING, "True", "Pending", "reconciling"),
            Cond(DEGRADED, "False", "AsExpected", ""),
        ]
    if not_ready:
        msg = f"waiting for {', '.join(not_ready)}"
        return [
            Cond(READY, "False", "ComponentsNotReady", msg),
            Cond(PROGRESSING, "True", "RollingOut", msg),
            Cond(DEGRADED, "False", "AsExpected", ""),
        ]
    return [
        Cond(READY, "True", "AllComponentsReady", f"{len(components)} components ready"),
        Cond(PROGRESSING, "False", "Reconciled", "every child is up to date"),
        Cond(DEGRADED, "False", "AsExpected", ""),
    ]


def phase(conds: list[Cond]) -> str:
    """One word for ``kubectl get``: Failed, Degraded, Halted, Running, Progressing or Pending."""
    by_type = {c.type: c for c in conds}
    if by_type.get(DEGRADED) and by_type[DEGRADED].status == "True":
        # waiting for a dependency (cdb_operator.dependencies) is not a failure of the bot
        return "Degraded" if by_type[DEGRADED].reason == "DependencyUnavailable" else "Failed"
    breaker = by_type.get(BREAKER)
    ready = by_type.get(READY)
    if ready and ready.status == "True":
        return "Halted" if breaker and breaker.status == "True" else "Running"
    if ready and ready.reason == "Pending":
        return "Pending"
    return "Progressing"


def event_type(cond: Cond) -> str:
    """Warning for transitions a person should look at, Normal otherwise."""
    bad = (
        (cond.type == DEGRADED and cond.status == "True")
        or (cond.type == BREAKER and cond.status == "True")
        or (cond.type in (POSTGRES_READY, REDIS_READY, BUS_DURABLE) and cond.status == "False")
    )
    return "Warning" if bad else "Normal"

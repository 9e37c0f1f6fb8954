"""Which dependency a NotReady bot waits for: ``Degraded`` / ``DependencyUnavailable``.

During a Redis or PostgreSQL outage the services stay up and NotReady (their liveness
never looks at a dependency). The pods' readiness says *that* they wait, not *for what*;
each service writes its readiness with the dependencies it finds down to the Redis hash
``cdb:readiness`` (see :mod:`cdb.outages`), and this module reads it, adds what the
operator sees itself (Redis not answering the operator, a datastore's StatefulSet not
ready), and turns it into conditions: ``Degraded=True`` with reason
``DependencyUnavailable`` and a message naming the dependency and the services waiting
for it; ``Progressing=False`` with the same reason (nothing rolls out, it waits). The
phase shows ``Degraded``. When the dependency is back the services turn Ready by
themselves and the next reconcile clears it.
"""

from __future__ import annotations

import json
import time
from typing import Any

import redis

from cdb.probes import READINESS_KEY
from cdb_operator import model
from cdb_operator.breaker import RedisAddress
from cdb_operator.conditions import DEGRADED, PROGRESSING, Cond

REASON = "DependencyUnavailable"
#: Datastores the operator runs: their component being NotReady is itself the cause.
DATASTORES = ("redis", "postgres")
#: A service's report older than this is ignored (services write every HEALTH_INTERVAL_S).
REPORT_MAX_AGE_S = 120.0


def read_reports(
    address: RedisAddress, timeout: float = 2.0
) -> tuple[dict[str, dict[str, Any]], str | None]:
    """The services' readiness reports by service, or ``({}, why)`` when Redis does not answer."""
    client = address.client(timeout)
    try:
        raw = client.hgetall(READINESS_KEY)
    except redis.RedisError as exc:
        return {}, f"{type(exc).__name__}"
    finally:
        client.close()
    reports = {}
    for field, value in raw.items():
        try:
            reports[field.decode()] = json.loads(value)
        except (ValueError, UnicodeDecodeError):
            continue
    return reports, None


def waiting_for(
    components: dict[str, dict[str, Any]],
    reports: dict[str, dict[str, Any]],
    redis_error: str | None,
    now: float,
) -> dict[str, list[str]]:
    """Each dependency that is down → the NotReady services waiting for it (pure)."""
    not_ready = sorted(
        name for name, c in components.items() if name in model.SERVICES and not c.get("ready")
    )
    down: dict[str, list[str]] = {}
    for store in DATASTORES:
        if store in components and not components[store].get("ready"):
            down.setdefault(store, [])
    if redis_error:
        down.setdefault("redis", [])
    for service in not_ready:
        report = reports.get(service) or {}
        fresh = now - float(report.get("at", 0)) <= REPORT_MAX_AGE_S
        named = (report.get("dependencies") or []) if fresh and not report.get("ready") else []
        for dependency in named:
            down.setdefault(dependency, []).append(service)
    if "redis" in down:  # every service needs the bus: all that are NotReady wait for it
        down["redis"] = not_ready
    return down


def conditions(
    conds: list[Cond], down: dict[str, list[str]], redis_error: str | None = None
) -> list[Cond]:
    """``conds`` with Degraded/Progressing replaced when a dependency is down, else unchanged."""
    if not down:
        return conds
    parts = []
    for dependency, services in sorted(down.items()):
        text = f"{dependency} unavailable"
        if dependency == "redis" and redis_error:
            text += f" (the operator cannot reach it: {redis_error})"
        if services:
            text += f"; waiting: {', '.join(services)}"
        parts.append(text)
    message = "; ".join(parts) + " (pods stay up, NotReady, and resume by themselves)"
    kept = [c for c in conds if c.type not in (DEGRADED, PROGRESSING)]
    return [
        *kept,
        Cond(PROGRESSING, "False", REASON, message),
        Cond(DEGRADED, "True", REASON, message),
    ]


def was_running(previous_conditions: list[dict[str, Any]] | None) -> bool:
    """Whether the bot had been Ready (or was already waiting for a dependency): a bot still
    being created waits for its datastores too, and that is ``Progressing``, not an outage."""
    for cond in previous_conditions or []:
        if cond.get("type") == "Ready" and cond.get("status") == "True":
            return True
        if cond.get("type") == DEGRADED and cond.get("reason") == REASON:
            return True
    return False


def observe(
    conds: list[Cond],
    components: dict[str, dict[str, Any]],
    address: RedisAddress,
    previous_conditions: list[dict[str, Any]] | None,
) -> list[Cond]:
    """Read the reports when a running bot has a NotReady component, and adjust ``conds``."""
    if not was_running(previous_conditions) or all(c.get("ready") for c in components.values()):
        return conds
    reports, redis_error = read_reports(address)
    down = waiting_for(components, reports, redis_error, time.time())
    return conditions(conds, down, redis_error)

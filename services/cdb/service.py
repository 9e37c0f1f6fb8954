"""The contract every service implements for the runtime (:mod:`cdb.runtime`): which
streams it reads, how it handles an entry, what it reports; and which failures are
transient (retried, never dead-lettered)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any, ClassVar

import psycopg2
import redis
from flask import Flask
from prometheus_client import CollectorRegistry

from cdb.bus import Bus, Delivery
from cdb.settings import BaseServiceSettings

log = logging.getLogger(__name__)


class TransientError(Exception):
    """A failure that resolves itself (a dependency is down): the entry is retried, not dropped."""


#: Exceptions that mean "a dependency is unavailable": back off and retry, never dead-letter.
#: A Redis at its ``maxmemory`` with ``noeviction`` (what an external Redis must run, so no
#: stream entry is evicted) answers every write with ``OOM``: the service waits, NotReady,
#: until memory is back, as for an outage; it neither exits nor dead-letters the entry.
TRANSIENT: tuple[type[BaseException], ...] = (
    TransientError,
    redis.ConnectionError,
    redis.TimeoutError,
    redis.exceptions.OutOfMemoryError,
    psycopg2.OperationalError,
    psycopg2.InterfaceError,
)


class Service:
    """Base class of every service. Override what applies; the runtime calls the rest.

    ``streams`` are read through the consumer group named after the service. ``handle``
    must be idempotent: delivery is at-least-once.
    """

    name: ClassVar[str] = "service"
    default_port: ClassVar[int] = 8000
    settings_class: ClassVar[type[BaseServiceSettings]] = BaseServiceSettings
    streams: ClassVar[tuple[str, ...]] = ()

    def __init__(self, settings: BaseServiceSettings, bus: Bus) -> None:
        self.settings = settings
        self.bus = bus
        self.registry = CollectorRegistry(auto_describe=True)

    @classmethod
    def observer_warmup_s(cls, settings: BaseServiceSettings) -> float | None:
        """None: the service reads through its consumer group (every service but one).

        A number of seconds makes it an *observer* (:mod:`cdb.bus_observer`): it reads with
        plain ``XREAD``, starting that far back, and writes nothing but its own output, so
        Redis can hold it to read rights (the advisor, :mod:`cdb.redis_acl`).
        """
        return None

    def setup(self) -> None:
        """Connect to what the service needs (called again after a transient failure)."""

    def handle(self, delivery: Delivery) -> None:
        """Handle one validated entry. Raise a ``TRANSIENT`` error to have it retried."""

    def handle_batch(self, deliveries: list[Delivery], done: Callable[[Delivery], None]) -> None:
        """Handle a batch, calling ``done`` for each entry that may be acknowledged.

        The default handles entries one by one; an entry whose handler raises a
        non-transient error is dead-lettered with the error as its reason.
        """
        for delivery in deliveries:
            try:
                self.handle(delivery)
            except TRANSIENT:
                raise
            except Exception as exc:  # a bug or a poison entry: never block the stream on it
                log.exception("handler failed on %s %s", delivery.stream, delivery.entry_id)
                self.bus.dead_letter(delivery, f"handler error: {type(exc).__name__}: {exc}"[:500])
                continue
            done(delivery)

    def tick(self) -> float | None:
        """Periodic work between reads; return seconds to sleep when the service only produces."""
        return None

    def finished(self) -> bool:
        """True when the service has nothing left to do (a replay at its end): stop gracefully."""
        return False

    def status(self) -> dict[str, Any]:
        """Service-specific fields for ``/status``."""
        return {}

    def health_problems(self) -> list[str]:
        """Reasons the service is not ready besides Redis and the loop (e.g. a database).

        A problem naming a dependency (``"postgres unreachable: …"``, see
        :func:`cdb.probes.dependency_of`) also counts towards that dependency's outage.
        """
        return []

    def threads(self) -> list[threading.Thread]:
        """Threads that must stay alive: liveness fails when one of them has died."""
        return []

    def health_warnings(self) -> list[str]:
        """Things a person must know that a restart would not cure: shown on ``/health``
        (``status: degraded``, ``warnings``) with HTTP 200, so liveness probes stay green."""
        return []

    def routes(self, app: Flask) -> None:
        """Add service-specific HTTP routes."""

    def close(self) -> None:
        """Release connections at shutdown."""

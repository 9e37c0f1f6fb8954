"""``cdb run persistence``: the audit trail. Streams in, one PostgreSQL transaction per batch.

Reads ``signals``, ``orders``, ``order_result``, ``alerts``, ``health`` and ``ml_signals``
(the ML advisor's shadow signals) and writes
each entry into its table (see ``rows.py``). Entries are acknowledged only after
their batch committed. When PostgreSQL is down the batch fails with a transient
error: the runtime backs off and re-reads the same pending entries, so the writer
catches up from the stream backlog once the database is back, and ``/health``
says why it is not healthy meanwhile.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

import psycopg2
from prometheus_client import Counter

from cdb.bus import ALERTS, HEALTH, ML_SIGNALS, ORDER_RESULT, ORDERS, SIGNALS, Bus, Delivery
from cdb.metrics import PostgresUp, zero
from cdb.persistence.rows import TABLES
from cdb.persistence.settings import PersistenceSettings
from cdb.persistence.writer import UNAVAILABLE, Writer, WriteResult
from cdb.service import Service

log = logging.getLogger(__name__)


class PersistenceService(Service):
    name = "persistence"
    default_port = 8004
    settings_class = PersistenceSettings
    streams = (SIGNALS, ORDERS, ORDER_RESULT, ALERTS, HEALTH, ML_SIGNALS)

    def __init__(self, settings: PersistenceSettings, bus: Bus) -> None:
        super().__init__(settings, bus)
        self.settings: PersistenceSettings = settings
        bus.linger_ms = settings.PERSISTENCE_LINGER_MS  # batches by time: see the setting
        self.writer = Writer(settings)
        self.db_error: str | None = None
        self.last_db_contact = 0.0
        self.last_commit_at: int | None = None
        self.batches = 0
        self.written: dict[str, int] = {}
        self.duplicates: dict[str, int] = {}
        self.refused = 0
        self.rows_total = Counter(
            "cdb_persistence_rows",
            "Rows inserted or updated, per table",
            ["table"],
            registry=self.registry,
        )
        self.duplicates_total = Counter(
            "cdb_persistence_duplicates",
            "Entries whose row already existed (redeliveries), per table",
            ["table"],
            registry=self.registry,
        )
        self.refused_total = Counter(
            "cdb_persistence_refused",
            "Entries the database refused for their content (dead-lettered)",
            registry=self.registry,
        )
        known = [(table.name,) for table in TABLES]  # series from the start, at 0
        zero(self.rows_total, known)
        zero(self.duplicates_total, known)
        self.registry.register(PostgresUp(lambda: self.db_error is None))

    # -- runtime hooks ---------------------------------------------------------------------------

    def setup(self) -> None:
        self._db(self.writer.probe)

    def handle_batch(self, deliveries: list[Delivery], done: Callable[[Delivery], None]) -> None:
        try:
            result = self._db(self.writer.write, deliveries)
        except UNAVAILABLE:
            raise
        except (psycopg2.Error, ValueError) as exc:
            # Some entry's content was refused (a constraint, a NUL character): find it, keep
            # the rest. ValueError is psycopg2 refusing a value before sending it.
            log.warning("batch of %d refused (%s); writing entry by entry", len(deliveries), exc)
            result, refused = self._db(self.writer.write_each, deliveries)
            bad_ids = {d.entry_id for d, _ in refused}
            for delivery, reason in refused:
                self.bus.dead_letter(delivery, reason)
            self.refused += len(refused)
            self.refused_total.inc(len(refused))
            deliveries = [d for d in deliveries if d.entry_id not in bad_ids]
        self._count(result)
        for delivery in deliveries:
            done(delivery)

    def tick(self) -> float | None:
        # An idle writer would not notice an outage until the next event; look now and then.
        if time.monotonic() - self.last_db_contact >= self.settings.DB_PROBE_INTERVAL_S:
            # A failure is recorded in db_error (shown by /health); there is nothing to retry.
            with contextlib.suppress(UNAVAILABLE):
                self._db(self.writer.probe)
        return None

    def health_problems(self) -> list[str]:
        return [f"postgres unreachable: {self.db_error}"] if self.db_error else []

    def status(self) -> dict[str, Any]:
        return {
            "postgres": "unreachable" if self.db_error else "ok",
            "batches": self.batches,
            "rows_written": dict(self.written),
            "duplicates": dict(self.duplicates),
            "refused": self.refused,
            "last_commit_at": self.last_commit_at,
        }

    def close(self) -> None:
        self.writer.close()

    # -- helpers ---------------------------------------------------------------------------------

    def _db(self, call: Callable[..., Any], *args: Any) -> Any:
        """Run a database call, recording whether PostgreSQL answered (for ``/health``)."""
        self.last_db_contact = time.monotonic()
        try:
            value = call(*args)
        except UNAVAILABLE as exc:
            first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            if self.db_error is None:
                log.warning("postgres unreachable: %s", first_line)
            self.db_error = first_line[:200]
            raise
        if self.db_error is not None:
            log.info("postgres reachable again")
        self.db_error = None
        return value

    def _count(self, result: WriteResult) -> None:
        self.batches += 1
        self.last_commit_at = int(time.time())
        for table, n in result.written.items():
            self.written[table] = self.written.get(table, 0) + n
            self.rows_total.labels(table).inc(n)
        for table, n in result.duplicates.items():
            self.duplicates[table] = self.duplicates.get(table, 0) + n
            self.duplicates_total.labels(table).inc(n)


SERVICE = PersistenceService

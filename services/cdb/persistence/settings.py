"""Settings of the persistence writer: Redis, PostgreSQL, and how much it writes per transaction."""

from __future__ import annotations

from pydantic import Field

from cdb.settings import BaseServiceSettings, PostgresSettings


class PersistenceSettings(BaseServiceSettings, PostgresSettings):
    """The writer reads larger batches than other services: one transaction per batch is what
    lets it keep up with tens of thousands of events per second."""

    READ_BATCH: int = Field(
        2000, ge=1, le=10_000, description="Entries read per XREADGROUP and stream (one batch)"
    )
    PERSISTENCE_LINGER_MS: int = Field(
        20,
        ge=0,
        le=1000,
        description="After the first entry wakes the writer, wait this long (ms) for more before "
        "writing them in one transaction: fewer commits beside the order path's, and an order's "
        "row is written by execution first instead of execution waiting on this writer's insert "
        "of the same row; 0 = write at once",
    )
    DB_PROBE_INTERVAL_S: float = Field(
        5.0,
        gt=0,
        description="When idle, check PostgreSQL this often so /health shows an outage",
    )

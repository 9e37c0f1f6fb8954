"""PostgreSQL connections for the services: psycopg2, autocommit off, short timeouts."""

from __future__ import annotations

import psycopg2
import psycopg2.extensions
import psycopg2.extras

from cdb.settings import PostgresSettings


def connect(
    settings: PostgresSettings, application_name: str = "cdb"
) -> psycopg2.extensions.connection:
    """Open a connection; a dead server raises ``psycopg2.OperationalError`` (transient)."""
    conn = psycopg2.connect(
        settings.postgres_dsn(),
        connect_timeout=3,
        application_name=application_name,
        keepalives=1,
        keepalives_idle=10,
        keepalives_interval=5,
        keepalives_count=3,
    )
    psycopg2.extras.register_default_jsonb(conn)
    return conn

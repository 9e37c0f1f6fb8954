"""The database edge of the persistence writer: one transaction per batch, reconnect on demand.

A batch is committed whole or not at all, and the caller acknowledges its entries
only after the commit, so a crash or an outage in between means the entries are
delivered again and the unique keys make the second write a no-op. A row the
database refuses for its content (a constraint, a bad value) is isolated with
savepoints so that it alone is dead-lettered and the rest of the batch is kept.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

import psycopg2
import psycopg2.extensions
import psycopg2.extras

from cdb.bus import Delivery
from cdb.db.connect import connect
from cdb.persistence.rows import TABLES, Row, Table, row_of, rows_by_table
from cdb.settings import PostgresSettings

log = logging.getLogger(__name__)

#: Errors that say the database is unavailable, not that a row is wrong.
UNAVAILABLE = (psycopg2.OperationalError, psycopg2.InterfaceError)


@dataclass
class WriteResult:
    """Rows inserted (or replaced) and rows that were already there, per table."""

    written: dict[str, int] = field(default_factory=dict)
    duplicates: dict[str, int] = field(default_factory=dict)


class Writer:
    """Holds one connection; any sign that it is broken closes it, and the next write reopens."""

    def __init__(self, settings: PostgresSettings) -> None:
        self.settings = settings
        self.conn: psycopg2.extensions.connection | None = None

    def _connection(self) -> psycopg2.extensions.connection:
        if self.conn is None or self.conn.closed:
            self.conn = connect(self.settings, application_name="cdb-persistence")
        return self.conn

    def close(self) -> None:
        if self.conn is not None and not self.conn.closed:
            self.conn.close()
        self.conn = None

    def probe(self) -> None:
        """A cheap round trip; raises an ``UNAVAILABLE`` error when PostgreSQL does not answer."""
        try:
            conn = self._connection()
            with conn, conn.cursor() as cur:
                cur.execute("SELECT 1")
        except UNAVAILABLE:
            self.close()
            raise

    def write(self, deliveries: Sequence[Delivery]) -> WriteResult:
        """Write a whole batch in one transaction; raises on any error (nothing is committed)."""
        grouped = rows_by_table(deliveries)
        result = WriteResult()
        try:
            conn = self._connection()
            with conn, conn.cursor() as cur:
                for table in TABLES:
                    rows = grouped.get(table.name)
                    if rows:
                        _insert(cur, table, rows, result)
        except UNAVAILABLE:
            self.close()
            raise
        return result

    def write_each(self, deliveries: Sequence[Delivery]) -> tuple[WriteResult, list[tuple]]:
        """Write entry by entry inside one transaction, each under a savepoint.

        The slow path, taken only after a batch failed for its content: returns what was
        written and ``(delivery, reason)`` for each entry the database refused.
        """
        result = WriteResult()
        refused: list[tuple[Delivery, str]] = []
        try:
            conn = self._connection()
            with conn, conn.cursor() as cur:
                for delivery in deliveries:
                    found = row_of(delivery)
                    if found is None:
                        continue
                    table, row = found
                    cur.execute("SAVEPOINT entry")
                    try:
                        _insert(cur, table, [row], result)
                    except UNAVAILABLE:
                        raise
                    except (psycopg2.Error, ValueError) as exc:
                        # ValueError: psycopg2 refuses some values (a NUL character) itself.
                        cur.execute("ROLLBACK TO SAVEPOINT entry")
                        reason = _reason(exc)
                        refused.append((delivery, f"{table.name}: {reason}"[:500]))
                    else:
                        cur.execute("RELEASE SAVEPOINT entry")
        except UNAVAILABLE:
            self.close()
            raise
        return result, refused


def _insert(cur, table: Table, rows: list[Row], result: WriteResult) -> None:
    # page_size = all rows: one statement, so rowcount counts every row it inserted.
    psycopg2.extras.execute_values(
        cur, table.insert_sql(), rows, template=table.template(), page_size=max(1, len(rows))
    )
    inserted = max(0, cur.rowcount)
    result.written[table.name] = result.written.get(table.name, 0) + inserted
    result.duplicates[table.name] = result.duplicates.get(table.name, 0) + len(rows) - inserted


def _reason(exc: Exception) -> str:
    diag = getattr(exc, "diag", None)
    message = (diag.message_primary if diag is not None else None) or str(exc)
    return message.strip().splitlines()[0] if message.strip() else type(exc).__name__

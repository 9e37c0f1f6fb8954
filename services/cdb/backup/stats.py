"""What a database holds, table by table: row counts and an order-free content checksum.

The same functions describe the source when a backup is taken (inside the very
snapshot pg_dump dumps) and the target after a restore, so the two can be compared
number for number. The checksum is the sum of the first 64 bits of the md5 of each
row's text form: it needs no sort and no memory per row (the ``metrics`` table can be
large), does not depend on the order rows come back in, and changes when any row
changes. Row text depends on session settings (time zone, float digits), so
``stable_session`` pins them on both sides.
"""

from __future__ import annotations

from typing import Any

from psycopg2 import sql

SYSTEM_SCHEMAS = ("pg_catalog", "information_schema")

_STABLE_SETTINGS = (
    "SET TimeZone = 'UTC'",
    "SET DateStyle = 'ISO, YMD'",
    "SET IntervalStyle = 'postgres'",
    "SET extra_float_digits = 1",
    "SET bytea_output = 'hex'",
)

_USER_RELATIONS = """
    SELECT n.nspname, c.relname
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE c.relkind = ANY(%s)
      AND n.nspname <> ALL(%s)
      AND n.nspname NOT LIKE 'pg\\_toast%%'
      AND n.nspname NOT LIKE 'pg\\_temp%%'
    ORDER BY 1, 2
"""

_TABLE_STATS = (
    "SELECT count(*), coalesce(sum(('x' || substr(md5(t::text), 1, 16))::bit(64)::bigint"
    "::numeric), 0)::text FROM {table} AS t"
)


def stable_session(cur: Any) -> None:
    """Pin the settings that decide how a row is rendered as text."""
    for statement in _STABLE_SETTINGS:
        cur.execute(statement)


def list_tables(cur: Any) -> list[tuple[str, str]]:
    """(schema, table) of every ordinary or partitioned table outside the system schemas."""
    cur.execute(_USER_RELATIONS, (["r", "p"], list(SYSTEM_SCHEMAS)))
    return [(row[0], row[1]) for row in cur.fetchall()]


def user_relations(cur: Any) -> list[str]:
    """Every table, view, sequence or foreign table a user made: empty means an empty DB."""
    cur.execute(_USER_RELATIONS, (["r", "p", "v", "m", "S", "f"], list(SYSTEM_SCHEMAS)))
    return [f"{schema}.{name}" for schema, name in cur.fetchall()]


def table_stats(cur: Any) -> dict[str, dict[str, Any]]:
    """``{"public.signals": {"rows": 12, "checksum": "…"}, …}`` as this transaction sees it."""
    stable_session(cur)
    result: dict[str, dict[str, Any]] = {}
    for schema, name in list_tables(cur):
        query = sql.SQL(_TABLE_STATS).format(table=sql.Identifier(schema, name))
        cur.execute(query)
        rows, checksum = cur.fetchone()
        result[f"{schema}.{name}"] = {"rows": int(rows), "checksum": str(checksum)}
    return result

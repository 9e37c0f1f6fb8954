"""The two dumps: PostgreSQL with ``pg_dump -Fc`` and Redis with ``redis-cli --rdb``.

Connection details reach pg_dump as libpq environment variables built from
``PostgresSettings``; the password only as ``PGPASSWORD`` in the child's environment.
pg_dump is given the snapshot exported by the backup's own transaction
(``--snapshot``), so the dump and the row counts in the manifest describe the same
instant even while the pipeline keeps writing.
"""

from __future__ import annotations

from pathlib import Path

from cdb.backup.tools import BackupError, find_pg_tool, find_redis_cli, run_tool
from cdb.settings import BaseServiceSettings, PostgresSettings

RDB_MAGIC = b"REDIS"


def pg_password(settings: PostgresSettings) -> str | None:
    return settings.POSTGRES_PASSWORD.get_secret_value() if settings.POSTGRES_PASSWORD else None


def redis_password(settings: BaseServiceSettings) -> str | None:
    return settings.REDIS_PASSWORD.get_secret_value() if settings.REDIS_PASSWORD else None


def libpq_env(settings: PostgresSettings, application: str) -> dict[str, str]:
    """The libpq environment for pg_dump/pg_restore: where to connect, and the password."""
    env = {
        "PGHOST": settings.POSTGRES_HOST,
        "PGPORT": str(settings.POSTGRES_PORT),
        "PGUSER": settings.POSTGRES_USER,
        "PGDATABASE": settings.POSTGRES_DB,
        "PGAPPNAME": application,
        "PGCONNECT_TIMEOUT": "10",
    }
    password = pg_password(settings)
    if password is not None:
        env["PGPASSWORD"] = password
    return env


def pg_dump_argv(pg_dump: str, target: Path, snapshot: str | None, lock_wait_s: float) -> list[str]:
    """The pg_dump command line: custom format, never prompting, never naming a password."""
    argv = [
        pg_dump,
        "--format=custom",
        "--no-password",
        f"--lock-wait-timeout={max(1, int(lock_wait_s * 1000))}ms",
        f"--file={target}",
    ]
    if snapshot:
        argv.append(f"--snapshot={snapshot}")
    return argv


def dump_postgres(
    settings: PostgresSettings, target: Path, snapshot: str | None, lock_wait_s: float
) -> str:
    """Write the custom-format dump to ``target``; returns the pg_dump version used."""
    pg_dump = find_pg_tool("pg_dump")
    run_tool(
        pg_dump_argv(pg_dump, target, snapshot, lock_wait_s),
        libpq_env(settings, "cdb-backup"),
        "pg_dump",
        secrets=[pg_password(settings)],
    )
    if not target.exists() or target.stat().st_size == 0:
        raise BackupError("pg_dump exited 0 but wrote no dump")
    return pg_dump


def redis_cli_argv(redis_cli: str, settings: BaseServiceSettings, target: Path) -> list[str]:
    """``redis-cli --rdb``: the server forks a snapshot and streams it to us (SYNC)."""
    return [
        redis_cli,
        "-h",
        settings.REDIS_HOST,
        "-p",
        str(settings.REDIS_PORT),
        *(["--tls"] if settings.REDIS_TLS else []),
        "--no-auth-warning",
        "--rdb",
        str(target),
    ]


def dump_redis(settings: BaseServiceSettings, target: Path, timeout_s: float) -> str:
    """Write a Redis RDB snapshot to ``target``; returns the redis-cli path used.

    The password travels as ``REDISCLI_AUTH``. The file must start with the RDB magic,
    so an error page or an empty transfer is never recorded as a snapshot.
    """
    redis_cli = find_redis_cli()
    env = {}
    password = redis_password(settings)
    if password:
        env["REDISCLI_AUTH"] = password
    run_tool(
        redis_cli_argv(redis_cli, settings, target),
        env,
        "redis-cli --rdb",
        secrets=[password],
        timeout=timeout_s,
    )
    with target.open("rb") as f:
        head = f.read(len(RDB_MAGIC))
    if head != RDB_MAGIC:
        raise BackupError("redis-cli --rdb wrote a file that is not an RDB snapshot")
    return redis_cli

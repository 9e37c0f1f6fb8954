"""One whole backup: snapshot, dumps, manifest, verification, atomic rename, retention.

The backup is built in ``DIR/.partial-backup-…`` and renamed to ``DIR/backup-…`` only
after the dump's archive has been read back and every file checksummed, so a failed or
interrupted backup never looks like, or replaces, a good one. The row counts and content
checksums come from the transaction whose snapshot pg_dump dumps (``pg_export_snapshot``):
rows inserted while the backup runs are in neither, so a restore can be checked exactly.
"""

from __future__ import annotations

import platform
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import psycopg2
import psycopg2.extensions
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

import cdb
from cdb.backup.dump import dump_postgres, dump_redis, redis_password
from cdb.backup.manifest import (
    DUMP_FILE,
    PARTIAL_PREFIX,
    REDIS_FILE,
    Manifest,
    TableEntry,
    backup_name,
    fsync_path,
    sha256_file,
    utc_now_iso,
    write_manifest,
)
from cdb.backup.retention import apply_retention, backup_lock, remove_partials
from cdb.backup.stats import table_stats
from cdb.backup.tools import (
    BackupError,
    find_pg_tool,
    find_redis_cli,
    last_line,
    tool_version,
)
from cdb.backup.verify import check_dump_covers, check_files
from cdb.db.connect import connect
from cdb.db.migrate import schema_version
from cdb.settings import BaseServiceSettings, PostgresSettings

#: Bound on the Redis snapshot (the server forks, then streams the whole dataset).
REDIS_TIMEOUT_S = 600.0


@dataclass(frozen=True)
class BackupResult:
    path: Path
    manifest: Manifest
    removed: list[Path]
    kept: int


def create_backup(
    pg: PostgresSettings,
    output: Path,
    keep: int,
    redis_settings: BaseServiceSettings | None = None,
    lock_wait_s: float = 300.0,
    on_snapshot: Callable[[], None] | None = None,
) -> BackupResult:
    """Write one verified backup under ``output`` and apply retention.

    ``on_snapshot`` runs right after the snapshot is exported and before pg_dump starts;
    the tests use it to write rows that must not appear in the backup.
    """
    if keep < 1:
        raise BackupError("--keep must be at least 1 (the newest good backup is never deleted)")
    find_pg_tool("pg_dump"), find_pg_tool("pg_restore")  # say what is missing before any work
    if redis_settings is not None:
        find_redis_cli()
    try:
        output.mkdir(mode=0o700, parents=True, exist_ok=True)  # a new directory: owner only
    except OSError as exc:
        raise BackupError(f"cannot create {output}: {exc.strerror}") from None
    with backup_lock(output):
        remove_partials(output)
        name = backup_name(datetime.now(UTC))
        final = output / name
        work = output / f"{PARTIAL_PREFIX}{name}"
        work.mkdir(mode=0o700)
        try:
            work.chmod(0o700)  # the umask may only narrow it; a backup is the owner's alone
            manifest = _write_backup(work, pg, redis_settings, lock_wait_s, on_snapshot)
            for path in work.iterdir():  # the tools write 0644; the directory hid them meanwhile
                path.chmod(0o600)
            check_files(work, manifest)
            check_dump_covers(work / DUMP_FILE, manifest.tables)
            if final.exists():
                raise BackupError(f"{final} already exists")
            work.rename(final)
            fsync_path(output)
        except BaseException:
            shutil.rmtree(work, ignore_errors=True)
            raise
        removed = apply_retention(output, keep, protect=name)
    return BackupResult(final, manifest, removed, keep)


def _write_backup(
    work: Path,
    pg: PostgresSettings,
    redis_settings: BaseServiceSettings | None,
    lock_wait_s: float,
    on_snapshot: Callable[[], None] | None,
) -> Manifest:
    started = time.monotonic()
    tools = {"cdb": cdb.__version__, "python": platform.python_version()}
    try:
        conn = connect(pg, application_name="cdb-backup")
    except psycopg2.Error as exc:
        raise BackupError(f"cannot connect to PostgreSQL: {last_line(str(exc))}") from None
    try:
        version = _schema_version(pg)  # before the snapshot: yoyo may create its own tables
        conn.set_session(
            isolation_level=psycopg2.extensions.ISOLATION_LEVEL_REPEATABLE_READ, readonly=True
        )
        with conn.cursor() as cur:
            cur.execute("SET lock_timeout = %s", (f"{max(1, int(lock_wait_s * 1000))}ms",))
            cur.execute("SELECT pg_export_snapshot(), current_setting('server_version'), now()")
            snapshot, server_version, created = cur.fetchone()  # now(): the snapshot's time
            if on_snapshot is not None:
                on_snapshot()
            pg_dump = dump_postgres(pg, work / DUMP_FILE, snapshot, lock_wait_s)
            tables = table_stats(cur)  # the same snapshot pg_dump dumped
        conn.rollback()
    except psycopg2.Error as exc:
        raise BackupError(f"PostgreSQL: {last_line(str(exc))}") from None
    finally:
        conn.close()
    tools.update(
        {
            "postgres_server": server_version,
            "pg_dump": tool_version(pg_dump),
            "pg_restore": tool_version(find_pg_tool("pg_restore")),
        }
    )
    files = {DUMP_FILE: sha256_file(work / DUMP_FILE)}
    if redis_settings is not None:
        tools.update(_snapshot_redis(redis_settings, work / REDIS_FILE, REDIS_TIMEOUT_S))
        files[REDIS_FILE] = sha256_file(work / REDIS_FILE)
    for name in files:
        fsync_path(work / name)
    manifest = Manifest(
        created_at=utc_now_iso(created),
        database={
            "host": pg.POSTGRES_HOST,
            "port": pg.POSTGRES_PORT,
            "name": pg.POSTGRES_DB,
            "user": pg.POSTGRES_USER,
        },
        schema_version=version,
        tables={k: TableEntry(**v) for k, v in tables.items()},
        files=files,
        tools=tools,
        duration_s=round(time.monotonic() - started, 3),
    )
    write_manifest(work, manifest)
    return manifest


def _schema_version(pg: PostgresSettings) -> str | None:
    try:
        return schema_version(pg)
    except psycopg2.Error as exc:
        raise BackupError(f"cannot read the schema version: {last_line(str(exc))}") from None


def _snapshot_redis(settings: BaseServiceSettings, target: Path, timeout_s: float) -> dict:
    """Dump Redis; returns the tool versions for the manifest."""
    client = redis.Redis(
        host=settings.REDIS_HOST,
        port=settings.REDIS_PORT,
        password=redis_password(settings),
        ssl=settings.REDIS_TLS,
        socket_timeout=10,
        socket_connect_timeout=5,
        retry=Retry(NoBackoff(), 0),  # fail at once; the CronJob's backoffLimit retries the job
    )
    try:
        server = client.info("server").get("redis_version", "unknown")
    except redis.RedisError as exc:
        raise BackupError(f"cannot reach Redis: {exc}") from None
    finally:
        client.close()
    redis_cli = dump_redis(settings, target, timeout_s)
    return {"redis_server": str(server), "redis-cli": tool_version(redis_cli)}


def size_text(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"


def summary(result: BackupResult) -> str:
    m = result.manifest
    files = ", ".join(f"{name} {size_text(f.bytes)}" for name, f in sorted(m.files.items()))
    return (
        f"backup written: {result.path}: {len(m.tables)} tables, {m.total_rows} rows, {files}, "
        f"schema {m.schema_version or 'empty'}; {len(result.removed)} old backup(s) removed "
        f"(keeping {result.kept})"
    )

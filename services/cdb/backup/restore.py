"""One whole restore: pick the backup, check its checksums, refuse a non-empty target,
``pg_restore`` in a single transaction, then compare every table with the manifest.

The order matters: a corrupt file is refused before the database is touched; the
restore is one transaction, so a failure halfway leaves the target as it was; and the
verification reads the restored tables with the same checksum the backup recorded.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import psycopg2
import psycopg2.extensions

from cdb.backup.dump import libpq_env, pg_password
from cdb.backup.manifest import DUMP_FILE, MANIFEST_FILE, Manifest, read_manifest
from cdb.backup.retention import newest_backup
from cdb.backup.stats import table_stats, user_relations
from cdb.backup.tools import BackupError, find_pg_tool, last_line, run_tool
from cdb.backup.verify import check_files, compare_tables
from cdb.db.connect import connect
from cdb.db.migrate import schema_version
from cdb.settings import PostgresSettings


@dataclass(frozen=True)
class RestoreResult:
    backup: Path
    manifest: Manifest
    database: str


def resolve_backup(path: Path) -> Path:
    """``path`` itself when it is a backup, else the newest complete backup inside it."""
    if not path.is_dir():
        raise BackupError(f"{path} is not a directory")
    if (path / MANIFEST_FILE).exists():
        return path
    return newest_backup(path)


def check_backup(path: Path) -> tuple[Path, Manifest]:
    """Resolve and checksum a backup without touching any database."""
    backup = resolve_backup(path)
    manifest = read_manifest(backup)
    check_files(backup, manifest)
    return backup, manifest


def pg_restore_argv(pg_restore: str, dump: Path, database: str, clean: bool) -> list[str]:
    """All or nothing (one transaction), owned by the restoring user, no foreign grants."""
    argv = [
        pg_restore,
        "--no-password",
        "--single-transaction",
        "--exit-on-error",
        "--no-owner",
        "--no-acl",
        f"--dbname={database}",
    ]
    if clean:
        argv += ["--clean", "--if-exists"]
    return [*argv, str(dump)]


def restore_backup(pg: PostgresSettings, path: Path, force: bool = False) -> RestoreResult:
    backup, manifest = check_backup(path)
    existing = _existing_relations(pg)
    if existing and not force:
        shown = ", ".join(existing[:3]) + (", …" if len(existing) > 3 else "")
        raise BackupError(
            f"database {pg.POSTGRES_DB} is not empty ({len(existing)} relations: {shown}); "
            "restore into an empty database, or pass --force to replace its contents"
        )
    run_tool(
        pg_restore_argv(
            find_pg_tool("pg_restore"), backup / DUMP_FILE, pg.POSTGRES_DB, bool(existing)
        ),
        libpq_env(pg, "cdb-restore"),
        "pg_restore",
        secrets=[pg_password(pg)],
    )
    problems = compare_tables(manifest.tables, _restored_stats(pg))
    try:
        version = schema_version(pg)
    except psycopg2.Error as exc:
        raise BackupError(f"cannot read the schema version: {last_line(str(exc))}") from None
    if version != manifest.schema_version:
        problems.append(f"schema version {version}, the backup had {manifest.schema_version}")
    if problems:
        more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
        raise BackupError(
            f"restored database {pg.POSTGRES_DB} does not match {backup.name}: "
            + "; ".join(problems[:3])
            + more
        )
    return RestoreResult(backup, manifest, pg.POSTGRES_DB)


def _existing_relations(pg: PostgresSettings) -> list[str]:
    try:
        conn = connect(pg, application_name="cdb-restore")
    except psycopg2.Error as exc:
        raise BackupError(f"cannot connect to PostgreSQL: {last_line(str(exc))}") from None
    try:
        with conn.cursor() as cur:
            return user_relations(cur)
    finally:
        conn.close()


def _restored_stats(pg: PostgresSettings) -> dict:
    try:
        conn = connect(pg, application_name="cdb-restore")
        try:
            conn.set_session(
                isolation_level=psycopg2.extensions.ISOLATION_LEVEL_REPEATABLE_READ, readonly=True
            )
            with conn.cursor() as cur:
                return table_stats(cur)
        finally:
            conn.rollback()
            conn.close()
    except psycopg2.Error as exc:
        raise BackupError(f"PostgreSQL: {last_line(str(exc))}") from None


def summary(result: RestoreResult) -> str:
    m = result.manifest
    return (
        f"restored {result.backup} (taken {m.created_at}) into database {result.database}: "
        f"{len(m.tables)} tables, {m.total_rows} rows, row counts and checksums verified"
    )

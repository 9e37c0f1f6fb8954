"""``cdb restore DIR [--force] [--check]``: restore a backup into an empty database."""

from __future__ import annotations

import argparse
from pathlib import Path

from cdb.backup.cli_common import run_command
from cdb.settings import PostgresSettings


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Restore a backup made by 'cdb backup' into the database named by POSTGRES_* (without "
        "POSTGRES_HOST, the private one of a running 'cdb up'): "
        "DIR is one backup-<time> directory, or a directory of them (the newest complete one "
        "is used). The checksums are checked first, the restore is one transaction, and every "
        "table's row count and checksum is compared with the manifest afterwards."
    )
    parser.add_argument("dir", type=Path, metavar="DIR", help="a backup, or a directory of them")
    parser.add_argument(
        "--force",
        action="store_true",
        help="restore even into a non-empty database, replacing what the "
        "backup holds (pg_restore --clean)",
    )
    parser.add_argument(
        "--check", action="store_true", help="only verify the backup's checksums; touch no database"
    )


def main(args: argparse.Namespace) -> int:
    from cdb.backup.restore import check_backup, restore_backup, summary  # lazily: psycopg2, yoyo

    if args.check:

        def check() -> str:
            backup, manifest = check_backup(args.dir)
            return (
                f"backup {backup} is intact: taken {manifest.created_at}, "
                f"{len(manifest.tables)} tables, {manifest.total_rows} rows, "
                f"schema {manifest.schema_version or 'empty'}"
            )

        return run_command("restore", [], check)

    def body(pg: PostgresSettings) -> str:
        return summary(restore_backup(pg, args.dir, force=args.force))

    return run_command(
        "restore",
        [PostgresSettings],
        body,
        on_sigterm="an unfinished pg_restore is rolled back; a finished one is not verified",
    )

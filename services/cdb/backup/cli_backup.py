"""``cdb backup --output DIR [--keep N] [--redis]``: the command the backup CronJob runs."""

from __future__ import annotations

import argparse
from pathlib import Path

from cdb.backup.cli_common import positive_float, positive_int, run_command
from cdb.settings import BaseServiceSettings, PostgresSettings


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Dump PostgreSQL (pg_dump -Fc) and optionally Redis into DIR/backup-<UTC time>/ with a "
        "manifest of row counts and checksums, then keep only the newest N backups. "
        "It connects to the servers POSTGRES_* (and REDIS_*) name; without POSTGRES_HOST "
        "(REDIS_HOST), to the private ones of a running 'cdb up'."
    )
    parser.add_argument(
        "--output",
        type=Path,
        required=True,
        metavar="DIR",
        help="directory that holds the backups (created if missing)",
    )
    parser.add_argument(
        "--keep",
        type=positive_int,
        default=7,
        metavar="N",
        help="keep the newest N complete backups (default 7, at least 1)",
    )
    parser.add_argument(
        "--redis", action="store_true", help="also save a Redis RDB snapshot (redis-cli --rdb)"
    )
    parser.add_argument(
        "--lock-wait-timeout",
        type=positive_float,
        default=300.0,
        metavar="SECONDS",
        help="give up when a table stays locked this long (default 300)",
    )


def main(args: argparse.Namespace) -> int:
    from cdb.backup.create import create_backup, summary  # lazily: psycopg2, yoyo, redis

    classes: list = [PostgresSettings] + ([BaseServiceSettings] if args.redis else [])

    def body(pg: PostgresSettings, redis_settings: BaseServiceSettings | None = None) -> str:
        result = create_backup(
            pg,
            args.output,
            keep=args.keep,
            redis_settings=redis_settings,
            lock_wait_s=args.lock_wait_timeout,
        )
        return summary(result)

    return run_command("backup", classes, body, on_sigterm="no partial backup is left behind")

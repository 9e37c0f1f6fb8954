"""Where the CLI twins find the bot: a running ``cdb up`` (its ``up.json``) or the environment.

Locally, ``cdb up`` records its private servers in ``DATA_DIR/up.json``; without that
file the usual ``REDIS_*`` / ``POSTGRES_*`` variables name the bot's servers (for a bot in
a cluster: port-forward its Redis and PostgreSQL and set those, see docs/dashboard.md).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import redis

from cdb.local import plan
from cdb.local.status import read_session
from cdb.settings import (
    BaseServiceSettings,
    PostgresSettings,
    SettingsError,
    exit_on_bad_settings,
    load_settings,
)


def add_data_dir(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=plan.default_data_dir(),
        help="data directory of a running cdb up (default: $CDB_DATA_DIR or ./.cdb); "
        "without one, REDIS_* / POSTGRES_* name the servers",
    )


def _servers(data_dir: Path) -> dict[str, str]:
    session = read_session(data_dir) or {}
    return dict(session.get("servers") or {})


def redis_for(data_dir: Path) -> redis.Redis:
    """A Redis client for the bot (exits 2 naming a bad variable)."""
    found = {k: v for k, v in _servers(data_dir).items() if k.startswith("REDIS_")}
    try:
        rs = load_settings(BaseServiceSettings, **found)
    except SettingsError as exc:
        exit_on_bad_settings(exc)
    return redis.Redis(
        host=rs.REDIS_HOST,
        port=rs.REDIS_PORT,
        db=rs.REDIS_DB,
        password=rs.REDIS_PASSWORD.get_secret_value() if rs.REDIS_PASSWORD else None,
        socket_timeout=3,
        socket_connect_timeout=3,
    )


def postgres_for(data_dir: Path) -> PostgresSettings:
    found = {k: v for k, v in _servers(data_dir).items() if k.startswith("POSTGRES_")}
    try:
        return load_settings(PostgresSettings, **found)
    except SettingsError as exc:
        exit_on_bad_settings(exc)
    raise AssertionError("unreachable")

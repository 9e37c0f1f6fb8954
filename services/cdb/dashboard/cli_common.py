"""Where the CLI twins find the bot: the environment, else the running ``cdb up``.

``REDIS_*`` / ``POSTGRES_*`` variables the environment sets name the bot's servers (for a
bot in a cluster: port-forward its Redis and PostgreSQL and set those, see
docs/dashboard.md); the servers it does not name come from the running ``cdb up``, found
through the per-user state file (:mod:`cdb.local.state`) or ``--data-dir``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import redis

from cdb.local import state
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
        default=None,
        help="data directory of a running cdb up (default: the one cdb up recorded in the "
        "per-user state file); REDIS_* / POSTGRES_* in the environment win",
    )


def _servers(data_dir: Path | None) -> dict[str, str]:
    if data_dir is None:
        return state.server_overrides(("REDIS_", "POSTGRES_"))
    bot = state.load(data_dir)
    return dict(bot.server_env) if bot is not None else {}


def redis_for(data_dir: Path | None) -> redis.Redis:
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
        ssl=rs.REDIS_TLS,
        password=rs.REDIS_PASSWORD.get_secret_value() if rs.REDIS_PASSWORD else None,
        socket_timeout=3,
        socket_connect_timeout=3,
    )


def postgres_for(data_dir: Path | None) -> PostgresSettings:
    found = {k: v for k, v in _servers(data_dir).items() if k.startswith("POSTGRES_")}
    try:
        return load_settings(PostgresSettings, **found)
    except SettingsError as exc:
        exit_on_bad_settings(exc)
    raise AssertionError("unreachable")

"""``cdb env``: shell ``export`` lines for the running local bot's private servers.

``eval "$(cdb env)"`` makes the settings of ``cdb up``'s private Redis and PostgreSQL
(found through ``cdb.local.state``) the shell's: ``REDIS_*`` and ``POSTGRES_*`` for
``cdb`` commands, and libpq's ``PGHOST`` … ``PGDATABASE`` plus ``REDISCLI_AUTH`` so that
``psql``, ``createdb`` and ``redis-cli -p "$REDIS_PORT"`` need no flags. Exits 1 with one
line on stderr when no ``cdb up`` runs.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from cdb.local import state

#: libpq's own variables (psql, createdb, pg_dump read them) from ours.
LIBPQ = {
    "POSTGRES_HOST": "PGHOST",
    "POSTGRES_PORT": "PGPORT",
    "POSTGRES_USER": "PGUSER",
    "POSTGRES_PASSWORD": "PGPASSWORD",
    "POSTGRES_DB": "PGDATABASE",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = __doc__.splitlines()[0] if __doc__ else None
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="the data directory of a running cdb up (default: the one cdb up recorded)",
    )


def exports(server_env: dict[str, str]) -> list[str]:
    """``export NAME=value`` lines, values shell-quoted; ours first, then libpq's and redis-cli's."""
    env = dict(sorted(server_env.items()))
    for ours, theirs in LIBPQ.items():
        if ours in server_env:
            env[theirs] = server_env[ours]
    if "REDIS_PASSWORD" in server_env:
        env["REDISCLI_AUTH"] = server_env["REDIS_PASSWORD"]
    return [f"export {k}={shlex.quote(v)}" for k, v in env.items()]


def main(args: argparse.Namespace) -> int:
    bot = state.load(args.data_dir)
    if bot is None:
        print("cdb env: no running cdb up found (start one with: cdb up)", file=sys.stderr)
        return 1
    if not bot.server_env:
        print(
            "cdb env: the running cdb up uses the servers your environment names", file=sys.stderr
        )
    for line in exports(bot.server_env):
        print(line)
    return 0

"""``cdb status``: each service's health and the latest signals, orders and risk events.

Finds the running ``cdb up`` through ``cdb.local.state`` (the per-user state file, from
any directory; ``--data-dir`` reads that directory's ``up.json`` instead): its private
servers and HTTP ports. Without a running ``cdb up`` it uses the environment's
``REDIS_*`` / ``POSTGRES_*`` settings and the standard ports 8000-8006. Exits 0
when every service is healthy, 1 otherwise.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import redis

from cdb.local import plan, render, state
from cdb.local.snapshot import Database, Snapshot, read_breaker, read_services
from cdb.settings import (
    BaseServiceSettings,
    PostgresSettings,
    SettingsError,
    exit_on_bad_settings,
    load_settings,
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="the data directory of a running cdb up (default: the one cdb up recorded "
        "in the per-user state file)",
    )
    parser.add_argument(
        "--http-port-base",
        type=int,
        default=8000,
        help="HTTP port of the feed when no cdb up session is found (others follow)",
    )
    parser.add_argument("--limit", type=int, default=5, help="rows of each latest list")


def main(args: argparse.Namespace) -> int:
    """Print the report; a reader that stops early (``cdb status | head``) ends it quietly."""
    try:
        code = _report(args)
        sys.stdout.flush()
        return code
    except BrokenPipeError:
        # Python's advice: point stdout at devnull so the flush at exit does not fail again
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


def _report(args: argparse.Namespace) -> int:
    bot = state.load(args.data_dir)
    servers: dict[str, str] = {}
    if bot is not None:
        ports: dict[str, int | None] = dict(bot.http_ports)
        servers = dict(bot.server_env)
        print(f"cdb up (pid {bot.pid}) with data in {bot.data_dir}")
    else:
        if args.data_dir is not None and state.read(args.data_dir / state.SESSION_FILE):
            print(f"note: {args.data_dir / state.SESSION_FILE} names a cdb up that is not running")
        else:
            print("no running cdb up found; reading the servers the environment names")
        ports = plan.ports_for(args.http_port_base)
    try:
        pg = load_settings(
            PostgresSettings, **{k: v for k, v in servers.items() if k.startswith("POSTGRES_")}
        )
        rs = load_settings(
            BaseServiceSettings, **{k: v for k, v in servers.items() if k.startswith("REDIS_")}
        )
    except SettingsError as exc:
        exit_on_bad_settings(exc)
    snap = Snapshot(services=read_services(ports))
    db = Database(pg)
    db.read(snap, latest=max(0, args.limit))
    db.close()
    client = redis.Redis(
        host=rs.REDIS_HOST,
        port=rs.REDIS_PORT,
        db=rs.REDIS_DB,
        password=rs.REDIS_PASSWORD.get_secret_value() if rs.REDIS_PASSWORD else None,
        socket_timeout=2,
        socket_connect_timeout=2,
    )
    read_breaker(client, snap)
    client.close()
    print(render.status_report(snap, ports, os.environ.get("QUOTE_ASSET", "USDT")))
    healthy = all(v.state == "ok" for v in snap.services.values())
    return 0 if healthy and not snap.database_error else 1

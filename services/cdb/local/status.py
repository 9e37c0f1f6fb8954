"""``cdb status``: each service's health and the latest signals, orders and risk events.

Finds the pipeline the way ``cdb up`` left it described in ``DATA_DIR/up.json``
(private servers, HTTP ports); without that file it uses the environment's
``REDIS_*`` / ``POSTGRES_*`` settings and the standard ports 8000-8005. Exits 0
when every service is healthy, 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

import redis

from cdb.local import plan, render
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
        default=plan.default_data_dir(),
        help="the data directory of a running cdb up (default: $CDB_DATA_DIR or ./.cdb)",
    )
    parser.add_argument(
        "--http-port-base",
        type=int,
        default=8000,
        help="HTTP port of the feed when no cdb up session is found (others follow)",
    )
    parser.add_argument("--limit", type=int, default=5, help="rows of each latest list")


def read_session(data_dir: Path) -> dict[str, Any] | None:
    try:
        return json.loads((data_dir / "up.json").read_text())
    except (OSError, ValueError):
        return None


def _alive(pid: object) -> bool:
    if not isinstance(pid, int):
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def main(args: argparse.Namespace) -> int:
    session = read_session(args.data_dir)
    servers: dict[str, str] = {}
    if session:
        ports = {k: int(v) for k, v in session.get("http_ports", {}).items()}
        servers = dict(session.get("servers") or {})
        if not _alive(session.get("pid")):
            print(f"note: {args.data_dir / 'up.json'} names a cdb up that is not running")
    else:
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

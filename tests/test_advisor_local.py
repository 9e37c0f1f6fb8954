"""``cdb up --advisor``: the advisor runs beside the local pipeline, in shadow mode, and its
ml_signals reach PostgreSQL; without a model file one is trained on the synthetic market first."""

from __future__ import annotations

import json
import re
from pathlib import Path

import psycopg2
import redis
from helpers import wait_until
from test_local import Command, base_env, up_dir  # noqa: F401 (fixture)

from cdb.redis_acl import ADVISOR_USER
from cdb.settings import PostgresSettings


def _redis_users(data_dir: Path) -> set[str]:
    """The users connected to the private Redis of a running ``cdb up`` (found by its
    config; it has no password)."""
    conf = (data_dir / "redis" / "redis.conf").read_text()
    port = int(re.search(r"(?m)^port (\d+)$", conf).group(1))
    with redis.Redis(port=port, socket_timeout=2) as client:
        return {c["user"] for c in client.client_list()}


def test_cdb_up_with_the_advisor_persists_ml_signals(up_dir, pg_env, tmp_path):  # noqa: F811
    """On the private Redis ``cdb up`` starts, the advisor logs in as its own ACL user
    (cdb.redis_acl), as in a cluster, and works under it."""
    env = base_env(**pg_env, FEED_SYNTHETIC_PERIOD_S="0.05")
    run = Command(
        ["up", "--data-dir", str(up_dir), "--http-port-base", "0", "--duration", "25", "--advisor"],
        env,
        tmp_path / "up.out",
    )
    try:
        wait_until(
            lambda: ADVISOR_USER in _redis_users(up_dir),
            timeout=180,
            message="the advisor logged in to the private Redis as its own user",
        )
        assert run.wait(timeout=120) == 0, run.text()
    finally:
        run.kill()
    log = (up_dir / "logs" / "advisor.log").read_text()
    assert "NOPERM" not in log and "no permissions" not in log
    model_path = up_dir / "advisor-model.json"
    assert f"advisor    shadow mode, model {model_path}" in run.text()
    version = json.loads(model_path.read_text())["version"]
    dsn = PostgresSettings(**pg_env).postgres_dsn()
    with psycopg2.connect(dsn) as conn, conn.cursor() as cur:
        cur.execute("SELECT DISTINCT model_version FROM ml_signals")
        assert cur.fetchall() == [(version,)]
        cur.execute("SELECT count(*) FROM orders o JOIN ml_signals m ON m.signal_id = o.signal_id")
        assert cur.fetchone()[0] == 0  # no order ever carries an ML signal's id
    conn.close()
    assert "shadow mode: model " + version in log

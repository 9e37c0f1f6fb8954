"""``cdb up --advisor``: the advisor runs beside the local pipeline, in shadow mode, and its
ml_signals reach PostgreSQL; without a model file one is trained on the synthetic market first."""

from __future__ import annotations

import json

import psycopg2
from test_local import base_env, cdb, up_dir  # noqa: F401 (fixture)

from cdb.settings import PostgresSettings


def test_cdb_up_with_the_advisor_persists_ml_signals(up_dir, redis_env, pg_env):  # noqa: F811
    env = base_env(**redis_env, **pg_env, FEED_SYNTHETIC_PERIOD_S="0.05")
    done = cdb(
        ["up", "--data-dir", str(up_dir), "--http-port-base", "0", "--duration", "20", "--advisor"],
        env,
        timeout=240,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    model_path = up_dir / "advisor-model.json"
    assert f"advisor    shadow mode, model {model_path}" in done.stdout
    version = json.loads(model_path.read_text())["version"]
    dsn = PostgresSettings(**pg_env).postgres_dsn()
    with psycopg2.connect(dsn) as conn, conn.cursor() as cur:
        cur.execute("SELECT DISTINCT model_version FROM ml_signals")
        assert cur.fetchall() == [(version,)]
        cur.execute("SELECT count(*) FROM orders o JOIN ml_signals m ON m.signal_id = o.signal_id")
        assert cur.fetchone()[0] == 0  # no order ever carries an ML signal's id
    conn.close()
    log = (up_dir / "logs" / "advisor.log").read_text()
    assert "shadow mode: model " + version in log

"""``cdb run advisor`` on the real loop: the synthetic feed → advisor → ``ml_signals`` → the
persistence writer → PostgreSQL, every one a real process on real Redis and PostgreSQL."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import psycopg2
import pytest
from advisor_data import model_file
from helpers import ServiceProcess, wait_until

from cdb.db.migrate import migrate
from cdb.events import parse_event
from cdb.settings import PostgresSettings


@pytest.fixture(scope="module")
def model_dir():
    root = Path(tempfile.mkdtemp(prefix="cdb-advisor-"))
    model_file(root, 15)
    return root


def test_advisor_runs_on_the_real_loop_and_its_events_are_persisted(
    redis_env, redis_client, pg_env, model_dir, tmp_path
):
    migrate(PostgresSettings(**pg_env))
    model = json.loads((model_dir / "model-15.json").read_text())
    env = {
        **redis_env,
        **pg_env,
        "FEED_SOURCE": "synthetic",
        "FEED_SYNTHETIC_PERIOD_S": "0.02",
        "EVENT_MAX_LEAD_S": "604800",  # 50 candles a second: stamps run ahead of the clock
        "SYMBOLS": "BTC_USDT,ETH_USDT",
        "ADVISOR_MODEL_PATH": str(model_dir / "model-15.json"),
        "ADVISOR_COOLDOWN_S": "0",
        "HEALTH_INTERVAL_S": "1",
    }
    procs = [
        ServiceProcess(name, env, tmp_path).start(timeout=60)
        for name in ("persistence", "advisor", "feed")
    ]
    persistence, advisor, feed = procs
    try:
        dsn = PostgresSettings(**pg_env).postgres_dsn()

        def rows():
            with psycopg2.connect(dsn) as conn, conn.cursor() as cur:
                cur.execute(
                    "SELECT signal_id, symbol, side, probability, threshold, model_version,"
                    " rule_signal, contributions FROM ml_signals ORDER BY ts"
                )
                found = cur.fetchall()
            conn.close()
            return found

        persisted = wait_until(lambda: len(r := rows()) >= 5 and r, timeout=60, message="rows")
        stream = {
            e.signal_id: e
            for e in (parse_event(f[b"data"]) for _, f in redis_client.xrange("ml_signals"))
        }
        for signal_id, symbol, side, p, threshold, version, rule, contributions in persisted:
            event = stream[signal_id]
            assert (symbol, side, version) == (event.symbol, "BUY", model["version"])
            assert p == pytest.approx(event.probability) and p >= threshold
            assert threshold == pytest.approx(model["threshold"])
            assert rule == event.rule_signal
            assert len(contributions) == 3
            assert {c["feature"] for c in contributions} <= set(model["features"])
        status = advisor.status()
        assert status["mode"] == "shadow" and status["model_version"] == model["version"]
        assert status["observations"]["scored"] > 0
        metrics = advisor.metrics()
        info = next(
            line for line in metrics.splitlines() if line.startswith("cdb_advisor_model_info{")
        )
        assert f'version="{model["version"]}"' in info and info.endswith(" 1.0")
        assert 'cdb_advisor_decisions_total{agreement="' in metrics
        assert "cdb_advisor_ml_signals_total" in metrics
        # a symbol's decision gets its forward outcome once 15 more observations came in
        wait_until(
            lambda: "cdb_advisor_outcomes_total{" in advisor.metrics(),
            timeout=60,
            message="forward outcomes in /metrics",
        )
        # nothing but ml_signals came out of the advisor: no signals, no orders
        assert redis_client.xlen("signals") == 0 and redis_client.xlen("orders") == 0
    finally:
        for proc in reversed(procs):
            proc.stop()


def _run_advisor(env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "cdb", "run", "advisor"],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_a_missing_or_mismatched_model_stops_the_advisor_with_exit_2(redis_env, model_dir):
    missing = _run_advisor({**redis_env, "ADVISOR_MODEL_PATH": str(model_dir / "nope.json")})
    assert missing.returncode == 2
    assert missing.stderr.strip().startswith("configuration error: ADVISOR_MODEL_PATH cannot read")
    assert len(missing.stderr.strip().splitlines()) == 1
    mismatch = _run_advisor(
        {
            **redis_env,
            "ADVISOR_MODEL_PATH": str(model_dir / "model-15.json"),
            "SIGNAL_LOOKBACK_MIN": "5",
        }
    )
    assert mismatch.returncode == 2
    assert "trained for SIGNAL_LOOKBACK_MIN=15, but SIGNAL_LOOKBACK_MIN is 5" in mismatch.stderr

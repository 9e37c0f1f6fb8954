"""Security checks that need no running pipeline: live mode needs an explicit switch and keys,
state-changing HTTP routes need a token, nothing in the code can withdraw funds.

(Secrets are grepped for in the fault suite's logs, endpoints, streams and tables — the run
with the most error paths — see tests/test_faults.py::test_no_secret_anywhere.)
"""

from __future__ import annotations

import importlib
import os
import subprocess
import sys

import pytest
import redis

from cdb.bus import Bus
from cdb.cli import SERVICES
from cdb.runtime import Runtime
from cdb.settings import load_settings

SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}


def build_app(name: str, env: dict[str, str], monkeypatch: pytest.MonkeyPatch):
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    module = importlib.import_module(SERVICES[name])
    settings = load_settings(module.SERVICE.settings_class)
    bus = Bus(redis.Redis(port=int(env["REDIS_PORT"])), service=name)
    return Runtime(module.SERVICE(settings, bus)).app()


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_state_changing_routes_require_a_token(
    name, redis_env, pg_env, clean_env, monkeypatch, tmp_path
):
    from test_notifier import vapid_env  # real keys, so the token check itself is reached

    env = {
        **redis_env,
        **pg_env,
        **vapid_env()[1],
        "NOTIFIER_API_TOKEN": "the-right-token-123",
        "DASHBOARD_TOKEN": "the-right-token-456",
    }
    if name == "advisor":  # it needs a model to start
        from advisor_data import model_file

        env["ADVISOR_MODEL_PATH"] = str(model_file(tmp_path, candles=600))
    app = build_app(name, env, monkeypatch)
    client = app.test_client()
    unsafe = [
        (rule.rule, sorted(rule.methods - SAFE_METHODS))
        for rule in app.url_map.iter_rules()
        if rule.methods - SAFE_METHODS and rule.endpoint != "static"
    ]
    for path, methods in unsafe:
        for method in methods:
            for headers in ({}, {"Authorization": "Bearer wrong-token"}):
                resp = client.open(
                    path,
                    method=method,
                    headers=headers,
                    json={
                        "endpoint": "https://push.example/x",
                        "keys": {"p256dh": "x", "auth": "y"},
                    },
                )
                assert resp.status_code in (401, 403), (name, path, method, headers)
    if name == "notifier":
        assert unsafe, "the notifier's subscription routes were found and checked"
    if name == "dashboard":
        assert {p for p, _ in unsafe} >= {"/api/control", "/api/control/confirm", "/logout"}


def test_live_mode_needs_the_explicit_switch(redis_env, pg_env, tmp_path):
    """Keys alone never make it trade live: without TRADING_MODE=live it stays paper."""
    from helpers import ServiceProcess

    env = {**redis_env, **pg_env, "MEXC_API_KEY": "k" * 20, "MEXC_API_SECRET": "s" * 20}
    subprocess.run(
        [sys.executable, "-m", "cdb", "db", "migrate"],
        env={**os.environ, **env},
        check=True,
        capture_output=True,
    )
    env.pop("TRADING_MODE", None)
    svc = ServiceProcess("execution", env, tmp_path).start()
    try:
        assert svc.status()["mode"] == "paper"
    finally:
        svc.stop()


@pytest.mark.parametrize("mode", ["live", "validate"])
def test_live_mode_without_keys_refuses_to_start(mode, redis_env, pg_env):
    env = {**os.environ, **redis_env, **pg_env, "TRADING_MODE": mode}
    env.pop("MEXC_API_KEY", None)
    env.pop("MEXC_API_SECRET", None)
    result = subprocess.run(
        [sys.executable, "-m", "cdb", "run", "execution"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "MEXC_API_KEY" in result.stderr

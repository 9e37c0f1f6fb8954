"""Setting names people bring from the design documents (an old ``.env``): accepted as aliases,
or the service stops with one line naming the replacement — never silently ignored."""

from __future__ import annotations

import os
import subprocess
import sys
import urllib.request

import pytest
from helpers import wait_until

from cdb.execution.settings import ExecutionSettings
from cdb.feed.settings import FeedSettings
from cdb.localservers import free_port
from cdb.settings import SettingsError, design_overrides, load_settings


def test_per_service_port_names_are_http_port_of_that_service():
    assert design_overrides("signal", {"SIGNAL_PORT": "9001"}) == {"HTTP_PORT": "9001"}
    assert design_overrides("risk", {"SIGNAL_PORT": "9001", "RISK_PORT": "9002"}) == {
        "HTTP_PORT": "9002"
    }
    assert design_overrides("signal", {"SIGNAL_PORT": "9001", "HTTP_PORT": "9001"})
    with pytest.raises(SettingsError) as info:
        design_overrides("signal", {"SIGNAL_PORT": "9001", "HTTP_PORT": "9100"})
    assert "SIGNAL_PORT=9001 and HTTP_PORT=9100 disagree" in info.value.message


def test_env_means_paper_or_names_trading_mode():
    for value in ("dev", "Development", "test", "paper"):
        assert design_overrides("execution", {"ENV": value}) == {}
    with pytest.raises(SettingsError) as info:
        design_overrides("feed", {"ENV": "prod"})
    assert "ENV=prod is not read; set TRADING_MODE=" in info.value.message
    # with TRADING_MODE set, ENV has nothing left to decide
    assert design_overrides("execution", {"ENV": "prod", "TRADING_MODE": "paper"}) == {}


def test_exchange_key_names_for_any_exchange_and_mexc_base(monkeypatch):
    for name in ("MEXC_API_KEY", "MEXC_API_SECRET", "EXCHANGE_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("EXCHANGE_ID", "kraken")
    monkeypatch.setenv("EXCHANGE_API_KEY", "k-123")
    monkeypatch.setenv("EXCHANGE_API_SECRET", "s-456")
    s = load_settings(ExecutionSettings)
    assert s.MEXC_API_KEY.get_secret_value() == "k-123"
    assert s.MEXC_API_SECRET.get_secret_value() == "s-456"
    monkeypatch.delenv("EXCHANGE_API_KEY")
    monkeypatch.setenv("MEXC_API_KEY", "old-name")
    assert load_settings(ExecutionSettings).MEXC_API_KEY.get_secret_value() == "old-name"
    monkeypatch.setenv("MEXC_BASE", "https://api.mexc.com")
    assert load_settings(FeedSettings).EXCHANGE_BASE_URL == "https://api.mexc.com"
    monkeypatch.setenv("MEXC_BASE", "https://api.mexc.com/api/v3")  # a path: not a base
    with pytest.raises(SettingsError):
        load_settings(FeedSettings)


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REDIS_", "POSTGRES_"))}
    env.pop("TRADING_MODE", None)
    return {**env, **extra}


def test_env_prod_stops_a_service_with_one_line():
    result = subprocess.run(
        [sys.executable, "-m", "cdb", "run", "execution"],
        env=_env(ENV="production"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "configuration error: ENV=production is not read; set TRADING_MODE=paper|validate|live "
        "instead (the design's ENV is replaced by it)"
    ]


def test_signal_port_is_where_the_signal_engine_listens(redis_env):
    port = free_port()
    env = _env(**redis_env, SIGNAL_PORT=str(port), HTTP_HOST="127.0.0.1")
    proc = subprocess.Popen(
        [sys.executable, "-m", "cdb", "run", "signal"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:

        def healthy() -> bool:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
                return r.status == 200

        wait_until(healthy, timeout=60, interval=0.2, message=f"signal on SIGNAL_PORT {port}")
    finally:
        proc.terminate()
        proc.wait(timeout=30)

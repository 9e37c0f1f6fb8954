"""Every service, started with a bad setting, exits 2 with one line naming the variable."""

import os
import subprocess
import sys

import pytest

CASES = [
    ("feed", "FEED_SOURCE", "websocket", "FEED_SOURCE must be one of"),
    ("feed", "REDIS_PORT", "0", "REDIS_PORT must be >= 1, got 0"),
    ("signal", "SIGNAL_THRESHOLD_PCT", "0", "SIGNAL_THRESHOLD_PCT must be > 0, got 0"),
    ("signal", "SIGNAL_MIN_VOLUME", "lots", "SIGNAL_MIN_VOLUME must be a number, got lots"),
    ("risk", "MAX_POSITION_PCT", "0", "MAX_POSITION_PCT must be > 0, got 0"),
    ("risk", "MAX_OPEN_POSITIONS", "-1", "MAX_OPEN_POSITIONS must be"),
    ("execution", "TRADING_MODE", "yolo", "TRADING_MODE must be one of"),
    ("persistence", "READ_BATCH", "0", "READ_BATCH must be >= 1, got 0"),
    ("notifier", "WEBPUSH_TTL_S", "-5", "WEBPUSH_TTL_S must be"),
    ("notifier", "LOG_LEVEL", "CHATTY", "LOG_LEVEL must match"),
    (
        "dashboard",
        "DASHBOARD_TOKEN",
        "short",
        "DASHBOARD_TOKEN must be at least 16 characters, got <hidden>",
    ),
    ("dashboard", "NOTIFIER_URL", "notifier:8005", "NOTIFIER_URL must match"),
    ("advisor", "ADVISOR_THRESHOLD", "1.5", "ADVISOR_THRESHOLD must be < 1, got 1.5"),
    ("advisor", "ADVISOR_MODEL_PATH", "/nonexistent/m.json", "ADVISOR_MODEL_PATH cannot read"),
]


@pytest.mark.parametrize(("service", "var", "value", "expected"), CASES)
def test_bad_setting_stops_the_service_with_one_line(service, var, value, expected):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REDIS_", "POSTGRES_"))}
    env[var] = value
    result = subprocess.run(
        [sys.executable, "-m", "cdb", "run", service],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"configuration error: {var} "), lines[0]
    assert expected in lines[0]
    assert result.stdout == "", "nothing started before the check"


def test_every_service_is_covered():
    from cdb.cli import SERVICES

    assert {c[0] for c in CASES} == set(SERVICES)

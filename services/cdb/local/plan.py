"""What ``cdb up`` runs and with which environment: pure decisions, no processes started here.

Every service is ``python -m cdb run NAME`` with the environment of ``cdb up`` plus
the servers' addresses, its own HTTP port on loopback, paper trading forced, the
exchange keys removed, and a few local defaults that make the synthetic market
produce signals and paper fills within a minute (a variable already set wins).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

#: Start order: consumers before producers, so the first events find their readers running.
START_ORDER = ("persistence", "notifier", "dashboard", "execution", "risk", "signal", "feed")
#: Stop order: producers first, so nothing new arrives while the consumers finish.
STOP_ORDER = tuple(reversed(START_ORDER))
#: The services' own ports (feed 8000 … notifier 8005, dashboard 8006).
DEFAULT_PORTS = {
    "feed": 8000,
    "signal": 8001,
    "risk": 8002,
    "execution": 8003,
    "persistence": 8004,
    "notifier": 8005,
    "dashboard": 8006,
}
DISPLAY_ORDER = tuple(DEFAULT_PORTS)

#: Always set for children: ``cdb up`` never trades real money.
FORCED = {"TRADING_MODE": "paper", "HTTP_HOST": "127.0.0.1"}
#: Never passed to children: paper trading needs no exchange keys.
DROPPED = ("MEXC_API_KEY", "MEXC_API_SECRET", "EXCHANGE_API_KEY", "EXCHANGE_API_SECRET")
#: Local defaults; the environment overrides each of them.
LOCAL_DEFAULTS = {"HEALTH_INTERVAL_S": "5"}
#: Per ``--feed``, defaults for a lively run; the environment overrides each of them.
#: The synthetic feed stamps its candles with wall-clock seconds (one per second), so the
#: signal cooldown is in those seconds. A replay is stamped from now on (shifted) and, at
#: ``--speed 60``, also plays one 1-minute candle per second; at its end the feed stays up,
#: idle, so a finished replay is not a dead service. Played faster than real time, its
#: stamps run ahead of the clock (by up to the files' span), so the readers accept a lead
#: of up to a week (``EVENT_MAX_LEAD_S``; 60 s elsewhere) instead of dead-lettering them. Live streams the exchange's public
#: market data (no keys) in real time (``FEED_SOURCE=stream``; ``FEED_SOURCE=live`` in the
#: environment polls REST instead): the services' own defaults fit it.
#: ``EVENT_MAX_LEAD_S`` for a feed faster than the clock (a replay; a synthetic market with
#: ``FEED_SYNTHETIC_PERIOD_S`` < 1, whose strictly increasing stamps run ahead too): a week.
FAST_FEED_LEAD_S = "604800"
FEED_DEFAULTS = {
    "synthetic": {"FEED_SYNTHETIC_PERIOD_S": "1", "SIGNAL_COOLDOWN_S": "60"},
    "replay": {
        "FEED_REPLAY_SHIFT_TO_NOW": "true",
        "FEED_REPLAY_AT_END": "idle",
        "SIGNAL_COOLDOWN_S": "60",
        "EVENT_MAX_LEAD_S": FAST_FEED_LEAD_S,
    },
    "live": {},
}
#: ``--speed`` of a replay unless given: one 1-minute candle per wall second.
REPLAY_SPEED = 60.0


def ports_for(base: int | None) -> dict[str, int | None]:
    """HTTP ports per service: the defaults shifted to ``base``, or None (pick a free one)."""
    if base is None:
        return dict.fromkeys(DEFAULT_PORTS)
    return {name: base + port - 8000 for name, port in DEFAULT_PORTS.items()}


def child_env(
    base: Mapping[str, str],
    service: str,
    port: int,
    servers: Mapping[str, str],
    feed_source: str = "synthetic",
    speed: float | None = None,
) -> dict[str, str]:
    """The environment of one child: ``base`` + local defaults + servers + forced values.

    ``servers`` naming a server (``REDIS_HOST``, ``POSTGRES_HOST``) replaces every setting
    of its kind in ``base``: a ``REDIS_PASSWORD`` or ``REDIS_USERNAME`` left in the shell
    must not reach the children of a private, passwordless Redis (their login would fail).
    ``speed`` (replay only) wins over ``FEED_REPLAY_SPEED`` from the environment.
    """
    replaced = tuple(p for p in ("REDIS_", "POSTGRES_") if f"{p}HOST" in servers)
    env = {
        k: v
        for k, v in base.items()
        if k not in DROPPED and not (replaced and k.startswith(replaced))
    }
    for key, value in {**LOCAL_DEFAULTS, **FEED_DEFAULTS[feed_source]}.items():
        env.setdefault(key, value)
    if feed_source == "synthetic" and _faster_than_the_clock(env.get("FEED_SYNTHETIC_PERIOD_S")):
        env.setdefault("EVENT_MAX_LEAD_S", FAST_FEED_LEAD_S)
    if feed_source == "replay":
        if speed is not None:
            env["FEED_REPLAY_SPEED"] = f"{speed:g}"
        env.setdefault("FEED_REPLAY_SPEED", f"{REPLAY_SPEED:g}")
    env.update(servers)
    env.update(FORCED)
    env["FEED_SOURCE"] = feed_source
    if feed_source == "live":  # live data streams; FEED_SOURCE=live asks for REST polling
        env["FEED_SOURCE"] = "live" if base.get("FEED_SOURCE") == "live" else "stream"
    env["HTTP_PORT"] = str(port)
    env["CDB_CONSUMER_NAME"] = f"{service}-local"
    return env


def _faster_than_the_clock(period: str | None) -> bool:
    """A synthetic period under a second (stamps strictly increase: they run ahead)."""
    try:
        return float(period or "1") < 1
    except ValueError:
        return False  # the feed itself names the bad setting (exit 2)


def wants_private(env: Mapping[str, str], host_variable: str) -> bool:
    """A server is started privately unless the environment names one (``REDIS_HOST`` …)."""
    return not env.get(host_variable)


def default_data_dir(env: Mapping[str, str] = os.environ) -> Path:
    return Path(env.get("CDB_DATA_DIR") or ".cdb")


def looks_like_data_dir(path: Path) -> bool:
    """Whether ``--fresh`` may delete ``path``: empty, or made by ``cdb up``."""
    if not path.exists():
        return True
    names = {p.name for p in path.iterdir()}
    names.discard("up.lock")  # taken by this very run before the check
    return not names or bool(names & {"up.json", "redis", "pg", "logs"})


#: Survives the run (``up.json`` is removed at its end): which ``--feed`` the last run used.
LAST_RUN_FILE = "last-run.json"


def feed_change_warning(previous: str | None, feed: str, open_symbols: list[str]) -> str | None:
    """The warning for positions kept from a run on another market, or None.

    A position opened on the synthetic market is valued at the live (or replayed) prices of
    this run, and the other way round: its stop loss may fire at once on the jump.
    """
    if not open_symbols or previous is None or previous == feed:
        return None
    n = len(open_symbols)
    return (
        f"warning: {n} open position{'s' if n > 1 else ''} ({', '.join(sorted(open_symbols))}) "
        f"from the previous run on --feed {previous}; this run's --feed {feed} prices "
        f"{'them' if n > 1 else 'it'} differently, so its stop loss may fire at once "
        "(--fresh starts from zero)"
    )

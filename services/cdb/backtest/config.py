"""A backtest's settings: the services' own settings classes, from the same sources.

Values come, last one winning, from the environment (the variable names the services
read: ``SIGNAL_THRESHOLD_PCT``, ``MAX_POSITION_PCT``, ``PAPER_FEE_PCT``, ...), from a
``TradingBot`` file (``--spec``: rendered to those variables by the operator's own
``settings_env``, so a backtested bot is exactly what goes live), and from
``--set NAME=VALUE`` / ``--sweep NAME=v1,v2`` (``NAME`` either a variable name or the
spec's field name, e.g. ``thresholdPct``). A bad value raises ``SettingsError`` naming it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cdb.execution.settings import ExecutionSettings
from cdb.feed.settings import FeedSettings
from cdb.risk.settings import RiskSettings
from cdb.settings import SettingsError, load_settings
from cdb.signal.settings import SignalSettings

#: TradingBot spec field → the variable the operator's ConfigMap sets from it
#: (``cdb_operator.render.config.settings_env``; a test keeps the two in step).
SPEC_KEYS: dict[str, str] = {
    "thresholdPct": "SIGNAL_THRESHOLD_PCT",
    "minVolume": "SIGNAL_MIN_VOLUME",
    "lookbackMinutes": "SIGNAL_LOOKBACK_MIN",
    "maxPositionPct": "MAX_POSITION_PCT",
    "maxExposurePct": "MAX_EXPOSURE_PCT",
    "stopLossPct": "STOP_LOSS_PCT",
    "maxDailyDrawdownPct": "MAX_DAILY_DRAWDOWN_PCT",
    "maxOpenPositions": "MAX_OPEN_POSITIONS",
    "paperStartBalance": "PAPER_START_BALANCE",
    "quoteAsset": "QUOTE_ASSET",
}
#: What a backtest uses of the services' settings (the rest: Redis, ports... is ignored).
CLASSES = (SignalSettings, RiskSettings, ExecutionSettings, FeedSettings)


def env_name(key: str) -> str:
    """``thresholdPct`` → ``SIGNAL_THRESHOLD_PCT``; an upper-case name is taken as it is."""
    if key in SPEC_KEYS:
        return SPEC_KEYS[key]
    if key.isupper():
        return key
    raise SettingsError(
        f"unknown setting {key!r}: use a variable name (SIGNAL_THRESHOLD_PCT) or one of "
        f"{', '.join(SPEC_KEYS)}"
    )


def spec_env(path: Path) -> dict[str, str]:
    """The variables a ``TradingBot`` file gives every service (the operator's mapping)."""
    import yaml
    from pydantic import ValidationError

    from cdb_operator.model import parse_spec
    from cdb_operator.render.common import Bot
    from cdb_operator.render.config import settings_env

    try:
        doc = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise SettingsError(f"--spec {path}: {exc}") from None
    if not isinstance(doc, dict) or doc.get("kind", "TradingBot") != "TradingBot":
        raise SettingsError(f"--spec {path}: not a TradingBot")
    try:
        spec = parse_spec(doc.get("spec"))
    except ValidationError as exc:
        err = exc.errors()[0]
        field = ".".join(str(p) for p in err["loc"])
        raise SettingsError(f"--spec {path}: spec.{field}: {err['msg']}") from None
    name = (doc.get("metadata") or {}).get("name", "bot")
    return settings_env(Bot(name=name, namespace="default", uid="", spec=spec))


@dataclass(frozen=True)
class Config:
    """The four settings objects a run needs, built exactly as the services build them."""

    signal: SignalSettings
    risk: RiskSettings
    execution: ExecutionSettings
    feed: FeedSettings
    overrides: dict[str, str]

    @classmethod
    def load(cls, overrides: dict[str, str] | None = None) -> Config:
        """Environment + ``overrides`` (variable names) → settings; ``SettingsError`` if bad."""
        overrides = dict(overrides or {})
        built: list[Any] = []
        for klass in CLASSES:
            mine = {k: v for k, v in overrides.items() if k in klass.model_fields}
            built.append(load_settings(klass, **mine))
        known = set().union(*(k.model_fields for k in CLASSES))
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise SettingsError(f"no service reads {', '.join(unknown)}")
        return cls(*built, overrides=overrides)

    def summary(self) -> dict[str, Any]:
        """The settings that shape a backtest's decisions (for the report)."""
        s, r, e, f = self.signal, self.risk, self.execution, self.feed
        return {
            "SIGNAL_STRATEGIES": s.SIGNAL_STRATEGIES,
            "SIGNAL_THRESHOLD_PCT": s.SIGNAL_THRESHOLD_PCT,
            "SIGNAL_MIN_VOLUME": s.SIGNAL_MIN_VOLUME,
            "SIGNAL_SELL_ENABLED": s.SIGNAL_SELL_ENABLED,
            "SIGNAL_COOLDOWN_S": s.SIGNAL_COOLDOWN_S,
            "SIGNAL_LOOKBACK_MIN": f.SIGNAL_LOOKBACK_MIN,
            "FEED_INTERVAL": f.FEED_INTERVAL,
            **{k: v for k, v in r.model_dump().items() if k in _RISK_KEYS},
            "PAPER_FEE_PCT": e.PAPER_FEE_PCT,
            "PAPER_SLIPPAGE_PCT": e.PAPER_SLIPPAGE_PCT,
        }


_RISK_KEYS = (
    "MAX_POSITION_PCT",
    "MAX_EXPOSURE_PCT",
    "MAX_OPEN_POSITIONS",
    "STOP_LOSS_PCT",
    "MAX_DAILY_DRAWDOWN_PCT",
    "PAPER_START_BALANCE",
    "QUOTE_ASSET",
    "RISK_TARGET_POSITION_PCT",
    "RISK_MIN_ORDER_VALUE",
    "RISK_ABNORMAL_MOVE_PCT",
    "RISK_ABNORMAL_MOVE_WINDOW_S",
)


def parse_assignments(items: list[str], option: str) -> dict[str, str]:
    """``["thresholdPct=2.5", "MAX_POSITION_PCT=8"]`` → variables; ``SettingsError`` if malformed."""
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise SettingsError(f"{option} {item!r}: expected NAME=VALUE")
        out[env_name(key.strip())] = value.strip()
    return out

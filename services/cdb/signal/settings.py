"""Settings of the signal engine (environment variables, validated once at start)."""

from __future__ import annotations

from pydantic import Field, field_validator

from cdb.settings import BaseServiceSettings


class SignalSettings(BaseServiceSettings):
    """The momentum rule's bounds, the cooldown, and which strategies run."""

    SIGNAL_THRESHOLD_PCT: float = Field(
        3.0,
        gt=0,
        allow_inf_nan=False,
        description="Minimum move over the lookback window, in percent, for a BUY (4.5 = +4.5 %)",
    )
    SIGNAL_MIN_VOLUME: float = Field(
        100_000,
        ge=0,
        allow_inf_nan=False,
        description="Minimum quote-currency volume over the lookback window (e.g. USDT)",
    )
    SIGNAL_SELL_ENABLED: bool = Field(
        False,
        description="Also emit SELL when pct_change <= -SIGNAL_THRESHOLD_PCT (symmetric rule)",
    )
    SIGNAL_COOLDOWN_S: int = Field(
        300,
        ge=0,
        description=(
            "Per strategy and symbol: no new signal within this many seconds of the last one, "
            "measured on the events' own timestamps (0 = no cooldown)"
        ),
    )
    SIGNAL_STRATEGIES: str = Field(
        "momentum",
        pattern=r"^[a-z][a-z0-9_]*(,[a-z][a-z0-9_]*)*$",
        description="Comma list of strategy modules in cdb.signal.strategies to run",
    )

    @field_validator("SIGNAL_STRATEGIES", mode="before")
    @classmethod
    def _strip_spaces(cls, value: object) -> object:
        return value.replace(" ", "") if isinstance(value, str) else value

    def strategy_names(self) -> list[str]:
        """The configured strategies, in order, without duplicates."""
        return list(dict.fromkeys(self.SIGNAL_STRATEGIES.split(",")))

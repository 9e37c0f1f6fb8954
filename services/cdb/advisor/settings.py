"""Settings of the advisor (environment variables, validated once at start).

The rule's settings keep the signal engine's names (``SIGNAL_THRESHOLD_PCT``,
``SIGNAL_MIN_VOLUME``, ``SIGNAL_LOOKBACK_MIN``): the advisor reads the same ConfigMap,
so it compares itself with the rule exactly as the engine runs it.
"""

from __future__ import annotations

from pydantic import Field

from cdb.signal.settings import SignalSettings


class AdvisorSettings(SignalSettings):
    """The model to load, when to call a score a signal, and the rule to compare with."""

    ADVISOR_MODEL_PATH: str = Field(
        "/models/model.json", min_length=1, description="The model artifact (cdb ml train)"
    )
    ADVISOR_THRESHOLD: float = Field(
        0.0,
        ge=0,
        lt=1,
        allow_inf_nan=False,
        description="Probability at or above which a score is an ml_signal (0 = the model's own)",
    )
    ADVISOR_COOLDOWN_S: int = Field(
        300, ge=0, description="Per symbol: no new ml_signal within this many seconds (event time)"
    )
    ADVISOR_TOP_FEATURES: int = Field(
        3, ge=1, le=8, description="Feature contributions carried by each ml_signal"
    )
    SIGNAL_LOOKBACK_MIN: int = Field(
        15, ge=1, le=1440, description="The feed's window; must be the one the model was trained on"
    )

"""Settings of the risk manager: the limits of the design plus the thresholds it leaves open.

The shared names (MAX_POSITION_PCT, STOP_LOSS_PCT, ...) are the ones the
operator's ConfigMap sets for every service; the ``RISK_`` ones are this
service's own. All are read once at start and frozen.
"""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from cdb.risk.rules import Limits
from cdb.settings import BaseServiceSettings, PostgresSettings


class RiskSettings(BaseServiceSettings, PostgresSettings):
    """Everything ``cdb run risk`` reads from the environment."""

    model_config = SettingsConfigDict(frozen=True, extra="ignore", case_sensitive=True)

    MAX_POSITION_PCT: float = Field(
        10.0,
        gt=0,
        le=100,
        description="Largest position in one symbol, percent of equity (clipped)",
    )
    MAX_EXPOSURE_PCT: float = Field(
        50.0, gt=0, le=100, description="Largest value of all positions, percent of equity"
    )
    MAX_OPEN_POSITIONS: int = Field(
        5, ge=1, le=1000, description="Largest number of open positions"
    )
    STOP_LOSS_PCT: float = Field(
        2.0,
        gt=0,
        lt=100,
        description="Stop loss distance below the entry price, percent; fixed per position "
        "when opened (a change does not move open stops: python -m cdb.risk.restop)",
    )
    MAX_DAILY_DRAWDOWN_PCT: float = Field(
        5.0, gt=0, le=100, description="Loss since the UTC day's start that trips the breaker, %"
    )
    PAPER_START_BALANCE: float = Field(
        10_000.0, gt=0, description="Cash (QUOTE_ASSET) assumed before execution wrote a balance"
    )
    QUOTE_ASSET: str = Field(
        "USDT", pattern=r"^[A-Z0-9]{2,12}$", description="Currency of cash, prices and equity"
    )
    RISK_TARGET_POSITION_PCT: float = Field(
        20.0,
        gt=0,
        le=100,
        description="Sizing: a signal of confidence c asks for c x this percent of equity",
    )
    RISK_MIN_ORDER_VALUE: float = Field(
        5.0, ge=0, description="Orders worth less than this (QUOTE_ASSET) are not sent"
    )
    RISK_SIGNAL_MAX_AGE_S: int = Field(
        60, ge=1, description="Signals older than this (event time vs our clock) are rejected"
    )
    RISK_MARKET_DATA_MAX_AGE_S: int = Field(
        120, ge=1, description="A symbol's last price older than this pauses its signals"
    )
    RISK_ABNORMAL_MOVE_PCT: float = Field(
        10.0, gt=0, description="A price range wider than this within the window pauses a symbol"
    )
    RISK_ABNORMAL_MOVE_WINDOW_S: int = Field(
        300, ge=10, le=86_400, description="Window of the abnormal-move check, seconds"
    )
    RISK_EXIT_RETRY_S: int = Field(
        30, ge=1, description="Wait before a failed closing order is tried under a new id"
    )
    RISK_PENDING_ORDER_TTL_S: int = Field(
        300, ge=10, description="An order without a result is forgotten (entry) or resent after"
    )
    RISK_EQUITY_HISTORY_S: int = Field(
        60,
        ge=0,
        description="Seconds between rows of the equity history (table metrics: equity, "
        "drawdown_pct, exposure_pct); 0 = none",
    )

    def limits(self) -> Limits:
        """The subset the pure rules need."""
        return Limits(
            max_position_pct=self.MAX_POSITION_PCT,
            max_exposure_pct=self.MAX_EXPOSURE_PCT,
            max_open_positions=self.MAX_OPEN_POSITIONS,
            max_daily_drawdown_pct=self.MAX_DAILY_DRAWDOWN_PCT,
            stop_loss_pct=self.STOP_LOSS_PCT,
            target_position_pct=self.RISK_TARGET_POSITION_PCT,
            min_order_value=self.RISK_MIN_ORDER_VALUE,
            signal_max_age_s=self.RISK_SIGNAL_MAX_AGE_S,
            market_data_max_age_s=self.RISK_MARKET_DATA_MAX_AGE_S,
            abnormal_move_pct=self.RISK_ABNORMAL_MOVE_PCT,
            quote_asset=self.QUOTE_ASSET,
        )

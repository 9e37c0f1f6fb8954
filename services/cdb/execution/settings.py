"""Settings of the execution service (environment variables, validated once at start)."""

from __future__ import annotations

from typing import Literal

from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import SettingsConfigDict

from cdb.settings import BaseServiceSettings, PostgresSettings


class ExecutionSettings(BaseServiceSettings, PostgresSettings):
    """Trading mode, the paper exchange's economics, exchange access and the single-writer lock."""

    model_config = SettingsConfigDict(
        frozen=True, extra="ignore", case_sensitive=True, populate_by_name=True
    )

    TRADING_MODE: Literal["paper", "validate", "live"] = Field(
        "paper",
        description="paper: simulated fills in PostgreSQL; validate: MEXC's order-test endpoint "
        "(nothing executes); live: real orders",
    )
    QUOTE_ASSET: str = Field(
        "USDT", pattern=r"^[A-Z0-9]{2,10}$", description="Currency cash is held in"
    )
    EXCHANGE_ID: str = Field(
        "mexc", pattern=r"^[a-z0-9]{2,32}$", description="ccxt exchange id (validate/live)"
    )
    # EXCHANGE_API_* name the keys of whichever exchange EXCHANGE_ID is; MEXC_API_* still work
    MEXC_API_KEY: SecretStr | None = Field(
        None,
        validation_alias=AliasChoices("EXCHANGE_API_KEY", "MEXC_API_KEY"),
        description="API key, EXCHANGE_API_KEY or MEXC_API_KEY (validate/live only)",
    )
    MEXC_API_SECRET: SecretStr | None = Field(
        None,
        validation_alias=AliasChoices("EXCHANGE_API_SECRET", "MEXC_API_SECRET"),
        description="API secret, EXCHANGE_API_SECRET or MEXC_API_SECRET (validate/live only)",
    )
    PAPER_START_BALANCE: float = Field(
        10_000.0, gt=0, allow_inf_nan=False, description="Paper cash at first start, QUOTE_ASSET"
    )
    PAPER_FEE_PCT: float = Field(
        0.1, ge=0, le=10, allow_inf_nan=False, description="Paper fee, percent of the fill value"
    )
    PAPER_SLIPPAGE_PCT: float = Field(
        0.05,
        ge=0,
        le=10,
        allow_inf_nan=False,
        description="Paper slippage: BUYs fill this much above, SELLs below the market price",
    )
    LIVE_MAX_SLIPPAGE_PCT: float = Field(
        0.5,
        gt=0,
        le=10,
        allow_inf_nan=False,
        description="Live/validate orders are IOC limits at the reference price plus/minus this",
    )
    EXCHANGE_TIMEOUT_MS: int = Field(
        10_000, ge=1000, le=60_000, description="Timeout of one exchange request (ccxt)"
    )
    EXCHANGE_RETRIES: int = Field(
        4, ge=1, le=20, description="Attempts per order before the entry is retried later"
    )
    EXCHANGE_BACKOFF_MAX_S: float = Field(
        10.0, gt=0, le=300, description="Longest wait between two attempts (429 and 5xx)"
    )
    ORDER_MAX_AGE_S: float = Field(
        120.0,
        ge=0,
        le=86_400,
        description="An order not yet sent whose timestamp is older than this is rejected, "
        "not sent (after an outage the market has moved on); 0 = no limit",
    )
    ORDER_LOOKUPS: int = Field(
        5,
        ge=1,
        le=20,
        description="Lookups of an order whose fate is in doubt before it counts as absent "
        "(resent) or, if the exchange acknowledged it, UNKNOWN: an order query can lag the "
        "order entry",
    )
    ORDER_LOOKUP_BACKOFF_S: float = Field(
        0.5,
        gt=0,
        le=60,
        description="Wait before the second lookup; doubled each time, capped at "
        "EXCHANGE_BACKOFF_MAX_S (defaults: 0.5+1+2+4 = 7.5 s in all)",
    )
    LOCK_TTL_S: float = Field(
        30.0,
        ge=1,
        le=600,
        description="Single-writer lock lifetime; renewed at least every min(1 s, "
        "LOCK_TTL_S/10), and before every exchange call: by a renewal answered within that "
        "period (sent before the order's SENT commit) or made at the call",
    )
    UNKNOWN_RECHECK_S: float = Field(
        5.0, gt=0, le=600, description="How often a fail-closed service re-checks its unknowns"
    )
    EXECUTION_TEST_PAUSE_AT: Literal["", "after_sent", "after_fill"] = Field(
        "",
        description="TEST ONLY (paper): stop at this point of an order, set the Redis key "
        "cdb:execution:paused and sleep, so a test can SIGKILL the process there",
    )
    EXECUTION_TEST_PAUSE_S: float = Field(
        600.0, gt=0, le=3600, description="TEST ONLY: how long the test pause lasts"
    )

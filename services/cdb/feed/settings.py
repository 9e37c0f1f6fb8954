"""Settings of the feed (environment variables, validated once at start)."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import AliasChoices, Field, field_validator

from cdb.events import SYMBOL_PATTERN, Interval
from cdb.settings import BaseServiceSettings

_SYMBOL = re.compile(SYMBOL_PATTERN)


class FeedSettings(BaseServiceSettings):
    """Which source, which symbols, the lookback window, pacing and the exchange's limits."""

    FEED_SOURCE: Literal["synthetic", "replay", "live", "stream"] = Field(
        "synthetic",
        description="Where candles come from: synthetic market, CSV replay, the exchange's "
        "websockets (stream, repaired from REST) or REST polling only (live)",
    )
    SYMBOLS: str = Field(
        "BTC_USDT,ETH_USDT,SOL_USDT",
        description="Comma list of symbols (synthetic and live; replay uses its files' symbols)",
    )
    TOP_MOVERS: int = Field(
        0, ge=0, le=100, description="Live: follow the N biggest 24 h movers (0 = use SYMBOLS)"
    )
    SIGNAL_LOOKBACK_MIN: int = Field(
        15, ge=1, le=1440, description="Window for pct_change and volume, in minutes"
    )
    FEED_INTERVAL: Interval = Field("1m", description="Candle timeframe (live and synthetic)")
    EXCHANGE_ID: str = Field("mexc", pattern=r"^[a-z0-9]+$", description="ccxt exchange id")
    EXCHANGE_BASE_URL: str = Field(
        "",
        validation_alias=AliasChoices("EXCHANGE_BASE_URL", "MEXC_BASE"),
        pattern=r"^(https?://[^/\s]+/?)?$",
        description="Live: scheme://host[:port] replacing the exchange's API host (a mirror, "
        "a local test server); empty = ccxt's own. The design's MEXC_BASE is accepted too",
    )
    QUOTE_ASSET: str = Field(
        "USDT", pattern=r"^[A-Z0-9]+$", description="Quote currency of the top movers"
    )
    FEED_BATCH: int = Field(
        500, ge=1, le=10_000, description="Most events published in one pipelined round trip"
    )
    # synthetic
    FEED_SEED: int = Field(42, description="Synthetic: seed of the random walk")
    FEED_SYNTHETIC_PERIOD_S: float = Field(
        1.0,
        ge=0,
        allow_inf_nan=False,
        description="Synthetic: wall seconds between candles (60 = real time for 1m; 0 = flat out)",
    )
    FEED_SYNTHETIC_QUOTE_VOLUME: float = Field(
        5_000.0,
        gt=0,
        allow_inf_nan=False,
        description="Synthetic: mean quote volume of one candle in the normal regime",
    )
    # replay
    FEED_REPLAY_FILES: str = Field(
        "", description="Replay: comma list of OHLCV CSV files (empty = the shipped sample)"
    )
    FEED_REPLAY_SPEED: float = Field(
        0.0,
        ge=0,
        allow_inf_nan=False,
        description="Replay: 0 = as fast as possible, 1 = real time, 60 = sixty times faster",
    )
    FEED_REPLAY_SHIFT_TO_NOW: bool = Field(
        False, description="Replay: shift timestamps so the first event is stamped now"
    )
    FEED_REPLAY_AT_END: Literal["stop", "idle"] = Field(
        "stop", description="Replay: at the end of the files, exit (0) or stay up idle"
    )
    # live
    FEED_POLL_S: float = Field(
        5.0, gt=0, allow_inf_nan=False, description="Live: seconds between polls"
    )
    FEED_CLOSE_DELAY_S: float = Field(
        2.0, ge=0, allow_inf_nan=False, description="Live: wait after a candle closes"
    )
    FEED_UNREACHABLE_AFTER_S: float = Field(
        60.0,
        gt=0,
        allow_inf_nan=False,
        description="Live: failing this long → market_status unreachable and a CRITICAL alert",
    )
    FEED_HTTP_TIMEOUT_S: float = Field(
        10.0, gt=0, le=120, description="Live: timeout of one HTTP request"
    )
    FEED_RETRY_ATTEMPTS: int = Field(
        3, ge=1, le=10, description="Live: attempts per call on network errors (with backoff)"
    )
    FEED_MOVERS_REFRESH_S: float = Field(
        300.0, gt=0, description="Live: seconds between top-mover refreshes"
    )
    FEED_MOVERS_MIN_QUOTE_VOLUME: float = Field(
        1_000_000.0, ge=0, description="Live: skip movers with less 24 h quote volume"
    )

    # stream
    FEED_STREAM_URL: str = Field(
        "",
        pattern=r"^(wss?://[^/\s]+(/\S*)?)?$",
        description="Stream: the exchange's spot websocket URL (empty = ccxt's own; required "
        "when EXCHANGE_BASE_URL points REST elsewhere)",
    )
    FEED_STREAM_PER_CONNECTION: int = Field(
        30, ge=1, le=30, description="Stream: subscriptions per websocket connection (MEXC: ≤ 30)"
    )
    FEED_STREAM_RENEW_S: float = Field(
        82_800.0,
        gt=0,
        le=86_000,
        description="Stream: reopen a connection after this long (MEXC cuts them at 24 h)",
    )
    FEED_STREAM_GRACE_S: float = Field(
        10.0,
        ge=0,
        allow_inf_nan=False,
        description="Stream: a candle the stream has not closed this long after its close "
        "(plus FEED_CLOSE_DELAY_S) is fetched over REST",
    )
    FEED_STREAM_BACKOFF_MAX_S: float = Field(
        30.0, gt=0, le=600, description="Stream: longest wait before reconnecting (with jitter)"
    )
    FEED_HELD_STALE_S: float = Field(
        0.0,
        ge=0,
        allow_inf_nan=False,
        description="Stream: a held symbol without data this long → CRITICAL alert "
        "(0 = two candles plus FEED_STREAM_GRACE_S)",
    )

    @field_validator("SYMBOLS")
    @classmethod
    def _symbols_valid(cls, value: str) -> str:
        symbols = [s.strip() for s in value.split(",") if s.strip()]
        if not symbols:
            raise ValueError("must name at least one symbol")
        bad = [s for s in symbols if not _SYMBOL.match(s)]
        if bad:
            raise ValueError(f"must be symbols like BTC_USDT, not {', '.join(bad)}")
        return ",".join(dict.fromkeys(symbols))

    def symbol_list(self) -> list[str]:
        return self.SYMBOLS.split(",")

    def replay_files(self) -> list[str]:
        return [p.strip() for p in self.FEED_REPLAY_FILES.split(",") if p.strip()]

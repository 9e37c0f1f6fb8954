"""Event contracts: the only language the services speak to each other.

Every message on a Redis stream is one of these pydantic models, serialised as
JSON in the entry's single field ``data``. The models are the one source of
truth: ``cdb schema`` derives ``docs/EVENT_SCHEMA.json`` from them, and the bus
validates every entry it reads against them (a failure goes to ``dead_letter``).

Commands are imperative (``order``, ``control``), facts are past tense
(``order_result``); ids are deterministic where a redelivery must not create a
second object (``signal_id``, ``client_id``), which is what makes handlers
idempotent under at-least-once delivery.
"""

from __future__ import annotations

import hashlib
import math
import time
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationInfo,
    field_validator,
)

SYMBOL_PATTERN = r"^[A-Z0-9]+_[A-Z0-9]+$"
CLIENT_ID_PATTERN = r"^[A-Za-z0-9_-]{1,32}$"

#: Largest amount (price, quantity, volume, fee) any event may carry: far above any real
#: one, far below where float arithmetic on it could overflow into ``inf``.
MAX_AMOUNT = 1e15
#: Percent moves outside this range are impossible (a price cannot fall more than 100 %)
#: or implausible (a 1000-fold rise within a lookback window).
PCT_RANGE = (-100.0, 100_000.0)
#: How far an event's time may lead the reading service's clock, seconds: clocks of
#: NTP-synced hosts differ by far less; milliseconds or a wrong clock lead by years.
MAX_FUTURE_S = 60
#: The last second an event time can name (2100-01-01): anything later is not Unix seconds.
MAX_TIMESTAMP = 4_102_444_800

Symbol = Annotated[str, Field(pattern=SYMBOL_PATTERN, max_length=32, examples=["BTC_USDT"])]
Price = Annotated[float, Field(gt=0, le=MAX_AMOUNT, allow_inf_nan=False)]
NonNegative = Annotated[float, Field(ge=0, le=MAX_AMOUNT, allow_inf_nan=False)]
Pct = Annotated[
    float,
    Field(
        ge=PCT_RANGE[0],
        le=PCT_RANGE[1],
        allow_inf_nan=False,
        description="Percent move over the lookback window (4.5 = +4.5 %)",
    ),
]
Interval = Literal["1m", "5m", "15m", "30m", "1h", "4h", "1d"]
Side = Literal["BUY", "SELL"]
#: Free text: no NUL character, which no reader needs and PostgreSQL cannot store.
NO_NUL = r"^[^\x00]*$"


def text(max_length: int, min_length: int = 0) -> Any:
    """A bounded free-text field type."""
    return Annotated[str, Field(min_length=min_length, max_length=max_length, pattern=NO_NUL)]


Reason = text(200)
ClientId = Annotated[
    str, Field(pattern=CLIENT_ID_PATTERN, description="Idempotency key, <= 32 chars (MEXC limit)")
]
Timestamp = Annotated[int, Field(ge=0, description="Unix seconds (UTC)")]

#: Validation context of events read from a stream: enables the checks against the clock.
READING: dict[str, bool] = {"reading": True}


def _not_ahead_of_now(value: int, info: ValidationInfo) -> int:
    """Read from a stream, an event time may lead this host's clock by ``MAX_FUTURE_S`` at most.

    Checked only when reading (``READING`` context), where an impossible time would
    otherwise poison a guard for the rest of the process's life (a far-future price time
    never goes stale; a far-future bucket freezes the abnormal-move window).
    """
    if info.context and info.context.get("reading"):
        limit = info.context.get("max_lead_s", MAX_FUTURE_S)
        lead = value - time.time()
        if lead > limit:
            raise ValueError(
                f"timestamp {value} is {lead:.0f} s ahead of this reader's clock (limit "
                f"{limit} s, EVENT_MAX_LEAD_S): not Unix seconds, or the sender's clock is wrong"
            )
    return value


#: The time of an event that feeds a safety rule: Unix seconds, not ahead of now.
SafeTimestamp = Annotated[
    int,
    Field(
        ge=0,
        le=MAX_TIMESTAMP,
        description=f"Unix seconds (UTC); read from a stream, at most {MAX_FUTURE_S} s ahead "
        "of the reader's clock (milliseconds and far-future times are dead-lettered)",
    ),
    AfterValidator(_not_ahead_of_now),
]


def now() -> int:
    """Current Unix time in whole seconds, the unit of every ``timestamp``."""
    return int(time.time())


def check_mapping(value: dict[str, Any], depth: int = 0) -> dict[str, Any]:
    """Keep free-form mappings small and storable: a hostile one must not bloat or break readers.

    At most 50 keys, 4 levels, strings of 1000 characters, finite numbers, no NUL anywhere
    (PostgreSQL's JSONB cannot store it).
    """
    if depth > 4:
        raise ValueError("nested more than 4 levels deep")
    if len(value) > 50:
        raise ValueError("more than 50 keys")
    for key, item in value.items():
        if "\x00" in key:
            raise ValueError("a key contains a NUL character")
        _check_item(key, item, depth)
    return value


def _check_item(key: str, item: Any, depth: int) -> None:
    if isinstance(item, float) and not math.isfinite(item):
        raise ValueError(f"[{key!r}] is not a finite number")
    if isinstance(item, str) and (len(item) > 1000 or "\x00" in item):
        raise ValueError(f"[{key!r}] is longer than 1000 characters or contains NUL")
    if isinstance(item, dict):
        check_mapping(item, depth + 1)
    if isinstance(item, list):
        if len(item) > 50:
            raise ValueError(f"[{key!r}] has more than 50 items")
        for element in item:
            _check_item(key, element, depth + 1)


class Event(BaseModel):
    """Base of every event: a ``type`` discriminator and a Unix-seconds ``timestamp``."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    type: str
    timestamp: Timestamp = Field(default_factory=now)


class MarketData(Event):
    """A price observation for one symbol, with the move over the lookback window."""

    type: Literal["market_data"] = "market_data"
    timestamp: SafeTimestamp = Field(default_factory=now)
    symbol: Symbol
    price: Price
    volume: NonNegative = Field(description="Quote-currency volume over the lookback window")
    pct_change: Pct
    interval: Interval = "1m"
    source: Literal["live", "replay", "synthetic", "test"] = "live"


class MarketStatus(Event):
    """The feed's view of the exchange: the risk manager pauses trading when it is not ``ok``."""

    type: Literal["market_status"] = "market_status"
    timestamp: SafeTimestamp = Field(default_factory=now)
    exchange: text(32) = "mexc"
    status: Literal["ok", "unreachable", "stale"]
    reason: Reason = ""


class Signal(Event):
    """A strategy's opinion that a symbol should be bought or sold."""

    type: Literal["signal"] = "signal"
    timestamp: SafeTimestamp = Field(default_factory=now)
    signal_id: text(64, min_length=1)
    symbol: Symbol
    side: Side
    confidence: Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)]
    price: Price
    pct_change: Pct
    volume: NonNegative = 0.0
    reason: Reason
    strategy: text(64) = "momentum"


class Order(Event):
    """A command to execution: buy or sell ``quantity`` of ``symbol``, at most once per ``client_id``."""

    type: Literal["order"] = "order"
    timestamp: SafeTimestamp = Field(default_factory=now)
    client_id: ClientId
    symbol: Symbol
    side: Side
    quantity: Price = Field(description="Base-asset quantity, > 0")
    price: Price | None = Field(default=None, description="Reference price the risk check used")
    stop_loss: Price | None = None
    take_profit: Price | None = None
    signal_id: text(64) | None = None
    reason: Reason = ""


class OrderResult(Event):
    """What happened to an order at the exchange (or in the paper book)."""

    type: Literal["order_result"] = "order_result"
    timestamp: SafeTimestamp = Field(default_factory=now)
    client_id: ClientId
    symbol: Symbol
    side: Side
    status: Literal["FILLED", "PARTIALLY_FILLED", "REJECTED", "ERROR", "CANCELLED"]
    filled_quantity: NonNegative = 0.0
    avg_price: NonNegative = 0.0
    fee: NonNegative = 0.0
    error: text(500) | None = None
    exchange_order_id: text(64) | None = None
    mode: Literal["paper", "validate", "live"] = "paper"


class Alert(Event):
    """Something a person should know about; WARNING and CRITICAL are pushed by the notifier."""

    type: Literal["alert"] = "alert"
    level: Literal["INFO", "WARNING", "CRITICAL"]
    code: Annotated[str, Field(pattern=r"^[A-Z0-9_]{1,64}$")]
    message: text(500)
    context: dict[str, Any] = Field(default_factory=dict)
    source: text(64) = ""

    @field_validator("context")
    @classmethod
    def _context_is_clean(cls, value: dict[str, Any]) -> dict[str, Any]:
        return check_mapping(value)


class Health(Event):
    """A service's periodic heartbeat, written to ``health_checks`` by the persistence writer."""

    type: Literal["health"] = "health"
    service: text(64)
    status: Literal["ok", "degraded", "down"]
    details: dict[str, Any] = Field(default_factory=dict)

    @field_validator("details")
    @classmethod
    def _details_are_clean(cls, value: dict[str, Any]) -> dict[str, Any]:
        return check_mapping(value)


class Control(Event):
    """A command to the risk manager: engage or release the breaker, or stop everything."""

    type: Literal["control"] = "control"
    timestamp: SafeTimestamp = Field(default_factory=now)
    action: Literal["engage_breaker", "release_breaker", "kill_switch"]
    reason: Reason = ""
    source: Literal["operator", "dashboard", "cli", "risk"]
    control_id: text(64) | None = Field(
        default=None, description="Set by the sender to match a confirmation to its request"
    )


class BreakerState(Event):
    """The risk manager's confirmation of its breaker state, published after every change."""

    type: Literal["breaker_state"] = "breaker_state"
    timestamp: SafeTimestamp = Field(default_factory=now)
    engaged: bool
    manual: bool = False
    drawdown: bool = False
    kill_switch: bool = False
    reason: Reason = ""
    control_id: text(64) | None = None


class FeatureContribution(BaseModel):
    """One feature's share of an ML score: its value and its additive log-odds contribution."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    feature: text(64, min_length=1)
    value: float = Field(allow_inf_nan=False, description="The feature's value at this observation")
    contribution: float = Field(
        allow_inf_nan=False,
        description="Log-odds added to the score by this feature (positive pushes towards BUY)",
    )


class MlSignal(Event):
    """The ML advisor's opinion on one observation. Shadow only: nothing that trades reads it.

    Published to ``ml_signals`` (never ``signals``), persisted to ``ml_signals`` by the
    writer, and compared with the rules; see docs/advisor.md.
    """

    type: Literal["ml_signal"] = "ml_signal"
    signal_id: text(64, min_length=1)
    symbol: Symbol
    side: Side
    probability: Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)] = Field(
        description="The model's probability that the label holds (forward return beats fees)"
    )
    threshold: Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)] = Field(
        description="The probability at or above which the advisor calls it a signal"
    )
    model_version: text(64, min_length=1)
    price: Price
    rule_signal: bool = Field(
        description="Whether the momentum rule fired on the same observation (before cooldowns)"
    )
    contributions: list[FeatureContribution] = Field(
        default_factory=list, max_length=20, description="Largest contributions first"
    )


AnyEvent = Annotated[
    MarketData
    | MarketStatus
    | Signal
    | MlSignal
    | Order
    | OrderResult
    | Alert
    | Health
    | Control
    | BreakerState,
    Field(discriminator="type"),
]

EVENT_TYPES: dict[str, type[Event]] = {
    cls.model_fields["type"].default: cls
    for cls in (
        MarketData,
        MarketStatus,
        Signal,
        MlSignal,
        Order,
        OrderResult,
        Alert,
        Health,
        Control,
        BreakerState,
    )
}

_ANY = TypeAdapter(AnyEvent)


def parse_event(raw: str | bytes, max_lead_s: float = MAX_FUTURE_S) -> Event:
    """Parse and validate one event read from a stream; raises ``pydantic.ValidationError``.

    Includes the checks against this host's clock (``READING``): an event time more than
    ``max_lead_s`` seconds ahead of now (the reader's ``EVENT_MAX_LEAD_S``) is refused
    like any other impossible value.
    """
    context = READING if max_lead_s == MAX_FUTURE_S else {**READING, "max_lead_s": max_lead_s}
    return _ANY.validate_json(raw, context=context)


def dump_event(event: Event) -> bytes:
    """Serialise an event to compact JSON bytes (the ``data`` field of a stream entry)."""
    return event.__pydantic_serializer__.to_json(event)


def stable_id(*parts: object, length: int = 24) -> str:
    """A short id derived from its inputs: the same inputs after a redelivery give the same id."""
    digest = hashlib.blake2b("|".join(map(str, parts)).encode(), digest_size=16).hexdigest()
    return digest[:length]


def json_schema() -> dict[str, Any]:
    """JSON Schema 2020-12 covering every event type (``docs/EVENT_SCHEMA.json``)."""
    schema = _ANY.json_schema(ref_template="#/$defs/{model}")
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://claire-de-binare.dev/schemas/events.json",
        "title": "Claire de Binare events",
        "description": (
            "Every entry on a Redis stream has one field 'data' holding one of these events "
            "as JSON. Generated by `cdb schema` from services/cdb/events.py; do not edit."
        ),
        **schema,
    }

"""Settings: environment variables only, validated once at start.

Each service declares a frozen pydantic-settings class composed of the shared
pieces below. A bad value stops the service with exit code 2 and one line that
names the variable and the rule (``SIGNAL_THRESHOLD_PCT must be > 0, got 0``);
a secret's value is never echoed, not even in that line.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from typing import Any, TypeVar

from pydantic import Field, SecretStr, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

S = TypeVar("S", bound=BaseSettings)


class SettingsError(SystemExit):
    """A bad setting: the service cannot start until a person fixes its environment."""

    def __init__(self, message: str) -> None:
        super().__init__(2)
        self.message = message


class BaseServiceSettings(BaseSettings):
    """Settings every service reads: Redis, logging, the HTTP port, stream limits."""

    model_config = SettingsConfigDict(frozen=True, extra="ignore", case_sensitive=True)

    REDIS_HOST: str = Field("localhost", description="Redis host")
    REDIS_PORT: int = Field(6379, ge=1, le=65535, description="Redis port")
    REDIS_USERNAME: str | None = Field(
        None,
        description="Redis ACL user (the advisor's own, cdb-advisor); unset: the default user",
    )
    REDIS_PASSWORD: SecretStr | None = Field(
        None, description="Redis password (requirepass, or REDIS_USERNAME's)"
    )
    REDIS_DB: int = Field(0, ge=0, le=15, description="Redis database number")
    REDIS_TLS: bool = Field(False, description="Connect to Redis over TLS (an external Redis)")
    LOG_LEVEL: str = Field(
        "INFO", pattern=r"^(DEBUG|INFO|WARNING|ERROR)$", description="Log level of JSON logs"
    )
    HTTP_HOST: str = Field("0.0.0.0", description="Address the HTTP endpoints listen on")
    HTTP_PORT: int | None = Field(
        None, ge=0, le=65535, description="HTTP port (default: the service's own; 0 = any free)"
    )
    STREAM_MAXLEN_MARKET_DATA: int = Field(
        100_000, ge=1000, description="Approximate length market_data is trimmed to"
    )
    STREAM_MAXLEN: int = Field(
        1_000_000, ge=1000, description="Approximate backlog kept on every other stream"
    )
    READ_BATCH: int = Field(500, ge=1, le=10_000, description="Entries read per XREADGROUP")
    MARKET_DATA_COALESCE_MS: int = Field(
        0,
        ge=0,
        le=1000,
        description="A service reading market_data and other streams (risk, execution) is "
        "woken by new market data at most this often (ms); a signal, order or control wakes "
        "it at once and is handled after the ticks before it (read in one more round trip). "
        "Saves CPU at high tick rates, costs ~0.4 ms on the order path; 0 (default) = wake "
        "for every tick",
    )
    CLAIM_IDLE_MS: int = Field(
        30_000, ge=1000, description="Entries pending this long on a dead consumer are claimed"
    )
    HEALTH_INTERVAL_S: float = Field(10.0, gt=0, description="Seconds between health events")
    EVENT_MAX_LEAD_S: int = Field(
        60,
        ge=1,
        description="An event read from a stream whose time leads this host's clock by more "
        "is dead-lettered; raised only for a replay faster than real time (cdb up --feed "
        "replay), whose candle times run ahead of the clock",
    )
    SHUTDOWN_TIMEOUT_S: float = Field(10.0, gt=0, description="Bound on a graceful stop")
    LIVENESS_TIMEOUT_S: float = Field(
        60.0,
        ge=5,
        description="/livez fails when the running main loop has not ticked for this long "
        "(above the longest wait on a dead dependency: 3 x 5 s Redis timeouts + 5 s back-off)",
    )
    STARTUP_TIMEOUT_S: float = Field(
        300.0,
        ge=5,
        description="The same bound while connecting and setting up (a risk manager rebuilding "
        "its state from a large database, a database still migrating or recovering)",
    )
    OUTAGE_ALERT_S: float = Field(
        60.0,
        gt=0,
        description="A dependency down this long raises an alert (for Redis: when it is back)",
    )


class PostgresSettings(BaseSettings):
    """Connection settings for services that write PostgreSQL."""

    model_config = SettingsConfigDict(frozen=True, extra="ignore", case_sensitive=True)

    POSTGRES_HOST: str = Field("localhost", description="PostgreSQL host")
    POSTGRES_PORT: int = Field(5432, ge=1, le=65535, description="PostgreSQL port")
    POSTGRES_USER: str = Field("claire", description="PostgreSQL user")
    POSTGRES_PASSWORD: SecretStr | None = Field(None, description="PostgreSQL password")
    POSTGRES_DB: str = Field("claire_de_binare", description="PostgreSQL database")

    def postgres_dsn(self) -> str:
        """A libpq DSN (keyword form, so the password never needs URL-escaping)."""
        parts = {
            "host": self.POSTGRES_HOST,
            "port": self.POSTGRES_PORT,
            "user": self.POSTGRES_USER,
            "dbname": self.POSTGRES_DB,
        }
        if self.POSTGRES_PASSWORD is not None:
            parts["password"] = self.POSTGRES_PASSWORD.get_secret_value()
        return " ".join(f"{k}='{_libpq_escape(str(v))}'" for k, v in parts.items())


def _libpq_escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("'", "\\'")


_RULES = {
    "greater_than": "must be > {gt}",
    "greater_than_equal": "must be >= {ge}",
    "less_than": "must be < {lt}",
    "less_than_equal": "must be <= {le}",
    "string_pattern_mismatch": "must match {pattern}",
    "literal_error": "must be one of {expected}",
    "enum": "must be one of {expected}",
    "int_parsing": "must be an integer",
    "float_parsing": "must be a number",
    "bool_parsing": "must be true or false",
    "finite_number": "must be a finite number",
    "missing": "is required",
    "string_too_long": "must be at most {max_length} characters",
    "string_too_short": "must be at least {min_length} characters",
    "too_short": "must be at least {min_length} characters",  # a SecretStr's min_length
    "value_error": "{error}",  # a field_validator's own message, without pydantic's prefix
}


def describe_error(cls: type[BaseSettings], exc: ValidationError) -> str:
    """One line for the first error: the variable, the rule, and (unless secret) the value."""
    err = exc.errors(include_url=False)[0]
    name = str(err["loc"][0]) if err["loc"] else "settings"
    template = _RULES.get(err["type"])
    # pydantic reports a bound of a float field as 0.0; people wrote 0 (``must be > 0``)
    ctx = {
        k: int(v) if isinstance(v, float) and v.is_integer() else v
        for k, v in err.get("ctx", {}).items()
    }
    rule = template.format(**ctx) if template else err["msg"]
    if err["type"] == "missing":
        return f"{name} {rule}"
    field = cls.model_fields.get(name)
    secret = field is not None and "SecretStr" in repr(field.annotation)
    shown = "<hidden>" if secret else repr(err.get("input"))
    if isinstance(err.get("input"), str) and not secret:
        shown = err["input"]
    return f"{name} {rule}, got {shown}"


def load_settings(cls: type[S], **overrides: Any) -> S:
    """Build settings from the environment; on a bad value raise ``SettingsError`` (exit 2)."""
    try:
        return cls(**overrides)
    except ValidationError as exc:
        raise SettingsError(describe_error(cls, exc)) from None


#: The design documents' per-service port variables: an alias of HTTP_PORT in that service.
DESIGN_PORTS = {
    "feed": "FEED_PORT",
    "signal": "SIGNAL_PORT",
    "risk": "RISK_PORT",
    "execution": "EXECUTION_PORT",
    "persistence": "PERSISTENCE_PORT",
    "notifier": "NOTIFIER_PORT",
}
#: ``ENV`` values of the design that mean what the default (paper trading) does anyway.
PAPER_ENVS = frozenset({"dev", "development", "local", "test", "testing", "paper", "demo"})


def design_overrides(service: str, env: Mapping[str, str] = os.environ) -> dict[str, str]:
    """Settings from names an old ``.env`` may bring from the design documents.

    ``SIGNAL_PORT`` (``FEED_PORT`` … ``NOTIFIER_PORT``) is ``HTTP_PORT`` of that service;
    ``MEXC_BASE`` (feed) and ``EXCHANGE_API_KEY``/``SECRET`` (execution) are aliases in their
    settings classes. ``ENV`` is not read: a value meaning paper trading (``dev``, ``test`` …)
    is what the default does; any other (``prod``) without ``TRADING_MODE`` stops the
    service, naming ``TRADING_MODE`` — a known name is never silently ignored.
    Returns overrides for ``load_settings``; raises ``SettingsError`` on a conflict.
    """
    out: dict[str, str] = {}
    design = DESIGN_PORTS.get(service)
    if design and env.get(design):
        if env.get("HTTP_PORT") and env["HTTP_PORT"] != env[design]:
            raise SettingsError(
                f"{design}={env[design]} and HTTP_PORT={env['HTTP_PORT']} disagree; "
                f"{design} is the design's name for HTTP_PORT: set one of them"
            )
        out["HTTP_PORT"] = env[design]
    value = env.get("ENV")
    if value and value.lower() not in PAPER_ENVS and not env.get("TRADING_MODE"):
        raise SettingsError(
            f"ENV={value} is not read; set TRADING_MODE=paper|validate|live instead "
            "(the design's ENV is replaced by it)"
        )
    return out


def exit_on_bad_settings(error: SettingsError) -> None:
    """Print the one-line reason to stderr and exit 2 (used by ``cdb run``)."""
    print(f"configuration error: {error.message}", file=sys.stderr, flush=True)
    raise SystemExit(2)

"""The ConfigMap of non-secret settings, the generated-password Secret, and the pods' env.

``settings_env`` is the one place that maps spec fields to the services' environment
variable names (the names their ``settings.py`` classes read).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from cdb_operator.render.common import Bot, Manifest, metadata

REDIS_PORT = 6379
POSTGRES_PORT = 5432
POSTGRES_USER = "claire"
POSTGRES_DB = "claire_de_binare"
#: Keys of the generated Secret; created once and never rewritten (a missing one is added).
#: ADVISOR_REDIS_PASSWORD is the advisor's own Redis user's (cdb.redis_acl), embedded Redis.
SECRET_KEYS = ("REDIS_PASSWORD", "POSTGRES_PASSWORD", "ADVISOR_REDIS_PASSWORD")
CREDENTIAL_KEYS = ("MEXC_API_KEY", "MEXC_API_SECRET")


def config_name(bot: Bot) -> str:
    return bot.child("config")


def secret_name(bot: Bot) -> str:
    return bot.child("passwords")


def cnpg_name(bot: Bot) -> str:
    """The CloudNativePG Cluster (mode cloudnativepg): its Services are ``<name>-rw`` etc.,
    its generated credentials the Secret ``<name>-app`` (keys username, password)."""
    return bot.child("postgres")


def postgres_endpoint(bot: Bot) -> dict[str, str]:
    """POSTGRES_HOST/PORT/USER/DB (and libpq's PGSSLMODE for an external database)."""
    pg = bot.spec.postgres
    if pg.mode == "external" and pg.external is not None:
        ext = pg.external
        return {
            "POSTGRES_HOST": ext.host,
            "POSTGRES_PORT": str(ext.port),
            "POSTGRES_USER": ext.user,
            "POSTGRES_DB": ext.database,
            # libpq reads it for every connection without an sslmode of its own: the
            # services (psycopg2), pg_dump and psql alike
            "PGSSLMODE": ext.ssl_mode,
        }
    host = f"{cnpg_name(bot)}-rw" if pg.mode == "cloudnativepg" else bot.child("postgres")
    return {
        "POSTGRES_HOST": host,
        "POSTGRES_PORT": str(POSTGRES_PORT),
        "POSTGRES_USER": POSTGRES_USER,
        "POSTGRES_DB": POSTGRES_DB,
    }


def redis_endpoint(bot: Bot) -> dict[str, str]:
    """REDIS_HOST/PORT/DB/TLS of the bus."""
    r = bot.spec.redis
    if r.mode == "external" and r.external is not None:
        return {
            "REDIS_HOST": r.external.host,
            "REDIS_PORT": str(r.external.port),
            "REDIS_DB": "0",
            "REDIS_TLS": "true" if r.external.tls else "false",
        }
    return {"REDIS_HOST": bot.child("redis"), "REDIS_PORT": str(REDIS_PORT), "REDIS_DB": "0"}


def settings_env(bot: Bot) -> dict[str, str]:
    """Spec → environment variables every service reads (all non-secret)."""
    s = bot.spec

    def num(value: float) -> str:
        return f"{value:g}"

    return {
        **redis_endpoint(bot),
        **postgres_endpoint(bot),
        "EXCHANGE_ID": s.exchange.name,
        "TRADING_MODE": s.exchange.mode,
        # live data streams over the exchange's websockets (REST repairs the stream)
        "FEED_SOURCE": "stream" if s.feed_source == "live" else s.feed_source,
        "SYMBOLS": ",".join(s.symbols),
        "TOP_MOVERS": str(s.top_movers),
        "QUOTE_ASSET": s.quote_asset,
        "PAPER_START_BALANCE": num(s.paper_start_balance),
        "SIGNAL_THRESHOLD_PCT": num(s.strategy.threshold_pct),
        "SIGNAL_MIN_VOLUME": num(s.strategy.min_volume),
        "SIGNAL_LOOKBACK_MIN": str(s.strategy.lookback_minutes),
        "MAX_POSITION_PCT": num(s.risk.max_position_pct),
        "MAX_EXPOSURE_PCT": num(s.risk.max_exposure_pct),
        "STOP_LOSS_PCT": num(s.risk.stop_loss_pct),
        "MAX_DAILY_DRAWDOWN_PCT": num(s.risk.max_daily_drawdown_pct),
        "MAX_OPEN_POSITIONS": str(s.risk.max_open_positions),
        "LOG_LEVEL": s.log_level,
    }


def config_hash(bot: Bot) -> str:
    """Changes exactly when the ConfigMap's data changes: put on pod templates to roll them."""
    data = json.dumps(settings_env(bot), sort_keys=True).encode()
    return hashlib.sha256(data).hexdigest()[:16]


def render_configmap(bot: Bot) -> Manifest:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": metadata(bot, config_name(bot), "config"),
        "data": settings_env(bot),
    }


def render_secret(bot: Bot, passwords: dict[str, str]) -> Manifest:
    """The generated passwords (the caller makes them, once; rendering stays pure).

    Kept data keeps its passwords: with ``keepDataOnDelete`` the Secret is not owned by the
    bot, so a bot re-created on the kept volumes finds the passwords they were made with.
    """
    missing = [k for k in SECRET_KEYS if not passwords.get(k)]
    if missing:
        raise ValueError(f"missing generated passwords: {', '.join(missing)}")
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": metadata(
            bot, secret_name(bot), "passwords", owned=not bot.spec.keep_data_on_delete
        ),
        "type": "Opaque",
        "stringData": {k: passwords[k] for k in SECRET_KEYS},
    }


def secret_env(bot: Bot, key: str, name: str | None = None) -> dict[str, Any]:
    """An env var read from a Secret key (the value never appears in the pod spec)."""
    return {
        "name": name or key,
        "valueFrom": {"secretKeyRef": {"name": secret_name(bot), "key": key}},
    }


def postgres_password_env(bot: Bot, name: str = "POSTGRES_PASSWORD") -> dict[str, Any]:
    """The database password: generated (embedded), CloudNativePG's ``<cluster>-app``
    Secret (cloudnativepg), or the user's ``postgres.external.passwordSecret``."""
    pg = bot.spec.postgres
    if pg.mode == "cloudnativepg":
        ref = {"name": f"{cnpg_name(bot)}-app", "key": "password"}
    elif pg.mode == "external" and pg.external is not None:
        ref = {"name": pg.external.password_secret.name, "key": pg.external.password_secret.key}
    else:
        return secret_env(bot, "POSTGRES_PASSWORD", name=name)
    return {"name": name, "valueFrom": {"secretKeyRef": ref}}


def redis_password_env(bot: Bot, name: str = "REDIS_PASSWORD") -> list[dict[str, Any]]:
    """The bus password as env (none for an external Redis without one)."""
    r = bot.spec.redis
    if r.mode == "external" and r.external is not None:
        ref = r.external.password_secret
        if ref is None:
            return []
        return [{"name": name, "valueFrom": {"secretKeyRef": {"name": ref.name, "key": ref.key}}}]
    return [secret_env(bot, "REDIS_PASSWORD", name=name)]


def credentials_env(bot: Bot) -> list[dict[str, Any]]:
    """The exchange keys, from the user's Secret, in live mode only."""
    secret = bot.spec.exchange.credentials_secret
    if bot.spec.exchange.mode != "live" or not secret:
        return []
    return [
        {"name": key, "valueFrom": {"secretKeyRef": {"name": secret, "key": key}}}
        for key in CREDENTIAL_KEYS
    ]


def env_from(bot: Bot) -> list[dict[str, Any]]:
    return [{"configMapRef": {"name": config_name(bot)}}]

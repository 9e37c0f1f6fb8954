"""The data stores a TradingBot uses, as the operator sees them: conditions and addresses.

- ``postgres.mode: cloudnativepg``: the CloudNativePG API must be served and the operator
  started with ``--cloudnativepg`` (the chart value ``operator.cloudnativepg.enabled``,
  which also grants it ``clusters``); otherwise :class:`StoreUnavailable` (nothing is
  applied). ``PostgresReady`` follows the Cluster's ready instances.
- ``postgres.mode: external``: the password Secret must hold its key; the operator
  connects (libpq, ``sslMode`` as given, 3 s timeout) and reports ``PostgresReady``
  (``Reachable`` / ``Unreachable`` with the error).
- ``redis.mode: external``: the same for Redis (``RedisReady``), and ``BusDurable``: what
  ``CONFIG GET`` says of ``appendonly``, ``appendfsync`` and ``maxmemory-policy`` — the
  bus needs AOF (``appendonly yes``, ``appendfsync everysec`` or ``always``) and
  ``noeviction``, or an acknowledged event can be lost. Managed services often refuse
  ``CONFIG``: then ``Unknown`` (``ConfigUnavailable``) and the docs say what to check.

Embedded stores get none of these conditions: their StatefulSets are in ``components``.
"""

from __future__ import annotations

from typing import Any

import psycopg2
import redis

from cdb_operator.apply import ApiError, Kube
from cdb_operator.breaker import RedisAddress
from cdb_operator.conditions import BUS_DURABLE, POSTGRES_READY, REDIS_READY, Cond
from cdb_operator.model import SecretKeyRef
from cdb_operator.render.cnpg import API_VERSION as CNPG_API
from cdb_operator.render.common import Bot

TIMEOUT_S = 3.0
#: What the bus needs of a Redis (docs/operator.md, "Choosing the data stores").
DURABLE_FSYNC = ("everysec", "always")


class StoreUnavailable(Exception):
    """A data store the spec names cannot be used yet (CRD absent, Secret missing)."""

    def __init__(self, reason: str, message: str, condition: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.condition = condition


def secret_value(kube: Kube, namespace: str, ref: SecretKeyRef, what: str) -> str:
    """The value of one Secret key; :class:`StoreUnavailable` when the Secret or key is absent."""
    from cdb_operator.reconcile import decode_secret  # the one decoder

    condition = POSTGRES_READY if what == "postgres" else REDIS_READY
    secret = kube.get("v1", "Secret", namespace, ref.name)
    if secret is None:
        raise StoreUnavailable(
            "PasswordSecretMissing",
            f"{what}.external.passwordSecret: Secret {ref.name!r} not found in {namespace}",
            condition,
        )
    value = decode_secret(secret).get(ref.key)
    if not value:
        raise StoreUnavailable(
            "PasswordSecretMissing",
            f"{what}.external.passwordSecret: Secret {ref.name!r} has no key {ref.key!r}",
            condition,
        )
    return value


def check_cloudnativepg(kube: Kube, bot: Bot, enabled: bool) -> None:
    """Raise :class:`StoreUnavailable` unless a Cluster can be made for ``bot``."""
    if bot.spec.postgres.mode != "cloudnativepg":
        return
    if not enabled:
        raise StoreUnavailable(
            "CloudNativePGNotEnabled",
            "postgres.mode is cloudnativepg but the operator runs without --cloudnativepg "
            "(Helm value operator.cloudnativepg.enabled=true grants it CloudNativePG clusters)",
            POSTGRES_READY,
        )
    try:
        served = kube.api_exists(CNPG_API)
    except ApiError as exc:
        raise StoreUnavailable("CloudNativePGUnknown", str(exc), POSTGRES_READY) from None
    if not served:
        raise StoreUnavailable(
            "CloudNativePGMissing",
            f"postgres.mode is cloudnativepg but {CNPG_API} is not served: install the "
            "CloudNativePG operator (its CRDs), or choose postgres.mode embedded or external",
            POSTGRES_READY,
        )


def redis_address(kube: Kube, bot: Bot) -> RedisAddress | None:
    """Where the operator reaches an external bus (password from its Secret); None: embedded."""
    r = bot.spec.redis
    if r.mode != "external" or r.external is None:
        return None
    ext = r.external
    password = None
    if ext.password_secret is not None:
        password = secret_value(kube, bot.namespace, ext.password_secret, "redis")
    return RedisAddress(ext.host, ext.port, password, ext.tls)


def postgres_password(kube: Kube, bot: Bot) -> str | None:
    pg = bot.spec.postgres
    if pg.mode != "external" or pg.external is None:
        return None
    return secret_value(kube, bot.namespace, pg.external.password_secret, "postgres")


def probe_postgres(bot: Bot, password: str) -> Cond:
    """``PostgresReady`` of an external database: can the bot's user log in?"""
    ext = bot.spec.postgres.external
    assert ext is not None
    try:
        conn = psycopg2.connect(
            host=ext.host,
            port=ext.port,
            user=ext.user,
            dbname=ext.database,
            password=password,
            sslmode=ext.ssl_mode,
            connect_timeout=int(TIMEOUT_S),
            application_name="cdb-operator",
        )
    except psycopg2.Error as exc:
        text = " ".join(str(exc).split())[:300]
        return Cond(POSTGRES_READY, "False", "Unreachable", f"{ext.host}:{ext.port}: {text}")
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT current_setting('server_version')")
            version = cur.fetchone()[0]
    except psycopg2.Error as exc:
        text = " ".join(str(exc).split())[:300]
        return Cond(POSTGRES_READY, "False", "Unreachable", f"{ext.host}:{ext.port}: {text}")
    finally:
        conn.close()
    return Cond(
        POSTGRES_READY,
        "True",
        "Reachable",
        f"{ext.user}@{ext.host}:{ext.port}/{ext.database} answers (PostgreSQL {version}, "
        f"sslmode {ext.ssl_mode})",
    )


def durability(config: dict[str, str]) -> Cond:
    """``BusDurable`` from ``CONFIG GET`` answers (pure)."""
    problems = []
    if config.get("appendonly") != "yes":
        problems.append(f"appendonly is {config.get('appendonly')!r} (needs yes)")
    elif config.get("appendfsync") not in DURABLE_FSYNC:
        problems.append(f"appendfsync is {config.get('appendfsync')!r} (needs everysec or always)")
    policy = config.get("maxmemory-policy")
    if policy not in (None, "noeviction"):
        problems.append(f"maxmemory-policy is {policy!r} (needs noeviction)")
    if problems:
        return Cond(BUS_DURABLE, "False", "NotDurable", "; ".join(problems))
    return Cond(
        BUS_DURABLE,
        "True",
        "Verified",
        f"appendonly yes, appendfsync {config.get('appendfsync')}, "
        f"maxmemory-policy {policy or 'noeviction'}",
    )


def probe_redis(address: RedisAddress) -> list[Cond]:
    """``RedisReady`` and ``BusDurable`` of an external Redis."""
    client = address.client(TIMEOUT_S)
    where = f"{address.host}:{address.port}"
    try:
        client.ping()
    except redis.RedisError as exc:
        message = f"{where}: {type(exc).__name__}: {exc}"[:300]
        return [
            Cond(REDIS_READY, "False", "Unreachable", message),
            Cond(BUS_DURABLE, "Unknown", "Unreachable", "Redis does not answer"),
        ]
    try:
        config: dict[str, str] = {}
        for key in ("appendonly", "appendfsync", "maxmemory-policy"):
            answer = client.config_get(key)
            config.update({str(k): str(v) for k, v in answer.items()})
        durable = durability(config)
    except redis.RedisError as exc:
        durable = Cond(
            BUS_DURABLE,
            "Unknown",
            "ConfigUnavailable",
            f"CONFIG GET refused ({type(exc).__name__}: {str(exc)[:120]}): check AOF "
            "(appendonly yes, appendfsync everysec) and maxmemory-policy noeviction with "
            "the provider",
        )
    finally:
        client.close()
    tls = " over TLS" if address.tls else ""
    return [Cond(REDIS_READY, "True", "Reachable", f"{where} answers{tls}"), durable]


def cluster_condition(component: dict[str, Any] | None, live: dict[str, Any] | None) -> Cond:
    """``PostgresReady`` of a CloudNativePG Cluster from its readiness and phase."""
    phase = ((live or {}).get("status") or {}).get("phase") or "no status yet"
    if component and component.get("ready"):
        n = component.get("replicas", 0)
        return Cond(POSTGRES_READY, "True", "ClusterReady", f"{n}/{n} instances ready ({phase})")
    ready = (component or {}).get("readyReplicas", 0)
    want = (component or {}).get("replicas", 0)
    return Cond(
        POSTGRES_READY,
        "False",
        "ClusterNotReady",
        f"CloudNativePG Cluster: {ready}/{want} instances ready ({phase})",
    )


def unavailable_conditions(exc: StoreUnavailable) -> list[Cond]:
    return [Cond(exc.condition, "False", exc.reason, str(exc))]

"""Redis and PostgreSQL: each a one-replica StatefulSet with a PVC, plus its Service.

Passwords come from the generated Secret through environment variables only: Redis
reads ``requirepass`` from a config file written at start by a shell builtin, and its
probes authenticate with ``REDISCLI_AUTH``, so no password is ever on a command line.
The Redis liveness probe accepts ``LOADING`` (a large AOF replays after a restart);
readiness waits for ``PONG``.
"""

from __future__ import annotations

from typing import Any

from cdb.redis_acl import ADVISOR_RULES, advisor_user_line
from cdb_operator.render import config
from cdb_operator.render.common import (
    Bot,
    Manifest,
    container_security_context,
    labels,
    metadata,
    pod_security_context,
    resources,
    scheduling,
    selector_labels,
    tmp_volume,
)

REDIS_UID = 999  # the redis user of the official alpine image
POSTGRES_UID = 70  # the postgres user of the official alpine image

#: The config is written at start from the Secret's env, so no password is in the pod spec:
#: the bot's password, and the advisor's own user (cdb.redis_acl: shadow mode enforced by
#: Redis, whether or not the advisor is enabled, so enabling it restarts nothing).
REDIS_START = (
    'printf "requirepass %s\\n" "$REDIS_PASSWORD" > /conf/redis.conf && '
    # the password and the rules are printf's arguments: a % in them is no directive
    f'printf "{advisor_user_line("%s", rules="%s")}\\n" "$ADVISOR_REDIS_PASSWORD" '
    f"'{ADVISOR_RULES}' >> /conf/redis.conf && "
    "exec redis-server /conf/redis.conf --port 6379 --dir /data --appendonly yes "
    "--appendfsync everysec --save '' --protected-mode no"
)
#: Exit 0 on PONG (and, for liveness, on LOADING): the password comes from REDISCLI_AUTH.
REDIS_READY = 'test "$(redis-cli -h 127.0.0.1 -p 6379 ping 2>&1)" = PONG'
REDIS_ALIVE = 'redis-cli -h 127.0.0.1 -p 6379 ping 2>&1 | grep -Eq "^(PONG|LOADING)"'
PG_READY = 'pg_isready -q -h 127.0.0.1 -p 5432 -U "$POSTGRES_USER" -d "$POSTGRES_DB"'


def _claim(bot: Bot, size: str, storage_class: str | None, component: str) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "accessModes": ["ReadWriteOnce"],
        "resources": {"requests": {"storage": size}},
    }
    if storage_class:
        spec["storageClassName"] = storage_class
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": "data", "labels": labels(bot, component)},
        "spec": spec,
    }


def _statefulset(
    bot: Bot, component: str, uid: int, container: dict[str, Any], volumes: list[dict], claim
) -> Manifest:
    policy = "Retain" if bot.spec.keep_data_on_delete else "Delete"
    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": metadata(bot, bot.child(component), component),
        "spec": {
            "replicas": 1,
            "serviceName": bot.child(component),
            "revisionHistoryLimit": 3,
            "podManagementPolicy": "OrderedReady",
            "updateStrategy": {"type": "RollingUpdate"},
            "persistentVolumeClaimRetentionPolicy": {"whenDeleted": policy, "whenScaled": "Retain"},
            "selector": {"matchLabels": selector_labels(bot, component)},
            "template": {
                "metadata": {"labels": labels(bot, component)},
                "spec": {
                    "securityContext": pod_security_context(uid),
                    "automountServiceAccountToken": False,
                    "enableServiceLinks": False,
                    "terminationGracePeriodSeconds": 30,
                    "containers": [container],
                    "volumes": volumes,
                    **scheduling(bot, component),
                },
            },
            "volumeClaimTemplates": [claim],
        },
    }


def render_redis(bot: Bot) -> Manifest:
    spec = bot.spec.redis
    tmp, tmp_mount = tmp_volume()
    auth = config.secret_env(bot, "REDIS_PASSWORD", name="REDISCLI_AUTH")
    container = {
        "name": "redis",
        "image": spec.image,
        "command": ["sh", "-c", REDIS_START],
        "env": [
            config.secret_env(bot, "REDIS_PASSWORD"),
            config.secret_env(bot, "ADVISOR_REDIS_PASSWORD"),
            auth,
        ],
        "ports": [{"name": "redis", "containerPort": config.REDIS_PORT, "protocol": "TCP"}],
        "resources": resources(spec.resources),
        "securityContext": container_security_context(),
        "volumeMounts": [
            {"name": "data", "mountPath": "/data"},
            {"name": "conf", "mountPath": "/conf"},
            tmp_mount,
        ],
        "livenessProbe": {
            "exec": {"command": ["sh", "-c", REDIS_ALIVE]},
            "initialDelaySeconds": 10,
            "periodSeconds": 10,
            "timeoutSeconds": 5,
            "failureThreshold": 6,
        },
        "readinessProbe": {
            "exec": {"command": ["sh", "-c", REDIS_READY]},
            "periodSeconds": 5,
            "timeoutSeconds": 3,
        },
    }
    volumes = [{"name": "conf", "emptyDir": {"sizeLimit": "1Mi"}}, tmp]
    claim = _claim(bot, spec.storage, spec.storage_class, "redis")
    return _statefulset(bot, "redis", REDIS_UID, container, volumes, claim)


def render_postgres(bot: Bot) -> Manifest:
    spec = bot.spec.postgres
    tmp, tmp_mount = tmp_volume()
    container = {
        "name": "postgres",
        "image": spec.image,
        "env": [
            {"name": "POSTGRES_USER", "value": config.POSTGRES_USER},
            {"name": "POSTGRES_DB", "value": config.POSTGRES_DB},
            config.secret_env(bot, "POSTGRES_PASSWORD"),
            {"name": "PGDATA", "value": "/var/lib/postgresql/data/pgdata"},
        ],
        "ports": [{"name": "postgres", "containerPort": config.POSTGRES_PORT, "protocol": "TCP"}],
        "resources": resources(spec.resources),
        "securityContext": container_security_context(),
        "volumeMounts": [
            {"name": "data", "mountPath": "/var/lib/postgresql/data"},
            {"name": "run", "mountPath": "/var/run/postgresql"},
            tmp_mount,
        ],
        "startupProbe": {
            "exec": {"command": ["sh", "-c", PG_READY]},
            "periodSeconds": 5,
            "failureThreshold": 60,
        },
        "livenessProbe": {
            "exec": {"command": ["sh", "-c", PG_READY]},
            "periodSeconds": 10,
            "timeoutSeconds": 5,
            "failureThreshold": 6,
        },
        "readinessProbe": {
            "exec": {"command": ["sh", "-c", PG_READY]},
            "periodSeconds": 5,
            "timeoutSeconds": 3,
        },
    }
    volumes = [{"name": "run", "emptyDir": {"sizeLimit": "1Mi"}}, tmp]
    claim = _claim(bot, spec.storage, spec.storage_class, "postgres")
    return _statefulset(bot, "postgres", POSTGRES_UID, container, volumes, claim)


def render_store_service(bot: Bot, component: str) -> Manifest:
    """Headless Service (stable DNS for the StatefulSet's one pod)."""
    port = config.REDIS_PORT if component == "redis" else config.POSTGRES_PORT
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata(bot, bot.child(component), component),
        "spec": {
            "clusterIP": "None",
            "publishNotReadyAddresses": False,
            "selector": selector_labels(bot, component),
            "ports": [{"name": component, "port": port, "targetPort": component}],
        },
    }


def store_ports() -> dict[str, int]:
    return {"redis": config.REDIS_PORT, "postgres": config.POSTGRES_PORT}

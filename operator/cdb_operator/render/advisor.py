"""The ML advisor's Deployment and Service, only when ``spec.advisor.enabled`` (off by default).

Shadow mode is also a matter of what the pod can reach: it logs in to the embedded Redis as
its own user, which may append to ``ml_signals`` but never to ``orders``, ``signals`` or the
breaker (cdb.redis_acl); it gets no other secret (no PostgreSQL password, no exchange keys,
no service-account token); and the NetworkPolicies let it talk to Redis and DNS only — there
is no route from it to the execution service, to PostgreSQL or to the internet. Its model is mounted read-only from
a ConfigMap or a PVC, or read from a path inside the image.
"""

from __future__ import annotations

from typing import Any

from cdb.redis_acl import ADVISOR_USER
from cdb_operator import model
from cdb_operator.render import config
from cdb_operator.render.common import (
    APP_UID,
    CONFIG_HASH,
    METRICS_LABEL,
    Bot,
    Manifest,
    container_security_context,
    image,
    labels,
    metadata,
    pod_security_context,
    resources,
    scheduling,
    selector_labels,
    tmp_volume,
)
from cdb_operator.render.services import probes

MODEL_DIR = "/models"


def wants_advisor(bot: Bot) -> bool:
    return bot.spec.advisor.enabled and bot.spec.advisor.model is not None


def model_source(bot: Bot) -> tuple[str, dict[str, Any] | None]:
    """(ADVISOR_MODEL_PATH, the pod volume holding it or None for a path in the image)."""
    source = bot.spec.advisor.model
    assert source is not None  # guarded by wants_advisor (and the CRD's rule)
    if source.config_map is not None:
        volume = {
            "name": "model",
            "configMap": {
                "name": source.config_map.name,
                "items": [{"key": source.config_map.key, "path": "model.json"}],
            },
        }
        return f"{MODEL_DIR}/model.json", volume
    if source.persistent_volume_claim is not None:
        pvc = source.persistent_volume_claim
        volume = {
            "name": "model",
            "persistentVolumeClaim": {"claimName": pvc.claim_name, "readOnly": True},
        }
        return f"{MODEL_DIR}/{pvc.path}", volume
    return str(source.path), None


def advisor_redis_env(bot: Bot) -> list[dict[str, Any]]:
    """Its Redis login: the advisor's own user on the embedded Redis (cdb.redis_acl: Redis
    refuses it every write but its own streams); an external Redis's one password, which
    the operator cannot narrow (docs/advisor.md)."""
    if bot.spec.redis.mode == "external":
        return config.redis_password_env(bot)
    return [
        {"name": "REDIS_USERNAME", "value": ADVISOR_USER},
        config.secret_env(bot, "ADVISOR_REDIS_PASSWORD", name="REDIS_PASSWORD"),
    ]


def advisor_env(bot: Bot, model_path: str) -> list[dict[str, Any]]:
    a = bot.spec.advisor
    return [
        {"name": "HTTP_PORT", "value": str(model.ADVISOR_PORT)},
        {"name": "CDB_CONSUMER_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        *advisor_redis_env(bot),
        {"name": "ADVISOR_MODEL_PATH", "value": model_path},
        {"name": "ADVISOR_THRESHOLD", "value": f"{a.threshold:g}"},
        {"name": "ADVISOR_COOLDOWN_S", "value": str(a.cooldown_seconds)},
    ]


def render_advisor_deployment(bot: Bot) -> Manifest:
    name = model.ADVISOR
    path, volume = model_source(bot)
    tmp, tmp_mount = tmp_volume()
    mounts = [tmp_mount]
    volumes = [tmp]
    if volume is not None:
        volumes.append(volume)
        mounts.append({"name": "model", "mountPath": MODEL_DIR, "readOnly": True})
    container = {
        "name": name,
        "image": image(bot),
        "imagePullPolicy": bot.spec.image.pull_policy,
        "command": ["cdb"],
        "args": ["run", name],
        "envFrom": config.env_from(bot),
        "env": advisor_env(bot, path),
        "securityContext": container_security_context(),
        "volumeMounts": mounts,
        "ports": [{"name": "http", "containerPort": model.ADVISOR_PORT, "protocol": "TCP"}],
        "resources": resources(bot.spec.advisor.resources),
        # as every service's: liveness never asks a dependency (a Redis restart must not
        # restart the advisor), readiness does
        **probes(),
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": metadata(bot, bot.child(name), name),
        "spec": {
            "replicas": 1,  # its feature windows live in memory, like the signal engine's
            "revisionHistoryLimit": 3,
            "selector": {"matchLabels": selector_labels(bot, name)},
            "strategy": {"type": "Recreate"},
            "template": {
                "metadata": {
                    "labels": labels(bot, name),
                    "annotations": {CONFIG_HASH: config.config_hash(bot)},
                },
                "spec": {
                    "securityContext": pod_security_context(APP_UID),
                    "automountServiceAccountToken": False,
                    "enableServiceLinks": False,
                    "terminationGracePeriodSeconds": 30,
                    "containers": [container],
                    "volumes": volumes,
                    **scheduling(bot),
                },
            },
        },
    }


def render_advisor_service(bot: Bot) -> Manifest:
    """A ClusterIP Service for its /metrics (the ServiceMonitor scrapes it like the others)."""
    meta = metadata(bot, bot.child(model.ADVISOR), model.ADVISOR)
    meta["labels"][METRICS_LABEL] = "true"
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": meta,
        "spec": {
            "type": "ClusterIP",
            "selector": selector_labels(bot, model.ADVISOR),
            "ports": [
                {
                    "name": "http",
                    "port": model.ADVISOR_PORT,
                    "targetPort": "http",
                    "protocol": "TCP",
                }
            ],
        },
    }


def render_advisor(bot: Bot) -> list[Manifest]:
    """The advisor's Service and Deployment, or nothing when it is not enabled."""
    if not wants_advisor(bot):
        return []
    return [render_advisor_service(bot), render_advisor_deployment(bot)]

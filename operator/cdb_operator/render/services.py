"""One Deployment and one Service per trading service (``cdb run NAME``).

Risk and execution run exactly one replica with the ``Recreate`` strategy, so even a
rollout never has two of them; feed and signal keep in-memory windows and do the same.
Services that write PostgreSQL run ``cdb db migrate`` in an init container first; the
dashboard only reads it. The dashboard's optional Ingress is in ``render.dashboard``.
"""

from __future__ import annotations

from typing import Any

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


def replicas(bot: Bot, service: str) -> int:
    """The service's replicas; zero while a restore runs (nothing may write the database)."""
    if bot.restoring:
        return 0
    spec = getattr(bot.spec.services, service)
    return spec.replicas if service in model.SCALABLE else 1


def service_env(bot: Bot, service: str) -> list[dict[str, Any]]:
    env: list[dict[str, Any]] = [
        {"name": "HTTP_PORT", "value": str(model.SERVICE_PORTS[service])},
        {"name": "CDB_CONSUMER_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        *config.redis_password_env(bot),
    ]
    if service in model.POSTGRES_USERS or service in model.POSTGRES_READERS:
        env.append(config.postgres_password_env(bot))
    if service == "execution":
        env.extend(config.credentials_env(bot))
    if service == "dashboard":
        env.extend(dashboard_env(bot))
    return env


def dashboard_env(bot: Bot) -> list[dict[str, Any]]:
    """Where the notifier is, and its token (from the notifier's Secret, when it has one)."""
    port = model.SERVICE_PORTS["notifier"]
    env: list[dict[str, Any]] = [
        {"name": "NOTIFIER_URL", "value": f"http://{bot.child('notifier')}:{port}"}
    ]
    secret = bot.spec.services.notifier.env_secret
    if secret:
        ref = {"name": secret, "key": "NOTIFIER_API_TOKEN", "optional": True}
        env.append({"name": "NOTIFIER_API_TOKEN", "valueFrom": {"secretKeyRef": ref}})
    return env


def _container(bot: Bot, name: str, args: list[str], env: list[dict[str, Any]]) -> dict:
    return {
        "name": name,
        "image": image(bot),
        "imagePullPolicy": bot.spec.image.pull_policy,
        "command": ["cdb"],
        "args": args,
        "envFrom": config.env_from(bot),
        "env": env,
        "securityContext": container_security_context(),
        "volumeMounts": [tmp_volume()[1]],
    }


def probes() -> dict[str, dict[str, Any]]:
    """The three probes of a service container, each asking what it is for.

    - startup: ``/livez`` every 5 s, up to 60 times: 5 minutes for a first connect and setup
      (the risk manager rebuilding its state from a large database, a database still
      migrating or recovering), matching the runtime's ``STARTUP_TIMEOUT_S`` (300 s); the
      migration itself runs before, in the init container, which no probe times.
    - liveness: ``/livez`` every 10 s, 3 failures: a process whose loop has not ticked for
      ``LIVENESS_TIMEOUT_S`` (60 s) or lost a vital thread is restarted ~30 s later; never
      for a dependency's outage.
    - readiness: ``/readyz`` every 3 s, 2 failures: NotReady within ~6 s of an outage, Ready
      again at the first success — with the runtime's 5 s back-off cap, within 10 s of the
      dependency's return.
    """
    http = {"port": "http"}
    return {
        "startupProbe": {
            "httpGet": {"path": "/livez", **http},
            "timeoutSeconds": 3,
            "periodSeconds": 5,
            "failureThreshold": 60,
        },
        "livenessProbe": {
            "httpGet": {"path": "/livez", **http},
            "timeoutSeconds": 3,
            "periodSeconds": 10,
            "failureThreshold": 3,
        },
        "readinessProbe": {
            "httpGet": {"path": "/readyz", **http},
            "timeoutSeconds": 3,
            "periodSeconds": 3,
            "failureThreshold": 2,
        },
    }


def render_deployment(bot: Bot, service: str) -> Manifest:
    port = model.SERVICE_PORTS[service]
    spec = getattr(bot.spec.services, service)
    env = service_env(bot, service)
    main = _container(bot, service, ["run", service], env)
    secret = getattr(spec, "env_secret", None)
    if secret:
        main["envFrom"] = [*main["envFrom"], {"secretRef": {"name": secret}}]
    main["ports"] = [{"name": "http", "containerPort": port, "protocol": "TCP"}]
    main["resources"] = resources(spec.resources)
    main.update(probes())
    pod: dict[str, Any] = {
        "securityContext": pod_security_context(APP_UID),
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "terminationGracePeriodSeconds": 30,
        "containers": [main],
        "volumes": [tmp_volume()[0]],
        **scheduling(bot, service),
    }
    if service in model.POSTGRES_USERS:
        migrate = _container(bot, "migrate", ["db", "migrate"], env)
        migrate["resources"] = resources(spec.resources)
        pod["initContainers"] = [migrate]
    single = service not in model.SCALABLE
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": metadata(bot, bot.child(service), service),
        "spec": {
            "replicas": replicas(bot, service),
            "revisionHistoryLimit": 3,
            "selector": {"matchLabels": selector_labels(bot, service)},
            "strategy": {"type": "Recreate"} if single else {"type": "RollingUpdate"},
            "template": {
                "metadata": {
                    "labels": labels(bot, service),
                    "annotations": {CONFIG_HASH: config.config_hash(bot)},
                },
                "spec": pod,
            },
        },
    }


def render_service(bot: Bot, service: str) -> Manifest:
    meta = metadata(bot, bot.child(service), service)
    meta["labels"][METRICS_LABEL] = "true"
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": meta,
        "spec": {
            "type": "ClusterIP",
            "selector": selector_labels(bot, service),
            "ports": [
                {
                    "name": "http",
                    "port": model.SERVICE_PORTS[service],
                    "targetPort": "http",
                    "protocol": "TCP",
                }
            ],
        },
    }

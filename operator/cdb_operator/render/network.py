"""NetworkPolicies: deny everything for the bot's pods, then allow only what each needs.

Allowed: DNS for all; every service (and the ML advisor, when enabled: Redis is all it
reaches) → Redis; the writers and the backup → PostgreSQL;
the backup → Redis (RDB snapshot); feed, execution and notifier → port 443 (exchange,
web push); the operator's namespace → Redis (breaker control); the monitoring namespace →
the services' metrics ports; dashboard → notifier (push subscriptions), PostgreSQL (read)
and Redis; the ingress controller's namespace → the dashboard, when its Ingress is on.
"""

from __future__ import annotations

from typing import Any

from cdb_operator import model
from cdb_operator.render import config
from cdb_operator.render.advisor import wants_advisor
from cdb_operator.render.common import Bot, Manifest, instance_labels, metadata

OPERATOR_POD_LABELS = {"app.kubernetes.io/name": "cdb-operator"}
NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"


def _pods(bot: Bot, components: tuple[str, ...] | list[str]) -> dict[str, Any]:
    """A podSelector for some of this bot's components."""
    return {
        "matchLabels": instance_labels(bot),
        "matchExpressions": [
            {"key": "app.kubernetes.io/component", "operator": "In", "values": list(components)}
        ],
    }


def _namespace(name: str) -> dict[str, Any]:
    return {"matchLabels": {NAMESPACE_NAME_LABEL: name}}


def _policy(bot: Bot, suffix: str, pods: dict[str, Any], **rules: Any) -> Manifest:
    types = [t for t, key in (("Ingress", "ingress"), ("Egress", "egress")) if key in rules]
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": metadata(bot, bot.child(f"np-{suffix}"), "network-policy"),
        "spec": {"podSelector": pods, "policyTypes": types, **rules},
    }


def _tcp(port: int | str) -> dict[str, Any]:
    return {"protocol": "TCP", "port": port}


def render_network_policies(bot: Bot) -> list[Manifest]:
    if not bot.spec.network_policy.enabled:
        return []
    np = bot.spec.network_policy
    services = list(model.SERVICES)
    ports = list(model.SERVICE_PORTS.values())
    if wants_advisor(bot):
        services.append(model.ADVISOR)
        ports.append(model.ADVISOR_PORT)
    redis_clients = [*services, "backup"]
    pg_clients = [*model.POSTGRES_USERS, *model.POSTGRES_READERS, "backup"]
    everyone = {"matchLabels": instance_labels(bot)}
    policies = [
        _policy(bot, "default-deny", everyone, ingress=[], egress=[]),
        _policy(
            bot,
            "dns",
            everyone,
            egress=[
                {
                    "to": [
                        {
                            "namespaceSelector": {},
                            "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}},
                        }
                    ],
                    "ports": [{"protocol": "UDP", "port": 53}, _tcp(53)],
                }
            ],
        ),
        *_store_policies(bot, redis_clients, pg_clients),
        _policy(
            bot,
            "internet",
            _pods(bot, model.INTERNET_USERS),
            egress=[
                {"to": [{"ipBlock": {"cidr": c}} for c in np.egress_cidrs], "ports": [_tcp(443)]}
            ],
        ),
        _policy(
            bot,
            "metrics",
            _pods(bot, services),
            ingress=[
                {
                    "from": [{"namespaceSelector": _namespace(np.monitoring_namespace)}],
                    "ports": [_tcp(p) for p in ports],
                }
            ],
        ),
        *_dashboard_policies(bot),
    ]
    return policies


def _store_policies(bot: Bot, redis_clients: list[str], pg_clients: list[str]) -> list[Manifest]:
    """Ingress to the embedded stores and egress to them; to an external store, egress on
    its port to any address (a NetworkPolicy cannot name a host); to a CloudNativePG
    Cluster, egress to its instances (CloudNativePG's pods carry ``cnpg.io/cluster``)."""
    np = bot.spec.network_policy
    out = []
    r, pg = bot.spec.redis, bot.spec.postgres
    if r.mode == "embedded":
        operator_pods = {
            "namespaceSelector": _namespace(np.operator_namespace or bot.operator_namespace),
            "podSelector": {"matchLabels": dict(OPERATOR_POD_LABELS)},
        }
        out.append(
            _policy(
                bot,
                "redis",
                _pods(bot, ["redis"]),
                ingress=[
                    {
                        "from": [{"podSelector": _pods(bot, redis_clients)}, operator_pods],
                        "ports": [_tcp(config.REDIS_PORT)],
                    }
                ],
            )
        )
        to_redis = {
            "to": [{"podSelector": _pods(bot, ["redis"])}],
            "ports": [_tcp(config.REDIS_PORT)],
        }
    else:
        to_redis = {"ports": [_tcp(r.external.port)]}
    out.append(_policy(bot, "to-redis", _pods(bot, redis_clients), egress=[to_redis]))
    if pg.mode == "embedded":
        out.append(
            _policy(
                bot,
                "postgres",
                _pods(bot, ["postgres"]),
                ingress=[
                    {
                        "from": [{"podSelector": _pods(bot, pg_clients)}],
                        "ports": [_tcp(config.POSTGRES_PORT)],
                    }
                ],
            )
        )
        to_pg = {
            "to": [{"podSelector": _pods(bot, ["postgres"])}],
            "ports": [_tcp(config.POSTGRES_PORT)],
        }
    elif pg.mode == "cloudnativepg":
        cnpg_pods = {"matchLabels": {"cnpg.io/cluster": config.cnpg_name(bot)}}
        to_pg = {"to": [{"podSelector": cnpg_pods}], "ports": [_tcp(config.POSTGRES_PORT)]}
    else:
        to_pg = {"ports": [_tcp(pg.external.port)]}
    out.append(_policy(bot, "to-postgres", _pods(bot, pg_clients), egress=[to_pg]))
    return out


def _dashboard_policies(bot: Bot) -> list[Manifest]:
    """Dashboard → notifier (web-push subscriptions); the ingress controller → dashboard."""
    notifier_port = _tcp(model.SERVICE_PORTS["notifier"])
    out = [
        _policy(
            bot,
            "notifier-from-dashboard",
            _pods(bot, ["notifier"]),
            ingress=[
                {"from": [{"podSelector": _pods(bot, ["dashboard"])}], "ports": [notifier_port]}
            ],
        ),
        _policy(
            bot,
            "dashboard-to-notifier",
            _pods(bot, ["dashboard"]),
            egress=[{"to": [{"podSelector": _pods(bot, ["notifier"])}], "ports": [notifier_port]}],
        ),
    ]
    ingress = bot.spec.services.dashboard.ingress
    if ingress.enabled:
        out.append(
            _policy(
                bot,
                "dashboard-from-ingress",
                _pods(bot, ["dashboard"]),
                ingress=[
                    {
                        "from": [{"namespaceSelector": _namespace(ingress.controller_namespace)}],
                        "ports": [_tcp(model.SERVICE_PORTS["dashboard"])],
                    }
                ],
            )
        )
    return out

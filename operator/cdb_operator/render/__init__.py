"""Pure rendering: a TradingBot → the manifests of its children, one builder per kind.

The datastores follow ``redis.mode`` / ``postgres.mode``: embedded → StatefulSet and
Service; cloudnativepg → a CloudNativePG Cluster; external → nothing (the services are
pointed at it by the ConfigMap and the password Secret the user names).

Never imports kopf or the Kubernetes client (a test checks it). ``render_children``
returns everything except the generated-password Secret, whose values the caller makes
once (``config.render_secret``).
"""

from __future__ import annotations

from cdb_operator import model
from cdb_operator.render.advisor import render_advisor
from cdb_operator.render.backup import render_backup_cronjob, render_backup_pvc
from cdb_operator.render.cnpg import render_cnpg_cluster
from cdb_operator.render.common import Bot, Manifest
from cdb_operator.render.config import render_configmap, render_secret
from cdb_operator.render.dashboard import render_dashboard_ingress
from cdb_operator.render.datastores import render_postgres, render_redis, render_store_service
from cdb_operator.render.disruption import render_disruption_budgets
from cdb_operator.render.monitoring import render_service_monitor, wants_service_monitor
from cdb_operator.render.network import render_network_policies
from cdb_operator.render.services import render_deployment, render_service

__all__ = ["Bot", "Manifest", "render_children", "render_secret", "key_of"]


def render_children(bot: Bot) -> list[Manifest]:
    """Every child object except the Secret, in the order they are applied."""
    out: list[Manifest] = [render_configmap(bot)]
    out += render_network_policies(bot)
    if bot.spec.redis.mode == "embedded":
        out += [render_store_service(bot, "redis"), render_redis(bot)]
    if bot.spec.postgres.mode == "embedded":
        out += [render_store_service(bot, "postgres"), render_postgres(bot)]
    elif bot.spec.postgres.mode == "cloudnativepg":
        out.append(render_cnpg_cluster(bot, wants_service_monitor(bot)))
    for service in model.SERVICES:
        out += [render_service(bot, service), render_deployment(bot, service)]
    out += render_disruption_budgets(bot)
    out += render_dashboard_ingress(bot)
    out += render_advisor(bot)
    if bot.spec.backup.enabled:
        out += [render_backup_pvc(bot), render_backup_cronjob(bot)]
    out += render_service_monitor(bot)
    return out


def key_of(obj: Manifest) -> tuple[str, str, str]:
    """(apiVersion, kind, name): what identifies a child within its namespace."""
    return obj["apiVersion"], obj["kind"], obj["metadata"]["name"]

"""Pure rendering: a TradingBot → the manifests of its children, one builder per kind.

Never imports kopf or the Kubernetes client (a test checks it). ``render_children``
returns everything except the generated-password Secret, whose values the caller makes
once (``config.render_secret``).
"""

from __future__ import annotations

from cdb_operator import model
from cdb_operator.render.advisor import render_advisor
from cdb_operator.render.backup import render_backup_cronjob, render_backup_pvc
from cdb_operator.render.common import Bot, Manifest
from cdb_operator.render.config import render_configmap, render_secret
from cdb_operator.render.dashboard import render_dashboard_ingress
from cdb_operator.render.datastores import render_postgres, render_redis, render_store_service
from cdb_operator.render.monitoring import render_service_monitor
from cdb_operator.render.network import render_network_policies
from cdb_operator.render.services import render_deployment, render_service

__all__ = ["Bot", "Manifest", "render_children", "render_secret", "key_of"]


def render_children(bot: Bot) -> list[Manifest]:
    """Every child object except the Secret, in the order they are applied."""
    out: list[Manifest] = [render_configmap(bot)]
    out += render_network_policies(bot)
    for store, render in (("redis", render_redis), ("postgres", render_postgres)):
        out += [render_store_service(bot, store), render(bot)]
    for service in model.SERVICES:
        out += [render_service(bot, service), render_deployment(bot, service)]
    out += render_dashboard_ingress(bot)
    out += render_advisor(bot)
    if bot.spec.backup.enabled:
        out += [render_backup_pvc(bot), render_backup_cronjob(bot)]
    out += render_service_monitor(bot)
    return out


def key_of(obj: Manifest) -> tuple[str, str, str]:
    """(apiVersion, kind, name): what identifies a child within its namespace."""
    return obj["apiVersion"], obj["kind"], obj["metadata"]["name"]

"""PodDisruptionBudgets (policy/v1): a voluntary eviction never takes all of a part.

- the embedded Redis and PostgreSQL (one pod each): ``maxUnavailable: 0``, so a node
  drain waits until a person moves the bot (the Kubernetes docs' pattern for a
  single-instance stateful application); the bus and the database never vanish under a
  running bot by surprise;
- every service running more than one replica: ``maxUnavailable: 1``;
- CloudNativePG makes its Cluster's own budgets (``enablePDB``).

Single-replica services (feed, signal, risk, execution) get none: they are restarted
elsewhere and resume from the bus; a budget would only block drains.
"""

from __future__ import annotations

from cdb_operator import model
from cdb_operator.render.common import Bot, Manifest, metadata, selector_labels
from cdb_operator.render.services import replicas


def _budget(bot: Bot, component: str, max_unavailable: int) -> Manifest:
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": metadata(bot, bot.child(component), component),
        "spec": {
            "maxUnavailable": max_unavailable,
            "selector": {"matchLabels": selector_labels(bot, component)},
            "unhealthyPodEvictionPolicy": "AlwaysAllow",
        },
    }


def render_disruption_budgets(bot: Bot) -> list[Manifest]:
    if not bot.spec.pod_disruption_budgets.enabled:
        return []
    out = []
    if bot.spec.redis.mode == "embedded":
        out.append(_budget(bot, "redis", 0))
    if bot.spec.postgres.mode == "embedded":
        out.append(_budget(bot, "postgres", 0))
    for service in model.SCALABLE:
        if replicas(bot, service) > 1:
            out.append(_budget(bot, service, 1))
    return out

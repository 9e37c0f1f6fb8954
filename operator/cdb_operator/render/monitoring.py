"""A ServiceMonitor (prometheus-operator) scraping every service's /metrics.

Rendered only when the ``monitoring.coreos.com/v1`` API exists (the apply layer asks
the cluster and passes the answer in ``Bot.monitoring_api``) and monitoring is not
disabled; otherwise nothing, and no error.
"""

from __future__ import annotations

from cdb_operator import model
from cdb_operator.render.common import METRICS_LABEL, Bot, Manifest, instance_labels, metadata

API_VERSION = "monitoring.coreos.com/v1"


#: Target labels every series gets: ``bot`` (the TradingBot's name, so two bots in one
#: namespace stay apart) and ``service`` (feed, signal, risk, ... instead of the Kubernetes
#: Service's name; the services export no ``service`` label of their own, so nothing is
#: renamed ``exported_service``). The dashboard and the alert rules group by both.
RELABELINGS = [
    {
        "sourceLabels": ["__meta_kubernetes_service_label_app_kubernetes_io_instance"],
        "targetLabel": "bot",
        "action": "replace",
    },
    {
        "sourceLabels": ["__meta_kubernetes_service_label_app_kubernetes_io_component"],
        "targetLabel": "service",
        "action": "replace",
    },
]


def wants_service_monitor(bot: Bot) -> bool:
    return bot.spec.monitoring.service_monitor != "disabled" and bot.monitoring_api


def render_service_monitor(bot: Bot) -> list[Manifest]:
    if not wants_service_monitor(bot):
        return []
    meta = metadata(bot, bot.child("metrics"), "metrics")
    # the standard labels win: a user label must not break our own selection of children
    meta["labels"] = {**bot.spec.monitoring.service_monitor_labels, **meta["labels"]}
    return [
        {
            "apiVersion": API_VERSION,
            "kind": "ServiceMonitor",
            "metadata": meta,
            "spec": {
                "selector": {"matchLabels": {**instance_labels(bot), METRICS_LABEL: "true"}},
                "namespaceSelector": {"matchNames": [bot.namespace]},
                "endpoints": [
                    {
                        "port": "http",
                        "path": "/metrics",
                        "interval": bot.spec.monitoring.interval,
                        "scheme": "http",
                        "relabelings": RELABELINGS,
                    }
                ],
                "targetLabels": ["app.kubernetes.io/component"],
            },
        }
    ]


#: For docs and tests: the services the ServiceMonitor scrapes.
SCRAPED = model.SERVICES

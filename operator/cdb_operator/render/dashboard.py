"""The dashboard's optional Ingress (``spec.services.dashboard.ingress``).

Its Deployment and Service are rendered like every service's (``render.services``); the
NetworkPolicy admitting the ingress controller is in ``render.network``.
"""

from __future__ import annotations

from typing import Any

from cdb_operator import model
from cdb_operator.render.common import Bot, Manifest, metadata


def render_dashboard_ingress(bot: Bot) -> list[Manifest]:
    """``[]`` unless enabled; else one ``networking.k8s.io/v1`` Ingress to the Service."""
    spec = bot.spec.services.dashboard.ingress
    if not spec.enabled:
        return []
    meta = metadata(bot, bot.child("dashboard"), "dashboard")
    if spec.annotations:
        meta["annotations"] = dict(spec.annotations)
    backend = {
        "service": {
            "name": bot.child("dashboard"),
            "port": {"number": model.SERVICE_PORTS["dashboard"]},
        }
    }
    rule: dict[str, Any] = {
        "http": {"paths": [{"path": "/", "pathType": "Prefix", "backend": backend}]}
    }
    if spec.host:
        rule["host"] = spec.host
    body: dict[str, Any] = {"rules": [rule]}
    if spec.class_name:
        body["ingressClassName"] = spec.class_name
    if spec.tls_secret:
        tls: dict[str, Any] = {"secretName": spec.tls_secret}
        if spec.host:
            tls["hosts"] = [spec.host]
        body["tls"] = [tls]
    return [
        {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "Ingress",
            "metadata": meta,
            "spec": body,
        }
    ]

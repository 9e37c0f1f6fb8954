"""The CloudNativePG ``Cluster`` of a bot in ``postgres.mode: cloudnativepg`` (pure).

CloudNativePG (postgresql.cnpg.io/v1, checked against its v1.30.0 CRD) runs the
instances, fails over to a standby, and makes the Services ``<cluster>-rw`` (the primary),
``-ro``/``-r`` and the Secret ``<cluster>-app`` (``username``, ``password``) of the
application user. The bot's database and user come from ``bootstrap.initdb``: the same
names as the embedded PostgreSQL, so the services, migrations, ``cdb backup`` and
``cdb restore`` work unchanged. CloudNativePG makes its own PodDisruptionBudgets
(``enablePDB``) and, with ``enablePodAntiAffinity``, keeps instances on different nodes.
"""

from __future__ import annotations

from typing import Any

from cdb_operator.render import config
from cdb_operator.render.common import Bot, Manifest, metadata, resources

API_VERSION = "postgresql.cnpg.io/v1"
KIND = "Cluster"


def render_cnpg_cluster(bot: Bot, monitoring: bool) -> Manifest:
    """The Cluster; ``monitoring``: a PodMonitor too (the bot's ServiceMonitor is made)."""
    spec = bot.spec
    pg = spec.postgres
    storage: dict[str, Any] = {"size": pg.storage}
    if pg.storage_class:
        storage["storageClass"] = pg.storage_class
    affinity: dict[str, Any] = {
        "enablePodAntiAffinity": True,
        "topologyKey": spec.topology_spread.topology_key or "kubernetes.io/hostname",
        "podAntiAffinityType": "required"
        if spec.topology_spread.when_unsatisfiable == "DoNotSchedule"
        else "preferred",
    }
    if spec.node_selector:
        affinity["nodeSelector"] = dict(spec.node_selector)
    if spec.tolerations:
        affinity["tolerations"] = [
            t.model_dump(by_alias=True, exclude_none=True) for t in spec.tolerations
        ]
    cluster: dict[str, Any] = {
        "instances": pg.cloudnativepg.instances,
        "primaryUpdateStrategy": "unsupervised",
        "enableSuperuserAccess": False,
        "enablePDB": spec.pod_disruption_budgets.enabled,
        "storage": storage,
        "resources": resources(pg.resources),
        "affinity": affinity,
        "bootstrap": {
            "initdb": {"database": config.POSTGRES_DB, "owner": config.POSTGRES_USER},
        },
        "monitoring": {"enablePodMonitor": monitoring},
    }
    if pg.cloudnativepg.image_name:
        cluster["imageName"] = pg.cloudnativepg.image_name
    if spec.priority_class_name:
        cluster["priorityClassName"] = spec.priority_class_name
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": metadata(bot, config.cnpg_name(bot), "postgres"),
        "spec": cluster,
    }


def cluster_readiness(live: dict[str, Any]) -> dict[str, Any]:
    """``status.components.postgres`` of a Cluster: ready when every instance is ready."""
    want = int((live.get("spec") or {}).get("instances", 1) or 0)
    ready = int((live.get("status") or {}).get("readyInstances", 0) or 0)
    return {
        "kind": KIND,
        "ready": want > 0 and ready >= want,
        "readyReplicas": ready,
        "replicas": want,
    }

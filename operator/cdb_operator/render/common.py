"""Shared pieces of every rendered object: the bot's identity, names, labels, owner, pod basics.

Pure: takes a :class:`Bot` (name, namespace, uid and the parsed spec) and returns plain
dicts. Nothing here talks to Kubernetes; the apply layer does.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cdb_operator import model

PART_OF = "claire-de-binare"
MANAGED_BY = "cdb-operator"
#: Label on the Services whose /metrics the ServiceMonitor scrapes.
METRICS_LABEL = f"{model.GROUP}/metrics"
#: Annotation with a hash of the rendered config, so a config change rolls the pods.
CONFIG_HASH = f"{model.GROUP}/config-hash"
#: Uid/gid of the project's image (Dockerfile.base: USER 1000:1000).
APP_UID = 1000

Manifest = dict[str, Any]


@dataclass(frozen=True)
class Bot:
    """What rendering needs to know about one TradingBot."""

    name: str
    namespace: str
    uid: str
    spec: model.TradingBotSpec
    #: Whether the monitoring.coreos.com/v1 API exists in the cluster (asked by the apply layer).
    monitoring_api: bool = False
    #: Where the operator runs, unless ``networkPolicy.operatorNamespace`` says otherwise.
    operator_namespace: str = "cdb-system"
    #: A restore (``spec.restore``) is under way: services at zero, backups suspended.
    restoring: bool = False

    def child(self, component: str) -> str:
        """The name of a child object: ``<bot>-<component>``."""
        return f"{self.name}-{component}"


def selector_labels(bot: Bot, component: str) -> dict[str, str]:
    """The labels that select one component's pods (never change: selectors are immutable)."""
    return {
        "app.kubernetes.io/name": PART_OF,
        "app.kubernetes.io/instance": bot.name,
        "app.kubernetes.io/component": component,
    }


def instance_labels(bot: Bot) -> dict[str, str]:
    """Every object and pod of this bot carries these (NetworkPolicies select on them)."""
    return {"app.kubernetes.io/name": PART_OF, "app.kubernetes.io/instance": bot.name}


def labels(bot: Bot, component: str) -> dict[str, str]:
    """The standard ``app.kubernetes.io/*`` labels of a child object."""
    return {
        **selector_labels(bot, component),
        "app.kubernetes.io/part-of": PART_OF,
        "app.kubernetes.io/managed-by": MANAGED_BY,
        "app.kubernetes.io/version": bot.spec.image.tag[:63],
    }


def owner_reference(bot: Bot) -> dict[str, Any]:
    """Makes the TradingBot the controller of a child: deleting the bot deletes the child."""
    return {
        "apiVersion": model.API_VERSION,
        "kind": model.KIND,
        "name": bot.name,
        "uid": bot.uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


def metadata(bot: Bot, name: str, component: str, *, owned: bool = True) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "name": name,
        "namespace": bot.namespace,
        "labels": labels(bot, component),
    }
    if owned:
        meta["ownerReferences"] = [owner_reference(bot)]
    return meta


def pod_security_context(uid: int) -> dict[str, Any]:
    """Pod Security Standard *restricted*, pod level."""
    return {
        "runAsNonRoot": True,
        "runAsUser": uid,
        "runAsGroup": uid,
        "fsGroup": uid,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def container_security_context() -> dict[str, Any]:
    """Pod Security Standard *restricted*, container level, with a read-only root."""
    return {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def scheduling(bot: Bot, component: str | None = None) -> dict[str, Any]:
    """nodeSelector / affinity / tolerations / priorityClassName of every pod (amd64 nodes by
    default), and for a long-running ``component`` the topology spread of its own pods."""
    spec = bot.spec
    out: dict[str, Any] = {}
    if spec.priority_class_name:
        out["priorityClassName"] = spec.priority_class_name
    spread = spec.topology_spread
    if component and spread.topology_key:
        out["topologySpreadConstraints"] = [
            {
                "maxSkew": 1,
                "topologyKey": spread.topology_key,
                "whenUnsatisfiable": spread.when_unsatisfiable,
                "labelSelector": {"matchLabels": selector_labels(bot, component)},
            }
        ]
    if spec.node_selector:
        out["nodeSelector"] = dict(spec.node_selector)
    if spec.affinity:
        out["affinity"] = spec.affinity
    if spec.tolerations:
        out["tolerations"] = [
            t.model_dump(by_alias=True, exclude_none=True) for t in spec.tolerations
        ]
    return out


def resources(res: model.Resources) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if res.requests:
        out["requests"] = {k: str(v) for k, v in res.requests.items()}
    if res.limits:
        out["limits"] = {k: str(v) for k, v in res.limits.items()}
    return out


def tmp_volume() -> tuple[dict[str, Any], dict[str, Any]]:
    """An emptyDir for /tmp (the root filesystem is read-only): (volume, mount)."""
    return (
        {"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}},
        {"name": "tmp", "mountPath": "/tmp"},
    )


def image(bot: Bot) -> str:
    return f"{bot.spec.image.repository}:{bot.spec.image.tag}"

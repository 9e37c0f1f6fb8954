"""Objects the way a real API server stores and lists them, for kmock (which keeps them as sent).

A real kube-apiserver decodes every write into its Go type and encodes it back, so what
a client reads differs from what it wrote:

- fields tagged ``omitempty`` vanish when empty: ``ingress: []``, ``env: []``, ``value: ""``,
  ``labels: {}`` and nulls are gone (map *entries* are kept, even with an empty value);
- the type's defaulting functions fill fields (``SetDefaults_*`` in pkg/apis/*/v1/defaults.go):
  a Deployment's strategy and revisionHistoryLimit, a container's terminationMessagePath,
  a port's protocol, a Service's clusterIP, a NetworkPolicy's policyTypes, ...;
- quantities come back canonical (``"0.5"`` → ``"500m"``);
- metadata gains uid, resourceVersion, generation, creationTimestamp, managedFields;
- items of a LIST response carry no ``apiVersion``/``kind``.

:func:`stored` applies all of that to one object as it would be listed. The defaults
covered are those of the fields the operator renders or leaves out next to them; they are
taken from the Kubernetes v1.28 defaulting functions.
"""

from __future__ import annotations

import copy
from decimal import Decimal
from typing import Any

#: Keys whose values are maps (entries are kept even when empty); everything else is a struct.
MAP_KEYS = {
    "labels",
    "annotations",
    "data",
    "stringData",
    "binaryData",
    "matchLabels",
    "nodeSelector",
    "requests",
    "limits",
    "selector",
}


def drop_empty(value: Any, is_map: bool = False) -> Any:
    """Go's ``omitempty``: drop null, empty lists/maps/strings from structs (recursively)."""
    if isinstance(value, dict):
        out = {}
        for key, sub in value.items():
            sub = drop_empty(sub, key in MAP_KEYS and isinstance(sub, dict))
            if not is_map and (sub is None or sub == [] or sub == "" or sub == {}):
                # an empty struct behind a pointer (emptyDir: {}, podSelector: {}) is kept
                if sub == {} and key in ("emptyDir", "podSelector", "namespaceSelector"):
                    out[key] = sub
                continue
            out[key] = sub
        return out
    if isinstance(value, list):
        return [drop_empty(v) for v in value]
    return value


def canonical_quantity(value: Any) -> Any:
    """The canonical form of a plain decimal quantity: 0.5 → 500m, 1.0 → 1, 2 → "2"."""
    text = str(value)
    try:
        amount = Decimal(text)
    except ArithmeticError:
        return text  # has a suffix (Mi, Gi, m): already canonical for the values used here
    if amount == amount.to_integral_value():
        return str(int(amount))
    milli = amount * 1000
    return f"{int(milli)}m" if milli == milli.to_integral_value() else text


def _quantities(resources: dict[str, Any] | None) -> None:
    for part in ("requests", "limits"):
        for key, value in ((resources or {}).get(part) or {}).items():
            resources[part][key] = canonical_quantity(value)


def _probe(probe: dict[str, Any] | None) -> None:
    if not probe:
        return
    for key, value in (
        ("timeoutSeconds", 1),
        ("periodSeconds", 10),
        ("successThreshold", 1),
        ("failureThreshold", 3),
    ):
        probe.setdefault(key, value)
    if "httpGet" in probe:
        probe["httpGet"].setdefault("scheme", "HTTP")


def _container(c: dict[str, Any]) -> None:
    c.setdefault("terminationMessagePath", "/dev/termination-log")
    c.setdefault("terminationMessagePolicy", "File")
    tag = c.get("image", "").rpartition(":")[2]
    c.setdefault("imagePullPolicy", "Always" if tag == "latest" else "IfNotPresent")
    c.setdefault("resources", {})
    for port in c.get("ports") or []:
        port.setdefault("protocol", "TCP")
    for env in c.get("env") or []:
        field_ref = (env.get("valueFrom") or {}).get("fieldRef")
        if field_ref:
            field_ref.setdefault("apiVersion", "v1")
    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
        _probe(c.get(probe))
    _quantities(c.get("resources"))


def _pod_spec(pod: dict[str, Any]) -> None:
    pod.setdefault("restartPolicy", "Always")
    pod.setdefault("terminationGracePeriodSeconds", 30)
    pod.setdefault("dnsPolicy", "ClusterFirst")
    pod.setdefault("schedulerName", "default-scheduler")
    pod.setdefault("securityContext", {})
    for c in [*(pod.get("initContainers") or []), *(pod.get("containers") or [])]:
        _container(c)
    for volume in pod.get("volumes") or []:
        for source in ("configMap", "secret"):
            if source in volume:
                volume[source].setdefault("defaultMode", 420)
        if "persistentVolumeClaim" in volume:
            volume["persistentVolumeClaim"].setdefault("readOnly", False)


def _template(spec: dict[str, Any]) -> None:
    template = spec.get("template") or {}
    template.setdefault("metadata", {}).setdefault("creationTimestamp", None)
    _pod_spec(template.setdefault("spec", {}))


def _pvc(pvc: dict[str, Any]) -> None:
    spec = pvc.setdefault("spec", {})
    spec.setdefault("volumeMode", "Filesystem")
    _quantities(spec.get("resources"))


def _defaults(kind: str, obj: dict[str, Any]) -> None:
    spec = obj.get("spec")
    if kind == "Deployment":
        spec.setdefault("replicas", 1)
        spec.setdefault("revisionHistoryLimit", 10)
        spec.setdefault("progressDeadlineSeconds", 600)
        strategy = spec.setdefault("strategy", {"type": "RollingUpdate"})
        if strategy.get("type", "RollingUpdate") == "RollingUpdate":
            strategy.setdefault("type", "RollingUpdate")
            rolling = strategy.setdefault("rollingUpdate", {})
            rolling.setdefault("maxUnavailable", "25%")
            rolling.setdefault("maxSurge", "25%")
        _template(spec)
    elif kind == "StatefulSet":
        spec.setdefault("replicas", 1)
        spec.setdefault("podManagementPolicy", "OrderedReady")
        spec.setdefault("revisionHistoryLimit", 10)
        update = spec.setdefault("updateStrategy", {"type": "RollingUpdate"})
        if update.get("type") == "RollingUpdate":
            update.setdefault("rollingUpdate", {"partition": 0})
        spec.setdefault(
            "persistentVolumeClaimRetentionPolicy",
            {"whenDeleted": "Retain", "whenScaled": "Retain"},
        )
        for claim in spec.get("volumeClaimTemplates") or []:
            claim.setdefault("apiVersion", "v1")
            claim.setdefault("kind", "PersistentVolumeClaim")
            _pvc(claim)
            claim["status"] = {"phase": "Pending"}
        _template(spec)
    elif kind == "CronJob":
        spec.setdefault("concurrencyPolicy", "Allow")
        spec.setdefault("suspend", False)
        spec.setdefault("successfulJobsHistoryLimit", 3)
        spec.setdefault("failedJobsHistoryLimit", 1)
        job = spec.setdefault("jobTemplate", {}).setdefault("spec", {})
        job.setdefault("backoffLimit", 6)
        job.setdefault("completionMode", "NonIndexed")
        job.setdefault("suspend", False)
        job["template"].setdefault("metadata", {}).setdefault("creationTimestamp", None)
        _pod_spec(job["template"].setdefault("spec", {}))
        job["template"]["spec"].setdefault("restartPolicy", "OnFailure")
    elif kind == "Service":
        spec.setdefault("type", "ClusterIP")
        spec.setdefault("sessionAffinity", "None")
        spec.setdefault("internalTrafficPolicy", "Cluster")
        spec.setdefault("ipFamilyPolicy", "SingleStack")
        spec.setdefault("ipFamilies", ["IPv4"])
        if spec.get("clusterIP") != "None":
            spec.setdefault("clusterIP", "10.96.0.10")
        spec.setdefault("clusterIPs", [spec["clusterIP"]])
        for port in spec.get("ports") or []:
            port.setdefault("protocol", "TCP")
            port.setdefault("targetPort", port["port"])
    elif kind == "NetworkPolicy":
        types = ["Ingress", *(["Egress"] if spec.get("egress") else [])]
        spec.setdefault("policyTypes", types)
        for direction, peers in (("ingress", "from"), ("egress", "to")):
            for rule in spec.get(direction) or []:
                for port in rule.get("ports") or []:
                    port.setdefault("protocol", "TCP")
                rule.get(peers)  # peers have no defaults
    elif kind == "PersistentVolumeClaim":
        _pvc(obj)
        obj["status"] = {"phase": "Pending"}


def stored(obj: dict[str, Any], serial: int = 1) -> dict[str, Any]:
    """``obj`` as a real API server would return it in a LIST (see the module docstring)."""
    kind = obj["kind"]
    out = drop_empty(copy.deepcopy(obj))
    if "spec" in out or kind not in ("ConfigMap", "Secret"):
        out.setdefault("spec", {})
    _defaults(kind, out)
    if kind in ("ConfigMap", "Secret") and not out.get("spec"):
        out.pop("spec", None)
    meta = out.setdefault("metadata", {})
    meta.setdefault("uid", f"00000000-0000-4000-8000-{serial:012d}")
    meta["resourceVersion"] = str(1000 + serial)
    meta.setdefault("generation", 1)
    meta.setdefault("creationTimestamp", "2026-01-01T00:00:00Z")
    meta["managedFields"] = [{"manager": "cdb-operator", "operation": "Update"}]
    out.pop("apiVersion", None)
    out.pop("kind", None)
    return out

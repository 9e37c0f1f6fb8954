"""The one module that calls the Kubernetes API: create-or-patch of children, status, events.

Applying is idempotent: an object is created when missing, patched (JSON merge patch)
only when some field we render differs from the live object, and left alone otherwise.
Immutable fields (a StatefulSet's volumeClaimTemplates, a PVC's spec) are set at creation
and never patched. Errors are translated into :class:`ApiError`, whose ``transient``
says whether a retry can fix it.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import time
from typing import Any

from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes.utils.quantity import parse_quantity

from cdb_operator import model

log = logging.getLogger(__name__)

FIELD_MANAGER = "cdb-operator"

#: (apiVersion, kind) → plural, for every kind the operator reads or writes.
RESOURCES: dict[tuple[str, str], str] = {
    ("v1", "ConfigMap"): "configmaps",
    ("v1", "Secret"): "secrets",
    ("v1", "Service"): "services",
    ("v1", "PersistentVolumeClaim"): "persistentvolumeclaims",
    ("v1", "Event"): "events",
    ("apps/v1", "Deployment"): "deployments",
    ("apps/v1", "StatefulSet"): "statefulsets",
    ("batch/v1", "CronJob"): "cronjobs",
    ("batch/v1", "Job"): "jobs",
    ("networking.k8s.io/v1", "NetworkPolicy"): "networkpolicies",
    ("networking.k8s.io/v1", "Ingress"): "ingresses",
    ("monitoring.coreos.com/v1", "ServiceMonitor"): "servicemonitors",
    ("policy/v1", "PodDisruptionBudget"): "poddisruptionbudgets",
    ("postgresql.cnpg.io/v1", "Cluster"): "clusters",
    (model.API_VERSION, model.KIND): model.PLURAL,
}

#: Fields never patched after creation (the API server rejects changing them).
IMMUTABLE: dict[str, tuple[tuple[str, ...], ...]] = {
    "StatefulSet": (
        ("spec", "volumeClaimTemplates"),
        ("spec", "selector"),
        ("spec", "serviceName"),
        ("spec", "podManagementPolicy"),
    ),
    "Deployment": (("spec", "selector"),),
    "PersistentVolumeClaim": (("spec",),),
    # CloudNativePG: how the database was first made is history, not desired state
    "Cluster": (("spec", "bootstrap"),),
}


class ApiError(Exception):
    """A failed API call; ``transient`` ones (conflicts, throttling, 5xx) resolve on retry."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(f"{status} {reason}: {message}")
        self.status = status
        self.reason = reason
        self.message = message

    @property
    def transient(self) -> bool:
        return self.status in (0, 409, 429) or self.status >= 500


def path_of(api_version: str, kind: str, namespace: str | None, name: str | None = None) -> str:
    plural = RESOURCES[(api_version, kind)]
    base = f"/api/{api_version}" if "/" not in api_version else f"/apis/{api_version}"
    if namespace:
        base += f"/namespaces/{namespace}"
    base += f"/{plural}"
    return f"{base}/{name}" if name else base


#: Keys whose values are Kubernetes quantities the API server stores in canonical form
#: ("0.5" → "500m"), or maps of them (resources.requests / limits).
QUANTITY_KEYS = frozenset({"sizeLimit", "storage"})
QUANTITY_MAPS = frozenset({"requests", "limits"})


def same_quantity(desired: Any, live: Any) -> bool:
    """Whether two quantities are the same amount ("0.5" and "500m"; "1" and 1)."""
    try:
        return parse_quantity(desired) == parse_quantity(live)
    except (ValueError, TypeError):
        return False


def matches(desired: Any, live: Any, *, quantity: bool = False, quantities: bool = False) -> bool:
    """Whether everything we render is already so in the live object as the API server keeps it.

    The server stores objects in a normal form: it omits empty lists, maps, strings and
    null (Go's ``omitempty``), fills defaults (extra live fields are ignored here),
    canonicalizes quantities, and leaves ``apiVersion``/``kind`` out of LIST items. So an
    empty or zero desired value matches a missing one, quantities (``quantity``; every
    value of a ``quantities`` map) compare by amount, and the caller compares without the
    type fields (see :func:`comparable`).
    """
    if isinstance(desired, dict):
        if not isinstance(live, dict):
            return not desired and live is None
        return all(
            matches(
                v,
                live.get(k),
                quantity=quantities or k in QUANTITY_KEYS,
                quantities=k in QUANTITY_MAPS,
            )
            for k, v in desired.items()
        )
    if isinstance(desired, list):
        if live is None:
            return not desired
        if not isinstance(live, list) or len(live) != len(desired):
            return False
        return all(matches(d, lv) for d, lv in zip(desired, live, strict=True))
    if live is None:
        return desired in (None, False, 0, "")
    if quantity and desired != live:
        return same_quantity(desired, live)
    if isinstance(desired, int | float) and isinstance(live, int | float):
        return float(desired) == float(live)
    return str(desired) == str(live) if isinstance(desired, str) else desired == live


def comparable(obj: dict[str, Any]) -> dict[str, Any]:
    """What of a rendered object to compare with a live one: all but ``apiVersion``/``kind``
    (LIST items from a real API server carry neither) and the create-only fields."""
    return {k: v for k, v in mutable_part(obj).items() if k not in ("apiVersion", "kind")}


def mutable_part(obj: dict[str, Any]) -> dict[str, Any]:
    """The object without the fields that may only be set at creation."""
    out = json.loads(json.dumps(obj))
    for path in IMMUTABLE.get(obj["kind"], ()):
        node = out
        for key in path[:-1]:
            node = node.get(key, {})
        node.pop(path[-1], None)
    return out


def event_body(bot: dict[str, Any], type_: str, reason: str, message: str, now: float) -> dict:
    """A core/v1 Event about the TradingBot ``bot`` (pure; named uniquely by the time)."""
    meta = bot["metadata"]
    stamp = dt.datetime.fromtimestamp(now, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": f"{meta['name']}.{int(now * 1e9):x}", "namespace": meta["namespace"]},
        "involvedObject": {
            "apiVersion": model.API_VERSION,
            "kind": model.KIND,
            "name": meta["name"],
            "namespace": meta["namespace"],
            "uid": meta.get("uid", ""),
        },
        "type": type_,
        "reason": reason,
        "message": message[:1000],
        "source": {"component": FIELD_MANAGER},
        "firstTimestamp": stamp,
        "lastTimestamp": stamp,
        "count": 1,
        "reportingComponent": FIELD_MANAGER,
        "reportingInstance": FIELD_MANAGER,
    }


class Kube:
    """A thin synchronous Kubernetes client: raw REST paths, JSON in and out."""

    def __init__(self, api_client: k8s.ApiClient, timeout: float = 30.0) -> None:
        self.api = api_client
        self.timeout = timeout

    @classmethod
    def from_environment(cls, context: str | None = None) -> Kube:
        """In a pod: the service account; elsewhere: the current kubeconfig."""
        try:
            k8s_config.load_incluster_config()
        except k8s_config.ConfigException:
            k8s_config.load_kube_config(context=context)
        return cls(k8s.ApiClient())

    @classmethod
    def for_url(cls, url: str) -> Kube:
        conf = k8s.Configuration(host=url.rstrip("/"))
        return cls(k8s.ApiClient(conf))

    # -- raw --------------------------------------------------------------------------------

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        query: dict[str, str] | None = None,
        content_type: str = "application/json",
    ) -> Any:
        headers = {"Accept": "application/json"}
        if method != "GET":
            log.debug("%s %s", method, path)
        if body is not None:
            headers["Content-Type"] = content_type
        method, url, headers, body, _ = self.api.param_serialize(
            method=method,
            resource_path=path,
            query_params=list((query or {}).items()) or None,
            header_params=headers,
            body=body,
            auth_settings=["BearerToken"],
        )
        try:
            resp = self.api.call_api(
                method, url, header_params=headers, body=body, _request_timeout=self.timeout
            )
            resp.read()
        except Exception as exc:  # connection refused, TLS, timeouts: all retried
            raise ApiError(0, type(exc).__name__, str(exc)[:300]) from exc
        data = resp.data
        if resp.status >= 400:
            try:
                payload = json.loads(data)
                reason, message = payload.get("reason", ""), payload.get("message", "")
            except ValueError:
                reason, message = "", (data or b"")[:300].decode(errors="replace")
            raise ApiError(resp.status, reason or str(resp.reason), message)
        return json.loads(data) if data else None

    # -- objects ----------------------------------------------------------------------------

    def get(self, api_version: str, kind: str, namespace: str, name: str) -> dict | None:
        try:
            return self.request("GET", path_of(api_version, kind, namespace, name))
        except ApiError as exc:
            if exc.status == 404:
                return None
            raise

    def create(self, obj: dict[str, Any]) -> dict[str, Any]:
        meta = obj["metadata"]
        path = path_of(obj["apiVersion"], obj["kind"], meta.get("namespace"))
        return self.request("POST", path, obj, query={"fieldManager": FIELD_MANAGER})

    def patch(self, obj: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
        meta = obj["metadata"]
        path = path_of(obj["apiVersion"], obj["kind"], meta.get("namespace"), meta["name"])
        return self.request(
            "PATCH",
            path,
            patch,
            query={"fieldManager": FIELD_MANAGER},
            content_type="application/merge-patch+json",
        )

    def delete(self, api_version: str, kind: str, namespace: str, name: str) -> None:
        try:
            self.request("DELETE", path_of(api_version, kind, namespace, name))
        except ApiError as exc:
            if exc.status != 404:
                raise

    def list(self, api_version: str, kind: str, namespace: str, selector: str) -> list[dict]:
        path = path_of(api_version, kind, namespace)
        return self.request("GET", path, query={"labelSelector": selector}).get("items", [])

    def ensure(
        self, obj: dict[str, Any], live: dict[str, Any] | None | type[Ellipsis] = ...
    ) -> tuple[str, dict[str, Any]]:
        """Create or patch ``obj``; returns ("created" | "updated" | "unchanged", live object).

        ``live`` is the object as already read (from a list), ``None`` when known absent;
        by default it is fetched.
        """
        meta = obj["metadata"]
        if live is ...:
            live = self.get(obj["apiVersion"], obj["kind"], meta["namespace"], meta["name"])
        if live is None:
            try:
                return "created", self.create(obj)
            except ApiError as exc:
                if exc.status != 409:  # someone (a racing reconcile) created it meanwhile
                    raise
                live = self.get(obj["apiVersion"], obj["kind"], meta["namespace"], meta["name"])
                if live is None:
                    raise
        if matches(comparable(obj), live):
            return "unchanged", live
        return "updated", self.patch(obj, mutable_part(obj))

    def api_exists(self, group_version: str) -> bool:
        """Whether the cluster serves an API group/version (e.g. monitoring.coreos.com/v1)."""
        try:
            self.request("GET", f"/apis/{group_version}")
        except ApiError as exc:
            if exc.status == 404:
                return False
            raise
        return True

    # -- the TradingBot itself --------------------------------------------------------------

    def patch_status(self, namespace: str, name: str, status: dict[str, Any]) -> None:
        path = path_of(model.API_VERSION, model.KIND, namespace, name) + "/status"
        self.request(
            "PATCH",
            path,
            {"status": status},
            query={"fieldManager": FIELD_MANAGER},
            content_type="application/merge-patch+json",
        )

    def post_event(self, bot: dict[str, Any], type_: str, reason: str, message: str) -> None:
        """A Kubernetes Event on the TradingBot (best effort: never fails a reconcile)."""
        meta = bot["metadata"]
        event = event_body(bot, type_, reason, message, time.time())
        try:
            self.request("POST", path_of("v1", "Event", meta["namespace"]), event)
        except ApiError as exc:
            log.warning("could not post event %s on %s: %s", reason, meta["name"], exc)

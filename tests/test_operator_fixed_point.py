"""A reconcile of an unchanged TradingBot writes nothing, for every kind of child.

kmock keeps objects exactly as they were sent, so a reconcile that compares its render
with them settles trivially. A real API server does not: it stores the normal form
(:mod:`stored_form`: empty fields dropped, defaults filled, quantities canonical, no
``apiVersion``/``kind`` on LIST items). Here the first reconcile runs against kmock,
every child is then replaced by its stored form, and the second reconcile must make no
write at all (no POST, PATCH, PUT or DELETE): otherwise each pass writes, each write is
a watch event that wakes the operator again, and the operator never rests.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from stored_form import stored
from test_operator_handlers import BOT, NS, PLURALS, UID, Cluster, declare

from cdb_operator.apply import Kube
from cdb_operator.breaker import RedisAddress
from cdb_operator.reconcile import Context, reconcile

#: Exercises every optional part: quantities the server rewrites, tolerations, monitoring,
#: the notifier's Secret, scaled replicas, backups and policies on.
SPEC: dict[str, Any] = {
    "feedSource": "synthetic",
    "services": {
        "feed": {"resources": {"requests": {"cpu": "0.5", "memory": "128Mi"}}},
        "persistence": {"replicas": 2, "resources": {"limits": {"cpu": 1, "memory": "1Gi"}}},
        "notifier": {"envSecret": "push-keys"},
    },
    "tolerations": [{"key": "dedicated", "operator": "Exists", "effect": "NoSchedule"}],
    "monitoring": {"serviceMonitor": "enabled"},
}
CHILD_KINDS = {
    "ConfigMap",
    "NetworkPolicy",
    "Service",
    "StatefulSet",
    "Deployment",
    "PersistentVolumeClaim",
    "CronJob",
    "ServiceMonitor",
}


class RecordingKube(Kube):
    """The operator's client, noting every write it makes."""

    writes: list[str]

    def request(self, method: str, path: str, body: Any = None, **kw: Any) -> Any:
        if method != "GET":
            self.writes.append(f"{method} {path}")
        return super().request(method, path, body, **kw)


def children(kmock: Any) -> dict[tuple[Any, str, str], dict[str, Any]]:
    """Every live child of the bot in kmock by key (the Secret and Events left out)."""
    wanted = {PLURALS[k].rsplit("/", 1)[-1] for k in CHILD_KINDS}
    out = {}
    for key in list(kmock.objects):
        obj = kmock.objects[key]
        if key[1] == NS and key[0].plural in wanted and not obj.deleted:
            out[key] = obj.raw
    return out


@pytest.mark.asyncio
async def test_second_reconcile_of_an_unchanged_bot_writes_nothing(
    kmock: Any, redis_env: dict[str, str]
) -> None:
    declare(kmock, monitoring=True)
    url = str(kmock.url)
    kube = RecordingKube.for_url(url)
    kube.writes = []
    ctx = Context(
        kube=kube,
        redis_address=lambda ns, name, pw: RedisAddress(
            "127.0.0.1", int(redis_env["REDIS_PORT"]), None
        ),
    )
    cluster = Cluster(kmock=kmock, kube=Kube.for_url(url), redis=None)  # type: ignore[arg-type]
    await cluster.create_bot(SPEC)

    await asyncio.to_thread(reconcile, ctx, cluster.bot())
    live = children(kmock)
    kinds = {obj["kind"] for obj in live.values()}
    assert kinds == CHILD_KINDS, f"not every kind was rendered: {CHILD_KINDS - kinds}"
    assert any(w.startswith("POST") for w in kube.writes)

    # the API server's view of what was written
    for serial, (key, obj) in enumerate(sorted(live.items(), key=lambda kv: str(kv[0])), 1):
        kmock.objects[key] = stored(obj, serial)
    as_stored = children(kmock)

    kube.writes = []
    await asyncio.to_thread(reconcile, ctx, cluster.bot())
    assert kube.writes == [], "an unchanged bot was written to"
    assert children(kmock) == as_stored

    # and a real change is still applied (the comparison is not blind)
    await cluster.patch_spec({"services": {"feed": {"resources": {"requests": {"cpu": "1"}}}}})
    await asyncio.to_thread(reconcile, ctx, cluster.bot())
    assert f"PATCH /apis/apps/v1/namespaces/{NS}/deployments/{BOT}-feed" in kube.writes
    patched = [w for w in kube.writes if "/status" not in w and "/events" not in w]
    assert len(patched) == 1, patched


def test_stored_form_does_what_the_api_server_does() -> None:
    """The emulation itself: empty fields gone, defaults in, no type fields."""
    policy = {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": "p", "namespace": NS, "labels": {"a": ""}},
        "spec": {"podSelector": {}, "ingress": [], "egress": [], "policyTypes": ["Ingress"]},
    }
    out = stored(policy)
    assert "apiVersion" not in out and "kind" not in out
    assert out["spec"] == {"podSelector": {}, "policyTypes": ["Ingress"]}
    assert out["metadata"]["labels"] == {"a": ""} and out["metadata"]["uid"]
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "d", "namespace": NS, "uid": UID},
        "spec": {
            "template": {
                "spec": {
                    "containers": [
                        {"name": "c", "image": "x:1", "resources": {"requests": {"cpu": "0.5"}}}
                    ]
                }
            }
        },
    }
    spec = stored(deployment)["spec"]
    assert spec["strategy"]["rollingUpdate"] == {"maxUnavailable": "25%", "maxSurge": "25%"}
    container = spec["template"]["spec"]["containers"][0]
    assert container["resources"]["requests"]["cpu"] == "500m"
    assert container["terminationMessagePath"] == "/dev/termination-log"

"""The kopf handlers for real, against kmock's Kubernetes emulator and a real Redis.

The operator runs in-process (``kopf.operator`` with the registry ``build_registry`` makes)
against kmock; the bot's Redis is the test's real redis-server. kmock keeps objects as
plain JSON (no resourceVersion bumps, no garbage collection, label selectors ignored),
so these tests assert end states; what only a real API server does is left to
``tests/e2e/test_operator_cluster.py``.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import kopf
import pytest
import pytest_asyncio
import redis
from kmock import ResourceInfo

from cdb.bus import BREAKER_KEY, CONTROL
from cdb.events import parse_event
from cdb_operator import model
from cdb_operator.apply import Kube
from cdb_operator.breaker import RedisAddress
from cdb_operator.handlers import Options, build_registry
from cdb_operator.reconcile import Context, decode_secret

NS = "trading"
TEST_AGENT = "cdb-operator-tests"
BOT = "demo"
UID = "0b5e7c4e-0000-4000-8000-000000000001"
VERBS = {"list", "watch", "get", "patch", "create", "delete", "update"}
BASE_RESOURCES = {
    "v1/configmaps": ("ConfigMap", True),
    "v1/services": ("Service", True),
    "v1/secrets": ("Secret", True),
    "v1/events": ("Event", True),
    "v1/persistentvolumeclaims": ("PersistentVolumeClaim", True),
    "v1/namespaces": ("Namespace", False),
    "apps/v1/deployments": ("Deployment", True),
    "apps/v1/statefulsets": ("StatefulSet", True),
    "batch/v1/cronjobs": ("CronJob", True),
    "batch/v1/jobs": ("Job", True),
    "networking.k8s.io/v1/networkpolicies": ("NetworkPolicy", True),
    "networking.k8s.io/v1/ingresses": ("Ingress", True),
    "policy/v1/poddisruptionbudgets": ("PodDisruptionBudget", True),
    "apiextensions.k8s.io/v1/customresourcedefinitions": ("CustomResourceDefinition", False),
}
PLURALS = {
    "ConfigMap": "v1/configmaps",
    "Service": "v1/services",
    "Secret": "v1/secrets",
    "Event": "v1/events",
    "PersistentVolumeClaim": "v1/persistentvolumeclaims",
    "Deployment": "apps/v1/deployments",
    "StatefulSet": "apps/v1/statefulsets",
    "CronJob": "batch/v1/cronjobs",
    "Job": "batch/v1/jobs",
    "NetworkPolicy": "networking.k8s.io/v1/networkpolicies",
    "Ingress": "networking.k8s.io/v1/ingresses",
    "ServiceMonitor": "monitoring.coreos.com/v1/servicemonitors",
    "PodDisruptionBudget": "policy/v1/poddisruptionbudgets",
    "Cluster": "postgresql.cnpg.io/v1/clusters",
    "TradingBot": f"{model.API_VERSION}/{model.PLURAL}",
}


async def eventually(check: Callable[[], Any], timeout: float = 20.0, what: str = "") -> Any:
    """Poll ``check`` (without blocking the loop kmock and kopf run on) until truthy."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
            if last:
                return last
        except (KeyError, TypeError, AssertionError) as exc:
            last = exc
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what or check}: last {last!r}")


@dataclass
class Cluster:
    """The emulator, a client for it, the bot's Redis, and helpers to read and change state."""

    kmock: Any
    kube: Kube
    redis: redis.Redis

    def live(self, kind: str, name: str, namespace: str = NS) -> dict[str, Any] | None:
        key = (PLURALS[kind], namespace, name)
        try:
            obj = self.kmock.objects[key]
        except KeyError:
            return None
        return None if obj.deleted else obj.raw

    def bot(self) -> dict[str, Any]:
        return self.live("TradingBot", BOT) or {}

    def status(self) -> dict[str, Any]:
        return self.bot().get("status") or {}

    def condition(self, type_: str) -> dict[str, Any]:
        return next((c for c in self.status().get("conditions", []) if c["type"] == type_), {})

    def kinds(self) -> dict[str, set[str]]:
        out: dict[str, set[str]] = {}
        for resource, ns, name in list(self.kmock.objects):
            if ns == NS and not self.kmock.objects[resource, ns, name].deleted:
                out.setdefault(resource.plural, set()).add(name)
        return out

    def events(self) -> list[dict[str, Any]]:
        return [
            self.kmock.objects[key].raw
            for key in list(self.kmock.objects)
            if key[0].plural == "events" and not self.kmock.objects[key].deleted
        ]

    def controls(self) -> list[Any]:
        return [parse_event(f[b"data"]) for _, f in self.redis.xrange(CONTROL)]

    async def call(self, method: str, path: str, body: Any = None, **kw: Any) -> Any:
        return await asyncio.to_thread(self.kube.request, method, path, body, **kw)

    async def create_bot(self, spec: dict[str, Any], name: str = BOT, uid: str = UID) -> None:
        body = {
            "apiVersion": model.API_VERSION,
            "kind": model.KIND,
            "metadata": {"name": name, "namespace": NS, "uid": uid, "generation": 1},
            "spec": spec,
        }
        await self.call("POST", f"/apis/{model.API_VERSION}/namespaces/{NS}/tradingbots", body)

    async def patch_spec(self, spec: dict[str, Any]) -> None:
        generation = self.bot()["metadata"].get("generation", 1) + 1
        await self.call(
            "PATCH",
            f"/apis/{model.API_VERSION}/namespaces/{NS}/tradingbots/{BOT}",
            {"metadata": {"generation": generation}, "spec": spec},
            content_type="application/merge-patch+json",
        )

    def confirm(self, control_id: str, **fields: str) -> None:
        """Play the risk manager: write the breaker hash naming the applied control."""
        values = {
            "engaged": "0",
            "manual": "0",
            "drawdown": "0",
            "kill_switch": "0",
            "reason": "",
            "control_id": control_id,
            "updated_at": str(int(time.time())),
        }
        self.redis.hset(BREAKER_KEY, mapping={**values, **fields})


def declare(kmock: Any, monitoring: bool = False) -> None:
    kmock.resources[f"{model.API_VERSION}/{model.PLURAL}"] = ResourceInfo(
        kind=model.KIND, namespaced=True, subresources={"status"}, verbs=VERBS
    )
    resources = dict(BASE_RESOURCES)
    if monitoring:
        resources["monitoring.coreos.com/v1/servicemonitors"] = ("ServiceMonitor", True)
    for key, (kind, namespaced) in resources.items():
        kmock.resources[key] = ResourceInfo(kind=kind, namespaced=namespaced, verbs=VERBS)


@contextlib.asynccontextmanager
async def running_operator(
    kmock: Any,
    redis_port: int,
    options: Options | None = None,
    resend_after: float = 30.0,
    cloudnativepg: bool = False,
) -> AsyncIterator[Cluster]:
    url = str(kmock.url)
    kube = Kube.for_url(url)
    ctx = Context(
        kube=kube,
        redis_address=lambda ns, name, password: RedisAddress("127.0.0.1", redis_port, None),
        resend_after=resend_after,
        cloudnativepg=cloudnativepg,
    )
    options = options or Options(resync_seconds=3.0, breaker_poll_seconds=0.2, debounce_seconds=0.1)

    def login(**_: Any) -> kopf.ConnectionInfo:
        return kopf.ConnectionInfo(server=url, insecure=True)

    registry = build_registry(ctx, options, login=login)
    # kopf runs in a thread with its own event loop, as in production; kmock serves from
    # the test's loop, which the test must therefore never block.
    stop = threading.Event()
    errors: list[BaseException] = []

    def run() -> None:
        try:
            asyncio.run(
                kopf.operator(registry=registry, clusterwide=True, standalone=True, stop_flag=stop)
            )
        except BaseException as exc:  # reported by the fixture's teardown
            errors.append(exc)

    thread = threading.Thread(target=run, name="kopf", daemon=True)
    thread.start()
    client = redis.Redis(port=redis_port)
    # the test's own requests carry their own User-Agent, so RBAC checks can leave them out
    test_kube = Kube.for_url(url)
    test_kube.api.user_agent = TEST_AGENT
    try:
        yield Cluster(kmock=kmock, kube=test_kube, redis=client)
    finally:
        stop.set()
        await asyncio.to_thread(thread.join, 30)
        client.close()
        assert not thread.is_alive(), "the operator did not stop"
        assert not [e for e in errors if not isinstance(e, asyncio.CancelledError)], errors


@pytest_asyncio.fixture
async def cluster(kmock: Any, redis_env: dict[str, str]) -> AsyncIterator[Cluster]:
    declare(kmock)
    async with running_operator(kmock, int(redis_env["REDIS_PORT"])) as c:
        yield c


EXPECTED = {
    "configmaps": {f"{BOT}-config"},
    "secrets": {f"{BOT}-passwords"},
    "services": {f"{BOT}-{s}" for s in (*model.SERVICES, "redis", "postgres")},
    "deployments": {f"{BOT}-{s}" for s in model.SERVICES},
    "statefulsets": {f"{BOT}-redis", f"{BOT}-postgres"},
    "cronjobs": {f"{BOT}-backup"},
    "persistentvolumeclaims": {f"{BOT}-backup"},
}


def has_all_children(c: Cluster) -> bool:
    kinds = c.kinds()
    return all(names <= kinds.get(plural, set()) for plural, names in EXPECTED.items()) and (
        len(kinds.get("networkpolicies", ())) == 10
    )


@pytest.mark.asyncio
async def test_create_makes_every_child_and_writes_status(cluster: Cluster) -> None:
    await cluster.create_bot({"symbols": ["BTC_USDT"]})
    await eventually(lambda: has_all_children(cluster), what="every child object")
    status = await eventually(lambda: cluster.status().get("conditions") and cluster.status())
    assert status["observedGeneration"] == 1
    assert status["phase"] == "Progressing"  # no nodes run pods in kmock
    assert set(status["components"]) == {*model.SERVICES, "redis", "postgres"}
    assert not any(c["ready"] for c in status["components"].values())
    ready = cluster.condition("Ready")
    assert (ready["status"], ready["reason"]) == ("False", "ComponentsNotReady")
    assert cluster.condition("Degraded")["status"] == "False"
    breaker = cluster.condition("CircuitBreakerEngaged")
    assert (breaker["status"], breaker["reason"]) == ("Unknown", "NotReported")
    assert cluster.controls() == []  # nothing to send: the spec does not ask for a halt
    # owned by the bot, labelled, and the settings came through under the services' names
    deploy = cluster.live("Deployment", f"{BOT}-risk")
    assert deploy["metadata"]["ownerReferences"][0]["uid"] == UID
    assert deploy["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "cdb-operator"
    config = cluster.live("ConfigMap", f"{BOT}-config")["data"]
    assert config["SYMBOLS"] == "BTC_USDT" and config["TRADING_MODE"] == "paper"
    # kopf keeps its state under the project's domain, and no finalizer blocks deletion
    meta = await eventually(
        lambda: (
            any(
                k.startswith(f"{model.GROUP}/")
                for k in cluster.bot()["metadata"].get("annotations", {})
            )
            and cluster.bot()["metadata"]
        )
    )
    assert not meta.get("finalizers")
    await eventually(
        lambda: {"Applied", "Passwords"} <= {e["reason"] for e in cluster.events()},
        what="Applied and Passwords events",
    )


@pytest.mark.asyncio
async def test_secret_is_made_once_and_never_rotated(cluster: Cluster) -> None:
    await cluster.create_bot({})
    secret = await eventually(lambda: cluster.live("Secret", f"{BOT}-passwords"))
    first = dict(secret.get("stringData") or secret.get("data"))
    assert set(first) == {"REDIS_PASSWORD", "POSTGRES_PASSWORD", "ADVISOR_REDIS_PASSWORD"}
    assert all(len(v) >= 32 for v in first.values())
    await cluster.patch_spec({"strategy": {"thresholdPct": 4.5}})
    await eventually(
        lambda: cluster.live("ConfigMap", f"{BOT}-config")["data"]["SIGNAL_THRESHOLD_PCT"] == "4.5"
    )
    again = cluster.live("Secret", f"{BOT}-passwords")
    assert dict(again.get("stringData") or again.get("data")) == first
    for event in cluster.events():  # never logged, never in an Event
        assert not any(v in event.get("message", "") for v in first.values())


@pytest.mark.asyncio
async def test_an_older_secret_gets_the_missing_key_and_keeps_its_passwords(
    cluster: Cluster,
) -> None:
    """A bot made by an operator before the advisor's own Redis user: its Secret has two
    keys; the upgrade adds the third and rewrites neither of the others (the data stores
    were made with them)."""
    old = {"REDIS_PASSWORD": "old-redis-Pw-0001", "POSTGRES_PASSWORD": "old-pg-Pw-0002"}
    await cluster.call(
        "POST",
        f"/api/v1/namespaces/{NS}/secrets",
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": f"{BOT}-passwords", "namespace": NS},
            "data": {k: base64.b64encode(v.encode()).decode() for k, v in old.items()},
        },
    )
    await cluster.create_bot({})
    secret = await eventually(
        lambda: (
            (s := cluster.live("Secret", f"{BOT}-passwords"))
            and "ADVISOR_REDIS_PASSWORD" in decode_secret(s)
            and s
        ),
        what="the missing key added",
    )
    values = decode_secret(secret)
    assert {k: values[k] for k in old} == old
    assert len(values["ADVISOR_REDIS_PASSWORD"]) >= 32


@pytest.mark.asyncio
async def test_spec_change_rolls_out_only_the_affected_children(cluster: Cluster) -> None:
    await cluster.create_bot({})
    await eventually(lambda: has_all_children(cluster))
    await eventually(lambda: cluster.status().get("observedGeneration") == 1)
    await asyncio.sleep(0.5)  # let the follow-up reconciles of the creation settle
    before = {
        name: len(cluster.kmock.objects["apps/v1/deployments", NS, name].history)
        for name in EXPECTED["deployments"]
    }
    await cluster.patch_spec({"services": {"notifier": {"replicas": 2}}})
    await eventually(lambda: cluster.live("Deployment", f"{BOT}-notifier")["spec"]["replicas"] == 2)
    await eventually(lambda: cluster.status().get("observedGeneration") == 2)
    after = {
        name: len(cluster.kmock.objects["apps/v1/deployments", NS, name].history)
        for name in EXPECTED["deployments"]
    }
    changed = {name for name in before if after[name] != before[name]}
    assert changed == {f"{BOT}-notifier"}


@pytest.mark.asyncio
async def test_deleted_child_is_restored_and_disabled_parts_are_pruned(cluster: Cluster) -> None:
    await cluster.create_bot({})
    await eventually(lambda: has_all_children(cluster))
    await cluster.call("DELETE", f"/apis/apps/v1/namespaces/{NS}/deployments/{BOT}-execution")
    assert cluster.live("Deployment", f"{BOT}-execution") is None
    await eventually(lambda: cluster.live("Deployment", f"{BOT}-execution"), what="restored")
    # a hand edit is put back too
    await cluster.call(
        "PATCH",
        f"/api/v1/namespaces/{NS}/configmaps/{BOT}-config",
        {"data": {"MAX_POSITION_PCT": "99"}},
        content_type="application/merge-patch+json",
    )
    await eventually(
        lambda: cluster.live("ConfigMap", f"{BOT}-config")["data"]["MAX_POSITION_PCT"] == "10"
    )
    await cluster.patch_spec({"networkPolicy": {"enabled": False}, "backup": {"enabled": False}})
    await eventually(lambda: not cluster.kinds().get("networkpolicies"), what="policies pruned")
    await eventually(lambda: not cluster.kinds().get("cronjobs"), what="backup pruned")
    # the backup PVC holds dumps: kept (it has no owner reference by default)
    assert cluster.live("PersistentVolumeClaim", f"{BOT}-backup") is not None


@pytest.mark.asyncio
async def test_dashboard_ingress_is_made_when_enabled_and_pruned_when_off(cluster: Cluster) -> None:
    ingress = {"enabled": True, "host": "bot.example.com", "tlsSecret": "bot-tls"}
    await cluster.create_bot({"services": {"dashboard": {"ingress": ingress}}})
    live = await eventually(lambda: cluster.live("Ingress", f"{BOT}-dashboard"), what="ingress")
    assert live["metadata"]["ownerReferences"][0]["uid"] == UID
    assert cluster.live("Deployment", f"{BOT}-dashboard") is not None
    await cluster.patch_spec({"services": {"dashboard": {"ingress": {"enabled": False}}}})
    await eventually(
        lambda: cluster.live("Ingress", f"{BOT}-dashboard") is None, what="ingress pruned"
    )
    assert cluster.live("Deployment", f"{BOT}-dashboard") is not None


@pytest.mark.asyncio
async def test_missing_credentials_show_in_status_and_events_then_recover(
    cluster: Cluster,
) -> None:
    spec = {"exchange": {"mode": "live", "credentialsSecret": "mexc-keys"}}
    await cluster.create_bot(spec)
    degraded = await eventually(
        lambda: (
            cluster.condition("Degraded").get("status") == "True" and cluster.condition("Degraded")
        )
    )
    assert degraded["reason"] == "CredentialsSecretMissing"
    assert "mexc-keys" in degraded["message"]
    assert cluster.status()["phase"] == "Failed"
    await eventually(
        lambda: any(
            e["type"] == "Warning" and e["reason"] == "CredentialsSecretMissing"
            for e in cluster.events()
        ),
        what="a Warning event",
    )
    assert cluster.live("Deployment", f"{BOT}-execution") is None  # nothing half-made
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "mexc-keys", "namespace": NS},
        "stringData": {"MEXC_API_KEY": "k", "MEXC_API_SECRET": "s"},
    }
    await cluster.call("POST", f"/api/v1/namespaces/{NS}/secrets", secret)
    # retried with backoff by kopf, and by the resync timer
    await eventually(lambda: cluster.condition("Degraded").get("status") == "False", timeout=30)
    execution = cluster.live("Deployment", f"{BOT}-execution")
    env = {e["name"]: e for e in execution["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["MEXC_API_KEY"]["valueFrom"]["secretKeyRef"]["name"] == "mexc-keys"


@pytest.mark.asyncio
async def test_breaker_is_pending_until_the_risk_manager_confirms(cluster: Cluster) -> None:
    await cluster.create_bot({})
    await eventually(lambda: cluster.condition("CircuitBreakerEngaged"))
    await cluster.patch_spec({"circuitBreaker": {"engaged": True, "reason": "manual"}})
    controls = await eventually(cluster.controls, what="a control entry")
    control = controls[-1]
    assert (control.action, control.source, control.reason) == (
        "engage_breaker",
        "operator",
        "manual",
    )
    pending = await eventually(
        lambda: (
            cluster.condition("CircuitBreakerEngaged").get("reason") == "DeliveryPending"
            and cluster.condition("CircuitBreakerEngaged")
        )
    )
    assert pending["status"] == "Unknown"
    assert cluster.status()["breaker"]["requested"] is True
    assert cluster.status()["breaker"]["state"] == "Pending"
    # someone else's confirmation does not count
    cluster.confirm("not-ours", engaged="1", manual="1")
    await asyncio.sleep(0.6)
    assert cluster.condition("CircuitBreakerEngaged")["status"] == "Unknown"
    cluster.confirm(control.control_id, engaged="1", manual="1", reason="manual")
    confirmed = await eventually(
        lambda: (
            cluster.condition("CircuitBreakerEngaged").get("status") == "True"
            and cluster.condition("CircuitBreakerEngaged")
        )
    )
    assert confirmed["reason"] == "ManualHalt"
    assert cluster.status()["breaker"]["engagedBy"] == ["manual"]
    assert cluster.status()["breaker"]["state"] == "Engaged"
    await eventually(lambda: any(e["reason"] == "ManualHalt" for e in cluster.events()))
    # release: a new control, pending again until confirmed
    await cluster.patch_spec({"circuitBreaker": {"engaged": False, "reason": "all clear"}})
    release = (await eventually(lambda: len(cluster.controls()) >= 2 and cluster.controls()))[-1]
    assert release.action == "release_breaker" and release.control_id != control.control_id
    await eventually(
        lambda: cluster.condition("CircuitBreakerEngaged").get("reason") == "DeliveryPending"
    )
    cluster.confirm(release.control_id, engaged="0", reason="all clear")
    released = await eventually(
        lambda: (
            cluster.condition("CircuitBreakerEngaged").get("status") == "False"
            and cluster.condition("CircuitBreakerEngaged")
        )
    )
    assert released["reason"] == "Released"


@pytest.mark.asyncio
async def test_a_trip_by_the_risk_manager_itself_appears_in_status(cluster: Cluster) -> None:
    await cluster.create_bot({})
    await eventually(lambda: cluster.condition("CircuitBreakerEngaged"))
    cluster.confirm("risk-1", engaged="1", drawdown="1", reason="daily loss 5.2% > 5%")
    tripped = await eventually(
        lambda: (
            cluster.condition("CircuitBreakerEngaged").get("status") == "True"
            and cluster.condition("CircuitBreakerEngaged")
        )
    )
    assert tripped["reason"] == "DrawdownTrip"
    assert "daily loss" in tripped["message"]
    assert cluster.status()["breaker"]["engagedBy"] == ["risk-manager"]
    assert cluster.controls() == []  # the operator did not fight it


@pytest.mark.asyncio
async def test_an_undelivered_control_is_retried_until_redis_takes_it(
    kmock: Any, own_redis: Any
) -> None:
    declare(kmock)
    port = own_redis.port
    async with running_operator(kmock, port) as c:
        own_redis.stop()
        await c.create_bot({"circuitBreaker": {"engaged": True, "reason": "start halted"}})
        pending = await eventually(
            lambda: (
                c.condition("CircuitBreakerEngaged").get("reason") == "DeliveryPending"
                and c.status()["breaker"].get("error")
                and c.condition("CircuitBreakerEngaged")
            )
        )
        assert "not yet delivered" in pending["message"]
        assert c.status()["breaker"]["delivered"] is False
        own_redis.start()
        await eventually(lambda: c.status()["breaker"].get("delivered"), timeout=30)
        assert [e.action for e in c.controls()] == ["engage_breaker"]
        assert c.condition("CircuitBreakerEngaged")["status"] == "Unknown"


@pytest.mark.asyncio
async def test_service_monitor_only_when_the_api_exists(kmock: Any, redis_env: dict) -> None:
    declare(kmock, monitoring=True)
    async with running_operator(kmock, int(redis_env["REDIS_PORT"])) as c:
        await c.create_bot({"monitoring": {"interval": "15s"}})
        monitor = await eventually(lambda: c.live("ServiceMonitor", f"{BOT}-metrics"))
        assert monitor["spec"]["endpoints"][0]["interval"] == "15s"
        await eventually(lambda: c.status().get("serviceMonitor") is True)
        await c.patch_spec({"monitoring": {"serviceMonitor": "disabled"}})
        await eventually(lambda: c.live("ServiceMonitor", f"{BOT}-metrics") is None)


@pytest.mark.asyncio
async def test_delete_is_never_blocked_by_a_finalizer(cluster: Cluster) -> None:
    await cluster.create_bot({})
    await eventually(lambda: has_all_children(cluster))
    await cluster.call("DELETE", f"/apis/{model.API_VERSION}/namespaces/{NS}/tradingbots/{BOT}")
    assert cluster.live("TradingBot", BOT) is None  # gone at once: no finalizer to wait for
    # children carry owner references; the API server's garbage collector removes them
    owners = cluster.live("Deployment", f"{BOT}-feed")["metadata"]["ownerReferences"]
    assert owners == [
        {
            "apiVersion": model.API_VERSION,
            "kind": model.KIND,
            "name": BOT,
            "uid": UID,
            "controller": True,
            "blockOwnerDeletion": True,
        }
    ]

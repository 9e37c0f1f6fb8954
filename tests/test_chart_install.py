"""Real `helm install`, `helm upgrade` and `helm uninstall` of the chart, against kmock.

No cluster needed: kmock's Kubernetes emulator serves discovery and stores objects, Helm
keeps its release records in PostgreSQL (its SQL storage driver; kmock cannot decode the
protobuf Secrets Helm would otherwise write), and each step is Helm's own code path —
building the objects, the ownership checks, the CRD-before-bot rule, what uninstall
deletes. The emulator has no OpenAPI document and no server-side apply, hence
``--disable-openapi-validation --server-side=false``; a real cluster runs the same steps in
tests/e2e/test_helm_cluster.py.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from k8s_tools import CHART_DIR, HelmError, helm
from kmock import KubernetesEmulator, ResourceInfo, Server

VERBS = {"get", "list", "watch", "create", "update", "patch", "delete", "deletecollection"}
#: What the emulated API server serves before the chart is installed (no TradingBot yet).
RESOURCES = {
    "v1/namespaces": ("Namespace", False),
    "v1/secrets": ("Secret", True),
    "v1/configmaps": ("ConfigMap", True),
    "v1/serviceaccounts": ("ServiceAccount", True),
    "v1/services": ("Service", True),
    "apps/v1/deployments": ("Deployment", True),
    "rbac.authorization.k8s.io/v1/roles": ("Role", True),
    "rbac.authorization.k8s.io/v1/rolebindings": ("RoleBinding", True),
    "rbac.authorization.k8s.io/v1/clusterroles": ("ClusterRole", False),
    "rbac.authorization.k8s.io/v1/clusterrolebindings": ("ClusterRoleBinding", False),
    "apiextensions.k8s.io/v1/customresourcedefinitions": ("CustomResourceDefinition", False),
}
TRADINGBOTS = "claire-de-binare.dev/v1alpha1/tradingbots"
NS = "cdb-system"
HELM_FLAGS = ("--disable-openapi-validation", "--server-side=false")
#: /api/v1 as a real server lists it (kmock's own names the group "/v1").
CORE_RESOURCE_LIST = {
    "kind": "APIResourceList",
    "apiVersion": "v1",
    "groupVersion": "v1",
    "resources": [
        {
            "name": key.split("/")[-1],
            "singularName": "",
            "kind": kind,
            "namespaced": namespaced,
            "verbs": sorted(VERBS),
        }
        for key, (kind, namespaced) in RESOURCES.items()
        if key.startswith("v1/")
    ],
}


@dataclass
class FakeCluster:
    emulator: Any
    loop: asyncio.AbstractEventLoop
    kubeconfig: Path

    def serve(self, key: str, kind: str, namespaced: bool) -> None:
        """Start serving a resource, as the API server does once a CRD is established."""
        done = threading.Event()

        def add() -> None:
            self.emulator.resources[key] = ResourceInfo(
                kind=kind, namespaced=namespaced, verbs=VERBS
            )
            done.set()

        self.loop.call_soon_threadsafe(add)
        assert done.wait(10)

    def live(self) -> set[tuple[str, str | None, str]]:
        """(resource, namespace, name) of every object that exists now."""
        out = set()
        for key in list(self.emulator.objects):
            if not self.emulator.objects[key].deleted:
                resource, namespace, name = key
                out.add(
                    (
                        f"{resource.group}/{resource.version}/{resource.plural}".lstrip("/"),
                        namespace,
                        name,
                    )
                )
        return out

    def get(self, resource: str, namespace: str | None, name: str) -> dict[str, Any]:
        return dict(self.emulator.objects[resource, namespace, name].raw)


@pytest.fixture
def cluster(tmp_path) -> Iterator[FakeCluster]:
    ready: dict[str, Any] = {}
    started = threading.Event()
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()

    async def main() -> None:
        async with KubernetesEmulator() as emulator, Server(emulator):
            for key, (kind, namespaced) in RESOURCES.items():
                emulator.resources[key] = ResourceInfo(
                    kind=kind, namespaced=namespaced, verbs=VERBS
                )
            # kmock answers /version with 1.26 and names the core group "/v1"; a 1.35
            # server says "v1", and Helm's REST mapper needs that.
            emulator["get /version"] << {"major": "1", "minor": "35", "gitVersion": "v1.35.0"}
            emulator["get /api/v1"] << CORE_RESOURCE_LIST
            ready["emulator"] = emulator
            started.set()
            await stop.wait()

    thread = threading.Thread(target=loop.run_until_complete, args=(main(),), daemon=True)
    thread.start()
    assert started.wait(30), "kmock did not start"
    emulator = ready["emulator"]
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "current-context": "kmock",
                "clusters": [
                    {"name": "kmock", "cluster": {"server": str(emulator.url).rstrip("/")}}
                ],
                "users": [{"name": "kmock", "user": {"token": "kmock"}}],
                "contexts": [{"name": "kmock", "context": {"cluster": "kmock", "user": "kmock"}}],
            }
        )
    )
    yield FakeCluster(emulator, loop, kubeconfig)
    loop.call_soon_threadsafe(stop.set)
    thread.join(30)


@pytest.fixture
def helm_env(cluster, pg_env, monkeypatch) -> FakeCluster:
    dsn = (
        f"postgresql://{pg_env['POSTGRES_USER']}:{pg_env['POSTGRES_PASSWORD']}"
        f"@{pg_env['POSTGRES_HOST']}:{pg_env['POSTGRES_PORT']}/{pg_env['POSTGRES_DB']}"
        "?sslmode=disable"
    )
    monkeypatch.setenv("KUBECONFIG", str(cluster.kubeconfig))
    monkeypatch.setenv("HELM_DRIVER", "sql")
    monkeypatch.setenv("HELM_DRIVER_SQL_CONNECTION_STRING", dsn)
    return cluster


def run_helm(action: str, tmp_path: Path, values: dict[str, Any], *extra: str) -> str:
    path = tmp_path / f"{action}-values.yaml"
    path.write_text(yaml.safe_dump(values))
    args = [action, "cdb", str(CHART_DIR), "-n", NS, "-f", str(path), *HELM_FLAGS, *extra]
    return helm(*args).stdout


def test_install_upgrade_with_bot_and_uninstall(helm_env, tmp_path):
    cluster = helm_env
    before = cluster.live()

    out = run_helm("install", tmp_path, {})
    assert "helm uninstall cdb -n cdb-system" in out  # NOTES are rendered
    installed = cluster.live() - before
    names = {(r, ns, n) for r, ns, n in installed}
    operator = "cdb-claire-de-binare-operator"
    assert ("apps/v1/deployments", NS, operator) in names
    assert ("v1/serviceaccounts", NS, operator) in names
    assert (
        "apiextensions.k8s.io/v1/customresourcedefinitions",
        None,
        "tradingbots.claire-de-binare.dev",
    ) in names
    crole = f"{NS}-{operator}"
    assert ("rbac.authorization.k8s.io/v1/clusterroles", None, crole) in names
    assert ("rbac.authorization.k8s.io/v1/clusterrolebindings", None, crole) in names
    deployment = cluster.get("apps/v1/deployments", NS, operator)
    assert deployment["metadata"]["annotations"]["meta.helm.sh/release-name"] == "cdb"

    # A bot in the same step as the CRD cannot work: the chart says what to do instead.
    with pytest.raises(HelmError) as failed:
        run_helm("upgrade", tmp_path, {"bot": {"enabled": True}})
    assert "--reuse-values --set bot.enabled=true" in failed.value.stderr

    # Once the API server serves the CRD, the documented upgrade creates the bot.
    cluster.serve(TRADINGBOTS, "TradingBot", True)
    run_helm("upgrade", tmp_path, {"bot": {"enabled": True}})
    bot = cluster.get(TRADINGBOTS, NS, "paper")
    assert bot["spec"]["exchange"]["mode"] == "paper"
    assert bot["metadata"]["annotations"]["meta.helm.sh/release-name"] == "cdb"
    assert bot["spec"]["networkPolicy"]["operatorNamespace"] == NS

    release_objects = cluster.live() - before
    helm("uninstall", "cdb", "-n", NS)
    left = cluster.live() - before
    # Everything the release made is gone but the CRD, which is kept on purpose.
    assert left == {
        (
            "apiextensions.k8s.io/v1/customresourcedefinitions",
            None,
            "tradingbots.claire-de-binare.dev",
        )
    }
    assert len(release_objects) > len(left)


def test_watching_namespaces_installs_roles_not_cluster_roles(helm_env, tmp_path):
    cluster = helm_env
    before = cluster.live()
    run_helm(
        "install",
        tmp_path,
        {"operator": {"watchNamespaces": ["trading"]}, "crds": {"install": False}},
    )
    made = {(r, ns) for r, ns, _ in cluster.live() - before}
    assert ("rbac.authorization.k8s.io/v1/roles", "trading") in made
    assert ("rbac.authorization.k8s.io/v1/rolebindings", "trading") in made
    assert not any("cluster" in r for r, _ in made)
    assert not any("customresourcedefinitions" in r for r, _ in made)
    helm("uninstall", "cdb", "-n", NS)
    assert cluster.live() == before

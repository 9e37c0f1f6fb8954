"""The chart against a real cluster: install, a TradingBot from values, uninstall.

Skipped unless ``KUBECONFIG`` names a cluster. Works on any cluster, including a bare API
server without nodes: nothing here waits for a pod to run. Everything lives in a fresh
namespace, the operator watches only that namespace (so it cannot touch anyone else's
TradingBots), and the test leaves the cluster as it found it.

Because Helm resolves every kind before it creates anything, a TradingBot cannot be in the
same release step as the CRD that defines it: on a cluster without the CRD the release is
installed first (which installs the CRD) and then upgraded with ``bot.enabled=true``, the
documented path; on a cluster that has the CRD, one ``helm install`` does both.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from k8s_tools import CHART_DIR, helm, kubectl

pytestmark = [
    pytest.mark.cluster,
    pytest.mark.skipif(not os.environ.get("KUBECONFIG"), reason="needs a cluster (KUBECONFIG)"),
]

CRD = "tradingbots.claire-de-binare.dev"
RELEASE = "cdb-e2e"


def exists(kind: str, name: str, namespace: str | None = None) -> bool:
    args = ["get", kind, name, "-o", "name"]
    if namespace:
        args += ["-n", namespace]
    return kubectl(*args, check=False).returncode == 0


def get(kind: str, name: str, namespace: str | None = None) -> dict[str, Any]:
    args = ["get", kind, name, "-o", "json"]
    if namespace:
        args += ["-n", namespace]
    return json.loads(kubectl(*args).stdout)


def wait_gone(kind: str, name: str, namespace: str | None, deadline_s: float = 120) -> bool:
    """True once the object is gone (owner-reference and finalizer cleanup take a moment)."""
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        if not exists(kind, name, namespace):
            return True
        time.sleep(1)
    return False


def manifest_objects(release: str, namespace: str) -> list[dict[str, Any]]:
    out = helm("get", "manifest", release, "-n", namespace).stdout
    return [d for d in yaml.safe_load_all(out) if d]


@pytest.fixture
def namespace() -> Iterator[str]:
    name = f"cdb-e2e-helm-{uuid.uuid4().hex[:8]}"
    kubectl("create", "namespace", name)
    yield name
    helm("uninstall", RELEASE, "-n", name, "--ignore-not-found", check=False)
    kubectl("delete", "namespace", name, "--wait=false", "--ignore-not-found", check=False)


@pytest.fixture
def crd_before() -> Iterator[bool]:
    """Whether the CRD existed before the test; one the test created is removed afterwards."""
    existed = exists("crd", CRD)
    yield existed
    if not existed and exists("crd", CRD):
        kubectl("delete", "crd", CRD, "--wait=false", check=False)


def values_file(tmp_path, namespace: str, *, crds: bool, bot: bool) -> str:
    values = {
        "crds": {"install": crds},
        "operator": {"watchNamespaces": [namespace]},
        "bot": {"enabled": bot, "name": "e2e-paper", "spec": {"feedSource": "synthetic"}},
    }
    path = tmp_path / f"values-{crds}-{bot}.yaml"
    path.write_text(yaml.safe_dump(values))
    return str(path)


def test_install_bot_from_values_and_uninstall(tmp_path, namespace, crd_before):
    chart = str(CHART_DIR)
    if crd_before:
        # The CRD is there (another release or kubectl apply owns it): one step.
        helm(
            "install",
            RELEASE,
            chart,
            "-n",
            namespace,
            "-f",
            values_file(tmp_path, namespace, crds=False, bot=True),
        )
    else:
        helm(
            "install",
            RELEASE,
            chart,
            "-n",
            namespace,
            "-f",
            values_file(tmp_path, namespace, crds=True, bot=False),
        )
        assert exists("crd", CRD)
        crd = get("crd", CRD)
        assert crd["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
        # Helm waits for nothing here; the API server needs the CRD established first.
        kubectl("wait", "--for=condition=Established", f"crd/{CRD}", "--timeout=60s")
        helm(
            "upgrade",
            RELEASE,
            chart,
            "-n",
            namespace,
            "-f",
            values_file(tmp_path, namespace, crds=True, bot=True),
        )

    operator = f"{RELEASE}-claire-de-binare-operator"
    deployment = get("deployment", operator, namespace)
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"]["type"] == "Recreate"
    assert exists("serviceaccount", operator, namespace)
    role = get("role", operator, namespace)
    assert any("tradingbots" in r["resources"] for r in role["rules"])
    binding = get("rolebinding", operator, namespace)
    assert binding["subjects"][0]["name"] == operator
    # Watching one namespace grants nothing cluster-wide.
    cluster_roles = kubectl(
        "get", "clusterrole", "-l", f"app.kubernetes.io/instance={RELEASE}", "-o", "name"
    ).stdout
    assert namespace not in cluster_roles

    bot = get("tradingbot", "e2e-paper", namespace)
    assert bot["spec"]["exchange"]["mode"] == "paper"
    assert bot["spec"]["feedSource"] == "synthetic"
    assert bot["metadata"]["labels"]["app.kubernetes.io/instance"] == RELEASE
    # The API server applied the CRD's defaults (e.g. the risk limits of the design).
    assert bot["spec"]["risk"]["maxDailyDrawdownPct"] == 5

    installed = manifest_objects(RELEASE, namespace)
    kinds = {o["kind"] for o in installed}
    assert {"Deployment", "ServiceAccount", "Role", "RoleBinding", "TradingBot"} <= kinds

    helm("uninstall", RELEASE, "-n", namespace, "--wait", "--timeout", "3m")
    leftovers = []
    for obj in installed:
        meta = obj["metadata"]
        if meta.get("annotations", {}).get("helm.sh/resource-policy") == "keep":
            continue
        kind = obj["kind"]
        if not wait_gone(kind, meta["name"], meta.get("namespace")):
            leftovers.append(f"{kind}/{meta['name']}")
    assert leftovers == []
    if not crd_before:
        assert exists("crd", CRD), "the CRD is kept on uninstall"

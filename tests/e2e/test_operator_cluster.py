"""The operator against a real cluster: CRD, a TradingBot, its children, breaker, repair, delete.

Skipped unless ``KUBECONFIG`` names a cluster. Works on any cluster, including a bare API
server without nodes (nothing waits for a pod to run) and without kube-controller-manager
(then deletion is checked through owner references, since nothing garbage-collects).
The operator runs as a subprocess (``cdb-operator``) watching only a fresh namespace;
the test removes what it made (the CRD only if it was not there before).

The operator runs outside the cluster here, so it reaches the bot's Redis only through a
``kubectl port-forward`` the test opens when Redis runs (a cluster with nodes); without
nodes the breaker must honestly stay ``Unknown``/``DeliveryPending``.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import yaml
from k8s_tools import kubectl, kubectl_binary

from cdb.bus import CONTROL
from cdb.events import parse_event
from cdb.localservers import free_port

pytestmark = [
    pytest.mark.cluster,
    pytest.mark.skipif(not os.environ.get("KUBECONFIG"), reason="needs a cluster (KUBECONFIG)"),
]

ROOT = Path(__file__).resolve().parents[2]
CRD = "tradingbots.claire-de-binare.dev"
BOT = "e2e"
#: Kinds kept when the bot is deleted (keepDataOnDelete, the default): the data and the
#: passwords it was written with.
KEPT = ("persistentvolumeclaim", "secret")
CHILDREN = {
    "configmap": [f"{BOT}-config"],
    "secret": [f"{BOT}-passwords"],
    "service": [
        f"{BOT}-{s}"
        for s in (
            "feed",
            "signal",
            "risk",
            "execution",
            "persistence",
            "notifier",
            "dashboard",
            "redis",
            "postgres",
        )
    ],
    "deployment": [
        f"{BOT}-{s}"
        for s in ("feed", "signal", "risk", "execution", "persistence", "notifier", "dashboard")
    ],
    "statefulset": [f"{BOT}-redis", f"{BOT}-postgres"],
    "cronjob": [f"{BOT}-backup"],
    "persistentvolumeclaim": [f"{BOT}-backup"],
    "networkpolicy": [
        f"{BOT}-np-{p}"
        for p in (
            "default-deny",
            "dns",
            "redis",
            "to-redis",
            "postgres",
            "to-postgres",
            "internet",
            "metrics",
            "notifier-from-dashboard",
            "dashboard-to-notifier",
        )
    ],
}


def wait_for(check, timeout: float = 120.0, what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
            if last:
                return last
        except (subprocess.CalledProcessError, KeyError, ValueError, redis.RedisError) as exc:
            last = exc
        time.sleep(1)
    raise AssertionError(f"timed out waiting for {what}: last {last!r}")


def get(kind: str, name: str, namespace: str) -> dict[str, Any] | None:
    proc = kubectl("get", kind, name, "-n", namespace, "-o", "json", check=False)
    return json.loads(proc.stdout) if proc.returncode == 0 else None


def condition(bot: dict[str, Any] | None, type_: str) -> dict[str, Any]:
    conds = ((bot or {}).get("status") or {}).get("conditions") or []
    return next((c for c in conds if c["type"] == type_), {})


def has_nodes() -> bool:
    out = kubectl("get", "nodes", "-o", "name", check=False).stdout
    return bool(out.strip())


@pytest.fixture
def namespace() -> Iterator[str]:
    existed = kubectl("get", "crd", CRD, check=False).returncode == 0
    name = f"cdb-e2e-op-{uuid.uuid4().hex[:8]}"
    kubectl("create", "namespace", name)
    kubectl("apply", "-f", str(ROOT / "crds" / "tradingbot.yaml"))
    kubectl("wait", "--for=condition=Established", f"crd/{CRD}", "--timeout=60s")
    yield name
    kubectl("delete", "namespace", name, "--wait=false", "--ignore-not-found", check=False)
    if not existed:
        kubectl("delete", "crd", CRD, "--wait=false", check=False)


@pytest.fixture
def operator(namespace: str, tmp_path: Path) -> Iterator[dict[str, Any]]:
    port = free_port()
    exe = shutil.which("cdb-operator")
    cmd = [exe] if exe else [sys.executable, "-m", "cdb_operator.main"]
    log = (tmp_path / "operator.log").open("wb")
    proc = subprocess.Popen(
        [
            *cmd,
            "--namespace",
            namespace,
            "--liveness",
            "",
            "--readiness",
            "",
            "--resync",
            "5",
            "--breaker-poll",
            "1",
            "--resend-after",
            "10",
            "--redis-address",
            f"127.0.0.1:{port}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    info = {"port": port, "log": tmp_path / "operator.log", "proc": proc}
    yield info
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    log.close()


def test_crd_is_admitted_at_creation(tmp_path: Path) -> None:
    """The API server's creation checks (every CEL rule on every default as written), by a
    server-side dry-run *create* of the same CRD under a group of its own: it runs even
    where the real CRD already exists, and changes nothing."""
    for path in (
        ROOT / "crds" / "tradingbot.yaml",
        ROOT / "charts" / "claire-de-binare" / "files" / "crds" / "tradingbot.yaml",
    ):
        doc = yaml.safe_load(path.read_text())
        group = f"e2e-{uuid.uuid4().hex[:8]}.example.dev"
        doc["spec"]["group"] = group
        doc["metadata"]["name"] = f"{doc['spec']['names']['plural']}.{group}"
        copy = tmp_path / f"crd-{group}.yaml"
        copy.write_text(yaml.safe_dump(doc))
        proc = kubectl("create", "--dry-run=server", "-f", str(copy), check=False)
        assert proc.returncode == 0, f"{path.name}: {proc.stderr}"


def test_examples_pass_the_api_servers_own_validation(namespace: str) -> None:
    """Server-side dry run: the real API server applies defaults and the CEL rules."""
    for path in sorted((ROOT / "examples").glob("tradingbot-*.yaml")):
        kubectl("apply", "--dry-run=server", "-n", namespace, "-f", str(path))
    bad = {
        "apiVersion": "claire-de-binare.dev/v1alpha1",
        "kind": "TradingBot",
        "metadata": {"name": "bad", "namespace": namespace},
        "spec": {"exchange": {"mode": "live"}},
    }
    proc = subprocess.run(
        [str(kubectl_binary()), "apply", "--dry-run=server", "-f", "-"],
        input=yaml.safe_dump(bad),
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode != 0 and "credentialsSecret" in proc.stderr


def test_operator_life_cycle(namespace: str, operator: dict[str, Any]) -> None:
    bot = yaml.safe_load((ROOT / "examples" / "tradingbot-minimal.yaml").read_text())
    bot["metadata"] = {"name": BOT, "namespace": namespace}
    path = operator["log"].parent / "bot.yaml"
    path.write_text(yaml.safe_dump(bot))
    kubectl("apply", "-f", str(path))

    # every child object, owned by the bot
    uid = get("tradingbot", BOT, namespace)["metadata"]["uid"]
    for kind, names in CHILDREN.items():
        for name in names:
            obj = wait_for(lambda k=kind, n=name: get(k, n, namespace), what=f"{kind}/{name}")
            if kind not in KEPT:  # kept on delete: no owner by default
                assert obj["metadata"]["ownerReferences"][0]["uid"] == uid, (kind, name)

    # status written: conditions, observed generation, components
    live = wait_for(
        lambda: (
            condition(get("tradingbot", BOT, namespace), "Ready")
            and get("tradingbot", BOT, namespace)
        ),
        what="status conditions",
    )
    status = live["status"]
    assert status["observedGeneration"] == live["metadata"]["generation"]
    assert set(status["components"]) >= {"redis", "postgres", "risk", "execution"}
    assert condition(live, "Degraded")["status"] == "False"

    # the breaker: requested at once; confirmed only by the risk manager
    nodes = has_nodes()
    forward = None
    if nodes:
        ready = wait_for(
            lambda: (get("statefulset", f"{BOT}-redis", namespace).get("status") or {}).get(
                "readyReplicas"
            ),
            timeout=300,
            what="redis ready (cluster has nodes)",
        )
        assert ready
        forward = subprocess.Popen(
            [
                str(kubectl_binary()),
                "port-forward",
                "-n",
                namespace,
                f"svc/{BOT}-redis",
                f"{operator['port']}:6379",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    try:
        kubectl(
            "patch",
            "tradingbot",
            BOT,
            "-n",
            namespace,
            "--type",
            "merge",
            "-p",
            '{"spec":{"circuitBreaker":{"engaged":true,"reason":"e2e"}}}',
        )
        live = wait_for(
            lambda: (
                ((get("tradingbot", BOT, namespace).get("status") or {}).get("breaker") or {}).get(
                    "requested"
                )
                and get("tradingbot", BOT, namespace)
            ),
            what="breaker requested in status",
        )
        breaker = condition(live, "CircuitBreakerEngaged")
        control_id = live["status"]["breaker"]["controlId"]
        if not nodes:
            # nothing runs the bot's Redis or risk manager: status must not claim a halt
            assert (breaker["status"], breaker["reason"]) == ("Unknown", "DeliveryPending")
            assert live["status"]["breaker"]["state"] == "Pending"
        else:
            secret = get("secret", f"{BOT}-passwords", namespace)
            password = base64.b64decode(secret["data"]["REDIS_PASSWORD"]).decode()
            client = redis.Redis(port=operator["port"], password=password)
            entries = wait_for(lambda: client.xrange(CONTROL), what="the control entry")
            controls = [parse_event(f[b"data"]) for _, f in entries]
            assert any(
                c.control_id == control_id and c.action == "engage_breaker" for c in controls
            )
            assert breaker.get("status") in ("Unknown", "True")
    finally:
        if forward is not None:
            forward.terminate()

    # a child deleted by hand is put back
    old = get("deployment", f"{BOT}-feed", namespace)["metadata"]["uid"]
    kubectl("delete", "deployment", f"{BOT}-feed", "-n", namespace, "--wait=false")
    wait_for(
        lambda: (
            (get("deployment", f"{BOT}-feed", namespace) or {}).get("metadata", {}).get("uid")
            not in (None, old)
        ),
        what="the feed Deployment restored",
    )

    # deleting the bot is never blocked by a finalizer; children go by garbage collection
    kubectl("delete", "tradingbot", BOT, "-n", namespace, "--timeout=60s")
    assert get("tradingbot", BOT, namespace) is None
    gc = kubectl("get", "serviceaccount", "default", "-n", namespace, check=False).returncode == 0
    if gc:  # kube-controller-manager runs (it made the default ServiceAccount)
        for kind, names in CHILDREN.items():
            if kind in KEPT:
                continue
            for name in names:
                wait_for(
                    lambda k=kind, n=name: get(k, n, namespace) is None,
                    what=f"{kind}/{name} garbage-collected",
                )
        assert get("persistentvolumeclaim", f"{BOT}-backup", namespace) is not None  # kept
        assert get("secret", f"{BOT}-passwords", namespace) is not None  # kept with the data
    else:
        # a bare API server has no garbage collector: the owner references are what it would
        # follow, so check those (recorded above) are still in place on every child
        deploy = get("deployment", f"{BOT}-risk", namespace)
        assert deploy["metadata"]["ownerReferences"][0]["uid"] == uid
    assert operator["proc"].poll() is None, operator["log"].read_text()[-3000:]

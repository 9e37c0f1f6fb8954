"""On a real API server: the reconcile settles, and the breaker is confirmed fast.

Skipped unless ``KUBECONFIG`` names a cluster; works on a bare API server without nodes.
The operator (``cdb-operator`` watching a fresh namespace) reaches the bot's Redis at a
local redis-server, and the *real* risk manager (``cdb run risk``) runs locally on that
Redis and a local PostgreSQL: so the breaker path is the production one from end to end
(API server → kopf watch → control stream → risk manager → confirmation stream →
status patch) even where no pod can run. The bot's password Secret is made first with
that Redis's password, as the operator keeps an existing Secret.

Figures are printed (``-s``), never asserted against a time: docs/benchmarks.md has them.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from helpers import ServiceProcess
from k8s_tools import kubectl

from cdb.db.migrate import migrate
from cdb.localservers import RedisServer, free_port
from cdb.settings import PostgresSettings
from cdb_operator import model
from cdb_operator.apply import Kube

pytestmark = [
    pytest.mark.cluster,
    pytest.mark.skipif(not os.environ.get("KUBECONFIG"), reason="needs a cluster (KUBECONFIG)"),
]

ROOT = Path(__file__).resolve().parents[2]
CRD = f"{model.PLURAL}.{model.GROUP}"
BOT = "settle"
FLIPS = int(os.environ.get("CDB_E2E_BREAKER_FLIPS", "20"))


def wait_for(check, timeout: float = 60.0, interval: float = 0.2, what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what}: last {last!r}")


def percentile(values: list[float], pct: float) -> float:
    """Nearest-rank percentile (p99 of 20 samples is the largest)."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), int(-(-pct * len(ordered) // 100))))
    return ordered[rank - 1]


@pytest.fixture
def bot_env(tmp_path: Path, pg_env: dict[str, str]) -> Iterator[dict[str, Any]]:
    """A namespace with the CRD, a local Redis + risk manager, and the operator."""
    existed = kubectl("get", "crd", CRD, check=False).returncode == 0
    namespace = f"cdb-e2e-settle-{uuid.uuid4().hex[:8]}"
    kubectl("create", "namespace", namespace)
    kubectl("apply", "-f", str(ROOT / "crds" / "tradingbot.yaml"))
    kubectl("wait", "--for=condition=Established", f"crd/{CRD}", "--timeout=60s")
    redis_server = RedisServer(tmp_path / "redis", password=secrets.token_urlsafe(16)).start()
    migrate(PostgresSettings(**pg_env))
    risk = ServiceProcess(
        "risk",
        {**redis_server.env(), **pg_env, "TRADING_MODE": "paper", "CDB_CONSUMER_NAME": "risk-0"},
        tmp_path,
    ).start(timeout=60)
    passwords = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": f"{BOT}-passwords", "namespace": namespace},
        "stringData": {
            "REDIS_PASSWORD": redis_server.password,
            "POSTGRES_PASSWORD": pg_env["POSTGRES_PASSWORD"],
        },
    }
    (tmp_path / "secret.yaml").write_text(yaml.safe_dump(passwords))
    kubectl("apply", "-f", str(tmp_path / "secret.yaml"))
    exe = shutil.which("cdb-operator")
    cmd = [exe] if exe else [sys.executable, "-m", "cdb_operator.main"]
    log = (tmp_path / "operator.log").open("wb")
    operator = subprocess.Popen(
        [
            *cmd,
            "--namespace",
            namespace,
            "--liveness",
            f"http://127.0.0.1:{free_port()}/healthz",
            "--resync",
            "5",
            "--redis-address",
            f"127.0.0.1:{redis_server.port}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        yield {"namespace": namespace, "log": tmp_path / "operator.log", "proc": operator}
    finally:
        operator.terminate()
        try:
            operator.wait(timeout=30)
        except subprocess.TimeoutExpired:
            operator.kill()
        log.close()
        risk.stop()
        redis_server.stop()
        kubectl("delete", "namespace", namespace, "--wait=false", check=False)
        if not existed:
            kubectl("delete", "crd", CRD, "--wait=false", check=False)


def bot_path(kube: Kube, namespace: str) -> str:
    return f"/apis/{model.API_VERSION}/namespaces/{namespace}/{model.PLURAL}/{BOT}"


def operator_writes(namespace: str) -> dict[str, Any]:
    """Per child (kind/name): what the operator last wrote to it, from managedFields.

    Other controllers write children too (the PV controller annotates a PVC, the
    StatefulSet controller its status), so resourceVersion alone would blame the operator
    for them; the ``cdb-operator`` manager's entries change only when it writes.
    """
    kinds = "configmaps,services,deployments,statefulsets,cronjobs,networkpolicies,pvc,pdb"
    out = kubectl(
        "get", kinds, "-n", namespace, "-l", f"app.kubernetes.io/instance={BOT}", "-o", "json"
    ).stdout
    return {
        f"{o['kind']}/{o['metadata']['name']}": [
            (m.get("operation"), m.get("time"), m.get("subresource"))
            for m in o["metadata"].get("managedFields") or []
            if m.get("manager") == "cdb-operator"
        ]
        for o in json.loads(out)["items"]
    }


def applied_events(namespace: str) -> list[tuple[str, str]]:
    out = kubectl(
        "get", "events", "-n", namespace, "--field-selector", "reason=Applied", "-o", "json"
    ).stdout
    return [(e.get("lastTimestamp") or "", e["message"]) for e in json.loads(out)["items"]]


def test_reconcile_settles_and_breaker_confirms_fast(bot_env: dict[str, Any]) -> None:
    namespace = bot_env["namespace"]
    kube = Kube.from_environment()
    bot = yaml.safe_load((ROOT / "examples" / "tradingbot-minimal.yaml").read_text())
    bot["metadata"] = {"name": BOT, "namespace": namespace}
    created = time.monotonic()
    kube.request("POST", f"/apis/{model.API_VERSION}/namespaces/{namespace}/{model.PLURAL}", bot)

    def all_children() -> bool:
        writes = operator_writes(namespace)
        return len(writes) >= 1 + 8 + 8 + 6 + 2 + 1 + 1 and writes

    wait_for(all_children, timeout=120, interval=0.05, what="every child")
    print(f"\napply → all children created: {time.monotonic() - created:.2f} s")

    # the reconcile is a fixed point on a real API server: across three resyncs (every 5 s)
    # the operator writes no child and posts no Applied event
    def settled() -> bool:
        body = kube.request("GET", bot_path(kube, namespace))
        status = body.get("status") or {}
        return status.get("observedGeneration") == body["metadata"]["generation"]

    wait_for(settled, what="status of the current generation")
    time.sleep(6)
    before, events_before = operator_writes(namespace), applied_events(namespace)
    time.sleep(16)
    after, events_after = operator_writes(namespace), applied_events(namespace)
    changed = sorted(k for k in before if after.get(k) != before[k])
    new_events = [e for e in events_after if e not in events_before]
    assert changed == [] and new_events == [], f"writes to an unchanged bot: {changed} {new_events}"
    policy = kubectl(
        "get", "networkpolicy", f"{BOT}-np-default-deny", "-n", namespace, "-o", "json"
    ).stdout
    assert json.loads(policy)["metadata"]["generation"] == 1

    # breaker: patch → status.breaker confirmed in the new state, measured FLIPS times
    took = []
    for i in range(FLIPS):
        engaged = i % 2 == 0
        start = time.monotonic()
        kube.request(
            "PATCH",
            bot_path(kube, namespace),
            {"spec": {"circuitBreaker": {"engaged": engaged, "reason": f"flip {i}"}}},
            content_type="application/merge-patch+json",
        )

        def confirmed(want: bool = engaged) -> bool:
            status = kube.request("GET", bot_path(kube, namespace)).get("status") or {}
            b = status.get("breaker") or {}
            return b.get("confirmed") and b.get("requested") is want and b.get("engaged") is want

        try:
            wait_for(confirmed, timeout=30, interval=0.01, what=f"flip {i} confirmed")
        except AssertionError as exc:
            status = kube.request("GET", bot_path(kube, namespace)).get("status")
            log = bot_env["log"].read_text()[-4000:]
            raise AssertionError(f"{exc}; status {status}; operator log: {log}") from None
        took.append(time.monotonic() - start)
        time.sleep(0.3)
    p50, p90, p99 = (percentile(took, p) for p in (50, 90, 99))
    print(
        f"breaker patch → confirmed over {len(took)} flips: p50 {p50 * 1000:.0f} ms, "
        f"p90 {p90 * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms, max {max(took) * 1000:.0f} ms, "
        f"mean {statistics.mean(took) * 1000:.0f} ms"
    )

    # spec.restore: the real API server admits the restore Job; services go to zero and
    # backups are suspended while it runs (no node runs it here: it stays Running)
    kube.request(
        "PATCH",
        bot_path(kube, namespace),
        {"spec": {"restore": {"requestId": "e2e-1"}}},
        content_type="application/merge-patch+json",
    )

    def restoring() -> dict | None:
        status = kube.request("GET", bot_path(kube, namespace)).get("status") or {}
        return (status.get("restore") or {}).get("phase") == "Running" and status["restore"]

    running = wait_for(restoring, what="status.restore Running")
    job = kubectl("get", "job", running["job"], "-n", namespace, "-o", "json").stdout
    assert json.loads(job)["spec"]["template"]["spec"]["containers"][0]["command"][0] == "sh"

    def stopped() -> bool:
        out = kubectl("get", "deployments", "-n", namespace, "-o", "json").stdout
        replicas = {d["spec"]["replicas"] for d in json.loads(out)["items"]}
        cron = kubectl("get", "cronjob", f"{BOT}-backup", "-n", namespace, "-o", "json").stdout
        return replicas == {0} and json.loads(cron)["spec"]["suspend"] is True

    wait_for(stopped, what="services at zero, backups suspended")
    assert bot_env["proc"].poll() is None, bot_env["log"].read_text()[-3000:]

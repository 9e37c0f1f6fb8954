"""A 90 s Redis stall and a 90 s PostgreSQL outage on a real cluster: probes that tell the truth.

Skipped unless ``KUBECONFIG`` names a cluster whose nodes run pods (the bot must really
run). The operator runs as a subprocess watching a fresh namespace, reaching the bot's
Redis through a ``kubectl port-forward`` as in ``test_operator_cluster.py``. Then:

- Redis: ``CLIENT PAUSE 90000 ALL`` inside the Redis pod (what the issue's report did);
- PostgreSQL: the bot's database refuses connections for 90 s (``ALLOW_CONNECTIONS false``
  and every session terminated) while the server and its pod stay up.

Each time it checks what the issue asks: no service pod restarts, the services go NotReady
and the TradingBot shows ``Degraded``/``DependencyUnavailable`` naming the dependency; every
service pod is Ready again within 10 s of the dependency's return (from the pods' own
``Ready`` transition times); no event lost (every consumer group drains, nothing
dead-lettered); and the outage's alert is on the ``alerts`` stream. The figures are printed
(``-s``) for docs/reliability.md.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import yaml
from k8s_tools import kubectl, kubectl_binary
from test_operator_cluster import condition, get, has_nodes, namespace  # noqa: F401

from cdb.localservers import free_port

pytestmark = [
    pytest.mark.cluster,
    pytest.mark.skipif(not os.environ.get("KUBECONFIG"), reason="needs a cluster (KUBECONFIG)"),
]

ROOT = Path(__file__).resolve().parents[2]
BOT = "outage"
SERVICES = ("feed", "signal", "risk", "execution", "persistence", "notifier")
OUTAGE_S = float(os.environ.get("CDB_E2E_OUTAGE_S", "90"))


def wait_for(check, timeout: float = 120.0, what: str = "", interval: float = 1.0) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
            if last:
                return last
        except (subprocess.CalledProcessError, KeyError, ValueError, redis.RedisError) as exc:
            last = exc
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what}: last {last!r}")


def service_pods(namespace: str) -> dict[str, dict[str, Any]]:  # noqa: F811
    """The bot's service pods by component (one each: the minimal example's replicas)."""
    selector = (
        f"app.kubernetes.io/instance={BOT},app.kubernetes.io/component in ({','.join(SERVICES)})"
    )
    out = kubectl("get", "pods", "-n", namespace, "-l", selector, "-o", "json").stdout
    pods = {}
    for pod in json.loads(out)["items"]:
        if pod["metadata"].get("deletionTimestamp"):
            continue
        pods[pod["metadata"]["labels"]["app.kubernetes.io/component"]] = pod
    return pods


def restarts(pods: dict[str, dict[str, Any]]) -> dict[str, tuple[str, int]]:
    """Per service: (pod uid, container restarts): a new pod or a restart changes it."""
    return {
        name: (
            pod["metadata"]["uid"],
            sum(c.get("restartCount", 0) for c in pod["status"].get("containerStatuses") or []),
        )
        for name, pod in pods.items()
    }


def ready_since(pod: dict[str, Any]) -> float | None:
    """When the pod last turned Ready (epoch seconds), or None while it is NotReady."""
    ready = condition(pod, "Ready")
    if ready.get("status") != "True":
        return None
    stamp = dt.datetime.strptime(ready["lastTransitionTime"], "%Y-%m-%dT%H:%M:%SZ")
    return stamp.replace(tzinfo=dt.UTC).timestamp()


@pytest.fixture
def running_bot(namespace: str, tmp_path: Path) -> Iterator[dict[str, Any]]:  # noqa: F811
    """The minimal example, every pod Ready, the operator watching, Redis port-forwarded."""
    if not has_nodes():
        pytest.skip("the outage scenario needs a cluster whose nodes run pods")
    port = free_port()
    exe = shutil.which("cdb-operator")
    cmd = [exe] if exe else [sys.executable, "-m", "cdb_operator.main"]
    log = (tmp_path / "operator.log").open("wb")
    operator = subprocess.Popen(
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
            "--redis-address",
            f"127.0.0.1:{port}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    bot = yaml.safe_load((ROOT / "examples" / "tradingbot-minimal.yaml").read_text())
    bot["metadata"] = {"name": BOT, "namespace": namespace}
    path = tmp_path / "bot.yaml"
    path.write_text(yaml.safe_dump(bot))
    kubectl("apply", "-f", str(path))
    forward = None
    try:
        wait_for(
            lambda: condition(get("tradingbot", BOT, namespace), "Ready").get("status") == "True",
            timeout=600,
            interval=3,
            what="the bot Ready (images pulled, every pod Ready)",
        )
        forward = subprocess.Popen(
            [
                str(kubectl_binary()),
                "port-forward",
                "-n",
                namespace,
                f"svc/{BOT}-redis",
                f"{port}:6379",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        secret = get("secret", f"{BOT}-passwords", namespace)
        password = base64.b64decode(secret["data"]["REDIS_PASSWORD"]).decode()
        client = redis.Redis(port=port, password=password, socket_timeout=5)
        wait_for(client.ping, what="the port-forward to Redis")
        yield {"namespace": namespace, "redis": client, "operator": operator, "log": tmp_path}
        client.close()
    finally:
        if forward is not None:
            forward.terminate()
        operator.terminate()
        try:
            operator.wait(timeout=30)
        except subprocess.TimeoutExpired:
            operator.kill()
            operator.wait()
        log.close()


def drained(client: redis.Redis) -> bool:
    """Every consumer group has read and acknowledged everything (heartbeats aside)."""
    for key in client.scan_iter(_type="stream"):
        stream = key.decode()
        if stream == "health":
            continue
        for group in client.xinfo_groups(stream):
            if group["pending"] or group.get("lag"):
                return False
    return True


def outage_alerts(client: redis.Redis, dependency: str, since: float) -> list[dict]:
    found = []
    for _, fields in client.xrange("alerts", min=f"{int(since * 1000)}-0"):
        event = json.loads(fields[b"data"])
        if event["code"].startswith("DEPENDENCY_") and (
            event["context"].get("dependency") == dependency
        ):
            found.append(event)
    return found


def ride_out(env: dict[str, Any], dependency: str, start, end=None) -> dict[str, Any]:
    """Run one outage of ``OUTAGE_S``; check and return its figures.

    ``end`` ends the outage (``None``: it ends by itself ``OUTAGE_S`` after ``start``).
    """
    ns, client = env["namespace"], env["redis"]
    before = restarts(service_pods(ns))
    dead_letters = client.xlen("dead_letter")
    began = time.time()
    start()
    back_at = began + OUTAGE_S
    seen_not_ready: set[str] = set()
    degraded: dict[str, Any] = {}
    try:
        while time.time() < back_at:
            pods = service_pods(ns)
            seen_not_ready |= {n for n, p in pods.items() if ready_since(p) is None}
            cond = condition(get("tradingbot", BOT, ns), "Degraded")
            if cond.get("status") == "True" and not degraded:
                degraded = cond
            assert restarts(pods) == before, "a service pod restarted during the outage"
            time.sleep(3)
    finally:
        if end is not None:
            end()
    back_at = time.time() if end is not None else began + OUTAGE_S
    pods = wait_for(
        lambda: (p := service_pods(ns)) and all(ready_since(x) for x in p.values()) and p,
        timeout=120,
        what="every service Ready again",
    )
    ready_s = max(ready_since(p) for p in pods.values()) - back_at
    figures = {
        "dependency": dependency,
        "outage_s": OUTAGE_S,
        "restarts": sum(
            restarts(pods)[n][1] - before[n][1] + (restarts(pods)[n][0] != before[n][0])
            for n in before
        ),
        "not_ready": sorted(seen_not_ready),
        "ready_after_s": round(ready_s, 1),
        "degraded": degraded.get("message", ""),
    }
    print(f"\n{dependency} outage: {json.dumps(figures)}")
    assert restarts(pods) == before, "no service pod restarted"
    assert seen_not_ready, "the services went NotReady"
    assert degraded.get("reason") == "DependencyUnavailable", degraded
    assert degraded["message"].startswith(f"{dependency} unavailable"), degraded
    assert ready_s <= 10, f"Ready {ready_s:.1f} s after {dependency} came back"
    wait_for(lambda: drained(client), timeout=180, what="every consumer group drained")
    assert client.xlen("dead_letter") == dead_letters, "nothing dead-lettered"
    alerts = wait_for(lambda: outage_alerts(client, dependency, began), what="the outage alert")
    assert "DEPENDENCY_RECOVERED" in {a["code"] for a in alerts}, alerts
    wait_for(
        lambda: condition(get("tradingbot", BOT, ns), "Degraded").get("status") == "False",
        what="Degraded cleared",
    )
    return figures


def test_a_90_second_redis_stall_restarts_nothing(running_bot: dict[str, Any]) -> None:
    ns = running_bot["namespace"]
    pause = f"redis-cli -h 127.0.0.1 -p 6379 CLIENT PAUSE {int(OUTAGE_S * 1000)} ALL"
    figures = ride_out(
        running_bot,
        "redis",
        lambda: kubectl("exec", "-n", ns, f"{BOT}-redis-0", "-c", "redis", "--", "sh", "-c", pause),
    )
    assert figures["not_ready"] == sorted(SERVICES), "every service needs the bus"


def test_a_90_second_postgres_outage_restarts_nothing(running_bot: dict[str, Any]) -> None:
    ns = running_bot["namespace"]

    def psql(*sql: str) -> None:
        args = [a for s in sql for a in ("-c", s)]
        kubectl(
            "exec", "-n", ns, f"{BOT}-postgres-0", "-c", "postgres", "--",
            "psql", "-v", "ON_ERROR_STOP=1", "-U", "claire", "-d", "postgres", *args,
        )  # fmt: skip

    figures = ride_out(
        running_bot,
        "postgres",
        lambda: psql(
            "ALTER DATABASE claire_de_binare ALLOW_CONNECTIONS false",
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = 'claire_de_binare' AND pid <> pg_backend_pid()",
        ),
        lambda: psql("ALTER DATABASE claire_de_binare ALLOW_CONNECTIONS true"),
    )
    assert "persistence" in figures["not_ready"]
    client = running_bot["redis"]
    assert any(a["code"] == "DEPENDENCY_DOWN" for a in outage_alerts(client, "postgres", 0))

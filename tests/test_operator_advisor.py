"""The ML advisor in a TradingBot: off by default, on with a model source, and no route to
trading — only Redis and DNS are reachable from its pod, and it holds no trading secret."""

from __future__ import annotations

import os
import subprocess
from typing import Any

import pytest
import redis
from test_operator_handlers import BOT, cluster, eventually  # noqa: F401 (fixture)
from test_operator_render import all_objects, by_kind, make, pod_specs

from cdb.localservers import free_port, wait_for_port
from cdb.redis_acl import ADVISOR_USER
from cdb_operator import model
from cdb_operator.render import render_children

CONFIG_MAP = {"enabled": True, "model": {"configMap": {"name": "models", "key": "v3.json"}}}


def _components(selector: dict[str, Any]) -> set[str]:
    (expr,) = selector["matchExpressions"]
    return set(expr["values"])


def _selects(selector: dict[str, Any], component: str) -> bool:
    """Whether a policy's podSelector picks this bot's pods of ``component``."""
    exprs = selector.get("matchExpressions")
    return not exprs or component in _components(selector)


def test_off_by_default_and_nothing_of_it_rendered():
    assert make().spec.advisor.enabled is False
    objs = render_children(make())
    assert not [o for o in objs if "advisor" in o["metadata"]["name"]]
    # a model given but not enabled changes nothing either
    off = render_children(make({"advisor": {"model": {"path": "/m.json"}}}))
    assert off == objs


@pytest.mark.parametrize(
    ("source", "path", "volume"),
    [
        (
            {"configMap": {"name": "models", "key": "v3.json"}},
            "/models/model.json",
            {"configMap": {"name": "models", "items": [{"key": "v3.json", "path": "model.json"}]}},
        ),
        (
            {"persistentVolumeClaim": {"claimName": "ml", "path": "2026/m.json"}},
            "/models/2026/m.json",
            {"persistentVolumeClaim": {"claimName": "ml", "readOnly": True}},
        ),
        ({"path": "/opt/cdb/model.json"}, "/opt/cdb/model.json", None),
    ],
    ids=["configMap", "pvc", "image"],
)
def test_enabled_with_each_model_source(source, path, volume):
    bot = make({"advisor": {"enabled": True, "model": source, "threshold": 0.7}})
    objs = render_children(bot)
    deploy = by_kind(objs, "Deployment")["demo-advisor"]
    service = by_kind(objs, "Service")["demo-advisor"]
    assert service["spec"]["ports"][0]["port"] == model.ADVISOR_PORT
    assert service["metadata"]["labels"]["app.kubernetes.io/component"] == "advisor"
    assert deploy["spec"]["replicas"] == 1 and deploy["spec"]["strategy"] == {"type": "Recreate"}
    pod = deploy["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["args"] == ["run", "advisor"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["ADVISOR_MODEL_PATH"] == path
    assert env["ADVISOR_THRESHOLD"] == "0.7" and env["ADVISOR_COOLDOWN_S"] == "300"
    volumes = {v["name"]: {k: x for k, x in v.items() if k != "name"} for v in pod["volumes"]}
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    if volume is None:
        assert "model" not in volumes and "model" not in mounts
    else:
        assert volumes["model"] == volume
        assert mounts["model"] == {"name": "model", "mountPath": "/models", "readOnly": True}


def test_the_advisor_holds_no_trading_secret_even_in_live_mode():
    bot = make(
        {"exchange": {"mode": "live", "credentialsSecret": "mexc-keys"}, "advisor": CONFIG_MAP}
    )
    pods = pod_specs(render_children(bot))
    execution_env = {e["name"] for e in pods["demo-execution"]["containers"][0]["env"]}
    assert {"MEXC_API_KEY", "MEXC_API_SECRET"} <= execution_env  # the control: execution has them
    advisor = pods["demo-advisor"]
    (container,) = advisor["containers"]
    names = {e["name"] for e in container["env"]}
    assert not names & {"MEXC_API_KEY", "MEXC_API_SECRET", "POSTGRES_PASSWORD"}
    assert container["envFrom"] == [{"configMapRef": {"name": "demo-config"}}]
    assert advisor["automountServiceAccountToken"] is False
    assert "initContainers" not in advisor  # it does not migrate: it never touches PostgreSQL


def test_network_policies_give_the_advisor_redis_and_dns_only():
    policies = by_kind(render_children(make({"advisor": CONFIG_MAP})), "NetworkPolicy")
    egress_to: list[str] = []
    for name, policy in policies.items():
        spec = policy["spec"]
        if "Egress" not in spec["policyTypes"] or not _selects(spec["podSelector"], "advisor"):
            continue
        for rule in spec["egress"]:
            for peer in rule.get("to", []):
                if "ipBlock" in peer:
                    egress_to.append(f"ip:{peer['ipBlock']['cidr']}")
                elif peer.get("podSelector", {}).get("matchExpressions"):
                    egress_to += [f"pod:{c}" for c in _components(peer["podSelector"])]
                else:
                    egress_to.append(f"{name}:{peer['podSelector']['matchLabels']}")
    assert sorted(egress_to) == ["demo-np-dns:{'k8s-app': 'kube-dns'}", "pod:redis"], egress_to
    # and nothing lets it in to execution: execution's only ingress is the metrics scrape
    for policy in policies.values():
        spec = policy["spec"]
        if "Ingress" in spec["policyTypes"] and _selects(spec["podSelector"], "execution"):
            for rule in spec["ingress"]:
                assert all("podSelector" not in peer for peer in rule["from"]), policy
    metrics = policies["demo-np-metrics"]["spec"]
    assert "advisor" in _components(metrics["podSelector"])
    assert {"protocol": "TCP", "port": model.ADVISOR_PORT} in metrics["ingress"][0]["ports"]


def test_full_spec_objects_include_the_advisor():
    # FULL (test_operator_render) enables it; that module validates every object against
    # the Kubernetes schemas of each supported version
    from test_operator_render import FULL

    names = {o["metadata"]["name"] for o in all_objects(make(FULL))}
    assert {"demo-advisor"} <= names


@pytest.mark.asyncio
async def test_enabling_then_disabling_the_advisor_creates_then_prunes_it(
    cluster,  # noqa: F811
) -> None:
    await cluster.create_bot({"advisor": CONFIG_MAP})
    await eventually(
        lambda: (
            cluster.live("Deployment", f"{BOT}-advisor")
            and cluster.live("Service", f"{BOT}-advisor")
        ),
        what="the advisor's Deployment and Service",
    )
    await eventually(lambda: "advisor" in cluster.status().get("components", {}))
    await cluster.patch_spec({"advisor": {"enabled": False}})
    await eventually(
        lambda: (
            cluster.live("Deployment", f"{BOT}-advisor") is None
            and cluster.live("Service", f"{BOT}-advisor") is None
        ),
        what="the advisor pruned",
    )
    assert cluster.live("Deployment", f"{BOT}-execution") is not None
    assert cluster.live("Service", f"{BOT}-redis") is not None


def _env(container: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value") or e["valueFrom"] for e in container["env"]}


def test_the_advisor_logs_in_as_its_own_redis_user_on_the_embedded_redis():
    pods = pod_specs(render_children(make({"advisor": CONFIG_MAP})))
    env = _env(pods["demo-advisor"]["containers"][0])
    assert env["REDIS_USERNAME"] == ADVISOR_USER
    assert env["REDIS_PASSWORD"] == {
        "secretKeyRef": {"name": "demo-passwords", "key": "ADVISOR_REDIS_PASSWORD"}
    }
    # the others log in as the default user, with the bot's password
    signal = _env(pods["demo-signal"]["containers"][0])
    assert "REDIS_USERNAME" not in signal
    assert signal["REDIS_PASSWORD"]["secretKeyRef"]["key"] == "REDIS_PASSWORD"
    # Redis defines the user from the same Secret, whether the advisor is on or not
    for spec in ({"advisor": CONFIG_MAP}, {}):
        redis_env = _env(pod_specs(render_children(make(spec)))["demo-redis"]["containers"][0])
        assert redis_env["ADVISOR_REDIS_PASSWORD"]["secretKeyRef"] == {
            "name": "demo-passwords",
            "key": "ADVISOR_REDIS_PASSWORD",
        }


def test_on_an_external_redis_the_advisor_has_the_one_password_the_user_gave():
    from test_operator_datastores import EXTERNAL_REDIS

    pods = pod_specs(render_children(make({"redis": EXTERNAL_REDIS, "advisor": CONFIG_MAP})))
    env = _env(pods["demo-advisor"]["containers"][0])
    assert "REDIS_USERNAME" not in env
    assert env["REDIS_PASSWORD"] == {"secretKeyRef": {"name": "bot1-redis", "key": "auth"}}


def test_the_rendered_redis_start_defines_the_advisor_user_on_a_real_redis(tmp_path):
    """The StatefulSet's own command, run by ``sh`` with a real redis-server (only its paths
    and port moved to the test's): the default user and the advisor's log in; Redis lets
    the advisor append to ml_signals and refuses it orders."""
    (container,) = [
        c
        for c in pod_specs(render_children(make()))["demo-redis"]["containers"]
        if c["name"] == "redis"
    ]
    assert container["command"][:2] == ["sh", "-c"]
    port = free_port()
    script = (
        container["command"][2]
        .replace("/conf/", f"{tmp_path}/")
        .replace("--dir /data", f"--dir {tmp_path}")
        .replace("--port 6379", f"--port {port} --bind 127.0.0.1")
    )
    env = {**os.environ, "REDIS_PASSWORD": "bus-Pw-0123", "ADVISOR_REDIS_PASSWORD": "adv-Pw-4567"}
    proc = subprocess.Popen(["sh", "-c", script], env=env, stdout=subprocess.DEVNULL)
    try:
        wait_for_port(port)
        admin = redis.Redis(port=port, password="bus-Pw-0123")
        advisor = redis.Redis(port=port, username=ADVISOR_USER, password="adv-Pw-4567")
        assert admin.ping() and advisor.ping()
        admin.xadd("market_data", {"data": "{}"})
        assert advisor.xread({"market_data": "0"})  # reads ticks
        advisor.xadd("ml_signals", {"data": "{}"})  # writes its own stream
        for refused in (
            lambda: advisor.xadd("orders", {"data": "{}"}),
            lambda: advisor.xadd("market_data", {"data": "{}"}),
            lambda: advisor.xgroup_create("market_data", "evil", id="0"),
        ):
            with pytest.raises(redis.exceptions.NoPermissionError):
                refused()
        assert admin.xlen("ml_signals") == 1 and admin.xlen("orders") == 0
        admin.close()
        advisor.close()
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def test_the_advisor_is_probed_like_every_service():
    """Liveness on /livez (never a dependency: the embedded Redis restarting at an upgrade
    must not restart the advisor), readiness on /readyz."""
    from cdb_operator.render.services import probes

    pods = pod_specs(render_children(make({"advisor": CONFIG_MAP})))
    (container,) = pods["demo-advisor"]["containers"]
    assert {k: container[k] for k in probes()} == probes()
    assert container["livenessProbe"]["httpGet"]["path"] == "/livez"

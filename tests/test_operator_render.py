"""Rendering a TradingBot into manifests: pure, tested option by option.

Every rendered object is validated in strict mode against the official Kubernetes
OpenAPI schemas (kubernetes-validate, offline) for each version we support; the
ServiceMonitor, a prometheus-operator CRD, is checked by shape.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from cdb.backup import cli_backup
from cdb.cli import build_parser
from cdb_operator import model
from cdb_operator.render import Bot, key_of, monitoring, render_children, render_secret
from cdb_operator.render import config as cfg
from cdb_operator.render.network import OPERATOR_POD_LABELS

ROOT = Path(__file__).resolve().parents[1]
VERSIONS = [f"1.{minor}.0" for minor in range(29, 36)]
UID = "1d6a3d1c-0000-4000-8000-00000000000a"

FULL = {
    "exchange": {"mode": "live", "credentialsSecret": "mexc-keys"},
    "symbols": ["BTC_USDT"],
    "topMovers": 7,
    "feedSource": "replay",
    "strategy": {"thresholdPct": 1.5, "minVolume": 5000, "lookbackMinutes": 30},
    "risk": {
        "maxPositionPct": 5,
        "maxExposurePct": 20,
        "stopLossPct": 1,
        "maxDailyDrawdownPct": 2,
        "maxOpenPositions": 2,
    },
    "image": {"repository": "registry.example/cdb", "tag": "1.2.3", "pullPolicy": "Always"},
    "services": {
        "persistence": {"replicas": 3},
        "notifier": {"replicas": 2},
        "signal": {"resources": {"requests": {"cpu": 1, "memory": "1Gi"}, "limits": {}}},
    },
    "redis": {"image": "redis:7.4-alpine", "storage": "3Gi", "storageClass": "fast"},
    "postgres": {"image": "postgres:16-alpine", "storage": "30Gi", "storageClass": "fast"},
    "backup": {"schedule": "15 1 * * *", "retention": 3, "storage": "50Gi", "storageClass": "slow"},
    "monitoring": {"serviceMonitor": "enabled", "interval": "10s"},
    "networkPolicy": {
        "monitoringNamespace": "prom",
        "operatorNamespace": "ops",
        "egressCidrs": ["203.0.113.0/24", "198.51.100.0/24"],
    },
    "keepDataOnDelete": False,
    "nodeSelector": {"kubernetes.io/arch": "amd64", "pool": "trading"},
    "affinity": {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [
                    {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}]}
                ]
            }
        }
    },
    "tolerations": [
        {"key": "dedicated", "operator": "Equal", "value": "trading", "effect": "NoSchedule"}
    ],
    "logLevel": "DEBUG",
    "advisor": {"enabled": True, "model": {"configMap": {"name": "demo-model", "key": "v3.json"}}},
}


def make(spec: dict[str, Any] | None = None, monitoring_api: bool = False) -> Bot:
    return Bot("demo", "trading", UID, model.parse_spec(spec or {}), monitoring_api)


def by_kind(objs: list[dict], kind: str) -> dict[str, dict]:
    return {o["metadata"]["name"]: o for o in objs if o["kind"] == kind}


def pod_specs(objs: list[dict]) -> dict[str, dict]:
    out = {}
    for o in objs:
        if o["kind"] in ("Deployment", "StatefulSet"):
            out[o["metadata"]["name"]] = o["spec"]["template"]["spec"]
        elif o["kind"] == "CronJob":
            out[o["metadata"]["name"]] = o["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    return out


def all_objects(bot: Bot) -> list[dict]:
    return [
        *render_children(bot),
        render_secret(
            bot, {"REDIS_PASSWORD": "r", "POSTGRES_PASSWORD": "p", "ADVISOR_REDIS_PASSWORD": "a"}
        ),
    ]


def example_specs() -> list[tuple[str, dict]]:
    out = []
    for path in sorted((ROOT / "examples").glob("tradingbot-*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc and doc.get("kind") == model.KIND:
                out.append((path.stem, doc.get("spec") or {}))
    return out


SPECS = [
    ("defaults", {}),
    ("full", FULL),
    (
        "minimal-off",
        {
            "networkPolicy": {"enabled": False},
            "backup": {"enabled": False},
            "monitoring": {"serviceMonitor": "disabled"},
            "nodeSelector": {},
        },
    ),
    *example_specs(),
]


@pytest.mark.parametrize(("name", "spec"), SPECS, ids=[s[0] for s in SPECS])
def test_every_object_is_valid_for_every_supported_kubernetes_version(
    name: str, spec: dict
) -> None:
    objs = all_objects(make(spec, monitoring_api=True))
    versions = VERSIONS if name in ("defaults", "full") else [VERSIONS[0], VERSIONS[-1]]
    for obj in objs:
        if obj["kind"] == "ServiceMonitor":
            assert obj["apiVersion"] == "monitoring.coreos.com/v1"
            assert obj["spec"]["endpoints"] and obj["spec"]["selector"]["matchLabels"]
            continue
        for version in versions:
            kubernetes_validate.validate(obj, version, strict=True)


def test_strict_validation_would_catch_a_mistake() -> None:
    """The validator really is strict: an unknown field fails (so the test above can fail)."""
    deploy = by_kind(render_children(make()), "Deployment")["demo-feed"]
    deploy["spec"]["template"]["spec"]["containers"][0]["livenessProbes"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deploy, VERSIONS[0], strict=True)


def test_rendering_is_pure_and_deterministic() -> None:
    assert render_children(make(FULL, True)) == render_children(make(FULL, True))
    names = [key_of(o) for o in render_children(make(FULL, True))]
    assert len(names) == len(set(names))


def test_render_layer_never_imports_kopf_or_the_kubernetes_client() -> None:
    code = (
        "import sys, cdb_operator.render, cdb_operator.model, cdb_operator.conditions;"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('kopf', 'kubernetes')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_children_default_set() -> None:
    objs = render_children(make())
    kinds: dict[str, int] = {}
    for o in objs:
        kinds[o["kind"]] = kinds.get(o["kind"], 0) + 1
    assert kinds == {
        "ConfigMap": 1,
        "NetworkPolicy": 10,
        "Service": 9,
        "StatefulSet": 2,
        "Deployment": 7,
        "PersistentVolumeClaim": 1,
        "CronJob": 1,
        "PodDisruptionBudget": 2,
    }


def test_labels_and_owner_references() -> None:
    for obj in all_objects(make(FULL, True)):
        labels = obj["metadata"]["labels"]
        assert labels["app.kubernetes.io/name"] == "claire-de-binare"
        assert labels["app.kubernetes.io/instance"] == "demo"
        assert labels["app.kubernetes.io/managed-by"] == "cdb-operator"
        assert labels["app.kubernetes.io/part-of"] == "claire-de-binare"
        assert labels["app.kubernetes.io/version"] == "1.2.3"
        assert obj["metadata"]["namespace"] == "trading"
        owner = obj["metadata"]["ownerReferences"][0]  # keepDataOnDelete: false owns the PVC
        assert (owner["kind"], owner["uid"], owner["controller"]) == ("TradingBot", UID, True)


def test_kept_data_is_not_owned_and_statefulset_pvcs_are_retained() -> None:
    objs = render_children(make())
    assert (
        "ownerReferences" not in by_kind(objs, "PersistentVolumeClaim")["demo-backup"]["metadata"]
    )
    for sts in by_kind(objs, "StatefulSet").values():
        assert sts["spec"]["persistentVolumeClaimRetentionPolicy"]["whenDeleted"] == "Retain"
    objs = render_children(make({"keepDataOnDelete": False}))
    for sts in by_kind(objs, "StatefulSet").values():
        assert sts["spec"]["persistentVolumeClaimRetentionPolicy"]["whenDeleted"] == "Delete"


@pytest.mark.parametrize("spec", [{}, FULL], ids=["defaults", "full"])
def test_every_pod_is_pod_security_restricted(spec: dict) -> None:
    for name, pod in pod_specs(render_children(make(spec))).items():
        sc = pod["securityContext"]
        assert sc["runAsNonRoot"] is True and sc["seccompProfile"] == {"type": "RuntimeDefault"}
        assert sc["runAsUser"] != 0, name
        mounts_tmp = {v["name"] for v in pod["volumes"] if "emptyDir" in v}
        assert "tmp" in mounts_tmp, name
        for c in pod["containers"] + pod.get("initContainers", []):
            csc = c["securityContext"]
            assert csc["allowPrivilegeEscalation"] is False, name
            assert csc["readOnlyRootFilesystem"] is True, name
            assert csc["capabilities"] == {"drop": ["ALL"]}, name
            assert any(m["mountPath"] == "/tmp" for m in c["volumeMounts"]), name


def test_nodes_amd64_by_default_and_scheduling_options_everywhere() -> None:
    for pod in pod_specs(render_children(make())).values():
        assert pod["nodeSelector"] == {"kubernetes.io/arch": "amd64"}
        assert "tolerations" not in pod and "affinity" not in pod
    for pod in pod_specs(render_children(make(FULL))).values():
        assert pod["nodeSelector"]["pool"] == "trading"
        assert pod["tolerations"][0]["key"] == "dedicated"
        assert pod["affinity"] == FULL["affinity"]


def test_no_password_on_any_command_line_and_secrets_only_by_reference() -> None:
    passwords = {
        "REDIS_PASSWORD": "s3cret-redis-value",
        "POSTGRES_PASSWORD": "s3cret-pg-value",
        "ADVISOR_REDIS_PASSWORD": "s3cret-advisor-value",
    }
    bot = make(FULL)
    objs = render_children(bot)
    assert "s3cret" not in yaml.safe_dump(objs)  # only the Secret holds the values
    assert render_secret(bot, passwords)["stringData"] == passwords
    for pod in pod_specs(objs).values():
        for c in pod["containers"] + pod.get("initContainers", []):
            words = " ".join(c.get("command", []) + c.get("args", []))
            for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
                words += " ".join((c.get(probe) or {}).get("exec", {}).get("command", []))
            assert (
                "requirepass $" not in words and "-a " not in words and "PGPASSWORD=" not in words
            )
            for env in c.get("env", []):
                if "PASSWORD" in env["name"] or "AUTH" in env["name"] or "MEXC" in env["name"]:
                    assert "value" not in env and "secretKeyRef" in env["valueFrom"], env


def test_secret_renderer_refuses_missing_passwords() -> None:
    with pytest.raises(ValueError, match="POSTGRES_PASSWORD"):
        render_secret(make(), {"REDIS_PASSWORD": "x"})


def test_redis_aof_on_pvc_with_auth_probes_tolerating_loading() -> None:
    sts = by_kind(render_children(make(FULL)), "StatefulSet")["demo-redis"]
    c = sts["spec"]["template"]["spec"]["containers"][0]
    start = " ".join(c["command"])
    assert "--appendonly yes" in start and "--dir /data" in start
    assert 'printf "requirepass %s' in start  # written from the env by a builtin, not argv
    env = {e["name"]: e for e in c["env"]}
    assert env["REDISCLI_AUTH"]["valueFrom"]["secretKeyRef"]["key"] == "REDIS_PASSWORD"
    alive = " ".join(c["livenessProbe"]["exec"]["command"])
    ready = " ".join(c["readinessProbe"]["exec"]["command"])
    assert "LOADING" in alive and "PONG" in alive and "LOADING" not in ready
    claim = sts["spec"]["volumeClaimTemplates"][0]
    assert claim["spec"]["resources"]["requests"]["storage"] == "3Gi"
    assert claim["spec"]["storageClassName"] == "fast"
    assert sts["spec"]["replicas"] == 1
    svc = by_kind(render_children(make()), "Service")["demo-redis"]
    assert svc["spec"]["clusterIP"] == "None"


def test_postgres_statefulset_with_pvc_and_probes() -> None:
    sts = by_kind(render_children(make(FULL)), "StatefulSet")["demo-postgres"]
    c = sts["spec"]["template"]["spec"]["containers"][0]
    assert c["image"] == "postgres:16-alpine"
    assert "pg_isready" in " ".join(c["readinessProbe"]["exec"]["command"])
    assert "pg_isready" in " ".join(c["livenessProbe"]["exec"]["command"])
    env = {e["name"]: e for e in c["env"]}
    assert env["POSTGRES_DB"]["value"] == "claire_de_binare"
    assert env["PGDATA"]["value"].startswith("/var/lib/postgresql/data/")
    claim = sts["spec"]["volumeClaimTemplates"][0]
    assert claim["spec"]["resources"]["requests"]["storage"] == "30Gi"


def test_one_deployment_per_service_running_cdb_run() -> None:
    deployments = by_kind(render_children(make()), "Deployment")
    parser = build_parser()
    for service, port in model.SERVICE_PORTS.items():
        d = deployments[f"demo-{service}"]
        c = d["spec"]["template"]["spec"]["containers"][0]
        assert c["command"] == ["cdb"] and c["args"] == ["run", service]
        assert parser.parse_args(c["args"]).service == service
        assert c["ports"][0]["containerPort"] == port
        # separate probes: liveness never looks at a dependency, readiness does
        assert c["startupProbe"]["httpGet"] == {"path": "/livez", "port": "http"}
        assert c["livenessProbe"]["httpGet"] == {"path": "/livez", "port": "http"}
        assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
        assert c["resources"]["requests"] and c["resources"]["limits"]
        assert {"name": "HTTP_PORT", "value": str(port)} in c["env"]


def test_writers_migrate_first_and_get_the_postgres_password() -> None:
    deployments = by_kind(render_children(make()), "Deployment")
    parser = build_parser()
    for service in model.SERVICES:
        pod = deployments[f"demo-{service}"]["spec"]["template"]["spec"]
        env = {e["name"] for e in pod["containers"][0]["env"]}
        if service in model.POSTGRES_USERS:
            init = pod["initContainers"][0]
            assert init["args"] == ["db", "migrate"]
            assert parser.parse_args(init["args"]).action == "migrate"
            assert "POSTGRES_PASSWORD" in env
        elif service in model.POSTGRES_READERS:  # reads, never migrates
            assert "initContainers" not in pod and "POSTGRES_PASSWORD" in env
        else:
            assert "initContainers" not in pod and "POSTGRES_PASSWORD" not in env


def test_risk_and_execution_never_run_twice() -> None:
    deployments = by_kind(render_children(make(FULL)), "Deployment")
    for service in ("risk", "execution", "feed", "signal"):
        d = deployments[f"demo-{service}"]
        assert d["spec"]["replicas"] == 1 and d["spec"]["strategy"] == {"type": "Recreate"}
    assert deployments["demo-persistence"]["spec"]["replicas"] == 3
    assert deployments["demo-notifier"]["spec"]["replicas"] == 2
    assert "replicas" not in model.Service.model_fields  # risk/execution: no knob at all


def test_exchange_keys_reach_execution_only_and_only_in_live_mode() -> None:
    live = by_kind(render_children(make(FULL)), "Deployment")
    for service in model.SERVICES:
        env = {
            e["name"]: e
            for e in live[f"demo-{service}"]["spec"]["template"]["spec"]["containers"][0]["env"]
        }
        if service == "execution":
            assert env["MEXC_API_KEY"]["valueFrom"]["secretKeyRef"] == {
                "name": "mexc-keys",
                "key": "MEXC_API_KEY",
            }
            assert env["MEXC_API_SECRET"]["valueFrom"]["secretKeyRef"]["name"] == "mexc-keys"
        else:
            assert "MEXC_API_KEY" not in env
    paper = by_kind(render_children(make()), "Deployment")["demo-execution"]
    assert "MEXC_API_KEY" not in {
        e["name"] for e in paper["spec"]["template"]["spec"]["containers"][0]["env"]
    }


def test_configmap_maps_every_spec_setting_to_the_services_names() -> None:
    data = by_kind(render_children(make(FULL)), "ConfigMap")["demo-config"]["data"]
    assert data == {
        "REDIS_HOST": "demo-redis",
        "REDIS_PORT": "6379",
        "REDIS_DB": "0",
        "POSTGRES_HOST": "demo-postgres",
        "POSTGRES_PORT": "5432",
        "POSTGRES_USER": "claire",
        "POSTGRES_DB": "claire_de_binare",
        "EXCHANGE_ID": "mexc",
        "TRADING_MODE": "live",
        "FEED_SOURCE": "replay",
        "SYMBOLS": "BTC_USDT",
        "TOP_MOVERS": "7",
        "QUOTE_ASSET": "USDT",
        "PAPER_START_BALANCE": "10000",
        "SIGNAL_THRESHOLD_PCT": "1.5",
        "SIGNAL_MIN_VOLUME": "5000",
        "SIGNAL_LOOKBACK_MIN": "30",
        "MAX_POSITION_PCT": "5",
        "MAX_EXPOSURE_PCT": "20",
        "STOP_LOSS_PCT": "1",
        "MAX_DAILY_DRAWDOWN_PCT": "2",
        "MAX_OPEN_POSITIONS": "2",
        "LOG_LEVEL": "DEBUG",
    }


def test_live_data_streams_in_the_feed_deployment() -> None:
    """``feedSource: live`` (the default) runs the stream source; the others as named."""
    data = by_kind(render_children(make()), "ConfigMap")["demo-config"]["data"]
    assert data["FEED_SOURCE"] == "stream"
    from cdb.feed.settings import FeedSettings

    assert FeedSettings(FEED_SOURCE=data["FEED_SOURCE"]).FEED_SOURCE == "stream"


def test_configmap_names_are_ones_the_services_read() -> None:
    """Every variable we set is a field of some service's settings class (names stay in sync)."""
    import importlib

    from pydantic_settings import BaseSettings

    read: set[str] = set()
    for service in model.SERVICES:
        try:
            module = importlib.import_module(f"cdb.{service}.settings")
        except ModuleNotFoundError:
            continue
        for obj in vars(module).values():
            if isinstance(obj, type) and issubclass(obj, BaseSettings):
                read |= set(obj.model_fields)
    assert read, "no service settings classes found"
    unknown = set(cfg.settings_env(make(FULL))) - read
    assert not unknown, f"set by the operator but read by no service: {unknown}"


def test_config_change_rolls_pods_through_the_template_hash() -> None:
    a = by_kind(render_children(make()), "Deployment")["demo-risk"]
    b = by_kind(render_children(make({"risk": {"stopLossPct": 3}})), "Deployment")["demo-risk"]
    c = by_kind(render_children(make({"services": {"notifier": {"replicas": 2}}})), "Deployment")[
        "demo-risk"
    ]
    key = f"{model.GROUP}/config-hash"
    ann = lambda d: d["spec"]["template"]["metadata"]["annotations"][key]  # noqa: E731
    assert ann(a) != ann(b) and ann(a) == ann(c)
    assert a == c  # a notifier change leaves the risk manager untouched


def test_backup_cronjob_runs_cdb_backup_with_its_real_arguments() -> None:
    objs = render_children(make(FULL))
    job = by_kind(objs, "CronJob")["demo-backup"]
    assert job["spec"]["schedule"] == "15 1 * * *"
    assert job["spec"]["concurrencyPolicy"] == "Forbid"
    pod = job["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    c = pod["containers"][0]
    assert c["command"] == ["cdb"] and c["args"][0] == "backup"
    parser = argparse.ArgumentParser()
    cli_backup.add_arguments(parser)
    args = parser.parse_args(c["args"][1:])
    assert args.keep == 3 and str(args.output) == "/backups" and args.redis is True
    assert pod["volumes"][0]["persistentVolumeClaim"]["claimName"] == "demo-backup"
    pvc = by_kind(objs, "PersistentVolumeClaim")["demo-backup"]
    assert pvc["spec"]["resources"]["requests"]["storage"] == "50Gi"
    assert pvc["spec"]["storageClassName"] == "slow"
    off = render_children(make({"backup": {"enabled": False}}))
    assert not by_kind(off, "CronJob") and not by_kind(off, "PersistentVolumeClaim")


@pytest.mark.parametrize(
    ("mode", "api", "expected"),
    [
        ("auto", True, 1),
        ("auto", False, 0),
        ("enabled", True, 1),
        ("enabled", False, 0),
        ("disabled", True, 0),
    ],
)
def test_service_monitor_only_with_the_api_and_not_disabled(
    mode: str, api: bool, expected: int
) -> None:
    objs = render_children(make({"monitoring": {"serviceMonitor": mode, "interval": "20s"}}, api))
    monitors = by_kind(objs, "ServiceMonitor")
    assert len(monitors) == expected
    if expected:
        sm = monitors["demo-metrics"]
        assert sm["spec"]["endpoints"] == [
            {
                "port": "http",
                "path": "/metrics",
                "interval": "20s",
                "scheme": "http",
                "relabelings": monitoring.RELABELINGS,
            }
        ]
        selected = sm["spec"]["selector"]["matchLabels"]
        scraped = [
            s
            for s in by_kind(objs, "Service").values()
            if all(s["metadata"]["labels"].get(k) == v for k, v in selected.items())
        ]
        assert sorted(s["metadata"]["name"] for s in scraped) == sorted(
            f"demo-{s}" for s in model.SERVICES
        )


def _policies(spec: dict | None = None) -> dict[str, dict]:
    return {
        n.removeprefix("demo-np-"): p
        for n, p in by_kind(render_children(make(spec)), "NetworkPolicy").items()
    }


def _components(selector: dict) -> set[str]:
    for expr in selector.get("matchExpressions", []):
        if expr["key"] == "app.kubernetes.io/component":
            return set(expr["values"])
    return {"*"}


def test_network_policies_deny_by_default_then_allow_what_each_needs() -> None:
    p = _policies(FULL)
    deny = p["default-deny"]["spec"]
    assert (
        deny["policyTypes"] == ["Ingress", "Egress"]
        and deny["ingress"] == []
        and deny["egress"] == []
    )
    assert deny["podSelector"] == {
        "matchLabels": {
            "app.kubernetes.io/name": "claire-de-binare",
            "app.kubernetes.io/instance": "demo",
        }
    }
    dns = p["dns"]["spec"]["egress"][0]
    assert {(x["protocol"], x["port"]) for x in dns["ports"]} == {("UDP", 53), ("TCP", 53)}
    redis_in = p["redis"]["spec"]["ingress"][0]
    # FULL enables the ML advisor: it reaches Redis (and nothing else, see test_operator_advisor)
    assert _components(redis_in["from"][0]["podSelector"]) == {
        *model.SERVICES,
        model.ADVISOR,
        "backup",
    }
    operator_peer = redis_in["from"][1]
    assert operator_peer["namespaceSelector"]["matchLabels"] == {
        "kubernetes.io/metadata.name": "ops"
    }
    assert operator_peer["podSelector"]["matchLabels"] == OPERATOR_POD_LABELS
    assert redis_in["ports"] == [{"protocol": "TCP", "port": 6379}]
    pg_in = p["postgres"]["spec"]["ingress"][0]
    pg_clients = {*model.POSTGRES_USERS, *model.POSTGRES_READERS, "backup"}
    assert _components(pg_in["from"][0]["podSelector"]) == pg_clients
    assert _components(p["to-postgres"]["spec"]["podSelector"]) == pg_clients
    internet = p["internet"]["spec"]
    assert _components(internet["podSelector"]) == {"feed", "execution", "notifier"}
    assert [t["ipBlock"]["cidr"] for t in internet["egress"][0]["to"]] == FULL["networkPolicy"][
        "egressCidrs"
    ]
    assert internet["egress"][0]["ports"] == [{"protocol": "TCP", "port": 443}]
    metrics = p["metrics"]["spec"]["ingress"][0]
    assert metrics["from"][0]["namespaceSelector"]["matchLabels"] == {
        "kubernetes.io/metadata.name": "prom"
    }
    assert {x["port"] for x in metrics["ports"]} == {
        *model.SERVICE_PORTS.values(),
        model.ADVISOR_PORT,
    }
    assert _policies({"networkPolicy": {"enabled": False}}) == {}


def test_every_pod_is_covered_by_the_default_deny() -> None:
    objs = render_children(make())
    deny = by_kind(objs, "NetworkPolicy")["demo-np-default-deny"]["spec"]["podSelector"][
        "matchLabels"
    ]
    for o in objs:
        if o["kind"] in ("Deployment", "StatefulSet"):
            labels = o["spec"]["template"]["metadata"]["labels"]
        elif o["kind"] == "CronJob":
            labels = o["spec"]["jobTemplate"]["spec"]["template"]["metadata"]["labels"]
        else:
            continue
        assert all(labels.get(k) == v for k, v in deny.items()), o["metadata"]["name"]


def test_services_select_their_deployments() -> None:
    objs = render_children(make())
    services = by_kind(objs, "Service")
    for kind in ("Deployment", "StatefulSet"):
        for name, workload in by_kind(objs, kind).items():
            labels = workload["spec"]["template"]["metadata"]["labels"]
            selector = services[name]["spec"]["selector"]
            assert all(labels[k] == v for k, v in selector.items())
            assert workload["spec"]["selector"]["matchLabels"] == selector


def test_events_the_operator_posts_are_valid_core_v1_events() -> None:
    from cdb_operator.apply import event_body

    bot = {"metadata": {"name": "demo", "namespace": "trading", "uid": UID}}
    event = event_body(bot, "Warning", "CredentialsSecretMissing", "x" * 5000, 1_700_000_000.5)
    assert len(event["message"]) == 1000 and event["involvedObject"]["uid"] == UID
    for version in (VERSIONS[0], VERSIONS[-1]):
        kubernetes_validate.validate(event, version, strict=True)
    later = event_body(bot, "Normal", "Applied", "m", 1_700_000_000.6)
    assert later["metadata"]["name"] != event["metadata"]["name"]


def test_redis_admits_the_operators_own_namespace_unless_the_spec_names_one() -> None:
    def operator_ns(bot: Bot) -> dict:
        policy = by_kind(render_children(bot), "NetworkPolicy")["demo-np-redis"]
        return policy["spec"]["ingress"][0]["from"][1]["namespaceSelector"]["matchLabels"]

    default = Bot("demo", "trading", UID, model.parse_spec({}), operator_namespace="cdb-ops")
    assert operator_ns(default) == {"kubernetes.io/metadata.name": "cdb-ops"}
    assert operator_ns(make(FULL)) == {"kubernetes.io/metadata.name": "ops"}


def test_notifier_alone_gets_its_web_push_secret() -> None:
    objs = render_children(make({"services": {"notifier": {"envSecret": "push-keys"}}}))
    for name, d in by_kind(objs, "Deployment").items():
        env_from = d["spec"]["template"]["spec"]["containers"][0]["envFrom"]
        refs = [e["secretRef"]["name"] for e in env_from if "secretRef" in e]
        assert refs == (["push-keys"] if name == "demo-notifier" else []), name
    # the dashboard gets only the notifier's token from that Secret, by key, optional
    dash = by_kind(objs, "Deployment")["demo-dashboard"]["spec"]["template"]["spec"]
    env = {e["name"]: e for e in dash["containers"][0]["env"]}
    assert env["NOTIFIER_API_TOKEN"]["valueFrom"]["secretKeyRef"] == {
        "name": "push-keys",
        "key": "NOTIFIER_API_TOKEN",
        "optional": True,
    }
    assert not any(
        "secretRef" in e
        for d in by_kind(render_children(make()), "Deployment").values()
        for e in d["spec"]["template"]["spec"]["containers"][0]["envFrom"]
    )


def test_service_monitor_carries_the_labels_prometheus_selects():
    """kube-prometheus-stack selects ServiceMonitors by its release label: set by default."""
    from cdb_operator.render.monitoring import render_service_monitor

    default = render_service_monitor(make(monitoring_api=True))[0]["metadata"]["labels"]
    assert default["release"] == "kube-prometheus-stack"
    custom = make(
        {"monitoring": {"serviceMonitorLabels": {"release": "prom"}}}, monitoring_api=True
    )
    labels = render_service_monitor(custom)[0]["metadata"]["labels"]
    assert labels["release"] == "prom"
    assert labels["app.kubernetes.io/managed-by"] == "cdb-operator"


def test_kept_data_keeps_its_passwords():
    """With keepDataOnDelete the Secret outlives the bot, like the volumes made with it."""
    from cdb_operator.render.config import render_secret

    passwords = {"REDIS_PASSWORD": "r" * 8, "POSTGRES_PASSWORD": "p" * 8}
    passwords["ADVISOR_REDIS_PASSWORD"] = "a" * 8
    kept = render_secret(make(), passwords)["metadata"]
    assert "ownerReferences" not in kept
    dropped = render_secret(make({"keepDataOnDelete": False}), passwords)["metadata"]
    assert dropped["ownerReferences"][0]["uid"] == UID


def test_probe_timing_matches_the_runtime_bounds() -> None:
    """Startup covers STARTUP_TIMEOUT_S; readiness notices a return within 10 s."""
    from cdb.settings import BaseServiceSettings

    defaults = BaseServiceSettings()
    c = by_kind(render_children(make()), "Deployment")["demo-risk"]["spec"]["template"]
    c = c["spec"]["containers"][0]
    startup, live, ready = c["startupProbe"], c["livenessProbe"], c["readinessProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= defaults.STARTUP_TIMEOUT_S
    # the kubelet restarts a wedged process, not a slow one: its bound is the runtime's
    assert live["periodSeconds"] * live["failureThreshold"] >= 30
    # Ready again at the first success (successThreshold 1): at most one back-off wait of
    # the runtime (capped at 5 s) plus one probe period after the dependency is back.
    assert ready.get("successThreshold", 1) == 1
    assert 5 + ready["periodSeconds"] <= 10


def test_dashboard_deployment_service_token_and_policies() -> None:
    objs = render_children(make({"services": {"dashboard": {"envSecret": "dash-token"}}}))
    dash = by_kind(objs, "Deployment")["demo-dashboard"]
    c = dash["spec"]["template"]["spec"]["containers"][0]
    assert c["args"] == ["run", "dashboard"]
    assert {"secretRef": {"name": "dash-token"}} in c["envFrom"]
    env = {e["name"]: e.get("value") for e in c["env"]}
    assert env["NOTIFIER_URL"] == "http://demo-notifier:8005"
    assert env["HTTP_PORT"] == "8006"
    svc = by_kind(objs, "Service")["demo-dashboard"]
    assert svc["spec"]["ports"][0]["port"] == 8006
    assert "Ingress" not in {o["kind"] for o in objs}
    p = {
        o["metadata"]["name"].removeprefix("demo-np-"): o
        for o in by_kind(objs, "NetworkPolicy").values()
    }
    to_notifier = p["notifier-from-dashboard"]["spec"]
    assert _components(to_notifier["podSelector"]) == {"notifier"}
    assert _components(to_notifier["ingress"][0]["from"][0]["podSelector"]) == {"dashboard"}
    assert to_notifier["ingress"][0]["ports"] == [{"protocol": "TCP", "port": 8005}]
    out = p["dashboard-to-notifier"]["spec"]
    assert _components(out["podSelector"]) == {"dashboard"}
    assert out["egress"][0]["ports"] == [{"protocol": "TCP", "port": 8005}]
    assert "dashboard-from-ingress" not in p


def test_dashboard_ingress_is_optional_and_admitted_by_the_network_policy() -> None:
    spec = {
        "services": {
            "dashboard": {
                "ingress": {
                    "enabled": True,
                    "host": "bot.example.com",
                    "className": "nginx",
                    "tlsSecret": "bot-tls",
                    "annotations": {"nginx.ingress.kubernetes.io/ssl-redirect": "true"},
                    "controllerNamespace": "ingress",
                }
            }
        }
    }
    objs = render_children(make(spec))
    ingress = by_kind(objs, "Ingress")["demo-dashboard"]
    for version in (VERSIONS[0], VERSIONS[-1]):
        kubernetes_validate.validate(ingress, version, strict=True)
    body = ingress["spec"]
    assert body["ingressClassName"] == "nginx"
    assert body["tls"] == [{"secretName": "bot-tls", "hosts": ["bot.example.com"]}]
    rule = body["rules"][0]
    assert rule["host"] == "bot.example.com"
    backend = rule["http"]["paths"][0]["backend"]["service"]
    assert backend == {"name": "demo-dashboard", "port": {"number": 8006}}
    assert (
        ingress["metadata"]["annotations"]
        == spec["services"]["dashboard"]["ingress"]["annotations"]
    )
    policy = by_kind(objs, "NetworkPolicy")["demo-np-dashboard-from-ingress"]["spec"]
    assert _components(policy["podSelector"]) == {"dashboard"}
    assert policy["ingress"][0]["from"][0]["namespaceSelector"]["matchLabels"] == {
        "kubernetes.io/metadata.name": "ingress"
    }
    assert policy["ingress"][0]["ports"] == [{"protocol": "TCP", "port": 8006}]

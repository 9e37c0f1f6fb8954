"""The Helm chart, offline: lint, render with every documented option, validate every object.

Every rendered object is checked against the official Kubernetes OpenAPI schemas of each
supported version (kubernetes-validate, strict: unknown fields fail), the TradingBot against
the chart's own CRD, and the ServiceMonitor against the prometheus-operator fields we use.
``SCENARIOS`` together touch every leaf of values.yaml; a test keeps it that way.
"""

from __future__ import annotations

from typing import Any

import jsonschema
import pytest
import yaml
from k8s_tools import (
    CHART_DIR,
    SUPPORTED_K8S_VERSIONS,
    helm,
    helm_template,
    pss_restricted_violations,
    validate_custom_resource,
    validate_manifest,
)
from prom_tools import operator_crd

from cdb_operator.main import _run_parser
from cdb_operator.render.network import OPERATOR_POD_LABELS

TB_API = "claire-de-binare.dev/v1alpha1/TradingBot"
MONITORING_API = "monitoring.coreos.com/v1"

#: name → (values, extra API versions the imagined cluster serves)
SCENARIOS: dict[str, tuple[dict[str, Any], tuple[str, ...]]] = {
    "defaults": ({}, ()),
    "names": ({"nameOverride": "cdb", "fullnameOverride": "trading-ops"}, ()),
    "image": (
        {
            "image": {
                "repository": "registry.example.com/team/cdb",
                "tag": "1.2.3",
                "digest": "sha256:" + "ab" * 32,
                "pullPolicy": "Always",
            },
            "imagePullSecrets": ["regcred"],
        },
        (),
    ),
    "crds-external": ({"crds": {"install": False}}, ()),
    "crds-not-kept": ({"crds": {"keep": False}}, ()),
    "service-account-existing": ({"serviceAccount": {"create": False, "name": "ops-sa"}}, ()),
    "service-account-annotated": (
        {"serviceAccount": {"annotations": {"example.com/role": "cdb-operator"}}},
        (),
    ),
    "no-rbac": ({"rbac": {"create": False}}, ()),
    "watch-namespaces": ({"operator": {"watchNamespaces": ["trading", "staging"]}}, ()),
    "operator-tuned": (
        {
            "operator": {
                "verbose": True,
                "healthPort": 9000,
                "readinessPort": 9001,
                "metricsPort": 9100,
                "cloudnativepg": {"enabled": True},
                "extraArgs": ["--verbose"],
                "extraEnv": [{"name": "TZ", "value": "UTC"}],
                "resources": {"requests": {"cpu": "100m", "memory": "200Mi"}, "limits": {}},
                "nodeSelector": None,
                "tolerations": [{"key": "dedicated", "operator": "Exists", "effect": "NoSchedule"}],
                "affinity": {
                    "nodeAffinity": {
                        "requiredDuringSchedulingIgnoredDuringExecution": {
                            "nodeSelectorTerms": [
                                {
                                    "matchExpressions": [
                                        {
                                            "key": "kubernetes.io/os",
                                            "operator": "In",
                                            "values": ["linux"],
                                        }
                                    ]
                                }
                            ]
                        }
                    }
                },
                "priorityClassName": "system-cluster-critical",
                "podAnnotations": {"example.com/team": "trading"},
                "podLabels": {"team": "trading"},
                "terminationGracePeriodSeconds": 60,
            }
        },
        (),
    ),
    "bot": (
        {
            "bot": {
                "enabled": True,
                "name": "demo",
                "namespace": "trading",
                "spec": {
                    "exchange": {"mode": "paper"},
                    "symbols": ["SOL_USDT"],
                    "feedSource": "synthetic",
                    "risk": {"maxDailyDrawdownPct": 3},
                },
            }
        },
        (TB_API,),
    ),
    "bot-own-image": (
        {
            "bot": {
                "enabled": True,
                "spec": {
                    "image": {"repository": "example.com/cdb", "tag": "dev", "pullPolicy": "Never"},
                    "networkPolicy": {"operatorNamespace": "ops"},
                },
            }
        },
        (TB_API,),
    ),
    "servicemonitor-auto-no-metrics": ({"operator": {"metricsPort": 0}}, (MONITORING_API,)),
    "servicemonitor-auto-default": ({}, (MONITORING_API,)),
    "prometheusrule-forced": (
        {"monitoring": {"prometheusRule": {"mode": "enabled", "labels": {"release": "kps"}}}},
        (),
    ),
    "prometheusrule-disabled": (
        {"monitoring": {"prometheusRule": {"mode": "disabled"}}},
        (MONITORING_API,),
    ),
    "servicemonitor-auto-with-api": ({"operator": {"metricsPort": 9100}}, (MONITORING_API,)),
    "servicemonitor-forced": (
        {
            "operator": {"metricsPort": 9100},
            "monitoring": {
                "serviceMonitor": {
                    "mode": "enabled",
                    "interval": "15s",
                    "labels": {"release": "kube-prometheus-stack"},
                }
            },
        },
        (),
    ),
    "servicemonitor-disabled": (
        {"operator": {"metricsPort": 9100}, "monitoring": {"serviceMonitor": {"mode": "disabled"}}},
        (MONITORING_API,),
    ),
    "dashboard-elsewhere": (
        {
            "monitoring": {
                "dashboard": {
                    "namespace": "monitoring",
                    "labels": {"grafana_dashboard": "1", "team": "trading"},
                    "annotations": {"grafana_folder": "Trading"},
                }
            }
        },
        (),
    ),
    "dashboard-off": ({"monitoring": {"dashboard": {"enabled": False}}}, ()),
}


def render(name: str) -> list[dict[str, Any]]:
    values, apis = SCENARIOS[name]
    return helm_template(values, api_versions=apis)


def by_kind(objs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [o for o in objs if o["kind"] == kind]


def one(objs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = by_kind(objs, kind)
    assert len(found) == 1, f"expected one {kind}, got {len(found)}"
    return found[0]


def leaf_paths(node: Any, prefix: str = "") -> set[str]:
    """Dotted paths of every value in values.yaml (a list or an empty map counts as a leaf)."""
    if isinstance(node, dict) and node:
        paths: set[str] = set()
        for key, value in node.items():
            paths |= leaf_paths(value, f"{prefix}{key}.")
        return paths
    return {prefix.rstrip(".")}


def covered(values: dict[str, Any]) -> set[str]:
    return leaf_paths(values)


# -- the chart as a whole ------------------------------------------------------------------------


def test_helm_lint_strict_passes():
    out = helm("lint", "--strict", str(CHART_DIR))
    assert "0 chart(s) failed" in out.stdout


def test_helm_lint_strict_passes_with_every_scenario(tmp_path):
    for name, (values, _apis) in SCENARIOS.items():
        if values.get("bot", {}).get("enabled"):
            continue  # lint has no cluster, so the CRD is never served (tested below)
        path = tmp_path / f"{name}.yaml"
        path.write_text(yaml.safe_dump(values))
        helm("lint", "--strict", str(CHART_DIR), "-f", str(path))


def test_scenarios_touch_every_documented_value():
    documented = leaf_paths(yaml.safe_load((CHART_DIR / "values.yaml").read_text()))
    touched: set[str] = set()
    for values, _apis in SCENARIOS.values():
        touched |= covered(values)
    # A scenario may set a deeper path (a map's entries) or replace a documented map whole.
    missing = {
        p
        for p in documented
        if not any(t == p or t.startswith(p + ".") or p.startswith(t + ".") for t in touched)
    }
    assert not missing, f"no scenario sets: {sorted(missing)}"


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_every_object_is_valid_for_every_supported_version(name):
    objs = render(name)
    assert objs
    crd = next((o for o in render("defaults") if o["kind"] == "CustomResourceDefinition"), None)
    for obj in objs:
        if obj["kind"] == "TradingBot":
            validate_custom_resource(obj, crd)
        elif obj["kind"] == "ServiceMonitor":
            jsonschema.validate(obj, SERVICE_MONITOR_SCHEMA)
        elif obj["kind"] == "PrometheusRule":
            assert obj["apiVersion"] == MONITORING_API
        else:
            for version in SUPPORTED_K8S_VERSIONS:
                validate_manifest(obj, version)


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_standard_labels_on_every_object(name):
    for obj in render(name):
        labels = obj["metadata"].get("labels", {})
        where = f"{obj['kind']}/{obj['metadata']['name']}"
        assert labels.get("helm.sh/chart") == "claire-de-binare-0.1.0", where
        assert labels.get("app.kubernetes.io/managed-by") == "Helm", where
        assert labels.get("app.kubernetes.io/instance") == "cdb", where
        assert labels.get("app.kubernetes.io/name") in (
            "claire-de-binare",
            "cdb",
            "cdb-operator",
        ), where
        assert labels.get("app.kubernetes.io/version") == "0.1.0", where


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_namespaced_objects_name_their_namespace(name):
    cluster_scoped = {"CustomResourceDefinition", "ClusterRole", "ClusterRoleBinding"}
    for obj in render(name):
        ns = obj["metadata"].get("namespace")
        if obj["kind"] in cluster_scoped:
            assert ns is None, obj["kind"]
        else:
            assert ns, f"{obj['kind']}/{obj['metadata']['name']} has no namespace"


# -- the operator Deployment ---------------------------------------------------------------------


def operator_deployment(name: str = "defaults") -> dict[str, Any]:
    return one(render(name), "Deployment")


def test_operator_pods_carry_the_label_the_bots_network_policies_admit():
    # Each TradingBot's NetworkPolicy lets only pods with these labels (in the operator's
    # namespace) reach its Redis, where the breaker's control events go.
    for name in ("defaults", "names"):
        deployment = operator_deployment(name)
        pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert OPERATOR_POD_LABELS.items() <= pod_labels.items(), name
        selector = deployment["spec"]["selector"]["matchLabels"]
        assert selector.items() <= pod_labels.items()


def test_operator_runs_once_with_recreate():
    spec = operator_deployment()["spec"]
    assert spec["replicas"] == 1
    assert spec["strategy"] == {"type": "Recreate"}


@pytest.mark.parametrize("name", ["defaults", "operator-tuned", "image"])
def test_operator_pod_meets_pod_security_restricted(name):
    pod = operator_deployment(name)["spec"]["template"]["spec"]
    assert pss_restricted_violations(pod) == []
    container = pod["containers"][0]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert {"name": "tmp", "mountPath": "/tmp"} in container["volumeMounts"]
    assert pod["securityContext"]["runAsUser"] == 1000


def test_restricted_checker_catches_a_bad_pod():
    # The checker above must be able to fail: a root, privileged pod breaks it loudly.
    pod = operator_deployment()["spec"]["template"]["spec"]
    bad = yaml.safe_load(yaml.safe_dump(pod))
    bad["hostNetwork"] = True
    bad["containers"][0]["securityContext"] = {"privileged": True, "runAsUser": 0}
    bad["securityContext"] = {}
    bad["volumes"].append({"name": "host", "hostPath": {"path": "/"}})
    problems = pss_restricted_violations(bad)
    assert "hostNetwork is true" in problems
    assert any("privileged" in p for p in problems)
    assert any("hostPath" in p for p in problems)
    assert any("seccompProfile" in p for p in problems)


def test_liveness_uses_kopf_health_endpoint_and_readiness_its_own():
    for name, port, ready_port in (("defaults", 8080, 8082), ("operator-tuned", 9000, 9001)):
        container = operator_deployment(name)["spec"]["template"]["spec"]["containers"][0]
        assert f"--liveness=http://0.0.0.0:{port}/healthz" in container["args"]
        assert f"--readiness=http://0.0.0.0:{ready_port}/readyz" in container["args"]
        assert {"name": "health", "containerPort": port, "protocol": "TCP"} in container["ports"]
        assert {"name": "ready", "containerPort": ready_port, "protocol": "TCP"} in container[
            "ports"
        ]
        for probe in ("startupProbe", "livenessProbe"):
            assert container[probe]["httpGet"] == {"path": "/healthz", "port": "health"}, probe
        # separate: an API-server blip makes the operator NotReady, never restarts it
        assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "ready"}
        parsed = _run_parser().parse_args(container["args"])
        assert parsed.readiness == f"http://0.0.0.0:{ready_port}/readyz"


def test_operator_command_and_watched_namespaces():
    c = operator_deployment()["spec"]["template"]["spec"]["containers"][0]
    assert c["command"] == ["cdb-operator"]
    assert "--all-namespaces" in c["args"]
    c = operator_deployment("watch-namespaces")["spec"]["template"]["spec"]["containers"][0]
    assert "--all-namespaces" not in c["args"]
    assert [a for a in c["args"] if a.startswith("--namespace=")] == [
        "--namespace=trading",
        "--namespace=staging",
    ]


def test_operator_resources_and_scheduling_from_values():
    pod = operator_deployment()["spec"]["template"]["spec"]
    assert pod["containers"][0]["resources"]["requests"] == {"cpu": "50m", "memory": "128Mi"}
    assert pod["containers"][0]["resources"]["limits"]["memory"] == "256Mi"
    assert pod["nodeSelector"] == {"kubernetes.io/arch": "amd64"}
    tuned = operator_deployment("operator-tuned")["spec"]["template"]
    assert "nodeSelector" not in tuned["spec"]
    assert tuned["spec"]["priorityClassName"] == "system-cluster-critical"
    assert tuned["spec"]["terminationGracePeriodSeconds"] == 60
    assert tuned["metadata"]["labels"]["team"] == "trading"
    assert tuned["metadata"]["annotations"]["example.com/team"] == "trading"
    env = {e["name"]: e for e in tuned["spec"]["containers"][0]["env"]}
    assert env["TZ"]["value"] == "UTC"
    args = tuned["spec"]["containers"][0]["args"]
    assert "--verbose" in args
    assert "--metrics-port=9100" in args
    assert not any(a.startswith("--verbose") for a in c_args("defaults"))
    assert "--metrics-port=8081" in c_args("defaults")  # metrics on by default


def c_args(name: str) -> list[str]:
    return operator_deployment(name)["spec"]["template"]["spec"]["containers"][0]["args"]


def test_image_reference():
    c = operator_deployment()["spec"]["template"]["spec"]["containers"][0]
    assert c["image"] == "ghcr.io/claire-de-binare/cdb:0.1.0"
    assert c["imagePullPolicy"] == "IfNotPresent"
    pod = operator_deployment("image")["spec"]["template"]["spec"]
    assert pod["containers"][0]["image"] == "registry.example.com/team/cdb@sha256:" + "ab" * 32
    assert pod["containers"][0]["imagePullPolicy"] == "Always"
    assert pod["imagePullSecrets"] == [{"name": "regcred"}]


def test_names_follow_overrides():
    names = {o["metadata"]["name"] for o in render("names")}
    assert "trading-ops-operator" in names
    assert all(
        n.startswith("trading-ops") or n.endswith(".claire-de-binare.dev") or "-trading-ops" in n
        for n in names
    ), names


def test_service_account():
    objs = render("defaults")
    sa = one(objs, "ServiceAccount")
    pod = one(objs, "Deployment")["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == sa["metadata"]["name"]
    objs = render("service-account-existing")
    assert by_kind(objs, "ServiceAccount") == []
    assert one(objs, "Deployment")["spec"]["template"]["spec"]["serviceAccountName"] == "ops-sa"
    for binding in by_kind(objs, "ClusterRoleBinding") + by_kind(objs, "RoleBinding"):
        assert binding["subjects"][0]["name"] == "ops-sa"
    sa = one(render("service-account-annotated"), "ServiceAccount")
    assert sa["metadata"]["annotations"] == {"example.com/role": "cdb-operator"}


def test_metrics_port_must_differ_from_health_port(tmp_path):
    path = tmp_path / "v.yaml"
    path.write_text(yaml.safe_dump({"operator": {"metricsPort": 8080}}))
    proc = helm("template", "cdb", str(CHART_DIR), "-f", str(path), check=False)
    assert proc.returncode != 0
    assert "operator.metricsPort must differ from operator.healthPort" in proc.stderr


def test_metrics_port_must_differ_from_readiness_port(tmp_path):
    path = tmp_path / "v.yaml"
    path.write_text(yaml.safe_dump({"operator": {"metricsPort": 9005, "readinessPort": 9005}}))
    proc = helm("template", "cdb", str(CHART_DIR), "-f", str(path), check=False)
    assert proc.returncode != 0
    assert "operator.metricsPort must differ from operator.readinessPort" in proc.stderr


def test_default_operator_ports_are_distinct():
    """The operator binds each of them: two equal defaults crash it at start (seen: 8081 twice)."""
    container = operator_deployment("defaults")["spec"]["template"]["spec"]["containers"][0]
    ports = [p["containerPort"] for p in container["ports"]]
    assert len(ports) == len(set(ports)) == 3, ports


def test_existing_service_account_needs_a_name(tmp_path):
    path = tmp_path / "v.yaml"
    path.write_text(yaml.safe_dump({"serviceAccount": {"create": False}}))
    proc = helm("template", "cdb", str(CHART_DIR), "-f", str(path), check=False)
    assert proc.returncode != 0
    assert "serviceAccount.name is required" in proc.stderr


# -- the CRD, the bot, monitoring --------------------------------------------------------------


def test_crd_is_kept_and_optional():
    crd = one(render("defaults"), "CustomResourceDefinition")
    assert crd["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    assert crd["metadata"]["name"] == "tradingbots.claire-de-binare.dev"
    assert by_kind(render("crds-external"), "CustomResourceDefinition") == []
    loose = one(render("crds-not-kept"), "CustomResourceDefinition")
    assert "helm.sh/resource-policy" not in loose["metadata"].get("annotations", {})


def test_no_tradingbot_by_default():
    assert by_kind(render("defaults"), "TradingBot") == []


def test_bot_from_values_is_paper_and_uses_the_chart_image():
    bot = one(render("bot"), "TradingBot")
    assert bot["apiVersion"] == "claire-de-binare.dev/v1alpha1"
    assert bot["metadata"]["name"] == "demo"
    assert bot["metadata"]["namespace"] == "trading"
    assert bot["spec"]["exchange"]["mode"] == "paper"
    assert bot["spec"]["symbols"] == ["SOL_USDT"]
    assert bot["spec"]["image"] == {
        "repository": "ghcr.io/claire-de-binare/cdb",
        "tag": "0.1.0",
        "pullPolicy": "IfNotPresent",
    }
    assert bot["spec"]["networkPolicy"]["operatorNamespace"] == "cdb-system"
    own = one(render("bot-own-image"), "TradingBot")
    assert own["metadata"]["namespace"] == "cdb-system"
    assert own["spec"]["image"]["tag"] == "dev"
    assert own["spec"]["networkPolicy"]["operatorNamespace"] == "ops"
    assert own["spec"]["exchange"]["mode"] == "paper"


def test_bot_without_the_crd_in_the_cluster_fails_with_the_next_step(tmp_path):
    path = tmp_path / "v.yaml"
    path.write_text(yaml.safe_dump({"bot": {"enabled": True}}))
    proc = helm("template", "cdb", str(CHART_DIR), "-f", str(path), check=False)
    assert proc.returncode != 0
    assert "helm upgrade --reuse-values --set bot.enabled=true" in proc.stderr


def test_servicemonitor_only_when_the_api_exists_or_forced():
    assert by_kind(render("defaults"), "ServiceMonitor") == []
    assert by_kind(render("servicemonitor-disabled"), "ServiceMonitor") == []
    # An operator that serves no metrics gets no ServiceMonitor (nor Service) at all.
    assert by_kind(render("servicemonitor-auto-no-metrics"), "ServiceMonitor") == []
    assert by_kind(render("servicemonitor-auto-no-metrics"), "Service") == []
    auto = one(render("servicemonitor-auto-with-api"), "ServiceMonitor")
    forced = one(render("servicemonitor-forced"), "ServiceMonitor")
    assert forced["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert forced["spec"]["endpoints"][0]["interval"] == "15s"
    for sm, objs in ((auto, render("servicemonitor-auto-with-api")), (forced, None)):
        objs = objs or render("servicemonitor-forced")
        service = one(objs, "Service")
        selector = sm["spec"]["selector"]["matchLabels"]
        assert selector.items() <= service["metadata"]["labels"].items()
        port_names = {p["name"] for p in service["spec"]["ports"]}
        assert sm["spec"]["endpoints"][0]["port"] in port_names
        assert service["spec"]["ports"][0]["port"] == 9100
        assert sm["spec"]["namespaceSelector"] == {"matchNames": ["cdb-system"]}


def test_operator_metrics_and_their_servicemonitor_by_default():
    """values.yaml says the operator serves metrics: it does, through a Service, and a
    cluster with the Prometheus Operator gets a ServiceMonitor for them."""
    objs = render("servicemonitor-auto-default")
    deploy = one(objs, "Deployment")
    container = deploy["spec"]["template"]["spec"]["containers"][0]
    assert "--metrics-port=8081" in container["args"]
    assert {"name": "metrics", "containerPort": 8081, "protocol": "TCP"} in container["ports"]
    sm = one(objs, "ServiceMonitor")
    assert sm["spec"]["endpoints"][0]["honorLabels"] is True
    # kube-prometheus-stack selects by its release label, as for the bots' ServiceMonitors
    assert sm["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert one(objs, "PrometheusRule")["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert one(objs, "Service")["spec"]["ports"][0]["port"] == 8081


def test_prometheusrule_only_when_the_api_exists_or_forced():
    assert by_kind(render("defaults"), "PrometheusRule") == []
    assert by_kind(render("prometheusrule-disabled"), "PrometheusRule") == []
    auto = one(render("servicemonitor-auto-default"), "PrometheusRule")
    forced = one(render("prometheusrule-forced"), "PrometheusRule")
    assert forced["metadata"]["labels"]["release"] == "kps"
    assert auto["spec"] == forced["spec"]


@pytest.mark.parametrize(
    ("kind", "scenario"),
    [
        ("PrometheusRule", "prometheusrule-forced"),
        ("ServiceMonitor", "servicemonitor-forced"),
    ],
)
def test_monitoring_objects_valid_against_prometheus_operators_crd(kind, scenario):
    obj = one(render(scenario), kind)
    validate_custom_resource(obj, operator_crd(kind))


def test_dashboard_configmap():
    cm = one(render("defaults"), "ConfigMap")
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    dash = yaml.safe_load(cm["data"]["claire-de-binare.json"])
    assert dash["uid"] == "claire-de-binare"
    moved = one(render("dashboard-elsewhere"), "ConfigMap")
    assert moved["metadata"]["namespace"] == "monitoring"
    assert moved["metadata"]["annotations"] == {"grafana_folder": "Trading"}
    assert moved["metadata"]["labels"]["team"] == "trading"
    assert by_kind(render("dashboard-off"), "ConfigMap") == []


def test_notes_name_the_next_commands():
    out = helm("install", "cdb", str(CHART_DIR), "-n", "cdb-system", "--dry-run=client").stdout
    notes = out.split("NOTES:", 1)[1]
    for expected in (
        "kubectl -n cdb-system rollout status deployment/cdb-claire-de-binare-operator",
        "kubectl apply -f examples/tradingbot-paper.yaml",
        "kubectl get tb -w",
        '{"spec":{"circuitBreaker":{"engaged":true',
        "helm uninstall cdb -n cdb-system",
        "kubectl delete crd tradingbots.claire-de-binare.dev",
    ):
        assert expected in notes, expected


#: The ServiceMonitor fields the chart uses, as in prometheus-operator's monitoring.coreos.com/v1
#: CRD (a subset: that CRD is not available offline). Unknown fields fail, like the real one.
SERVICE_MONITOR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "additionalProperties": False,
    "properties": {
        "apiVersion": {"const": "monitoring.coreos.com/v1"},
        "kind": {"const": "ServiceMonitor"},
        "metadata": {"type": "object", "required": ["name", "namespace"]},
        "spec": {
            "type": "object",
            "required": ["selector", "endpoints"],
            "additionalProperties": False,
            "properties": {
                "jobLabel": {"type": "string"},
                "selector": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {
                        "matchLabels": {
                            "type": "object",
                            "additionalProperties": {"type": "string"},
                        }
                    },
                },
                "namespaceSelector": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {
                        "any": {"type": "boolean"},
                        "matchNames": {"type": "array", "items": {"type": "string"}},
                    },
                },
                "endpoints": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "additionalProperties": False,
                        "properties": {
                            "port": {"type": "string"},
                            "path": {"type": "string"},
                            "scheme": {"enum": ["http", "https", "HTTP", "HTTPS"]},
                            "interval": {
                                "type": "string",
                                "pattern": "^(0|(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$",
                            },
                            "scrapeTimeout": {"type": "string"},
                            "honorLabels": {"type": "boolean"},
                        },
                    },
                },
            },
        },
    },
}

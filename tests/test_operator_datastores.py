"""Rendering the data store modes: embedded, CloudNativePG, external; budgets, spread, priority.

Every object is validated in strict mode against the official Kubernetes schemas
(kubernetes-validate); the CloudNativePG ``Cluster`` against CloudNativePG's own v1.30.0
CRD schema, read from ``/work/shared/data/cloudnative-pg/`` (or ``$CDB_CNPG_CRD``) and
never copied into the repository: those tests skip, saying so, where it is absent.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from cdb_operator import model
from cdb_operator.render import Bot, render_children, render_secret
from cdb_operator.render import config as cfg
from cdb_operator.render.cnpg import cluster_readiness

UID = "1d6a3d1c-0000-4000-8000-00000000000b"
VERSIONS = ["1.29.0", "1.35.0"]
CNPG_CRD = Path(
    os.environ.get(
        "CDB_CNPG_CRD", "/work/shared/data/cloudnative-pg/postgresql.cnpg.io_clusters.yaml"
    )
)

EXTERNAL_PG = {
    "mode": "external",
    "external": {
        "host": "db.example.internal",
        "port": 6432,
        "database": "bot1",
        "user": "bot1",
        "passwordSecret": {"name": "bot1-db", "key": "password"},
        "sslMode": "verify-full",
    },
}
EXTERNAL_REDIS = {
    "mode": "external",
    "external": {
        "host": "redis.example.internal",
        "port": 6380,
        "tls": True,
        "passwordSecret": {"name": "bot1-redis", "key": "auth"},
    },
}
CNPG = {"mode": "cloudnativepg", "cloudnativepg": {"instances": 3}, "storageClass": "fast"}
SPREAD = {
    "topologySpread": {"topologyKey": "topology.kubernetes.io/zone"},
    "priorityClassName": "trading-critical",
    "services": {"persistence": {"replicas": 2}},
}
MODES = {
    "embedded": {},
    "cloudnativepg": {"postgres": CNPG, **SPREAD},
    "external": {"postgres": EXTERNAL_PG, "redis": EXTERNAL_REDIS},
    "cnpg-external-redis": {"postgres": CNPG, "redis": EXTERNAL_REDIS},
}


def make(spec: dict[str, Any], monitoring_api: bool = True) -> Bot:
    return Bot("demo", "trading", UID, model.parse_spec(spec), monitoring_api)


def objects(spec: dict[str, Any], monitoring_api: bool = True) -> list[dict[str, Any]]:
    bot = make(spec, monitoring_api)
    return [
        *render_children(bot),
        render_secret(
            bot, {"REDIS_PASSWORD": "r", "POSTGRES_PASSWORD": "p", "ADVISOR_REDIS_PASSWORD": "a"}
        ),
    ]


def named(objs: list[dict], kind: str) -> dict[str, dict]:
    return {o["metadata"]["name"]: o for o in objs if o["kind"] == kind}


def env_of(objs: list[dict], deployment: str) -> dict[str, dict]:
    pod = named(objs, "Deployment")[deployment]["spec"]["template"]["spec"]
    return {e["name"]: e for e in pod["containers"][0]["env"]}


def cnpg_schema() -> dict[str, Any]:
    if not CNPG_CRD.exists():
        pytest.skip(
            f"CloudNativePG's Cluster CRD not found at {CNPG_CRD} (set CDB_CNPG_CRD to the "
            "v1.30.0 postgresql.cnpg.io_clusters.yaml): Cluster schema not checked"
        )
    crd = yaml.safe_load(CNPG_CRD.read_text())
    version = next(v for v in crd["spec"]["versions"] if v["name"] == "v1")
    return version["schema"]["openAPIV3Schema"]


def strict(schema: Any) -> Any:
    """Unknown fields rejected (the API server would prune them silently: we want them caught)."""
    if isinstance(schema, dict):
        out = {k: strict(v) for k, v in schema.items()}
        if out.get("type") == "object" and "properties" in out:
            out.setdefault("additionalProperties", False)
        if "metadata" in (schema.get("properties") or {}):
            out["properties"]["metadata"] = {"type": "object"}
        return out
    if isinstance(schema, list):
        return [strict(v) for v in schema]
    return schema


@pytest.mark.parametrize("mode", sorted(MODES))
def test_every_object_of_every_mode_is_valid_kubernetes(mode: str) -> None:
    for obj in objects(MODES[mode]):
        if obj["kind"] in ("ServiceMonitor", "Cluster"):
            continue
        for version in VERSIONS:
            kubernetes_validate.validate(obj, version, strict=True)


@pytest.mark.parametrize("monitoring_api", [True, False])
def test_cnpg_cluster_is_valid_against_cloudnativepgs_own_crd(monitoring_api: bool) -> None:
    schema = strict(cnpg_schema())
    spec = {**MODES["cloudnativepg"], "tolerations": [{"key": "db", "operator": "Exists"}]}
    spec["postgres"] = {
        **CNPG,
        "cloudnativepg": {"instances": 2, "imageName": "ghcr.io/cloudnative-pg/postgresql:16"},
    }
    cluster = named(objects(spec, monitoring_api), "Cluster")["demo-postgres"]
    jsonschema.validate(cluster, schema)
    assert cluster["apiVersion"] == "postgresql.cnpg.io/v1"
    assert cluster["spec"]["monitoring"]["enablePodMonitor"] is monitoring_api


def test_the_cnpg_check_would_catch_a_mistake() -> None:
    schema = strict(cnpg_schema())
    cluster = named(objects(MODES["cloudnativepg"]), "Cluster")["demo-postgres"]
    cluster["spec"]["storage"]["sizee"] = "1Gi"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(cluster, schema)
    cluster = named(objects(MODES["cloudnativepg"]), "Cluster")["demo-postgres"]
    cluster["spec"]["instances"] = 0
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(cluster, schema)


def test_embedded_is_todays_statefulsets() -> None:
    objs = objects({})
    assert set(named(objs, "StatefulSet")) == {"demo-redis", "demo-postgres"}
    assert not named(objs, "Cluster")
    data = named(objs, "ConfigMap")["demo-config"]["data"]
    assert (data["POSTGRES_HOST"], data["REDIS_HOST"]) == ("demo-postgres", "demo-redis")
    assert "PGSSLMODE" not in data and "REDIS_TLS" not in data
    env = env_of(objs, "demo-risk")
    assert env["POSTGRES_PASSWORD"]["valueFrom"]["secretKeyRef"]["name"] == "demo-passwords"


def test_cnpg_cluster_holds_the_bots_database_and_user_and_the_services_use_it() -> None:
    objs = objects(MODES["cloudnativepg"])
    assert set(named(objs, "StatefulSet")) == {"demo-redis"}
    cluster = named(objs, "Cluster")["demo-postgres"]
    spec = cluster["spec"]
    assert spec["instances"] == 3
    assert spec["bootstrap"]["initdb"] == {"database": cfg.POSTGRES_DB, "owner": cfg.POSTGRES_USER}
    assert spec["storage"] == {"size": "5Gi", "storageClass": "fast"}
    assert spec["resources"]["requests"] == {"cpu": "100m", "memory": "256Mi"}
    assert spec["priorityClassName"] == "trading-critical"
    assert spec["affinity"]["topologyKey"] == "topology.kubernetes.io/zone"
    assert spec["affinity"]["enablePodAntiAffinity"] is True
    assert spec["enablePDB"] is True and spec["enableSuperuserAccess"] is False
    assert cluster["metadata"]["ownerReferences"][0]["uid"] == UID
    # wired to the -rw Service and the generated -app Secret
    data = named(objs, "ConfigMap")["demo-config"]["data"]
    assert data["POSTGRES_HOST"] == "demo-postgres-rw"
    assert (data["POSTGRES_USER"], data["POSTGRES_DB"]) == (cfg.POSTGRES_USER, cfg.POSTGRES_DB)
    app = {"name": "demo-postgres-app", "key": "password"}
    for deployment in ("demo-risk", "demo-execution", "demo-persistence", "demo-dashboard"):
        assert env_of(objs, deployment)["POSTGRES_PASSWORD"]["valueFrom"]["secretKeyRef"] == app
    backup = named(objs, "CronJob")["demo-backup"]["spec"]["jobTemplate"]["spec"]["template"]
    benv = {e["name"]: e for e in backup["spec"]["containers"][0]["env"]}
    assert benv["POSTGRES_PASSWORD"]["valueFrom"]["secretKeyRef"] == app
    # NetworkPolicies: egress to CloudNativePG's instances, no policy of ours on them
    policies = named(objs, "NetworkPolicy")
    assert "demo-np-postgres" not in policies
    to_pg = policies["demo-np-to-postgres"]["spec"]["egress"][0]
    assert to_pg["to"] == [{"podSelector": {"matchLabels": {"cnpg.io/cluster": "demo-postgres"}}}]


def test_external_stores_are_only_pointed_at() -> None:
    objs = objects(MODES["external"])
    assert not named(objs, "StatefulSet") and not named(objs, "Cluster")
    assert set(named(objs, "Service")) == {f"demo-{s}" for s in model.SERVICES}
    data = named(objs, "ConfigMap")["demo-config"]["data"]
    assert data["POSTGRES_HOST"] == "db.example.internal" and data["POSTGRES_PORT"] == "6432"
    assert (data["POSTGRES_USER"], data["POSTGRES_DB"]) == ("bot1", "bot1")
    assert data["PGSSLMODE"] == "verify-full"
    assert (data["REDIS_HOST"], data["REDIS_PORT"], data["REDIS_TLS"]) == (
        "redis.example.internal",
        "6380",
        "true",
    )
    env = env_of(objs, "demo-risk")
    assert env["POSTGRES_PASSWORD"]["valueFrom"]["secretKeyRef"] == {
        "name": "bot1-db",
        "key": "password",
    }
    assert env["REDIS_PASSWORD"]["valueFrom"]["secretKeyRef"] == {
        "name": "bot1-redis",
        "key": "auth",
    }
    policies = named(objs, "NetworkPolicy")
    assert "demo-np-postgres" not in policies and "demo-np-redis" not in policies
    assert policies["demo-np-to-postgres"]["spec"]["egress"] == [
        {"ports": [{"protocol": "TCP", "port": 6432}]}
    ]
    assert policies["demo-np-to-redis"]["spec"]["egress"] == [
        {"ports": [{"protocol": "TCP", "port": 6380}]}
    ]
    # no password Secret key of ours is referenced any more
    for deployment in named(objs, "Deployment").values():
        for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]:
            ref = (e.get("valueFrom") or {}).get("secretKeyRef") or {}
            assert ref.get("name") != "demo-passwords", e


def test_backup_snapshots_only_the_embedded_redis() -> None:
    def args(spec: dict) -> list[str]:
        cron = named(objects(spec), "CronJob")["demo-backup"]
        return cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["args"]

    assert "--redis" in args({}) and "--redis" in args(MODES["cloudnativepg"])
    assert "--redis" not in args(MODES["external"])


def test_external_redis_without_password_gets_none() -> None:
    spec = {"redis": {"mode": "external", "external": {"host": "10.0.0.5"}}}
    env = env_of(objects(spec), "demo-feed")
    assert "REDIS_PASSWORD" not in env


def test_disruption_budgets_for_stores_and_replicated_services_only() -> None:
    budgets = named(objects({"services": {"notifier": {"replicas": 2}}}), "PodDisruptionBudget")
    assert {n: b["spec"]["maxUnavailable"] for n, b in budgets.items()} == {
        "demo-redis": 0,
        "demo-postgres": 0,
        "demo-notifier": 1,
    }
    for name, budget in budgets.items():
        component = name.removeprefix("demo-")
        assert budget["spec"]["selector"]["matchLabels"]["app.kubernetes.io/component"] == component
    assert not named(objects({"podDisruptionBudgets": {"enabled": False}}), "PodDisruptionBudget")
    cnpg = named(objects(MODES["cloudnativepg"]), "PodDisruptionBudget")
    assert set(cnpg) == {"demo-redis", "demo-persistence"}  # CloudNativePG makes its own


def test_topology_spread_and_priority_class_on_every_long_running_pod() -> None:
    objs = objects(SPREAD)
    for o in objs:
        if o["kind"] not in ("Deployment", "StatefulSet"):
            continue
        pod = o["spec"]["template"]["spec"]
        assert pod["priorityClassName"] == "trading-critical", o["metadata"]["name"]
        (constraint,) = pod["topologySpreadConstraints"]
        assert constraint["topologyKey"] == "topology.kubernetes.io/zone"
        assert constraint["whenUnsatisfiable"] == "ScheduleAnyway"
        assert constraint["labelSelector"]["matchLabels"] == o["spec"]["selector"]["matchLabels"]
    cron = named(objs, "CronJob")["demo-backup"]["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    assert cron["priorityClassName"] == "trading-critical"
    plain = named(objects({}), "Deployment")["demo-feed"]["spec"]["template"]["spec"]
    assert "topologySpreadConstraints" not in plain and "priorityClassName" not in plain


def test_cluster_readiness_counts_ready_instances() -> None:
    live = {"spec": {"instances": 3}, "status": {"readyInstances": 2}}
    assert cluster_readiness(live) == {
        "kind": "Cluster",
        "ready": False,
        "readyReplicas": 2,
        "replicas": 3,
    }
    live["status"]["readyInstances"] = 3
    assert cluster_readiness(live)["ready"] is True
    assert cluster_readiness({"spec": {"instances": 1}})["ready"] is False


def test_external_mode_needs_its_settings() -> None:
    with pytest.raises(ValueError, match="external is required"):
        model.parse_spec({"postgres": {"mode": "external"}})
    with pytest.raises(ValueError, match="passwordSecret|password_secret"):
        model.parse_spec({"postgres": {"mode": "external", "external": {"host": "db"}}})


def test_the_install_docs_examples_are_valid_specs_and_render() -> None:
    """The YAML the install guide shows for each production mode parses and renders."""
    import re

    text = (Path(__file__).resolve().parents[1] / "docs" / "install.md").read_text()
    blocks = re.findall(r"```yaml\n(.*?)```", text, flags=re.S)
    specs = [yaml.safe_load(b)["spec"] for b in blocks if "postgres:" in b and "mode:" in b]
    assert {s["postgres"]["mode"] for s in specs} == {"cloudnativepg", "external"}
    for spec in specs:
        for obj in objects(spec):
            if obj["kind"] not in ("ServiceMonitor", "Cluster"):
                kubernetes_validate.validate(obj, VERSIONS[-1], strict=True)


def test_configmap_names_of_every_mode_are_read_by_the_services_or_libpq() -> None:
    from cdb.settings import BaseServiceSettings, PostgresSettings

    read = set(BaseServiceSettings.model_fields) | set(PostgresSettings.model_fields)
    for spec in MODES.values():
        data = named(objects(spec), "ConfigMap")["demo-config"]["data"]
        stores = {k for k in data if k.startswith(("REDIS_", "POSTGRES_"))}
        assert stores <= read, stores - read


def test_libpq_honours_pgsslmode_from_the_environment(pg_env: dict[str, str]) -> None:
    """PGSSLMODE set by the ConfigMap reaches psycopg2 (the test server has no TLS)."""
    import subprocess
    import sys

    code = (
        "import psycopg2, sys\n"
        "from cdb.settings import PostgresSettings\n"
        "try:\n"
        "    psycopg2.connect(PostgresSettings().postgres_dsn()).close()\n"
        "except psycopg2.OperationalError as e:\n"
        "    print('refused:', e); sys.exit(3)\n"
    )
    base = {**os.environ, **pg_env}
    ok = subprocess.run([sys.executable, "-c", code], env={**base, "PGSSLMODE": "disable"})
    assert ok.returncode == 0
    refused = subprocess.run(
        [sys.executable, "-c", code],
        env={**base, "PGSSLMODE": "require"},
        capture_output=True,
        text=True,
    )
    assert refused.returncode == 3 and "SSL" in refused.stdout

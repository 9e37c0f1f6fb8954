"""The data store modes on a real cluster: ``external`` against a PostgreSQL this test
starts, and ``cloudnativepg`` with CloudNativePG's own Cluster CRD.

Skipped unless ``KUBECONFIG`` names a cluster. The operator runs as a subprocess on this
machine (as in ``test_operator_cluster``), so it reaches the loopback PostgreSQL the test
starts: the real API server admits the spec (defaults, the new CEL rules), the operator
reads the password from the Secret the test creates, logs in and reports
``PostgresReady``; no PostgreSQL StatefulSet is made and the services are pointed at the
external host. Stopping the database turns the condition False, naming the address.

For ``cloudnativepg`` the test installs CloudNativePG's v1.30.0 Cluster CRD from
``/work/shared/data/cloudnative-pg/`` (or ``$CDB_CNPG_CRD``; skipped, saying so, when
absent) unless the cluster already has it, and removes it again only if it installed it.
Without CloudNativePG's operator nothing makes the instances: the API server admits the
Cluster (CloudNativePG's schema and CEL rules), it is owned by the bot, ``PostgresReady``
says it waits, and further reconciles leave it untouched (a fixed point).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from k8s_tools import kubectl, kubectl_binary
from test_operator_cluster import condition, get, namespace, operator, wait_for  # noqa: F401

from cdb.localservers import PostgresServer, free_port

pytestmark = [
    pytest.mark.cluster,
    pytest.mark.skipif(not os.environ.get("KUBECONFIG"), reason="needs a cluster (KUBECONFIG)"),
]
BOT = "e2e-ext"


def apply(obj: dict[str, Any]) -> None:
    subprocess.run(
        [str(kubectl_binary()), "apply", "-f", "-"],
        input=yaml.safe_dump(obj),
        text=True,
        check=True,
        capture_output=True,
    )


def test_external_postgres_is_checked_and_wired(
    namespace: str,  # noqa: F811
    operator: dict[str, Any],  # noqa: F811
    own_postgres: PostgresServer,
) -> None:
    postgres = own_postgres
    env = postgres.env()
    apply(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "ext-db", "namespace": namespace},
            "stringData": {"password": env["POSTGRES_PASSWORD"]},
        }
    )
    # the API server's own CEL rule: external mode without its settings is refused
    bad = {
        "apiVersion": "claire-de-binare.dev/v1alpha1",
        "kind": "TradingBot",
        "metadata": {"name": "bad", "namespace": namespace},
        "spec": {"postgres": {"mode": "external"}},
    }
    proc = subprocess.run(
        [str(kubectl_binary()), "apply", "--dry-run=server", "-f", "-"],
        input=yaml.safe_dump(bad),
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode != 0 and "postgres.external is required" in proc.stderr
    bot = {
        "apiVersion": "claire-de-binare.dev/v1alpha1",
        "kind": "TradingBot",
        "metadata": {"name": BOT, "namespace": namespace},
        "spec": {
            "feedSource": "synthetic",
            "postgres": {
                "mode": "external",
                "external": {
                    "host": "127.0.0.1",
                    "port": int(env["POSTGRES_PORT"]),
                    "database": env["POSTGRES_DB"],
                    "user": env["POSTGRES_USER"],
                    "passwordSecret": {"name": "ext-db", "key": "password"},
                    "sslMode": "disable",
                },
            },
        },
    }
    apply(bot)
    live = wait_for(
        lambda: (
            condition(get("tradingbot", BOT, namespace), "PostgresReady").get("status") == "True"
            and get("tradingbot", BOT, namespace)
        ),
        what="PostgresReady=True",
    )
    assert condition(live, "PostgresReady")["reason"] == "Reachable"
    assert live["spec"]["postgres"]["external"]["sslMode"] == "disable"
    assert get("statefulset", f"{BOT}-postgres", namespace) is None
    assert get("statefulset", f"{BOT}-redis", namespace) is not None
    config = wait_for(lambda: get("configmap", f"{BOT}-config", namespace), what="ConfigMap")
    assert config["data"]["POSTGRES_HOST"] == "127.0.0.1"
    assert config["data"]["POSTGRES_PORT"] == env["POSTGRES_PORT"]
    risk = wait_for(lambda: get("deployment", f"{BOT}-risk", namespace), what="risk")
    envs = {e["name"]: e for e in risk["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert envs["POSTGRES_PASSWORD"]["valueFrom"]["secretKeyRef"] == {
        "name": "ext-db",
        "key": "password",
    }
    # the mode is fixed after creation (transition rule)
    proc = kubectl(
        "patch",
        "tradingbot",
        BOT,
        "-n",
        namespace,
        "--type",
        "merge",
        "-p",
        '{"spec":{"postgres":{"mode":"embedded"}}}',
        check=False,
    )
    assert proc.returncode != 0 and "postgres.mode cannot be changed" in proc.stderr

    postgres.stop("immediate")
    down = wait_for(
        lambda: (
            condition(get("tradingbot", BOT, namespace), "PostgresReady").get("status") == "False"
            and condition(get("tradingbot", BOT, namespace), "PostgresReady")
        ),
        what="PostgresReady=False after the database stopped",
    )
    assert down["reason"] == "Unreachable" and env["POSTGRES_PORT"] in down["message"]
    assert operator["proc"].poll() is None, operator["log"].read_text()[-3000:]


CNPG_CRD = Path(
    os.environ.get(
        "CDB_CNPG_CRD", "/work/shared/data/cloudnative-pg/postgresql.cnpg.io_clusters.yaml"
    )
)
CNPG_CRD_NAME = "clusters.postgresql.cnpg.io"


@pytest.fixture
def cnpg_crd() -> Iterator[None]:
    existed = kubectl("get", "crd", CNPG_CRD_NAME, check=False).returncode == 0
    if not existed:
        if not CNPG_CRD.exists():
            pytest.skip(f"CloudNativePG's Cluster CRD not found at {CNPG_CRD} (set CDB_CNPG_CRD)")
        kubectl("apply", "--server-side", "-f", str(CNPG_CRD))
        kubectl("wait", "--for=condition=Established", f"crd/{CNPG_CRD_NAME}", "--timeout=60s")
    yield
    if not existed:
        kubectl("delete", "crd", CNPG_CRD_NAME, "--wait=false", check=False)


@pytest.fixture
def cnpg_operator(namespace: str, tmp_path: Path) -> Iterator[dict[str, Any]]:  # noqa: F811
    """The operator as the chart runs it with operator.cloudnativepg.enabled."""
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
            "--resync",
            "3",
            "--redis-address",
            f"127.0.0.1:{free_port()}",
            "--cloudnativepg",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    yield {"log": tmp_path / "operator.log", "proc": proc}
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    log.close()


def test_cloudnativepg_cluster_is_admitted_owned_and_left_alone(
    namespace: str,  # noqa: F811
    cnpg_crd: None,
    cnpg_operator: dict[str, Any],
) -> None:
    bot = {
        "apiVersion": "claire-de-binare.dev/v1alpha1",
        "kind": "TradingBot",
        "metadata": {"name": "e2e-cnpg", "namespace": namespace},
        "spec": {
            "feedSource": "synthetic",
            "postgres": {"mode": "cloudnativepg", "cloudnativepg": {"instances": 2}},
            "topologySpread": {"topologyKey": "kubernetes.io/hostname"},
        },
    }
    apply(bot)
    uid = wait_for(lambda: get("tradingbot", "e2e-cnpg", namespace), what="bot")["metadata"]["uid"]
    cluster = wait_for(
        lambda: get("clusters.postgresql.cnpg.io", "e2e-cnpg-postgres", namespace), what="Cluster"
    )
    assert cluster["metadata"]["ownerReferences"][0]["uid"] == uid
    assert cluster["spec"]["instances"] == 2
    assert cluster["spec"]["bootstrap"]["initdb"]["database"] == "claire_de_binare"
    waiting = wait_for(
        lambda: (
            condition(get("tradingbot", "e2e-cnpg", namespace), "PostgresReady").get("reason")
            == "ClusterNotReady"
            and condition(get("tradingbot", "e2e-cnpg", namespace), "PostgresReady")
        ),
        what="PostgresReady=False/ClusterNotReady",
    )
    assert waiting["status"] == "False"
    assert get("statefulset", "e2e-cnpg-postgres", namespace) is None
    assert get("poddisruptionbudget", "e2e-cnpg-redis", namespace) is not None
    config = get("configmap", "e2e-cnpg-config", namespace)
    assert config["data"]["POSTGRES_HOST"] == "e2e-cnpg-postgres-rw"
    # a fixed point: several resyncs later the stored Cluster was not written again
    before = get("clusters.postgresql.cnpg.io", "e2e-cnpg-postgres", namespace)
    time.sleep(10)
    after = get("clusters.postgresql.cnpg.io", "e2e-cnpg-postgres", namespace)
    assert after["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]
    assert cnpg_operator["proc"].poll() is None, cnpg_operator["log"].read_text()[-3000:]

"""``postgres.mode: external`` on a real cluster, against a PostgreSQL this test starts.

Skipped unless ``KUBECONFIG`` names a cluster. The operator runs as a subprocess on this
machine (as in ``test_operator_cluster``), so it reaches the loopback PostgreSQL the test
starts: the real API server admits the spec (defaults, the new CEL rules), the operator
reads the password from the Secret the test creates, logs in and reports
``PostgresReady``; no PostgreSQL StatefulSet is made and the services are pointed at the
external host. Stopping the database turns the condition False, naming the address.
"""

from __future__ import annotations

import subprocess
from typing import Any

import pytest
import yaml
from k8s_tools import kubectl, kubectl_binary
from test_operator_cluster import condition, get, namespace, operator, wait_for  # noqa: F401

from cdb.localservers import PostgresServer

pytestmark = pytest.mark.cluster
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

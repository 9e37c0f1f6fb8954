"""``cdb-operator`` as users run it: a real process, a kubeconfig, a liveness endpoint.

The API server is kmock's emulator, reached through a kubeconfig file like any cluster;
the subprocess is the installed console script (``cdb-operator``).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml
from helpers import http_get
from k8s_tools import helm_template
from test_operator_handlers import NS, Cluster, declare, eventually, has_all_children

from cdb.cli import main as cdb_main
from cdb.localservers import free_port
from cdb_operator import crd
from cdb_operator.apply import Kube
from cdb_operator.main import main as operator_main
from cdb_operator.rbac import API_USAGE


def operator_command() -> list[str]:
    exe = shutil.which("cdb-operator")
    return [exe] if exe else [sys.executable, "-m", "cdb_operator.main"]


def test_without_kubeconfig_it_exits_2_with_one_line(tmp_path: Path) -> None:
    env = {**os.environ, "KUBECONFIG": str(tmp_path / "missing"), "HOME": str(tmp_path)}
    env.pop("KUBERNETES_SERVICE_HOST", None)
    proc = subprocess.run(
        [*operator_command(), "--namespace", "x"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "Kubernetes configuration" in proc.stderr


def test_rbac_command_prints_the_published_usage(capsys) -> None:
    assert operator_main(["rbac"]) == 0
    rules = yaml.safe_load(capsys.readouterr().out)["rules"]
    printed = {(r["apiGroups"][0], r["resources"][0]): tuple(r["verbs"]) for r in rules}
    assert printed == API_USAGE


def test_cdb_operator_subcommand_reaches_the_same_main(capsys) -> None:
    assert cdb_main(["operator", "crd", "--stdout"]) == 0
    assert capsys.readouterr().out == crd.crd_yaml()


def write_kubeconfig(kmock: Any, tmp_path: Path) -> Path:
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "kmock", "cluster": {"server": str(kmock.url)}}],
                "users": [{"name": "u", "user": {"token": "t"}}],
                "contexts": [{"name": "kmock", "context": {"cluster": "kmock", "user": "u"}}],
                "current-context": "kmock",
            }
        )
    )
    return kubeconfig


@pytest.mark.asyncio
async def test_the_chart_s_exact_command_runs_cluster_wide(kmock: Any, tmp_path: Path) -> None:
    """The operator container's command and args as `helm template` renders them (watching
    every namespace, the chart's default), run against kmock: it must start and reconcile.

    Only the ports are chosen through the chart's own values (operator.healthPort,
    readinessPort, metricsPort) so the test does not collide with another process; the Redis address is the
    chart's default too (cluster DNS, unresolvable here), so the breaker reports an error.
    """
    declare(kmock)
    kubeconfig = write_kubeconfig(kmock, tmp_path)
    health, ready, metrics = free_port(), free_port(), free_port()
    ports = {"healthPort": health, "readinessPort": ready, "metricsPort": metrics}
    objs = helm_template({"operator": ports}, release="cdb", namespace="cdb-x")
    deployment = next(o for o in objs if o["kind"] == "Deployment")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    command = [*container["command"], *container["args"]]
    assert "--all-namespaces" in command and not any(a.startswith("--namespace") for a in command)
    assert shutil.which(command[0]), f"{command[0]} is not installed"
    log_path = tmp_path / "operator.log"
    log = log_path.open("wb")
    proc = subprocess.Popen(
        command,
        env={
            **os.environ,
            "KUBECONFIG": str(kubeconfig),
            "HOME": str(tmp_path),
            "POD_NAMESPACE": "cdb-x",
            "POD_NAME": "cdb-operator-0",
        },
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        kube = Kube.for_url(str(kmock.url))
        cluster = Cluster(kmock=kmock, kube=kube, redis=None)  # type: ignore[arg-type]

        def alive() -> bool:
            with urllib.request.urlopen(f"http://127.0.0.1:{health}/healthz", timeout=2) as r:
                return r.status == 200

        await eventually(
            lambda: (proc.poll() is None or _fail(log_path)) and _quiet(alive),
            timeout=60,
            what="the liveness endpoint",
        )
        await cluster.create_bot({"feedSource": "synthetic"})
        await eventually(lambda: has_all_children(cluster), timeout=60, what="children")
        await eventually(lambda: cluster.condition("Ready"), what="status")
        policy = cluster.live("NetworkPolicy", "demo-np-redis")
        assert policy["spec"]["ingress"][0]["from"][1]["namespaceSelector"] == {
            "matchLabels": {"kubernetes.io/metadata.name": "cdb-x"}
        }, "the operator's namespace comes from the chart's POD_NAMESPACE"
        assert proc.poll() is None, log_path.read_text()[-3000:]
    finally:
        proc.terminate()
        await asyncio.to_thread(proc.wait, 30)
        log.close()
    assert proc.returncode == 0, log_path.read_text()[-3000:]
    assert "Traceback" not in log_path.read_text(), log_path.read_text()[-3000:]


def _fail(log_path: Path) -> bool:
    raise AssertionError(f"the operator exited: {log_path.read_text()[-3000:]}")


@pytest.mark.asyncio
async def test_the_console_script_reconciles_against_a_kubeconfig(
    kmock: Any, redis_env: dict[str, str], tmp_path: Path
) -> None:
    declare(kmock)
    kubeconfig = write_kubeconfig(kmock, tmp_path)
    health, ready = free_port(), free_port()
    log = (tmp_path / "operator.log").open("wb")
    proc = subprocess.Popen(
        [
            *operator_command(),
            "--namespace",
            NS,
            "--liveness",
            f"http://127.0.0.1:{health}/healthz",
            "--readiness",
            f"http://127.0.0.1:{ready}/readyz",
            "--redis-address",
            f"127.0.0.1:{redis_env['REDIS_PORT']}",
            "--resync",
            "5",
        ],
        env={**os.environ, "KUBECONFIG": str(kubeconfig), "HOME": str(tmp_path)},
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        kube = Kube.for_url(str(kmock.url))
        cluster = Cluster(kmock=kmock, kube=kube, redis=None)  # type: ignore[arg-type]

        def alive() -> bool:
            with urllib.request.urlopen(f"http://127.0.0.1:{health}/healthz", timeout=2) as r:
                return r.status == 200

        await eventually(
            lambda: proc.poll() is None and _quiet(alive), timeout=60, what="the liveness endpoint"
        )
        # readiness on its own endpoint: the API server (the emulator) answers
        assert await asyncio.to_thread(http_get, ready, "/readyz") == (200, {"status": "ok"})
        await cluster.create_bot({})
        await eventually(lambda: has_all_children(cluster), timeout=60, what="children")
        await eventually(lambda: cluster.condition("Ready"), what="status")
        assert cluster.status()["components"]["redis"]["kind"] == "StatefulSet"
    finally:
        proc.terminate()
        await asyncio.to_thread(proc.wait, 30)
        log.close()
    assert proc.returncode == 0, (tmp_path / "operator.log").read_text()[-3000:]


def _quiet(check) -> bool:
    try:
        return check()
    except OSError:
        return False


def test_docs_field_table_is_generated_from_the_model() -> None:
    path = Path(__file__).resolve().parents[1] / "docs" / "operator.md"
    assert operator_main(["docs", "--check", "--path", str(path)]) == 0, "run `cdb-operator docs`"

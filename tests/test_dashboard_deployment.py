"""The dashboard as the operator deploys it: the rendered Deployment's own command and
environment (ConfigMap + env + the token Secret), with only the cluster's host names
pointed at this test's Redis and PostgreSQL, starts, serves, and is writable only with
the Secret's token. A cluster run (tests/e2e) checks the same objects on a real API server.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.error
import urllib.request

from helpers import free_port, wait_for_port, wait_until
from test_operator_render import by_kind, make

from cdb.db.migrate import migrate
from cdb.settings import PostgresSettings
from cdb_operator.render import render_children

TOKEN = "operator-secret-token-0123"


def post(port: int, path: str, body: dict, headers: dict) -> int:
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}",
        data=json.dumps(body).encode(),
        method="POST",
        headers={"Content-Type": "application/json", **headers},
    )
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status
    except urllib.error.HTTPError as exc:
        return exc.code


def pod_environment(objs, secrets: dict[str, dict[str, str]]) -> tuple[list[str], dict]:
    """The dashboard container's command line and environment, as the kubelet would build it."""
    config = by_kind(objs, "ConfigMap")["demo-config"]["data"]
    pod = by_kind(objs, "Deployment")["demo-dashboard"]["spec"]["template"]["spec"]
    container = pod["containers"][0]
    env: dict[str, str] = {}
    for source in container["envFrom"]:
        if "configMapRef" in source:
            env.update(config)
        else:
            env.update(secrets[source["secretRef"]["name"]])
    for item in container["env"]:
        if "value" in item:
            env[item["name"]] = item["value"]
        elif "fieldRef" in item["valueFrom"]:
            env[item["name"]] = "demo-dashboard-abc12"
        else:
            ref = item["valueFrom"]["secretKeyRef"]
            value = secrets.get(ref["name"], {}).get(ref["key"])
            assert value is not None or ref.get("optional"), ref
            if value is not None:
                env[item["name"]] = value
    return container["command"] + container["args"], env


def test_the_rendered_dashboard_runs_and_obeys_its_secret(redis_env, pg_env, tmp_path):
    migrate(PostgresSettings(**pg_env))
    objs = render_children(make({"services": {"dashboard": {"envSecret": "dash"}}}))
    secrets = {
        "demo-passwords": {
            "REDIS_PASSWORD": redis_env.get("REDIS_PASSWORD", ""),
            "POSTGRES_PASSWORD": pg_env["POSTGRES_PASSWORD"],
        },
        "dash": {"DASHBOARD_TOKEN": TOKEN},
    }
    argv, env = pod_environment(objs, secrets)
    assert argv == ["cdb", "run", "dashboard"] and env["HTTP_PORT"] == "8006"
    assert env["NOTIFIER_URL"] == "http://demo-notifier:8005"
    # only the cluster's DNS names differ here; the port is free instead of 8006
    port = free_port()
    local = {**env, **redis_env, **pg_env, "HTTP_PORT": str(port), "HTTP_HOST": "127.0.0.1"}
    if not local.get("REDIS_PASSWORD"):
        local.pop("REDIS_PASSWORD", None)
    run_env = {k: v for k, v in os.environ.items() if not k.startswith(("REDIS_", "POSTGRES_"))}
    log = (tmp_path / "dashboard.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "cdb", *argv[1:]],
        env={**run_env, **local},
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_for_port(port, timeout=30)
        wait_until(
            lambda: (
                urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=3).status == 200
            ),
            timeout=30,
            message="healthy",
        )
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/overview", timeout=10) as r:
            overview = json.loads(r.read())
        assert overview["writable"] is True and overview["account"]["cash"] == 10_000.0
        body = {"verb": "engage", "reason": "deployment test"}
        assert post(port, "/api/control", body, {}) == 401
        assert post(port, "/api/control", body, {"Authorization": f"Bearer {TOKEN}"}) == 200
    finally:
        proc.terminate()
        assert proc.wait(timeout=20) == 0
        log.close()
    assert TOKEN not in (tmp_path / "dashboard.log").read_text()

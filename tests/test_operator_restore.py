"""``spec.restore``: one field → one restore Job, run once, verified, services held meanwhile.

Three levels: the Job as rendered (valid for every supported Kubernetes, PSS restricted);
its script run for real against PostgreSQL (the same ``sh -c`` the pod runs, with a
backup ``cdb backup`` made, into a database that changed since); and the operator's
handling against kmock (services at zero and backups suspended while it runs, back
afterwards, never a second Job for the same request).
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import psycopg2
import pytest
import pytest_asyncio
from k8s_tools import SUPPORTED_K8S_VERSIONS, pss_restricted_violations, validate_manifest
from test_backup_support import cdb, fingerprints, seed, settings_for
from test_operator_handlers import BOT, NS, Cluster, declare, eventually, running_operator

from cdb_operator.model import parse_spec
from cdb_operator.render import Bot, render_children
from cdb_operator.render.restore import SCRIPT, render_restore_job, restore_job_name

UID = "0b5e7c4e-0000-4000-8000-000000000009"


def bot(spec: dict[str, Any], restoring: bool = False) -> Bot:
    return Bot("demo", NS, UID, parse_spec(spec), restoring=restoring)


# -- the Job as rendered ------------------------------------------------------------------


@pytest.mark.parametrize("version", SUPPORTED_K8S_VERSIONS)
def test_restore_job_is_valid_and_restricted(version: str) -> None:
    job = render_restore_job(bot({}), "2026-11-29", "backup-20261122T030000.412345Z")
    validate_manifest(job, version)
    pod = job["spec"]["template"]["spec"]
    assert pss_restricted_violations(pod) == []
    assert len(job["metadata"]["name"]) <= 63
    container = pod["containers"][0]
    assert container["command"][-1] == "/backups/backup-20261122T030000.412345Z"
    assert "POSTGRES_PASSWORD" not in " ".join(container["command"][:3]).replace(
        '"$POSTGRES_PASSWORD"', ""
    )
    # the pod is admitted to PostgreSQL by the bot's NetworkPolicies (backup component)
    assert job["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/component"] == "backup"


def test_job_name_is_one_per_request() -> None:
    b = bot({})
    assert restore_job_name(b, "a") == restore_job_name(b, "a") != restore_job_name(b, "b")
    latest = render_restore_job(b, "a", "latest")["spec"]["template"]["spec"]["containers"][0]
    assert latest["command"][-1] == "/backups"  # cdb restore picks the newest complete one


def test_while_restoring_services_are_at_zero_and_backups_suspended() -> None:
    for restoring in (False, True):
        objs = render_children(bot({}, restoring=restoring))
        replicas = {o["spec"]["replicas"] for o in objs if o["kind"] == "Deployment"}
        suspend = next(o for o in objs if o["kind"] == "CronJob")["spec"]["suspend"]
        assert replicas == ({0} if restoring else {1}) and suspend is restoring
        stores = {o["spec"]["replicas"] for o in objs if o["kind"] == "StatefulSet"}
        assert stores == {1}  # PostgreSQL must run to be restored into


def test_script_is_valid_shell() -> None:
    assert subprocess.run(["sh", "-n", "-c", SCRIPT], check=False).returncode == 0


# -- the script for real ------------------------------------------------------------------


def run_script(env: dict[str, str], target: Path) -> subprocess.CompletedProcess:
    pg_bin = "/usr/lib/postgresql/15/bin"
    return subprocess.run(
        ["sh", "-c", SCRIPT, "restore", str(target)],
        env={
            **os.environ,
            **env,
            "RESTORE_WAIT_S": "4",  # the pod waits up to 120 s for the services to go
            "PATH": f"{pg_bin}:{os.environ['PATH']}",
        },
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def breaker_row(env: dict[str, str]) -> dict[str, Any] | None:
    with psycopg2.connect(settings_for(env).postgres_dsn()) as conn, conn.cursor() as cur:
        cur.execute("SELECT value FROM service_state WHERE service = 'risk' AND key = 'breaker'")
        row = cur.fetchone()
    conn.close()
    return row[0] if row else None


def test_the_job_script_restores_verified_and_halted(pg_env: dict, tmp_path: Path) -> None:
    seed(pg_env)
    done = cdb(["backup", "--output", str(tmp_path)], pg_env)
    assert done.returncode == 0, done.stderr
    at_backup = fingerprints(pg_env)
    # the database moves on after the backup (and a connection stays open, like a service)
    with psycopg2.connect(settings_for(pg_env).postgres_dsn()) as conn, conn.cursor() as cur:
        cur.execute("DELETE FROM orders WHERE id IN (SELECT id FROM orders LIMIT 5)")
    conn.close()
    assert fingerprints(pg_env) != at_backup
    lingering = psycopg2.connect(settings_for(pg_env).postgres_dsn())
    try:
        first = run_script(pg_env, tmp_path)
    finally:
        lingering.close()
    assert first.returncode == 0, first.stdout + first.stderr
    assert "row counts and checksums verified" in first.stdout
    restored = fingerprints(pg_env)
    assert {t: v for t, v in restored.items() if t != "service_state"} == {
        t: v for t, v in at_backup.items() if t != "service_state"
    }
    assert breaker_row(pg_env)["manual"] is True
    # safe to run again (a retried pod): same result
    again = run_script(pg_env, tmp_path)
    assert again.returncode == 0, again.stdout + again.stderr
    assert {t: v for t, v in fingerprints(pg_env).items() if t != "service_state"} == {
        t: v for t, v in restored.items() if t != "service_state"
    }
    password = pg_env["POSTGRES_PASSWORD"]
    assert password not in first.stdout + first.stderr + again.stdout + again.stderr


def test_the_job_script_refuses_a_corrupt_backup_before_touching_data(
    pg_env: dict, tmp_path: Path
) -> None:
    seed(pg_env)
    assert cdb(["backup", "--output", str(tmp_path)], pg_env).returncode == 0
    (backup,) = [p for p in tmp_path.iterdir() if p.name.startswith("backup-")]
    dump = backup / "postgres.dump"
    data = bytearray(dump.read_bytes())
    data[len(data) // 2] ^= 0xFF
    dump.write_bytes(bytes(data))
    before = fingerprints(pg_env)
    done = run_script(pg_env, backup)
    assert done.returncode != 0 and "checksum" in (done.stdout + done.stderr)
    assert fingerprints(pg_env) == before  # nothing dropped


# -- the operator -------------------------------------------------------------------------


@pytest_asyncio.fixture
async def cluster(kmock: Any, redis_env: dict[str, str]) -> AsyncIterator[Cluster]:
    declare(kmock)
    async with running_operator(kmock, int(redis_env["REDIS_PORT"])) as c:
        yield c


def job_of(c: Cluster, request: str) -> dict[str, Any] | None:
    return c.live("Job", restore_job_name(bot({}), request))


async def finish(c: Cluster, name: str, condition: str) -> None:
    await c.call(
        "PATCH",
        f"/apis/batch/v1/namespaces/{NS}/jobs/{name}/status",
        {"status": {"conditions": [{"type": condition, "status": "True", "message": "done"}]}},
        content_type="application/merge-patch+json",
    )


def deployments_at(c: Cluster, replicas: int) -> bool:
    names = [f"{BOT}-{s}" for s in ("feed", "risk", "execution", "persistence")]
    return all(
        (c.live("Deployment", n) or {}).get("spec", {}).get("replicas") == replicas for n in names
    )


@pytest.mark.asyncio
async def test_spec_restore_runs_one_job_and_brings_the_services_back(cluster: Cluster) -> None:
    await cluster.create_bot({"restore": {"requestId": "r1"}})
    job = await eventually(lambda: job_of(cluster, "r1"), what="the restore Job")
    await eventually(lambda: deployments_at(cluster, 0), what="services at zero")
    await eventually(lambda: cluster.live("CronJob", f"{BOT}-backup")["spec"]["suspend"] is True)
    status = await eventually(lambda: cluster.status().get("restore"))
    assert (status["phase"], status["requestId"], status["job"]) == (
        "Running",
        "r1",
        job["metadata"]["name"],
    )
    await finish(cluster, job["metadata"]["name"], "Complete")
    await eventually(
        lambda: cluster.status().get("restore", {}).get("phase") == "Succeeded", what="Succeeded"
    )
    await eventually(lambda: deployments_at(cluster, 1), what="services back")
    await eventually(lambda: cluster.live("CronJob", f"{BOT}-backup")["spec"]["suspend"] is False)
    await eventually(
        lambda: {"RestoreStarted", "RestoreSucceeded"} <= {e["reason"] for e in cluster.events()}
    )
    jobs = lambda: sorted(cluster.kinds().get("jobs", set()))  # noqa: E731
    assert jobs() == [job["metadata"]["name"]]
    # a resync later: still one Job, services still up (the same request never runs twice)
    await cluster.patch_spec({"strategy": {"thresholdPct": 4.0}})
    await eventually(lambda: cluster.status().get("observedGeneration") == 2)
    assert jobs() == [job["metadata"]["name"]] and deployments_at(cluster, 1)
    # a new request id is a new restore
    await cluster.patch_spec({"restore": {"requestId": "r2", "backup": "latest"}})
    await eventually(lambda: job_of(cluster, "r2"), what="the second Job")
    await eventually(lambda: deployments_at(cluster, 0), what="services at zero again")


@pytest.mark.asyncio
async def test_a_failed_restore_keeps_the_services_stopped(cluster: Cluster) -> None:
    await cluster.create_bot({"restore": {"requestId": "bad"}})
    job = await eventually(lambda: job_of(cluster, "bad"), what="the restore Job")
    await finish(cluster, job["metadata"]["name"], "Failed")
    failed = await eventually(
        lambda: (
            cluster.status().get("restore", {}).get("phase") == "Failed"
            and cluster.status()["restore"]
        )
    )
    assert "kubectl logs" in failed["message"]
    assert deployments_at(cluster, 0)
    await eventually(lambda: any(e["reason"] == "RestoreFailed" for e in cluster.events()))

"""The data store modes through the real kopf handlers, against kmock and real servers.

- cloudnativepg: without CloudNativePG's API (or without ``--cloudnativepg``) a clear
  ``PostgresReady=False`` and nothing half-made; with it, an owned ``Cluster`` whose
  readiness gates the bot's, and services wired to ``<cluster>-rw`` / ``<cluster>-app``;
- external: a real PostgreSQL and a real Redis (with a password, AOF off) the test starts;
  the operator logs in with the Secrets' passwords and reports reachability and what
  ``CONFIG GET`` says of the bus's durability; an unreachable database is named.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from kmock import ResourceInfo
from test_operator_handlers import (
    BOT,
    NS,
    UID,
    VERBS,
    Cluster,
    declare,
    eventually,
    running_operator,
)
from test_operator_rbac import observed_rules

from cdb.localservers import RedisServer
from cdb_operator.rbac import API_USAGE, CNPG_USAGE, covered
from cdb_operator.stores import durability

CNPG_RESOURCE = "postgresql.cnpg.io/v1/clusters"


def declare_cnpg(kmock: Any) -> None:
    kmock.resources[CNPG_RESOURCE] = ResourceInfo(kind="Cluster", namespaced=True, verbs=VERBS)


async def make_secret(c: Cluster, name: str, data: dict[str, str]) -> None:
    body = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": NS},
        "stringData": data,
    }
    await c.call("POST", f"/api/v1/namespaces/{NS}/secrets", body)


def cond(c: Cluster, type_: str, status: str, reason: str | None = None) -> dict | None:
    found = c.condition(type_)
    if found.get("status") == status and (reason is None or found.get("reason") == reason):
        return found
    return None


@pytest.fixture
def bus_with_password() -> Iterator[RedisServer]:
    """A Redis with a password and AOF off: reachable, but not durable enough for the bus."""
    root = Path(tempfile.mkdtemp(prefix="cdb-redis-ext-"))
    server = RedisServer(root / "data", password="bus-secret", appendonly=False).start()
    yield server
    server.stop()
    shutil.rmtree(root, ignore_errors=True)


@pytest.mark.asyncio
async def test_cloudnativepg_without_its_api_is_a_clear_condition_and_nothing_is_made(
    kmock: Any, redis_env: dict
) -> None:
    declare(kmock)
    async with running_operator(kmock, int(redis_env["REDIS_PORT"]), cloudnativepg=True) as c:
        await c.create_bot({"postgres": {"mode": "cloudnativepg"}})
        found = await eventually(
            lambda: cond(c, "PostgresReady", "False", "CloudNativePGMissing"), what="condition"
        )
        assert "postgresql.cnpg.io/v1 is not served" in found["message"]
        assert c.condition("Degraded")["reason"] == "CloudNativePGMissing"
        assert c.status()["phase"] == "Failed"
        assert c.live("Deployment", f"{BOT}-risk") is None  # nothing half-made
        await eventually(
            lambda: any(e["reason"] == "CloudNativePGMissing" for e in c.events()), what="event"
        )


@pytest.mark.asyncio
async def test_cloudnativepg_needs_the_operator_to_allow_it(kmock: Any, redis_env: dict) -> None:
    declare(kmock)
    declare_cnpg(kmock)
    async with running_operator(kmock, int(redis_env["REDIS_PORT"])) as c:
        await c.create_bot({"postgres": {"mode": "cloudnativepg"}})
        found = await eventually(
            lambda: cond(c, "PostgresReady", "False", "CloudNativePGNotEnabled")
        )
        assert "operator.cloudnativepg.enabled" in found["message"]
        assert c.live("Cluster", f"{BOT}-postgres") is None


@pytest.mark.asyncio
async def test_cloudnativepg_cluster_is_owned_wired_and_gates_readiness(
    kmock: Any, redis_env: dict
) -> None:
    declare(kmock, monitoring=True)
    declare_cnpg(kmock)
    async with running_operator(kmock, int(redis_env["REDIS_PORT"]), cloudnativepg=True) as c:
        await c.create_bot(
            {"postgres": {"mode": "cloudnativepg", "cloudnativepg": {"instances": 2}}}
        )
        cluster = await eventually(lambda: c.live("Cluster", f"{BOT}-postgres"), what="Cluster")
        assert cluster["metadata"]["ownerReferences"][0]["uid"] == UID
        assert cluster["spec"]["instances"] == 2
        assert cluster["spec"]["bootstrap"]["initdb"]["owner"] == "claire"
        assert cluster["spec"]["monitoring"]["enablePodMonitor"] is True  # ServiceMonitor API on
        assert c.live("StatefulSet", f"{BOT}-postgres") is None
        assert c.live("StatefulSet", f"{BOT}-redis") is not None
        config = await eventually(lambda: c.live("ConfigMap", f"{BOT}-config"))
        assert config["data"]["POSTGRES_HOST"] == f"{BOT}-postgres-rw"
        risk = await eventually(lambda: c.live("Deployment", f"{BOT}-risk"))
        env = {e["name"]: e for e in risk["spec"]["template"]["spec"]["containers"][0]["env"]}
        assert env["POSTGRES_PASSWORD"]["valueFrom"]["secretKeyRef"] == {
            "name": f"{BOT}-postgres-app",
            "key": "password",
        }
        waiting = await eventually(
            lambda: cond(c, "PostgresReady", "False", "ClusterNotReady"), what="not ready"
        )
        assert "0/2 instances" in waiting["message"]
        assert c.status()["components"]["postgres"]["kind"] == "Cluster"
        # play CloudNativePG: both instances ready
        await c.call(
            "PATCH",
            f"/apis/{CNPG_RESOURCE.rsplit('/', 1)[0]}/namespaces/{NS}/clusters/{BOT}-postgres",
            {"status": {"readyInstances": 2, "instances": 2, "phase": "Cluster in healthy state"}},
            content_type="application/merge-patch+json",
        )
        ready = await eventually(lambda: cond(c, "PostgresReady", "True", "ClusterReady"))
        assert "healthy" in ready["message"]
        await eventually(lambda: c.status()["components"]["postgres"]["ready"] is True)
    # every request is published: API_USAGE, and CNPG_USAGE which only this mode needs
    rules = observed_rules(kmock)
    assert ("create", "postgresql.cnpg.io", "clusters") in rules
    assert ("list", "policy", "poddisruptionbudgets") in rules
    missing = sorted(r for r in rules if not covered(r, {**API_USAGE, **CNPG_USAGE}))
    assert not missing, missing


@pytest.mark.asyncio
async def test_external_stores_are_checked_with_the_users_passwords(
    kmock: Any, redis_env: dict, pg_env: dict, bus_with_password: RedisServer
) -> None:
    declare(kmock)
    spec = {
        "postgres": {
            "mode": "external",
            "external": {
                "host": "127.0.0.1",
                "port": int(pg_env["POSTGRES_PORT"]),
                "database": pg_env["POSTGRES_DB"],
                "user": pg_env["POSTGRES_USER"],
                "passwordSecret": {"name": "db", "key": "pw"},
                "sslMode": "disable",
            },
        },
        "redis": {
            "mode": "external",
            "external": {
                "host": "127.0.0.1",
                "port": bus_with_password.port,
                "passwordSecret": {"name": "bus", "key": "auth"},
            },
        },
    }
    async with running_operator(kmock, int(redis_env["REDIS_PORT"])) as c:
        await c.create_bot(spec)
        missing = await eventually(
            lambda: cond(c, "Degraded", "True", "PasswordSecretMissing"), what="secret missing"
        )
        assert "passwordSecret: Secret" in missing["message"] and "not found" in missing["message"]
        assert c.live("Deployment", f"{BOT}-risk") is None
        await make_secret(c, "db", {"pw": pg_env["POSTGRES_PASSWORD"]})
        await make_secret(c, "bus", {"auth": "bus-secret"})
        pg = await eventually(lambda: cond(c, "PostgresReady", "True", "Reachable"), timeout=40)
        assert pg_env["POSTGRES_DB"] in pg["message"]
        await eventually(lambda: cond(c, "RedisReady", "True", "Reachable"))
        durable = await eventually(lambda: cond(c, "BusDurable", "False", "NotDurable"))
        assert "appendonly is 'no'" in durable["message"]
        # the breaker is read from the external bus with its password
        await eventually(
            lambda: (
                c.status().get("breaker", {}).get("error") == ""
                and c.status()["breaker"].get("observedAt")
            ),
            what="breaker observed on the external Redis",
        )
        assert c.live("StatefulSet", f"{BOT}-postgres") is None
        assert c.live("StatefulSet", f"{BOT}-redis") is None
        config = c.live("ConfigMap", f"{BOT}-config")["data"]
        assert config["REDIS_PORT"] == str(bus_with_password.port)
        assert config["PGSSLMODE"] == "disable"
        # the bus made durable: the next reconcile sees it
        client = redis.Redis(port=bus_with_password.port, password="bus-secret")
        client.config_set("appendonly", "yes")
        client.close()
        await eventually(lambda: cond(c, "BusDurable", "True", "Verified"), timeout=30)


@pytest.mark.asyncio
async def test_an_unreachable_external_database_is_named(kmock: Any, redis_env: dict) -> None:
    declare(kmock)
    spec = {
        "postgres": {
            "mode": "external",
            "external": {
                "host": "127.0.0.1",
                "port": 1,
                "passwordSecret": {"name": "db", "key": "pw"},
                "sslMode": "disable",
            },
        }
    }
    async with running_operator(kmock, int(redis_env["REDIS_PORT"])) as c:
        await make_secret(c, "db", {"pw": "x"})
        await c.create_bot(spec)
        found = await eventually(lambda: cond(c, "PostgresReady", "False", "Unreachable"))
        assert "127.0.0.1:1" in found["message"]
        # the services are still made: they wait NotReady for the database
        assert await eventually(lambda: c.live("Deployment", f"{BOT}-risk"))
        await eventually(
            lambda: any(e["reason"] == "Unreachable" and e["type"] == "Warning" for e in c.events())
        )


def test_durability_rules() -> None:
    ok = {"appendonly": "yes", "appendfsync": "everysec", "maxmemory-policy": "noeviction"}
    assert durability(ok).status == "True"
    assert durability({**ok, "appendfsync": "always"}).status == "True"
    lazy = durability({**ok, "appendfsync": "no"})
    assert (lazy.status, lazy.reason) == ("False", "NotDurable") and "appendfsync" in lazy.message
    evicting = durability({**ok, "maxmemory-policy": "allkeys-lru"})
    assert evicting.status == "False" and "noeviction" in evicting.message
    assert durability({"appendonly": "no"}).status == "False"

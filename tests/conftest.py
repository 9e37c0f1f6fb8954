"""Fixtures: real Redis and PostgreSQL servers on free loopback ports, in temporary directories.

One Redis and one PostgreSQL server per test session; each test gets a flushed
Redis database and a fresh PostgreSQL database of its own, so tests never see
each other's data. Tests that stop or kill a server ask for the function-scoped
``own_redis`` / ``own_postgres`` instead.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from cdb.localservers import PostgresServer, RedisServer

# `cdb up` records the running local bot in a per-user state file that `cdb status`,
# `cdb backup` and `cdb restore` read; tests must neither see a developer's running bot nor
# leave theirs for others: a state directory of this session's own.
os.environ["CDB_STATE_DIR"] = tempfile.mkdtemp(prefix="cdb-state-")


def _tempdir(prefix: str) -> Path:
    # Not pytest's tmp_path: as root, PostgreSQL runs as 'postgres', which must be able to
    # traverse every parent directory, and pytest's are private to root.
    path = Path(tempfile.mkdtemp(prefix=prefix))
    path.chmod(0o755)
    return path


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    root = _tempdir("cdb-redis-")
    server = RedisServer(root / "data").start()
    yield server
    server.stop()
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def redis_env(redis_server: RedisServer) -> dict[str, str]:
    client = redis.Redis(port=redis_server.port)
    client.flushall()
    client.close()
    return redis_server.env()


@pytest.fixture
def redis_client(redis_env: dict[str, str]) -> Iterator[redis.Redis]:
    client = redis.Redis(port=int(redis_env["REDIS_PORT"]))
    yield client
    client.close()


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PostgresServer]:
    root = _tempdir("cdb-pg-")
    server = PostgresServer(root / "pg")
    server.init()
    yield server
    server.stop("immediate")
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def pg_env(pg_server: PostgresServer) -> dict[str, str]:
    """POSTGRES_* variables naming a fresh, empty database for this test."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    pg_server.create_database(name)
    return pg_server.env(name)


@pytest.fixture
def own_redis() -> Iterator[RedisServer]:
    """A Redis server this test may stop, kill and restart (AOF on)."""
    root = _tempdir("cdb-redis-own-")
    server = RedisServer(root / "data").start()
    yield server
    server.stop()
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def own_postgres() -> Iterator[PostgresServer]:
    """A PostgreSQL server this test may stop and restart."""
    root = _tempdir("cdb-pg-own-")
    server = PostgresServer(root / "pg")
    server.init()
    yield server
    server.stop("immediate")
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Remove every setting this project reads from the environment, for in-process tests."""
    prefixes = ("REDIS_", "POSTGRES_", "SIGNAL_", "MAX_", "STOP_", "MEXC_", "CDB_", "HTTP_")
    for key in list(os.environ):
        if key.startswith(prefixes):
            monkeypatch.delenv(key)

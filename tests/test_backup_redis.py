"""``cdb backup --redis``: an RDB snapshot that a fresh redis-server loads, password kept out."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import redis
from test_backup_support import cdb, listing, seed

from cdb.localservers import RedisServer

SECRET = "Rd5-redis-secret-0815"


@pytest.fixture
def guarded_redis(tmp_path: Path):
    server = RedisServer(tmp_path / "redis", password=SECRET).start()
    yield server
    server.stop()


def test_redis_snapshot_loads_into_a_fresh_server(guarded_redis, pg_env, tmp_path):
    seed(pg_env, n=2)
    client = redis.Redis(port=guarded_redis.port, password=SECRET)
    client.hset("cdb:breaker", mapping={"engaged": "1", "manual": "1", "reason": "test"})
    ids = [client.xadd("control", {"data": f'{{"n": {i}}}'}) for i in range(5)]
    client.close()

    out = tmp_path / "backups"
    env = {**pg_env, **guarded_redis.env()}
    done = cdb(["backup", "--output", str(out), "--redis"], env)
    assert done.returncode == 0, done.stderr
    assert "redis.rdb" in done.stdout
    assert SECRET not in done.stdout + done.stderr
    (backup,) = [out / n for n in listing(out)]
    manifest = json.loads((backup / "manifest.json").read_text())
    assert set(manifest["files"]) == {"postgres.dump", "redis.rdb"}
    assert manifest["tools"]["redis_server"].count(".") == 2
    assert SECRET.encode() not in (backup / "manifest.json").read_bytes()
    # the owner's alone: the database's rows and the Redis state are not world-readable
    assert oct(out.stat().st_mode & 0o777) == "0o700"
    assert oct(backup.stat().st_mode & 0o777) == "0o700"
    for name in ("postgres.dump", "redis.rdb", "manifest.json"):
        assert oct((backup / name).stat().st_mode & 0o777) == "0o600", name
    assert cdb(["restore", "--check", str(backup)], {}).returncode == 0

    # the runbook's Redis restore: the RDB as dump.rdb in an empty data dir, AOF off
    fresh = RedisServer(tmp_path / "fresh", appendonly=False)
    fresh.data_dir.mkdir(parents=True)
    shutil.copy(backup / "redis.rdb", fresh.data_dir / "dump.rdb")
    fresh.start()
    try:
        loaded = redis.Redis(port=fresh.port, decode_responses=True)
        assert loaded.hgetall("cdb:breaker") == {"engaged": "1", "manual": "1", "reason": "test"}
        assert [e[0] for e in loaded.xrange("control")] == [i.decode() for i in ids]
        loaded.close()
    finally:
        fresh.stop()

    # a flipped byte in the RDB is caught like one in the dump
    rdb = backup / "redis.rdb"
    data = bytearray(rdb.read_bytes())
    data[-3] ^= 0xFF
    rdb.write_bytes(bytes(data))
    check = cdb(["restore", "--check", str(backup)], {})
    assert check.returncode == 1 and "redis.rdb" in check.stderr


def test_unreachable_or_refusing_redis_fails_the_whole_backup(guarded_redis, pg_env, tmp_path):
    seed(pg_env, n=2)
    out = tmp_path / "backups"
    env = {**pg_env, **guarded_redis.env()}
    assert cdb(["backup", "--output", str(out), "--redis"], env).returncode == 0
    good = listing(out)

    wrong = cdb(["backup", "--output", str(out), "--redis"], {**env, "REDIS_PASSWORD": "nope"})
    gone = cdb(["backup", "--output", str(out), "--redis"], {**env, "REDIS_PORT": "1"})
    for done in (wrong, gone):
        assert done.returncode == 1
        assert done.stderr.startswith("cdb backup: failed: cannot reach Redis"), done.stderr
        assert SECRET not in done.stdout + done.stderr
    assert listing(out) == good

"""``redis.external.tls``: the services, the backup and the operator speak TLS to a real Redis.

The test makes a CA and a server certificate for 127.0.0.1 (openssl), starts a Debian
redis-server listening only on a TLS port with a password, and trusts the CA the way a
pod trusts its image's CA bundle (``SSL_CERT_FILE``, read by OpenSSL's default verify
paths). Without TLS the same address is refused.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis

from cdb.backup.dump import dump_redis
from cdb.localservers import free_port, wait_for_port
from cdb.runtime import redis_client
from cdb.settings import BaseServiceSettings
from cdb_operator.breaker import RedisAddress
from cdb_operator.stores import probe_redis

PASSWORD = "tls-bus-secret"

pytestmark = pytest.mark.skipif(
    not (shutil.which("openssl") and shutil.which("redis-server")),
    reason="needs openssl and redis-server (Debian packages openssl, redis-server)",
)


@dataclass
class TlsRedis:
    port: int
    ca: Path


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


@pytest.fixture(scope="module")
def tls_redis() -> Iterator[TlsRedis]:
    root = Path(tempfile.mkdtemp(prefix="cdb-redis-tls-"))
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key",
             "-out", "ca.crt", "-days", "2", "-subj", "/CN=cdb-test-ca", cwd=root)  # fmt: skip
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key",
             "-out", "server.csr", "-subj", "/CN=127.0.0.1", cwd=root)  # fmt: skip
    (root / "san.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    _openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
             "-CAcreateserial", "-out", "server.crt", "-days", "2", "-extfile", "san.ext",
             cwd=root)  # fmt: skip
    port = free_port()
    conf = root / "redis.conf"
    conf.write_text(
        "\n".join(
            [
                "port 0",
                f"tls-port {port}",
                "bind 127.0.0.1",
                f"tls-cert-file {root / 'server.crt'}",
                f"tls-key-file {root / 'server.key'}",
                f"tls-ca-cert-file {root / 'ca.crt'}",
                "tls-auth-clients no",
                "tls-replication yes",
                f"requirepass {PASSWORD}",
                f"dir {root}",
                "appendonly yes",
                "appendfsync everysec",
                "save ''",
                f"logfile {root / 'redis.log'}",
            ]
        )
        + "\n"
    )
    proc = subprocess.Popen(["redis-server", str(conf)], stdout=subprocess.DEVNULL)
    try:
        wait_for_port(port)
        yield TlsRedis(port, root / "ca.crt")
    finally:
        proc.terminate()
        proc.wait(timeout=20)
        shutil.rmtree(root, ignore_errors=True)


def settings(port: int, tls: bool) -> BaseServiceSettings:
    return BaseServiceSettings(
        REDIS_HOST="127.0.0.1", REDIS_PORT=port, REDIS_PASSWORD=PASSWORD, REDIS_TLS=tls
    )


def test_the_services_client_speaks_tls(tls_redis: TlsRedis, monkeypatch) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", str(tls_redis.ca))
    client = redis_client(settings(tls_redis.port, True), probe=True)
    try:
        assert client.ping() is True
    finally:
        client.close()
    plain = redis_client(settings(tls_redis.port, False), probe=True)
    try:
        with pytest.raises(redis.RedisError):  # a plain client gets no answer it can read
            plain.ping()
    finally:
        plain.close()


def test_the_backup_snapshots_over_tls(tls_redis: TlsRedis, monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", str(tls_redis.ca))
    target = tmp_path / "redis.rdb"
    dump_redis(settings(tls_redis.port, True), target, timeout_s=30)
    assert target.read_bytes().startswith(b"REDIS")


def test_the_operator_checks_a_tls_bus(tls_redis: TlsRedis, monkeypatch) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", str(tls_redis.ca))
    ready, durable = probe_redis(RedisAddress("127.0.0.1", tls_redis.port, PASSWORD, tls=True))
    assert (ready.status, ready.reason) == ("True", "Reachable") and "TLS" in ready.message
    assert (durable.status, durable.reason) == ("True", "Verified")
    down, _ = probe_redis(RedisAddress("127.0.0.1", tls_redis.port, PASSWORD, tls=False))
    assert (down.status, down.reason) == ("False", "Unreachable")

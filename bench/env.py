"""The real servers and service processes a benchmark runs against.

Redis and PostgreSQL come from ``cdb.localservers`` (the same binaries and
configuration as ``cdb up``: Redis with AOF ``everysec``, PostgreSQL with
``fsync = on``) in a temporary directory that is removed afterwards. Services
run as ``python -m cdb run NAME`` child processes, exactly as deployed, and
their peak RSS is read from ``/proc/PID/status`` (``VmHWM``).
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import redis

from cdb.localservers import PostgresServer, RedisServer, free_port, wait_for_port


def service_available(name: str) -> bool:
    """Whether ``cdb run NAME`` has a module to run (services land one by one)."""
    from cdb.cli import SERVICES

    module = SERVICES.get(name)
    try:
        return module is not None and importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:
        return False


class Servers:
    """A private Redis (and optionally a migrated PostgreSQL) for one benchmark."""

    #: AOF on by default (as deployed); ``python -m bench run --no-aof`` turns it off everywhere.
    appendonly = True

    def __init__(self, postgres: bool = False) -> None:
        self.want_postgres = postgres
        self.root = Path(tempfile.mkdtemp(prefix="cdb-bench-"))
        self.root.chmod(0o755)  # PostgreSQL runs as 'postgres' when we are root
        self.redis_server = RedisServer(self.root / "redis", appendonly=Servers.appendonly)
        self.pg: PostgresServer | None = None
        self.procs: list[ServiceProcess] = []

    def __enter__(self) -> Servers:
        self.redis_server.start()
        if self.want_postgres:
            from cdb.db.migrate import migrate
            from cdb.settings import PostgresSettings

            self.pg = PostgresServer(self.root / "pg")
            self.pg.init()
            migrate(PostgresSettings(**self.pg.env()))
        return self

    def __exit__(self, *exc: object) -> None:
        for proc in self.procs:
            proc.stop()
        self.redis_server.stop()
        if self.pg is not None:
            self.pg.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)

    def env(self) -> dict[str, str]:
        env = dict(self.redis_server.env())
        if self.pg is not None:
            env.update(self.pg.env())
        return env

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.redis_server.port)

    def service(self, name: str, extra: dict[str, str] | None = None) -> ServiceProcess:
        proc = ServiceProcess(name, {**self.env(), **(extra or {})}, self.root / "logs")
        self.procs.append(proc)
        return proc

    def start_all(self, names, extra: dict[str, str] | None = None) -> dict[str, ServiceProcess]:
        """Start several services at once (their imports overlap) and wait until all are healthy."""
        procs = {name: self.service(name, extra).start_async() for name in names}
        for proc in procs.values():
            proc.wait_healthy()
        return procs

    def psql(self, sql: str) -> str:
        assert self.pg is not None
        return self.pg.psql(self.pg.database, sql)


class ServiceProcess:
    """``python -m cdb run NAME`` with its own environment, log file and HTTP port."""

    def __init__(self, name: str, env: dict[str, str], log_dir: Path) -> None:
        self.name = name
        self.port = free_port()
        log_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = log_dir / f"{name}.log"
        self.env = {
            **os.environ,
            "LOG_LEVEL": "INFO",
            **env,
            "HTTP_PORT": str(self.port),
            "HTTP_HOST": "127.0.0.1",
            "CDB_CONSUMER_NAME": f"{name}-bench",
        }
        self.proc: subprocess.Popen | None = None

    def start_async(self) -> ServiceProcess:
        """Start the process without waiting for it (a drain benchmark times it from outside)."""
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "cdb", "run", self.name],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        return self

    def start(self, timeout: float = 60.0) -> ServiceProcess:
        """Start the process and wait until ``/health`` answers 200."""
        self.start_async()
        return self.wait_healthy(timeout)

    def wait_healthy(self, timeout: float = 60.0) -> ServiceProcess:
        assert self.proc is not None
        wait_for_port(self.port, timeout=timeout)
        deadline = time.monotonic() + timeout
        while self.get("/health")[0] != 200:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{self.name} did not become healthy; log: {self.log_path}")
            time.sleep(0.05)
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def get(self, path: str) -> tuple[int, Any]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=5) as r:
                status, body = r.status, r.read().decode()
        except urllib.error.HTTPError as exc:
            status, body = exc.code, exc.read().decode()
        except OSError:
            return 0, None
        try:
            return status, json.loads(body)
        except ValueError:
            return status, body

    def status(self) -> dict[str, Any]:
        return self.get("/status")[1] or {}

    def memory(self) -> dict[str, int]:
        """Current and peak resident set size in bytes (``VmRSS``, ``VmHWM``)."""
        out = {}
        try:
            with open(f"/proc/{self.pid}/status") as f:
                for line in f:
                    if line.startswith(("VmRSS:", "VmHWM:")):
                        key, value, _unit = line.split()
                        out[key[:-1]] = int(value) * 1024
        except OSError:
            pass
        return out

    def cpu_seconds(self) -> float:
        """User + system CPU time the process has used so far."""
        try:
            with open(f"/proc/{self.pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        except (OSError, IndexError, ValueError):
            return 0.0

    def stop(self, timeout: float = 20.0) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


def groups(client: redis.Redis, stream: str) -> dict[str, dict[str, Any]]:
    """``XINFO GROUPS`` of a stream by group name (entries-read, lag, pending)."""
    try:
        rows = client.xinfo_groups(stream)
    except redis.ResponseError:
        return {}
    out = {}
    for row in rows:
        name = row["name"].decode() if isinstance(row["name"], bytes) else row["name"]
        out[name] = row
    return out


def entries_added(client: redis.Redis, stream: str) -> int:
    """How many entries were ever appended to a stream (trimming does not lower it)."""
    try:
        return int(client.xinfo_stream(stream)["entries-added"])
    except redis.ResponseError:
        return 0

"""Private Redis and PostgreSQL servers in a data directory, for ``cdb up`` and the tests.

They run the machine's own binaries (Debian's ``redis-server`` and PostgreSQL
15 under ``/usr/lib/postgresql/15/bin``) on loopback ports. PostgreSQL refuses
to run as root, so as root the cluster is initialised and run as the
``postgres`` user (``runuser``), with the data directory handed to it.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

PG_BIN_DIRS = [Path(f"/usr/lib/postgresql/{v}/bin") for v in (15, 16, 17)]
INSTALL_HINT = (
    "install them with: apt-get install -y redis-server postgresql-15 "
    "(or set REDIS_HOST and POSTGRES_HOST to servers you already run)"
)


class MissingBinary(RuntimeError):
    """A server binary is not installed; the message says what to install."""


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, timeout: float = 20.0, host: str = "127.0.0.1") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listens on {host}:{port} after {timeout}s")


def pg_bin(name: str) -> str:
    for d in PG_BIN_DIRS:
        if (d / name).exists():
            return str(d / name)
    found = shutil.which(name)
    if found:
        return found
    raise MissingBinary(f"PostgreSQL binary {name!r} not found; {INSTALL_HINT}")


@dataclass
class RedisServer:
    """A redis-server with AOF persistence (so a restart loses nothing) on a loopback port."""

    data_dir: Path
    port: int = field(default_factory=free_port)
    password: str | None = None
    appendonly: bool = True
    #: ``user`` directives besides the default user's (the advisor's, cdb.redis_acl)
    users: tuple[str, ...] = ()
    proc: subprocess.Popen | None = None

    def start(self) -> RedisServer:
        binary = shutil.which("redis-server")
        if not binary:
            raise MissingBinary(f"redis-server not found; {INSTALL_HINT}")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        conf = self.data_dir / "redis.conf"
        lines = [
            f"port {self.port}",
            "bind 127.0.0.1",
            f"dir {self.data_dir}",
            f"appendonly {'yes' if self.appendonly else 'no'}",
            "appendfsync everysec",
            "save ''",
            "daemonize no",
            f"logfile {self.data_dir / 'redis.log'}",
        ]
        if self.password:
            lines.append(f"requirepass {self.password}")
        lines.extend(self.users)
        conf.write_text("\n".join(lines) + "\n")
        conf.chmod(0o600)  # it may hold passwords
        # Its own session: a Ctrl-C aimed at the parent (``cdb up``) must not stop Redis before
        # the services that still use it; the parent stops it last.
        self.proc = subprocess.Popen(
            [binary, str(conf)], stdout=subprocess.DEVNULL, start_new_session=True
        )
        wait_for_port(self.port)
        return self

    def stop(self, kill: bool = False) -> None:
        if self.proc and self.proc.poll() is None:
            if kill:
                self.proc.kill()
            else:
                self.proc.terminate()
            self.proc.wait(timeout=20)
        self.proc = None

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def env(self) -> dict[str, str]:
        env = {"REDIS_HOST": "127.0.0.1", "REDIS_PORT": str(self.port), "REDIS_DB": "0"}
        if self.password:
            env["REDIS_PASSWORD"] = self.password
        return env


@dataclass
class PostgresServer:
    """A PostgreSQL cluster in ``data_dir`` listening on a loopback port, password auth."""

    data_dir: Path
    port: int = field(default_factory=free_port)
    user: str = "claire"
    password: str = "claire-local"
    database: str = "claire_de_binare"

    @property
    def _as_postgres(self) -> list[str]:
        return ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []

    @property
    def pgdata(self) -> Path:
        return self.data_dir / "pgdata"

    def _run(self, *args: str, **kw) -> subprocess.CompletedProcess:
        return subprocess.run(
            [*self._as_postgres, *args], check=True, capture_output=True, text=True, **kw
        )

    def init(self) -> None:
        """Create the cluster, the role and the database (once; a second call does nothing)."""
        if (self.pgdata / "PG_VERSION").exists():
            return
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            shutil.chown(self.data_dir, "postgres", "postgres")
        pwfile = self.data_dir / "pwfile"
        pwfile.write_text(self.password + "\n")
        pwfile.chmod(0o600)
        if os.geteuid() == 0:
            shutil.chown(pwfile, "postgres", "postgres")
        self._run(
            pg_bin("initdb"),
            "-D",
            str(self.pgdata),
            "-U",
            self.user,
            "--pwfile",
            str(pwfile),
            "-A",
            "scram-sha-256",
            "-E",
            "UTF8",
            "--no-sync",
        )
        pwfile.unlink()
        conf = self.pgdata / "postgresql.conf"
        with conf.open("a") as f:
            f.write(
                f"\nport = {self.port}\nlisten_addresses = '127.0.0.1'\n"
                f"unix_socket_directories = '{self.data_dir}'\n"
                "fsync = on\nmax_connections = 100\nshared_buffers = 64MB\n"
            )
        self.start()
        self.psql("postgres", f'CREATE DATABASE "{self.database}"')

    def start(self) -> PostgresServer:
        if not (self.pgdata / "PG_VERSION").exists():
            self.init()
            return self
        conf = self.pgdata / "postgresql.conf"
        # a reused data dir may have been served on another port: one `port` line, this one's
        text = re.sub(r"(?m)^port = \d+\n", "", conf.read_text())
        conf.write_text(text.rstrip("\n") + f"\nport = {self.port}\n")
        self._run(
            pg_bin("pg_ctl"),
            "-D",
            str(self.pgdata),
            "-l",
            str(self.data_dir / "postgres.log"),
            "-w",
            "-t",
            "60",
            "start",
        )
        wait_for_port(self.port)
        return self

    def stop(self, mode: str = "fast") -> None:
        if (self.pgdata / "postmaster.pid").exists():
            self._run(pg_bin("pg_ctl"), "-D", str(self.pgdata), "-m", mode, "-w", "stop")

    def psql(self, database: str, sql: str) -> str:
        env = {**os.environ, "PGPASSWORD": self.password}
        return subprocess.run(
            [
                pg_bin("psql"),
                "-h",
                "127.0.0.1",
                "-p",
                str(self.port),
                "-U",
                self.user,
                "-d",
                database,
                "-v",
                "ON_ERROR_STOP=1",
                "-Atc",
                sql,
            ],
            check=True,
            capture_output=True,
            text=True,
            env=env,
        ).stdout

    def create_database(self, name: str) -> None:
        self.psql("postgres", f'CREATE DATABASE "{name}"')

    def env(self, database: str | None = None) -> dict[str, str]:
        return {
            "POSTGRES_HOST": "127.0.0.1",
            "POSTGRES_PORT": str(self.port),
            "POSTGRES_USER": self.user,
            "POSTGRES_PASSWORD": self.password,
            "POSTGRES_DB": database or self.database,
        }

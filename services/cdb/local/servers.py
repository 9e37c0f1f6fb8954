"""The servers ``cdb up`` needs: the ones the environment names, or private ones it starts.

Private servers come from ``cdb.localservers`` in the data directory and are
checked before anything starts: a missing binary names the package to install,
and as root the ``postgres`` user (PostgreSQL refuses to run as root) must be
able to enter the data directory, or the message says which directory stops it.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import secrets
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import psycopg2
import redis

from cdb.db.migrate import migrate
from cdb.localservers import (
    INSTALL_HINT,
    MissingBinary,
    PostgresServer,
    RedisServer,
    pg_bin,
)
from cdb.redis_acl import ADVISOR_USER, advisor_user_line
from cdb.settings import BaseServiceSettings, PostgresSettings


class SetupError(RuntimeError):
    """Something a person must fix before ``cdb up`` can run; the message says what."""


def check_binaries(redis_private: bool, postgres_private: bool) -> None:
    missing = []
    if redis_private and not shutil.which("redis-server"):
        missing.append("redis-server")
    if postgres_private:
        for name in ("initdb", "pg_ctl", "postgres"):
            try:
                pg_bin(name)
            except MissingBinary:
                missing.append(f"PostgreSQL ({name})")
                break
        if os.geteuid() == 0 and not shutil.which("runuser"):
            missing.append("runuser (util-linux)")
    if missing:
        raise SetupError(f"missing: {', '.join(missing)}; {INSTALL_HINT}")


def _postgres_can_enter(path: Path) -> bool:
    done = subprocess.run(
        ["runuser", "-u", "postgres", "--", "test", "-x", str(path)], capture_output=True
    )
    return done.returncode == 0


def check_postgres_can_enter(data_dir: Path) -> None:
    """As root, PostgreSQL runs as ``postgres``, which must traverse every parent directory."""
    if os.geteuid() != 0:
        return
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        raise SetupError(
            "running as root, PostgreSQL must run as the 'postgres' user, which does not exist; "
            "install postgresql-15 (it creates the user) or run cdb up as a normal user"
        ) from None
    path = data_dir.resolve()
    for directory in [*reversed(path.parents), path]:
        if not _postgres_can_enter(directory):
            raise SetupError(
                f"running as root, PostgreSQL runs as the 'postgres' user, which cannot enter "
                f"{directory}; choose a data directory it can reach (--data-dir /var/tmp/cdb) "
                f"or allow it in: chmod o+x {directory}"
            )


@dataclass
class Servers:
    """The Redis and PostgreSQL of one ``cdb up``: private ones are stopped at the end."""

    data_dir: Path
    redis_private: bool
    postgres_private: bool
    redis_server: RedisServer | None = None
    pg_server: PostgresServer | None = None
    #: The environment of ``cdb up``: where external servers are named.
    base_env: dict[str, str] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    #: Give the private Redis the advisor's own user (``cdb up --advisor``; Redis 7.0+)
    advisor_user: bool = False
    #: What the advisor logs in with, over ``env``: its own Redis user on a private Redis;
    #: nothing on a Redis the environment names (its credentials are the user's to give)
    advisor_env: dict[str, str] = field(default_factory=dict)

    def start(self) -> None:
        """Start what is private, then check both answer and migrate the database.

        Raises SetupError before starting anything when PostgreSQL could not run here.
        """
        if self.postgres_private:
            check_postgres_can_enter(self.data_dir)
        for prefix, private in (
            ("REDIS_", self.redis_private),
            ("POSTGRES_", self.postgres_private),
        ):
            if not private:
                self.env.update({k: v for k, v in self.base_env.items() if k.startswith(prefix)})
        if self.redis_private:
            users: tuple[str, ...] = ()
            if self.advisor_user:
                # the advisor logs in as its own user, as in a cluster (cdb.redis_acl): here
                # a guard against its bugs (the default user has no password on loopback);
                # a new password each run, in the 0600 config only
                password = secrets.token_urlsafe(24)
                users = (advisor_user_line(password),)
                self.advisor_env = {"REDIS_USERNAME": ADVISOR_USER, "REDIS_PASSWORD": password}
            self.redis_server = RedisServer(self.data_dir / "redis", users=users)
            self.redis_server.start()
            self.env.update(self.redis_server.env())
        if self.postgres_private:
            self.pg_server = PostgresServer(self.data_dir / "pg")
            try:
                self.pg_server.start()
            except subprocess.CalledProcessError as exc:
                log = self.data_dir / "pg" / "postgres.log"
                raise SetupError(
                    f"PostgreSQL did not start ({(exc.stderr or '').strip()[:300]}); see {log}"
                ) from None
            self.env.update(self.pg_server.env())
        self._check_redis()
        self._migrate()

    def redis_settings(self) -> BaseServiceSettings:
        return BaseServiceSettings(**{k: v for k, v in self.env.items() if k.startswith("REDIS_")})

    def postgres_settings(self) -> PostgresSettings:
        return PostgresSettings(**{k: v for k, v in self.env.items() if k.startswith("POSTGRES_")})

    def _check_redis(self) -> None:
        s = self.redis_settings()
        password = s.REDIS_PASSWORD.get_secret_value() if s.REDIS_PASSWORD else None
        client = redis.Redis(
            host=s.REDIS_HOST,
            port=s.REDIS_PORT,
            db=s.REDIS_DB,
            password=password,
            socket_connect_timeout=3,
            socket_timeout=3,
        )
        try:
            client.ping()
        except redis.RedisError as exc:
            raise SetupError(
                f"cannot reach Redis at {s.REDIS_HOST}:{s.REDIS_PORT}: {exc}"
            ) from None
        finally:
            client.close()

    def _migrate(self) -> list[str]:
        s = self.postgres_settings()
        try:
            return migrate(s)
        except psycopg2.OperationalError as exc:
            first = (str(exc).strip().splitlines() or ["unreachable"])[0]
            raise SetupError(
                f"cannot reach PostgreSQL at {s.POSTGRES_HOST}:{s.POSTGRES_PORT}: {first}"
            ) from None

    def stop(self) -> None:
        if self.pg_server is not None:
            with contextlib.suppress(subprocess.CalledProcessError):  # already stopped
                self.pg_server.stop("fast")
        if self.redis_server is not None:
            self.redis_server.stop()

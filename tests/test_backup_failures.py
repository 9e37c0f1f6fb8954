"""``cdb backup`` / ``cdb restore`` when things go wrong: failures keep the good backups,
say why in one line, never show a password, and a SIGTERM leaves nothing half-written."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import psycopg2
import pytest
from helpers import wait_until
from test_backup_support import cdb, fresh_db, listing, seed, settings_for

from cdb.backup.manifest import read_manifest


@pytest.fixture
def out(tmp_path: Path) -> Path:
    return tmp_path / "backups"


def test_a_failing_backup_leaves_nothing_and_keeps_the_good_ones(pg_env, out):
    seed(pg_env, n=5)
    for _ in range(2):
        assert cdb(["backup", "--output", str(out), "--keep", "2"], pg_env).returncode == 0
    good = listing(out)

    # a server that is not there
    done = cdb(["backup", "--output", str(out), "--keep", "2"], {**pg_env, "POSTGRES_PORT": "1"})
    assert done.returncode == 1
    assert done.stderr.startswith("cdb backup: failed: cannot connect to PostgreSQL")
    assert len(done.stderr.strip().splitlines()) == 1
    assert listing(out) == good

    # pg_dump itself fails halfway: a table it cannot lock (a long migration, say)
    with psycopg2.connect(settings_for(pg_env).postgres_dsn()) as conn, conn.cursor() as cur:
        cur.execute("LOCK TABLE signals IN ACCESS EXCLUSIVE MODE")
        done = cdb(
            ["backup", "--output", str(out), "--keep", "2", "--lock-wait-timeout", "0.5"], pg_env
        )
        conn.rollback()
    assert done.returncode == 1
    assert done.stderr.startswith("cdb backup: failed: pg_dump failed (exit 1)"), done.stderr
    assert "lock" in done.stderr.lower()
    assert listing(out) == good
    for name in good:
        assert read_manifest(out / name).tables["public.signals"].rows == 5

    # and a backup after the failures works and rotates as usual
    assert cdb(["backup", "--output", str(out), "--keep", "2"], pg_env).returncode == 0
    assert listing(out)[0] == good[1]


def test_missing_client_tools_say_what_to_install(pg_env, out, tmp_path):
    seed(pg_env, n=1)
    done = cdb(["backup", "--output", str(out)], {**pg_env, "CDB_PG_BIN": str(tmp_path)})
    assert done.returncode == 1
    assert "pg_dump not found" in done.stderr and "postgresql-client-15" in done.stderr
    assert not out.exists()  # found missing before anything was made


def test_bad_settings_exit_2_with_one_line(out):
    done = cdb(["backup", "--output", str(out)], {"POSTGRES_PORT": "not-a-port"})
    assert done.returncode == 2
    assert (
        done.stderr.strip()
        == "configuration error: POSTGRES_PORT must be an integer, got not-a-port"
    )
    assert cdb(["backup", "--output", str(out), "--keep", "0"], {}).returncode == 2


def test_the_password_never_appears_in_any_output(pg_server, pg_env, out):
    secret = "Zq9-backup-secret-4711"
    role = f"backup_pw_{uuid.uuid4().hex[:8]}"
    pg_server.psql("postgres", f"CREATE ROLE {role} LOGIN SUPERUSER PASSWORD '{secret}'")
    seed(pg_env, n=3)
    env = {**pg_env, "POSTGRES_USER": role, "POSTGRES_PASSWORD": secret}
    target = {**fresh_db(pg_server), "POSTGRES_USER": role, "POSTGRES_PASSWORD": secret}
    runs = [
        cdb(["backup", "--output", str(out)], env),
        cdb(["restore", str(out)], target),
        cdb(["restore", str(out)], target),  # refused: not empty
        cdb(["backup", "--output", str(out)], {**env, "POSTGRES_PORT": "1"}),
        cdb(["backup", "--output", str(out)], {**env, "POSTGRES_USER": "claire"}),  # bad login
    ]
    assert [r.returncode for r in runs] == [0, 0, 1, 1, 1]
    assert "password authentication failed" in runs[4].stderr
    for r in runs:
        assert secret not in r.stdout + r.stderr
    for path in out.rglob("*"):
        if path.is_file():
            assert secret.encode() not in path.read_bytes()


def test_an_unusable_output_directory_is_one_clear_line(pg_env, tmp_path):
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("x")
    done = cdb(["backup", "--output", str(not_a_dir)], pg_env)
    assert done.returncode == 1
    assert done.stderr.startswith(f"cdb backup: failed: cannot create {not_a_dir}")
    assert len(done.stderr.strip().splitlines()) == 1


def waiting_dumps(env) -> int:
    with psycopg2.connect(settings_for(env).postgres_dsn()) as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'cdb-backup'"
            " AND wait_event_type = 'Lock'"
        )
        return cur.fetchone()[0]


def test_sigterm_mid_dump_keeps_nothing_and_leaves_no_pg_dump(pg_env, out):
    """A CronJob pod being stopped: the partial backup goes, the good ones stay."""
    seed(pg_env, n=3)
    assert cdb(["backup", "--output", str(out)], pg_env).returncode == 0
    good = listing(out)
    env = {**os.environ, **pg_env}
    with psycopg2.connect(settings_for(pg_env).postgres_dsn()) as conn, conn.cursor() as cur:
        cur.execute("LOCK TABLE signals IN ACCESS EXCLUSIVE MODE")  # pg_dump will wait on it
        proc = subprocess.Popen(
            [sys.executable, "-m", "cdb", "backup", "--output", str(out)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            wait_until(lambda: waiting_dumps(pg_env) == 1, message="pg_dump waiting on the lock")
            assert any(n.startswith(".partial-") for n in listing(out))
            proc.send_signal(signal.SIGTERM)
            stdout, stderr = proc.communicate(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
        conn.rollback()
    assert proc.returncode == 143
    assert stderr.strip() == "cdb backup: stopped by SIGTERM; no partial backup is left behind"
    assert listing(out) == good
    wait_until(lambda: waiting_dumps(pg_env) == 0, message="pg_dump gone")

"""``cdb backup`` and ``cdb restore`` against real PostgreSQL: faithful, atomic, and careful.

Each test runs the real command (a child process, as the CronJob runs it) on a
database seeded through the real migrations, and judges the result with an
independent fingerprint of every table (md5 of its rows ordered by primary key).
"""

from __future__ import annotations

import json
import threading
from pathlib import Path

import psycopg2
import pytest
from helpers import wait_until
from test_backup_support import cdb, fingerprints, fresh_db, listing, relations, seed, settings_for

from cdb.backup.create import create_backup
from cdb.backup.manifest import read_manifest, sha256_file
from cdb.backup.restore import restore_backup
from cdb.backup.tools import BackupError
from cdb.db.migrate import MIGRATIONS


@pytest.fixture
def out(tmp_path: Path) -> Path:
    return tmp_path / "backups"


def backups(out: Path) -> list[Path]:
    return sorted(p for p in out.iterdir() if p.name.startswith("backup-"))


def test_backup_restores_into_a_fresh_database_identically(pg_server, pg_env, out):
    seed(pg_env)
    done = cdb(["backup", "--output", str(out)], pg_env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("backup written: ") and done.stderr == ""
    (backup,) = backups(out)
    assert listing(out) == [backup.name]  # nothing partial left over

    manifest = json.loads((backup / "manifest.json").read_text())
    source = fingerprints(pg_env)
    newest = sorted(p.stem for p in MIGRATIONS.glob("*.sql"))[-1]
    assert manifest["schema_version"] == newest
    assert {k.removeprefix("public."): v["rows"] for k, v in manifest["tables"].items()} == {
        k: v[0] for k, v in source.items()
    }
    assert source["signals"][0] == 40 and source["orders"][0] == 40
    assert manifest["files"]["postgres.dump"] == sha256_file(backup / "postgres.dump").model_dump()
    assert {"pg_dump", "pg_restore", "postgres_server", "cdb"} <= set(manifest["tools"])

    target = fresh_db(pg_server)
    done = cdb(["restore", str(out)], target)
    assert done.returncode == 0, done.stderr
    assert "checksums verified" in done.stdout
    assert fingerprints(target) == source

    # sequences came back too: a new row gets a fresh id instead of colliding
    with psycopg2.connect(settings_for(target).postgres_dsn()) as conn, conn.cursor() as cur:
        cur.execute(
            "INSERT INTO signals (signal_id, ts, symbol, side, confidence, price, pct_change,"
            " reason, strategy) VALUES ('new', 1, 'X', 'BUY', 0.5, 1, 1, 'r', 's') RETURNING id"
        )
        assert cur.fetchone()[0] > max_id(target, "signals", exclude="new")


def max_id(env, table, exclude):
    with psycopg2.connect(settings_for(env).postgres_dsn()) as conn, conn.cursor() as cur:
        cur.execute(f"SELECT max(id) FROM {table} WHERE signal_id <> %s", (exclude,))
        return cur.fetchone()[0]


def test_a_flipped_byte_is_refused_before_the_database_is_touched(pg_server, pg_env, out):
    seed(pg_env, n=10)
    assert cdb(["backup", "--output", str(out)], pg_env).returncode == 0
    (backup,) = backups(out)
    dump = backup / "postgres.dump"
    data = bytearray(dump.read_bytes())
    data[len(data) // 2] ^= 0x01
    dump.write_bytes(bytes(data))

    target = fresh_db(pg_server)
    done = cdb(["restore", str(backup)], target)
    assert done.returncode == 1
    assert "checksum mismatch" in done.stderr and "corrupt" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert relations(target) == 0

    check = cdb(["restore", "--check", str(backup)], {})
    assert check.returncode == 1 and "checksum mismatch" in check.stderr


def test_restore_refuses_a_non_empty_database_unless_forced(pg_server, pg_env, out):
    seed(pg_env, n=10)
    assert cdb(["backup", "--output", str(out)], pg_env).returncode == 0
    source = fingerprints(pg_env)

    target = fresh_db(pg_server)
    seed(target, n=3, start=1000)  # a database with other data in it
    before = fingerprints(target)
    done = cdb(["restore", str(out)], target)
    assert done.returncode == 1
    assert "is not empty" in done.stderr and "--force" in done.stderr
    assert fingerprints(target) == before

    forced = cdb(["restore", "--force", str(out)], target)
    assert forced.returncode == 0, forced.stderr
    assert fingerprints(target) == source


def test_restore_reports_a_table_that_does_not_match(pg_server, pg_env, out):
    """The verification is real: a table the backup does not know about is a mismatch."""
    seed(pg_env, n=5)
    assert cdb(["backup", "--output", str(out)], pg_env).returncode == 0
    target = fresh_db(pg_server)
    seed(target, n=1)
    with psycopg2.connect(settings_for(target).postgres_dsn()) as conn, conn.cursor() as cur:
        cur.execute("CREATE TABLE stray (x int)")
    done = cdb(["restore", "--force", str(out)], target)
    assert done.returncode == 1
    assert "public.stray: in the database but not in the backup" in done.stderr


def test_retention_keeps_the_newest_n_and_leaves_other_files_alone(pg_env, out):
    seed(pg_env, n=2)
    out.mkdir()
    (out / "README").write_text("not a backup")
    made, removed = [], []
    for _ in range(4):
        done = cdb(["backup", "--output", str(out), "--keep", "2"], pg_env)
        assert done.returncode == 0, done.stderr
        made.append(done.stdout.split(": ")[1])
        removed.append(done.stdout.strip().split("; ")[1])
    assert [str(p) for p in backups(out)] == made[-2:]
    assert (
        removed
        == ["0 old backup(s) removed (keeping 2)"] * 2 + ["1 old backup(s) removed (keeping 2)"] * 2
    )
    assert (out / "README").read_text() == "not a backup"


def test_rows_written_after_the_snapshot_are_in_neither_dump_nor_manifest(pg_server, pg_env, out):
    """The manifest's counts come from pg_dump's own snapshot, not from a later count."""
    seed(pg_env, n=20)
    settings = settings_for(pg_env)

    def write_more() -> None:  # runs after the snapshot is exported, before pg_dump starts
        seed(pg_env, n=7, start=500)

    result = create_backup(settings, out, keep=3, on_snapshot=write_more)
    assert result.manifest.tables["public.signals"].rows == 20
    assert fingerprints(pg_env)["signals"][0] == 27

    target = fresh_db(pg_server)
    restored = restore_backup(settings_for(target), out)
    assert restored.manifest == result.manifest
    assert fingerprints(target)["signals"][0] == 20


def test_a_backup_taken_during_writes_restores_consistently(pg_server, pg_env, out):
    seed(pg_env, n=5)
    stop = threading.Event()
    written = [0]
    errors: list[Exception] = []

    def writer() -> None:
        try:
            i = 10_000
            while not stop.is_set():
                seed(pg_env, n=1, start=i, migrated=True)
                i += 1
                written[0] += 1
        except Exception as exc:  # surfaced below
            errors.append(exc)

    thread = threading.Thread(target=writer, daemon=True)
    thread.start()
    try:
        wait_until(lambda: written[0] >= 20, message="the writer to get going")
        done = cdb(["backup", "--output", str(out)], pg_env)
        assert done.returncode == 0, done.stderr
        (backup,) = backups(out)
        in_backup = read_manifest(backup).tables["public.signals"].rows
        wait_until(
            lambda: fingerprints(pg_env)["signals"][0] > in_backup + 5,
            message="writes after the backup",
        )
    finally:
        stop.set()
        thread.join(timeout=30)
    assert not errors
    assert in_backup >= 25  # the backup saw the rows written before it started

    target = fresh_db(pg_server)
    done = cdb(["restore", str(backup)], target)
    assert done.returncode == 0, done.stderr
    manifest = read_manifest(backup)
    restored = fingerprints(target)
    for name, entry in manifest.tables.items():
        assert restored[name.removeprefix("public.")][0] == entry.rows
    # signals and orders were written in one transaction: the snapshot has both or neither
    assert restored["signals"][0] == restored["orders"][0] == restored["risk_events"][0]


def test_restore_of_a_directory_picks_the_newest_complete_backup(pg_server, pg_env, out):
    seed(pg_env, n=3)
    assert cdb(["backup", "--output", str(out)], pg_env).returncode == 0
    seed(pg_env, n=4, start=100)
    assert cdb(["backup", "--output", str(out)], pg_env).returncode == 0
    newest = backups(out)[-1]
    (out / "backup-99991231T000000.000000Z").mkdir()  # no manifest: never "complete"
    target = fresh_db(pg_server)
    result = restore_backup(settings_for(target), out)
    assert result.backup == newest
    assert fingerprints(target) == fingerprints(pg_env)


def test_restore_of_an_empty_directory_is_a_clear_error(pg_env, tmp_path):
    with pytest.raises(BackupError, match="no complete backup in"):
        restore_backup(settings_for(pg_env), tmp_path)

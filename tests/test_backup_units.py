"""The pure parts of backup/restore: retention, comparisons, command lines, manifests, lock."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from cdb.backup.dump import libpq_env, pg_dump_argv, redis_cli_argv
from cdb.backup.manifest import (
    MANIFEST_FILE,
    Manifest,
    TableEntry,
    backup_name,
    read_manifest,
    sha256_file,
    write_manifest,
)
from cdb.backup.restore import pg_restore_argv
from cdb.backup.retention import (
    apply_retention,
    backup_lock,
    complete_backups,
    plan_retention,
    remove_partials,
)
from cdb.backup.tools import BackupError, redact
from cdb.backup.verify import compare_tables, parse_toc
from cdb.settings import BaseServiceSettings, PostgresSettings

SECRET = "p@ss w'rd\\ with spaces"


def names(*stamps: str) -> list[str]:
    return [f"backup-2026112{s}T000000.000000Z" for s in stamps]


def test_retention_keeps_the_newest_n():
    all_ = names("1", "3", "2", "4", "5")
    assert plan_retention(all_, keep=2) == names("3", "2", "1")
    assert plan_retention(all_, keep=5) == []
    assert plan_retention(all_, keep=9) == []
    assert plan_retention([], keep=1) == []


def test_retention_never_deletes_the_backup_just_written():
    """If the clock went backwards, the new backup sorts oldest: it is kept all the same."""
    all_ = names("5", "6", "1")
    assert plan_retention(all_, keep=1, protect=names("1")[0]) == names("5")


def test_retention_refuses_to_keep_nothing():
    with pytest.raises(ValueError, match="keep must be >= 1"):
        plan_retention(names("1"), keep=0)


def test_backup_names_sort_by_time():
    t = datetime(2026, 11, 22, 3, 0, tzinfo=UTC)
    stamps = [t + timedelta(microseconds=1), t + timedelta(seconds=59), t + timedelta(days=40), t]
    generated = [backup_name(s) for s in stamps]
    assert sorted(generated) == [backup_name(s) for s in sorted(stamps)]
    assert backup_name(t) == "backup-20261122T030000.000000Z"


def entry(rows: int, checksum: str = "1") -> TableEntry:
    return TableEntry(rows=rows, checksum=checksum)


def test_compare_tables_names_every_kind_of_difference():
    expected = {"public.a": entry(3), "public.b": entry(2, "x"), "public.gone": entry(1)}
    actual = {
        "public.a": {"rows": 3, "checksum": "1"},
        "public.b": {"rows": 2, "checksum": "y"},
        "public.extra": {"rows": 0, "checksum": "0"},
    }
    assert compare_tables(expected, actual) == [
        "public.b: same row count but different contents",
        "public.extra: in the database but not in the backup",
        "public.gone: missing after restore",
    ]
    actual["public.a"]["rows"] = 4
    assert "public.a: 4 rows, the backup had 3" in compare_tables(expected, actual)
    same = {k: {"rows": v.rows, "checksum": v.checksum} for k, v in expected.items()}
    assert compare_tables(expected, same) == []


def test_parse_toc_reads_table_data_entries_only():
    listing = """;
; Archive created at 2026-11-22 00:58:35 UTC
215; 1259 16403 TABLE public _yoyo_log claire
3269; 2604 16424 DEFAULT public signals id claire
3523; 0 16403 TABLE DATA public _yoyo_log claire
3531; 0 16464 TABLE DATA public order_results claire
3562; 0 0 SEQUENCE SET public signals_id_seq claire
"""
    assert parse_toc(listing) == {"public._yoyo_log", "public.order_results"}


def test_passwords_reach_tools_only_through_the_environment(tmp_path):
    pg = PostgresSettings(POSTGRES_PASSWORD=SECRET, POSTGRES_HOST="db", POSTGRES_DB="x")
    argv = pg_dump_argv("/usr/bin/pg_dump", tmp_path / "d", "00000003-1", 300)
    argv += pg_restore_argv("/usr/bin/pg_restore", tmp_path / "d", "x", clean=True)
    env = libpq_env(pg, "cdb-backup")
    assert env["PGPASSWORD"] == SECRET and env["PGHOST"] == "db" and env["PGDATABASE"] == "x"
    assert "--format=custom" in argv and "--snapshot=00000003-1" in argv
    assert "--lock-wait-timeout=300000ms" in argv and "--no-password" in argv
    redis = BaseServiceSettings(REDIS_PASSWORD=SECRET)
    argv += redis_cli_argv("/usr/bin/redis-cli", redis, tmp_path / "r")
    assert not any(SECRET in a for a in argv)
    assert "-a" not in argv and not any(a.startswith("--pass") for a in argv)
    assert "PGPASSWORD" not in libpq_env(PostgresSettings(), "x")


def test_redact_hides_every_secret():
    assert redact(f"failed for {SECRET} and {SECRET}", [SECRET, None, ""]) == (
        "failed for *** and ***"
    )


def manifest(**changes) -> Manifest:
    data = {
        "created_at": "2026-11-22T03:00:00Z",
        "database": {"host": "h", "port": 5432, "name": "n", "user": "u"},
        "schema_version": "0001_initial",
        "tables": {"public.a": {"rows": 1, "checksum": "5"}},
        "files": {"postgres.dump": {"sha256": "0" * 64, "bytes": 1}},
        "tools": {"pg_dump": "15"},
        "duration_s": 0.5,
    }
    return Manifest.model_validate({**data, **changes})


def test_manifest_round_trips_and_bad_ones_are_named(tmp_path):
    write_manifest(tmp_path, manifest())
    assert read_manifest(tmp_path) == manifest()
    assert read_manifest(tmp_path).total_rows == 1

    with pytest.raises(BackupError, match="not a complete backup"):
        read_manifest(tmp_path / "nothing")
    (tmp_path / MANIFEST_FILE).write_text("{not json")
    with pytest.raises(BackupError, match="unreadable"):
        read_manifest(tmp_path)
    data = manifest().model_dump(mode="json")
    data["files"]["postgres.dump"]["sha256"] = "xyz"
    (tmp_path / MANIFEST_FILE).write_text(json.dumps(data))
    with pytest.raises(BackupError, match=r"invalid: files\.postgres\.dump\.sha256"):
        read_manifest(tmp_path)


def test_sha256_file(tmp_path):
    path = tmp_path / "f"
    path.write_bytes(b"abc")
    got = sha256_file(path)
    assert got.bytes == 3
    assert got.sha256 == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"


def make_backup(directory: Path, name: str, complete: bool = True) -> Path:
    path = directory / name
    path.mkdir()
    (path / "postgres.dump").write_bytes(b"x")
    if complete:
        write_manifest(path, manifest())
    return path


def test_apply_retention_deletes_only_complete_backups_beyond_keep(tmp_path):
    for n in names("1", "2", "3"):
        make_backup(tmp_path, n)
    incomplete = make_backup(tmp_path, names("9")[0], complete=False)
    other = tmp_path / "keep-me"
    other.mkdir()
    removed = apply_retention(tmp_path, keep=1)
    assert [p.name for p in removed] == names("2", "1")
    assert complete_backups(tmp_path) == names("3")
    assert incomplete.exists() and other.exists()
    assert remove_partials(tmp_path) == []  # the deletions finished, nothing half-deleted


def test_partials_are_removed_and_the_lock_is_exclusive(tmp_path):
    (tmp_path / ".partial-backup-x").mkdir()
    (tmp_path / ".partial-backup-x" / "postgres.dump").write_bytes(b"half")
    (tmp_path / ".partial-deleting-backup-y").mkdir()
    with backup_lock(tmp_path):
        assert len(remove_partials(tmp_path)) == 2
        with (
            pytest.raises(BackupError, match="another cdb backup is running"),
            backup_lock(tmp_path),
        ):
            pass
    with backup_lock(tmp_path):  # released: the next one gets it
        pass
    assert not any(p.name.startswith(".partial") for p in tmp_path.iterdir())

"""Checks that decide whether a backup can be trusted and a restore is faithful.

``check_files`` compares each file with the sha256 in the manifest (a flipped byte is
caught before anything touches a database); ``dump_tables`` reads the dump's table of
contents, proving pg_dump wrote a readable archive holding every table's data;
``compare_tables`` is the pure comparison of the manifest with a restored database.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from cdb.backup.manifest import DUMP_FILE, Manifest, TableEntry, sha256_file
from cdb.backup.tools import BackupError, find_pg_tool, run_tool

_TABLE_DATA = re.compile(r"^\d+; \d+ \d+ TABLE DATA (\S+) (\S+) ")


def check_files(directory: Path, manifest: Manifest) -> None:
    """Every file the manifest lists exists with its recorded size and sha256."""
    if DUMP_FILE not in manifest.files:
        raise BackupError(f"{directory}: the manifest lists no {DUMP_FILE}")
    for name, expected in sorted(manifest.files.items()):
        path = directory / name
        if not path.is_file():
            raise BackupError(f"{path} is missing; the backup is incomplete")
        actual = sha256_file(path)
        if actual != expected:
            raise BackupError(
                f"checksum mismatch for {path}: the manifest says sha256 {expected.sha256[:16]}… "
                f"({expected.bytes} bytes), the file has {actual.sha256[:16]}… "
                f"({actual.bytes} bytes); the backup is corrupt, use another one"
            )


def parse_toc(listing: str) -> set[str]:
    """``schema.table`` of every TABLE DATA entry in ``pg_restore --list`` output."""
    found = set()
    for line in listing.splitlines():
        match = _TABLE_DATA.match(line)
        if match:
            found.add(f"{match.group(1)}.{match.group(2)}")
    return found


def dump_tables(dump: Path) -> set[str]:
    """The tables whose data the archive holds; fails when pg_restore cannot read it."""
    listing = run_tool([find_pg_tool("pg_restore"), "--list", str(dump)], {}, "pg_restore --list")
    return parse_toc(listing)


def check_dump_covers(dump: Path, tables: dict[str, TableEntry]) -> None:
    missing = sorted(set(tables) - dump_tables(dump))
    if missing:
        raise BackupError(f"{dump} holds no data for {', '.join(missing[:5])}")


def compare_tables(expected: dict[str, TableEntry], actual: dict[str, dict[str, Any]]) -> list[str]:
    """One line per difference between the manifest and a database; empty when identical."""
    problems = []
    for name in sorted(set(expected) | set(actual)):
        if name not in actual:
            problems.append(f"{name}: missing after restore")
            continue
        if name not in expected:
            problems.append(f"{name}: in the database but not in the backup")
            continue
        want, got = expected[name], actual[name]
        if want.rows != got["rows"]:
            problems.append(f"{name}: {got['rows']} rows, the backup had {want.rows}")
        elif want.checksum != got["checksum"]:
            problems.append(f"{name}: same row count but different contents")
    return problems

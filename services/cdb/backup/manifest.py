"""The manifest: the JSON file that says what a backup holds and how to check it.

A backup directory is complete exactly when ``manifest.json`` is in it: the manifest is
written last, and the directory only gets its final ``backup-…`` name after that. The
manifest records the time, the schema version, each table's row count and content
checksum (read in the same snapshot pg_dump dumped), each file's sha256 and size, and
the versions of the tools that made it. It never records a password.
"""

from __future__ import annotations

import hashlib
import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from cdb.backup.tools import BackupError

FORMAT = "cdb-backup/1"
MANIFEST_FILE = "manifest.json"
DUMP_FILE = "postgres.dump"
REDIS_FILE = "redis.rdb"
NAME_PREFIX = "backup-"
PARTIAL_PREFIX = ".partial-"


class FileEntry(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    bytes: int = Field(ge=0)


class TableEntry(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    rows: int = Field(ge=0)
    checksum: str


class Manifest(BaseModel):
    """Everything ``cdb restore`` needs to decide whether a restore is faithful."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    format: Literal["cdb-backup/1"] = FORMAT
    created_at: str = Field(description="UTC, ISO 8601, when the snapshot was taken")
    database: dict[str, str | int] = Field(description="host, port, name, user (no password)")
    schema_version: str | None
    tables: dict[str, TableEntry]
    files: dict[str, FileEntry]
    tools: dict[str, str]
    duration_s: float = Field(ge=0)

    @property
    def total_rows(self) -> int:
        return sum(t.rows for t in self.tables.values())


def backup_name(now: datetime) -> str:
    """``backup-20261122T031500.123456Z``: sorts by time as text, unique to the microsecond."""
    now = now.astimezone(UTC)
    return f"{NAME_PREFIX}{now:%Y%m%dT%H%M%S}.{now.microsecond:06d}Z"


def utc_now_iso(now: datetime) -> str:
    return now.astimezone(UTC).isoformat().replace("+00:00", "Z")


def sha256_file(path: Path) -> FileEntry:
    """The sha256 and size of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
            size += len(chunk)
    return FileEntry(sha256=digest.hexdigest(), bytes=size)


def fsync_path(path: Path) -> None:
    """Flush a file or directory to disk, so a rename after it cannot outlive its contents."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_manifest(directory: Path, manifest: Manifest) -> Path:
    path = directory / MANIFEST_FILE
    tmp = directory / (MANIFEST_FILE + ".tmp")
    tmp.write_text(json.dumps(manifest.model_dump(mode="json"), indent=2, sort_keys=True) + "\n")
    fsync_path(tmp)
    tmp.rename(path)
    fsync_path(directory)
    return path


def read_manifest(directory: Path) -> Manifest:
    """The manifest of a backup directory, or ``BackupError`` saying why it is unusable."""
    path = directory / MANIFEST_FILE
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise BackupError(f"{directory} is not a complete backup (no {MANIFEST_FILE})") from None
    except (OSError, ValueError) as exc:
        raise BackupError(f"{path} is unreadable: {exc}") from None
    try:
        return Manifest.model_validate(data)
    except ValidationError as exc:
        err = exc.errors(include_url=False)[0]
        where = ".".join(str(p) for p in err["loc"]) or "manifest"
        raise BackupError(f"{path} is invalid: {where}: {err['msg']}") from None

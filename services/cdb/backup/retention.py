"""Which backups to keep, and the lock that lets only one backup work in a directory.

A *complete* backup is a ``backup-…`` directory holding a manifest; anything else in the
directory is left alone, except ``.partial-…`` directories, which are backups that were
interrupted (or deletions that were) and are removed while the lock is held, when no
other backup can be writing them. Retention keeps the newest ``keep`` complete backups
and, whatever the clock did, the one just written.
"""

from __future__ import annotations

import errno
import fcntl
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from cdb.backup.manifest import MANIFEST_FILE, NAME_PREFIX, PARTIAL_PREFIX, fsync_path
from cdb.backup.tools import BackupError

LOCK_FILE = ".cdb-backup.lock"


def plan_retention(names: list[str], keep: int, protect: str | None = None) -> list[str]:
    """The backups to delete: all but the newest ``keep`` (by name = by time) and ``protect``."""
    if keep < 1:
        raise ValueError("keep must be >= 1: the newest good backup is never deleted")
    newest_first = sorted(names, reverse=True)
    kept = set(newest_first[:keep])
    if protect is not None:
        kept.add(protect)
    return [name for name in newest_first if name not in kept]


def complete_backups(directory: Path) -> list[str]:
    """Names of the complete backups in ``directory``, oldest first."""
    if not directory.is_dir():
        return []
    return sorted(
        p.name
        for p in directory.iterdir()
        if p.name.startswith(NAME_PREFIX) and p.is_dir() and (p / MANIFEST_FILE).is_file()
    )


def newest_backup(directory: Path) -> Path:
    names = complete_backups(directory)
    if not names:
        raise BackupError(f"no complete backup in {directory}")
    return directory / names[-1]


def discard(path: Path) -> None:
    """Delete a backup so that a crash halfway never leaves something that looks complete.

    The rename to ``.partial-…`` is atomic; the next backup finishes any interrupted rmtree.
    """
    doomed = path.with_name(f"{PARTIAL_PREFIX}deleting-{path.name}")
    path.rename(doomed)
    fsync_path(path.parent)
    shutil.rmtree(doomed, ignore_errors=True)


def apply_retention(directory: Path, keep: int, protect: str | None = None) -> list[Path]:
    """Delete the complete backups beyond the newest ``keep``; returns what was deleted."""
    removed = []
    for name in plan_retention(complete_backups(directory), keep, protect):
        discard(directory / name)
        removed.append(directory / name)
    return removed


def remove_partials(directory: Path) -> list[Path]:
    """Remove what interrupted backups left behind (call only while holding the lock)."""
    leftovers = [p for p in directory.iterdir() if p.name.startswith(PARTIAL_PREFIX)]
    for path in leftovers:
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
    return leftovers


@contextmanager
def backup_lock(directory: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``directory`` or fail at once if another backup holds it."""
    fd = os.open(directory / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise BackupError(f"another cdb backup is running in {directory}") from None
            raise
        yield
    finally:
        os.close(fd)

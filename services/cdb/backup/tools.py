"""Find and run the external client tools (pg_dump, pg_restore, redis-cli).

Every run checks the exit status, and whatever a tool prints is passed through
``redact`` before it can reach an error message, so a password that a tool might
echo never reaches the logs. Secrets travel to the tools only in their environment
(``PGPASSWORD``, ``REDISCLI_AUTH``), never on a command line, where ``ps`` shows them.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterable
from pathlib import Path

from cdb.localservers import MissingBinary, pg_bin

PG_INSTALL_HINT = (
    "install the PostgreSQL client tools: apt-get install -y postgresql-client-15 "
    "(the major version must be >= the server's), or set CDB_PG_BIN to their directory"
)
REDIS_INSTALL_HINT = "install redis-cli: apt-get install -y redis-tools"


class BackupError(RuntimeError):
    """A backup or restore failed; the message is one line fit for an operator."""


class MissingTool(BackupError):
    """A client binary is not installed; the message says what to install."""


def redact(text: str, secrets: Iterable[str | None]) -> str:
    """``text`` with every non-empty secret replaced by ``***``."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


def last_line(text: str) -> str:
    """The last non-empty line of a tool's output: usually the one that says why it failed."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else "(no output)"


def find_pg_tool(name: str) -> str:
    """Path of ``pg_dump``/``pg_restore``: ``$CDB_PG_BIN`` first, then like ``cdb.localservers``.

    ``CDB_PG_BIN`` exists because pg_dump refuses a server newer than itself: an operator
    with a PostgreSQL 16 server points it at the 16 client tools.
    """
    override = os.environ.get("CDB_PG_BIN")
    if override:
        candidate = Path(override) / name
        if candidate.exists():
            return str(candidate)
        raise MissingTool(f"{name} not found in CDB_PG_BIN={override}; {PG_INSTALL_HINT}")
    try:
        return pg_bin(name)
    except MissingBinary:
        raise MissingTool(f"{name} not found; {PG_INSTALL_HINT}") from None


def find_redis_cli() -> str:
    found = shutil.which("redis-cli")
    if not found:
        raise MissingTool(f"redis-cli not found; {REDIS_INSTALL_HINT}")
    return found


def run_tool(
    argv: list[str],
    env: dict[str, str],
    what: str,
    secrets: Iterable[str | None] = (),
    timeout: float | None = None,
) -> str:
    """Run ``argv`` with ``env`` added to ours; return stdout, or raise ``BackupError``.

    The error names ``what`` failed, its exit status and the tool's last line of output
    (redacted). On any exception, ``subprocess.run`` kills the child, so no pg_dump
    survives its parent writing into a directory that is being deleted.
    """
    secrets = list(secrets)
    try:
        proc = subprocess.run(
            argv,
            env={**os.environ, **env},
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise BackupError(f"{what} did not finish within {timeout:.0f}s") from None
    except OSError as exc:
        raise BackupError(f"{what} could not start: {exc}") from None
    if proc.returncode != 0:
        detail = redact(last_line(proc.stderr or proc.stdout), secrets)
        raise BackupError(f"{what} failed (exit {proc.returncode}): {detail}")
    return proc.stdout


def tool_version(path: str) -> str:
    """``pg_dump (PostgreSQL) 15.18`` and the like; ``unknown`` rather than failing a backup."""
    try:
        out = subprocess.run(
            [path, "--version"], capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return out.stdout.strip() or "unknown"

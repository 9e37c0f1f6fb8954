"""Where the running local bot lives: one state file per user, written by ``cdb up``.

``cdb up`` records its session (data directory, HTTP ports, process ids, the private
servers' ``REDIS_*`` / ``POSTGRES_*`` settings) in ``DATA_DIR/up.json`` and copies it to
the per-user state file, ``$CDB_STATE_DIR/local.json`` (default
``${XDG_STATE_HOME:-~/.local/state}/claire-de-binare/local.json``, mode 0600: it holds the
private database's password). Any command of this user finds the bot from any
directory without flags::

    from cdb.local import state
    bot = state.load()              # None when no cdb up runs
    if bot:
        env = bot.server_env        # {"REDIS_HOST": "127.0.0.1", "POSTGRES_PORT": "41234", ...}

``cdb status``, ``cdb backup``, ``cdb restore`` and ``cdb env`` use it; a future
``cdb breaker`` should too. The last ``cdb up`` started wins the state file; each
``cdb up`` removes it at the end only if it still names that run.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SESSION_FILE = "up.json"


def state_dir(env: Mapping[str, str] = os.environ) -> Path:
    """The per-user directory of the state file (``CDB_STATE_DIR`` or XDG's state home)."""
    if env.get("CDB_STATE_DIR"):
        return Path(env["CDB_STATE_DIR"])
    base = env.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "claire-de-binare"


def state_path(env: Mapping[str, str] = os.environ) -> Path:
    return state_dir(env) / "local.json"


@dataclass(frozen=True)
class LocalBot:
    """One ``cdb up`` session as recorded: where it runs and how to reach it."""

    pid: int
    data_dir: Path
    http_ports: dict[str, int] = field(default_factory=dict)
    #: ``REDIS_*`` / ``POSTGRES_*`` of the private servers (external ones come from env).
    server_env: dict[str, str] = field(default_factory=dict)
    logs: Path | None = None
    started_at: int | None = None
    raw: dict[str, Any] = field(default_factory=dict)

    @property
    def alive(self) -> bool:
        """Whether the recorded ``cdb up`` process still runs."""
        return pid_alive(self.pid)

    def env_for(self, prefix: str) -> dict[str, str]:
        """The recorded settings starting with ``prefix`` (``"POSTGRES_"``, ``"REDIS_"``)."""
        return {k: v for k, v in self.server_env.items() if k.startswith(prefix)}


def pid_alive(pid: object) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _parse(raw: dict[str, Any], fallback_dir: Path | None) -> LocalBot | None:
    try:
        return LocalBot(
            pid=int(raw["pid"]),
            data_dir=Path(raw.get("data_dir") or fallback_dir or "."),
            http_ports={k: int(v) for k, v in (raw.get("http_ports") or {}).items()},
            server_env={k: str(v) for k, v in (raw.get("servers") or {}).items()},
            logs=Path(raw["logs"]) if raw.get("logs") else None,
            started_at=raw.get("started_at"),
            raw=raw,
        )
    except (KeyError, TypeError, ValueError):
        return None


def read(path: Path, fallback_dir: Path | None = None) -> LocalBot | None:
    """The session recorded in ``path``, alive or not; None if missing or unreadable."""
    try:
        raw = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return _parse(raw, fallback_dir) if isinstance(raw, dict) else None


def load(data_dir: Path | None = None, env: Mapping[str, str] = os.environ) -> LocalBot | None:
    """The running local bot, or None.

    With ``data_dir``: the session in ``DATA_DIR/up.json``. Without: the per-user state file,
    then ``$CDB_DATA_DIR/up.json`` or ``./.cdb/up.json``. A session whose ``cdb up`` is not
    running any more is skipped (returned only by ``read``).
    """
    if data_dir is not None:
        candidates = [data_dir / SESSION_FILE]
    else:
        candidates = [
            state_path(env),
            Path(env.get("CDB_DATA_DIR") or ".cdb") / SESSION_FILE,
        ]
    for path in candidates:
        bot = read(path, path.parent)
        if bot is not None and bot.alive:
            return bot
    return None


def _write_private(path: Path, text: str) -> None:
    """Write ``text`` with mode 0600 atomically (a reader never sees half a file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def record(session: dict[str, Any], env: Mapping[str, str] = os.environ) -> list[Path]:
    """Write ``session`` to ``DATA_DIR/up.json`` and the per-user state file.

    Returns the paths written. The state file is best effort: a home directory that
    cannot be written does not stop ``cdb up`` (``DATA_DIR/up.json`` still is written).
    """
    text = json.dumps(session, indent=2)
    written = []
    own = Path(session["data_dir"]) / SESSION_FILE
    _write_private(own, text)
    written.append(own)
    with contextlib.suppress(OSError):
        _write_private(state_path(env), text)
        written.append(state_path(env))
    return written


def forget(data_dir: Path, pid: int, env: Mapping[str, str] = os.environ) -> None:
    """Remove ``DATA_DIR/up.json``, and the state file if it still names ``pid``."""
    with contextlib.suppress(OSError):
        (data_dir / SESSION_FILE).unlink()
    path = state_path(env)
    bot = read(path)
    if bot is not None and bot.pid == pid:
        with contextlib.suppress(OSError):
            path.unlink()


def server_overrides(prefixes: tuple[str, ...], env: Mapping[str, str] = os.environ) -> dict:
    """Settings of the running local bot's private servers for ``prefixes`` not named in env.

    For commands that connect to "the" database or Redis (``cdb backup``, ``cdb restore``,
    ``cdb status``): a server the environment names (``POSTGRES_HOST`` …) wins; otherwise
    the private one of the running ``cdb up``, if any. Empty when no local bot runs.
    """
    named = {p for p in prefixes if env.get(f"{p}HOST")}
    todo = tuple(p for p in prefixes if p not in named)
    if not todo:
        return {}
    bot = load(env=env)
    if bot is None:
        return {}
    # a single variable the environment sets wins too (POSTGRES_DB=claire_restored cdb restore)
    return {k: v for k, v in bot.server_env.items() if k.startswith(todo) and k not in env}

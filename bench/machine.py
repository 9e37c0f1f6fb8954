"""What machine a figure was measured on: cores, CPU model, Python, Redis, PostgreSQL, libraries.

Figures without the machine are meaningless, so every section of
``docs/benchmarks.md`` is written under this description.
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
from importlib import metadata


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _version_of(cmd: list[str]) -> str:
    if not shutil.which(cmd[0]):
        return "not installed"
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return out.strip().splitlines()[0] if out.strip() else "unknown"


def _pg_version() -> str:
    from cdb.localservers import MissingBinary, pg_bin

    try:
        return _version_of([pg_bin("postgres"), "--version"])
    except MissingBinary:
        return "not installed"


def _lib(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


def _mem_total_gib() -> str:
    try:
        with open("/proc/meminfo") as f:
            kib = int(f.readline().split()[1])
        return f"{kib / 1024 / 1024:.1f} GiB"
    except (OSError, ValueError, IndexError):
        return "unknown"


def describe() -> dict[str, str]:
    """The facts that decide how fast this machine can be (computed once per run)."""
    redis_v = _version_of(["redis-server", "--version"])
    return {
        "cores": str(os.cpu_count()),
        "cpu": _cpu_model(),
        "memory": _mem_total_gib(),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "redis": redis_v.split(" sha=")[0],
        "postgresql": _pg_version(),
        "redis-py": _lib("redis"),
        "hiredis": _lib("hiredis"),
        "pydantic": _lib("pydantic"),
        "pydantic-core": _lib("pydantic_core"),
        "orjson": _lib("orjson"),
    }


def markdown(info: dict[str, str]) -> str:
    return "\n".join(f"- **{k}**: {v}" for k, v in info.items())

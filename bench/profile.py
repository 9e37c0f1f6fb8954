"""Sampling profiles of a running service with py-spy, summarised as the top functions.

py-spy attaches to the process from outside (no code change, no slowdown of
note at 250 Hz) and writes collapsed stacks; ``summarize`` turns them into
"self" time (where the CPU is) and "total" time (what a call costs with
everything it calls), per function, in percent of the samples.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import tempfile
import time
from collections import Counter
from pathlib import Path


def output_path(name: str) -> str:
    return str(Path(tempfile.gettempdir()) / f"cdb-bench-{name}-{int(time.time())}.txt")


def record(pid: int, out: str, rate: int = 250, idle: bool = False) -> subprocess.Popen | None:
    """Start py-spy on ``pid`` (None when py-spy is not installed).

    ``idle``: keep samples of a thread that waits (on a socket, a lock): a latency
    profile needs the time spent waiting for Redis and PostgreSQL, not only the CPU.
    """
    binary = shutil.which("py-spy")
    if not binary:
        return None
    cmd = [binary, "record", "-p", str(pid), "-o", out, "-f", "raw", "-r", str(rate), "-n"]
    cmd += ["--idle"] if idle else []
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def stop(spy: subprocess.Popen) -> None:
    """Stop py-spy (SIGINT makes it write its output)."""
    spy.send_signal(signal.SIGINT)
    try:
        spy.wait(timeout=30)
    except subprocess.TimeoutExpired:
        spy.kill()


def _frame(frame: str) -> str:
    # py-spy raw frames look like "function (path/to/module.py:123)"
    name, _, where = frame.partition(" (")
    where = where.rstrip(")").rsplit(":", 1)[0]
    parts = Path(where).parts
    short = "/".join(parts[-2:]) if parts else where
    return f"{name} ({short})"


def summarize(path: str, top: int = 15, thread_marker: str = "_run_module_as_main") -> dict:
    """Top functions by self and by total samples, in percent, from py-spy's raw output.

    Only stacks through ``thread_marker`` count (the main thread, where the service loop
    runs): the HTTP server's idle worker threads would otherwise fill the table.
    """
    if not Path(path).exists():  # py-spy missing or refused to attach
        return {"samples": 0, "self": [], "total": [], "missing": True}
    own: Counter[str] = Counter()
    total: Counter[str] = Counter()
    samples = 0
    for line in Path(path).read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit() or thread_marker not in stack:
            continue
        n = int(count)
        frames = [_frame(f) for f in stack.split(";") if f and not f.startswith("process ")]
        frames = [f for f in frames if not f.startswith("<module>") or len(frames) == 1]
        if not frames:
            continue
        samples += n
        own[frames[-1]] += n
        for f in set(frames):
            total[f] += n
    pct = 100.0 / samples if samples else 0.0
    return {
        "samples": samples,
        "self": [(f, c * pct) for f, c in own.most_common(top)],
        "total": [(f, c * pct) for f, c in total.most_common(top + 10)],
    }


def format_summary(summary: dict) -> str:
    if summary.get("missing"):
        return "py-spy: no profile (install it with `pip install py-spy`; it needs ptrace)"
    lines = [f"py-spy: {summary['samples']} samples", "self %  function"]
    lines += [f"{p:6.1f}  {f}" for f, p in summary["self"]]
    lines += ["", "total % function"]
    lines += [f"{p:6.1f}  {f}" for f, p in summary["total"]]
    return "\n".join(lines)

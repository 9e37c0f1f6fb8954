"""The watchdog of ``cdb up``: stops what it started when ``cdb up`` dies without stopping it.

``cdb up`` starts ``python -m cdb.local.watchdog DATA_DIR STOP_TIMEOUT`` in its own session
with a pipe on its stdin and keeps the pipe's write end. At a normal end ``cdb up`` writes
``bye`` and closes it, and the watchdog exits doing nothing. When ``cdb up`` dies any other
way — ``kill -9``, a crash — the kernel closes the pipe, the watchdog reads end-of-file
without ``bye`` and does what ``cdb up`` would have done, in the same order, from the session
recorded in ``DATA_DIR/up.json``: SIGTERM to the feed, then to the other services (SIGKILL
after STOP_TIMEOUT s), ``pg_ctl stop -m fast`` of the private PostgreSQL, SIGTERM to the
private Redis, and removes ``up.json`` and the per-user state file. A pipe is used rather
than ``PR_SET_PDEATHSIG`` because it works for PostgreSQL too (``pg_ctl`` daemonizes it),
keeps the order (Redis and PostgreSQL outlive the services that use them) and does not
depend on which thread of ``cdb up`` started a child. What it does goes to
``DATA_DIR/logs/watchdog.log``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from cdb.local import plan, state
from cdb.localservers import PostgresServer

#: What ``cdb up`` writes to the pipe at its normal end.
BYE = b"bye"


def _cmdline(pid: int) -> list[bytes]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return []


def _is(pid: object, marker: bytes) -> bool:
    """Whether ``pid`` still runs the program we recorded (a reused id is left alone)."""
    return isinstance(pid, int) and pid > 0 and marker in b" ".join(_cmdline(pid))


def _gone(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[-1].split()[0] == "Z"


def _stop(pids: dict[str, int], timeout: float, log) -> None:
    for pid in pids.values():
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not all(_gone(p) for p in pids.values()):
        time.sleep(0.1)
    for name, pid in pids.items():
        if not _gone(pid):
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
            log(f"killed {name} (pid {pid}) after {timeout:g} s")


def clean_up(data_dir: Path, timeout: float, log=print) -> None:
    """Stop the services, PostgreSQL and Redis of the dead ``cdb up`` recorded in ``data_dir``."""
    bot = state.read(data_dir / state.SESSION_FILE, data_dir)
    raw = bot.raw if bot is not None else {}
    pids = {n: p for n, p in (raw.get("pids") or {}).items() if _is(p, b"cdb run " + n.encode())}
    order = (*plan.STOP_ORDER, "advisor")
    first = {n: p for n, p in pids.items() if n == order[0]}
    rest = {n: p for n, p in pids.items() if n != order[0]}
    for group in (first, rest):
        if group:
            log(f"stopping {', '.join(group)}")
            _stop(group, timeout, log)
    if (data_dir / "pg" / "pgdata" / "postmaster.pid").exists():
        log("stopping PostgreSQL (pg_ctl stop -m fast)")
        with contextlib.suppress(subprocess.CalledProcessError, OSError):
            PostgresServer(data_dir / "pg").stop("fast")
    redis_pid = raw.get("redis_pid")
    if _is(redis_pid, b"redis-server"):
        log(f"stopping Redis (pid {redis_pid})")
        _stop({"redis": redis_pid}, timeout, log)
    if bot is not None:
        state.forget(data_dir, bot.pid)


def start(data_dir: Path, timeout: float) -> subprocess.Popen:
    """Start the watchdog of the ``cdb up`` calling this; its log in ``DATA_DIR/logs``."""
    log_path = data_dir / "logs" / "watchdog.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "cdb.local.watchdog", str(data_dir), str(timeout)],
            stdin=subprocess.PIPE,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # a closed terminal's SIGHUP does not reach it
        )


def dismiss(proc: subprocess.Popen | None) -> None:
    """At ``cdb up``'s normal end: tell the watchdog all is stopped; it exits doing nothing."""
    if proc is None or proc.stdin is None:
        return
    with contextlib.suppress(OSError):
        proc.stdin.write(BYE)
        proc.stdin.close()
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=10)


def main(argv: list[str]) -> int:
    data_dir, timeout = Path(argv[0]), float(argv[1])
    for sig in (signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)
    said = sys.stdin.buffer.read()  # until cdb up closes the pipe: at its end or its death
    if said.startswith(BYE):
        return 0

    def log(text: str) -> None:
        print(f"{time.strftime('%H:%M:%S')} cdb up is gone: {text}", flush=True)

    clean_up(data_dir, timeout, log)
    log("done")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

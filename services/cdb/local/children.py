"""The services as child processes of ``cdb up``: started, watched, restarted, stopped.

Each child runs in its own session, so a Ctrl-C on the terminal reaches only
``cdb up``, which then stops the children in order (producers first) with SIGTERM,
waits for their graceful exit, and kills only those that outlive the wait. A child
that dies on its own is restarted as Kubernetes restarts a container
(``restartPolicy: Always`` with CrashLoopBackOff): after 1 s, then twice as long each
time up to 60 s; a child that stayed up ``BACKOFF_RESET_S`` starts again from 1 s.
Every death is reported with the tail of its log, and counted on the screen.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

#: Kubernetes' CrashLoopBackOff shape (10 s doubling to 5 min), scaled to a laptop run.
BACKOFF_START_S = 1.0
BACKOFF_MAX_S = 60.0
#: A child that ran this long is healthy again: its next restart waits BACKOFF_START_S.
BACKOFF_RESET_S = 60.0


def backoff(consecutive: int, start: float = BACKOFF_START_S, cap: float = BACKOFF_MAX_S) -> float:
    """Seconds to wait before restart number ``consecutive`` (1, 2, …) of a crash loop."""
    return min(cap, start * 2 ** max(0, consecutive - 1))


@dataclass
class Child:
    """One ``python -m cdb run NAME`` with its log file in the data directory."""

    name: str
    port: int
    env: Mapping[str, str]
    log_path: Path
    proc: subprocess.Popen | None = None
    reported: bool = False
    stopping: bool = field(default=False)
    #: Deaths so far, and those since the child last stayed up BACKOFF_RESET_S.
    restarts: int = 0
    consecutive: int = 0
    started_at: float = 0.0
    #: When a restart is due (monotonic), while the child is down.
    restart_at: float | None = None
    last_exit: int | None = None

    def start(self, fresh_log: bool = False) -> None:
        """Start the process; ``fresh_log`` keeps the previous run's log as ``NAME.log.1``."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        if fresh_log and self.log_path.exists():
            self.log_path.replace(self.log_path.with_name(self.log_path.name + ".1"))
        self.started_at = time.monotonic()
        self.reported = False
        self.restart_at = None
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "cdb", "run", self.name],
                env=dict(self.env),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    @property
    def exit_code(self) -> int | None:
        return None if self.proc is None else self.proc.poll()

    @property
    def died(self) -> bool:
        """Exited without being asked to."""
        return not self.stopping and self.exit_code is not None

    def schedule_restart(self, now: float) -> float:
        """Record a death and when to start again; returns the wait in seconds."""
        self.reported = True
        self.last_exit = self.exit_code
        self.restarts += 1
        ran = now - self.started_at
        self.consecutive = 1 if ran >= BACKOFF_RESET_S else self.consecutive + 1
        wait = backoff(self.consecutive)
        self.restart_at = now + wait
        return wait

    def restart_due(self, now: float) -> bool:
        return not self.stopping and self.restart_at is not None and now >= self.restart_at

    def terminate(self) -> None:
        self.stopping = True
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)

    def wait(self, deadline: float) -> bool:
        """Wait for the exit until ``deadline`` (monotonic); True if it exited."""
        if self.proc is None:
            return True
        try:
            self.proc.wait(timeout=max(0.0, deadline - time.monotonic()))
            return True
        except subprocess.TimeoutExpired:
            return False

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def log_tail(self, lines: int = 8) -> list[str]:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return []
        return text.splitlines()[-lines:]


def stop_all(children: Mapping[str, Child], order: tuple[str, ...], timeout: float) -> list[str]:
    """SIGTERM in ``order``, the first (the feed) alone, then the rest together.

    Returns the names of children that had to be killed after ``timeout`` seconds.
    """
    killed = []
    first, rest = order[0], order[1:]
    for group in ((first,), rest):
        present = [children[n] for n in group if n in children]
        for child in present:
            child.terminate()
        deadline = time.monotonic() + timeout
        for child in present:
            if not child.wait(deadline):
                child.kill()
                killed.append(child.name)
    return killed

"""The services as child processes of ``cdb up``: started, watched, stopped — never restarted.

Each child runs in its own session, so a Ctrl-C on the terminal reaches only
``cdb up``, which then stops the children in order (producers first) with SIGTERM,
waits for their graceful exit, and kills only those that outlive the wait. A child
that dies on its own is reported once, with the tail of its log, and left dead:
restarting it silently would hide the failure.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path


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

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
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

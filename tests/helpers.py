"""Test helpers: run services as real processes, wait for conditions, read their HTTP endpoints."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cdb.localservers import free_port, wait_for_port


def wait_until(
    predicate: Callable[[], Any],
    timeout: float = 20.0,
    interval: float = 0.05,
    message: str = "condition",
    describe: Callable[[], str] | None = None,
) -> Any:
    """Poll until ``predicate()`` is truthy; return its value or fail with ``message``
    (and what ``describe()`` says of the state at that moment, if given)."""
    deadline = time.monotonic() + timeout
    last_exc: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = predicate()
            if value:
                return value
        except Exception as exc:  # the thing polled may not be up yet
            last_exc = exc
        time.sleep(interval)
    state = ""
    if describe is not None:
        try:
            state = f"; now: {describe()}"
        except Exception as exc:
            state = f"; the state could not be read: {exc!r}"
    raise AssertionError(
        f"timed out after {timeout}s waiting for {message} (last error: {last_exc}){state}"
    )


def http_get(port: int, path: str, timeout: float = 3.0) -> tuple[int, Any]:
    """GET a local endpoint; returns (status, parsed JSON or text) without raising on 5xx."""
    url = f"http://127.0.0.1:{port}{path}"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            status, body = resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        status, body = exc.code, exc.read().decode()
    try:
        return status, json.loads(body)
    except ValueError:
        return status, body


class ServiceProcess:
    """``cdb run NAME`` as a child process with its own environment and a log file."""

    def __init__(
        self,
        name: str,
        env: dict[str, str],
        log_dir: Path,
        port: int | None = None,
        args: list[str] | None = None,
    ) -> None:
        self.name = name
        self.port = port or free_port()
        self.env = {
            **os.environ,
            **env,
            "HTTP_PORT": str(self.port),
            "HTTP_HOST": "127.0.0.1",
            "CDB_CONSUMER_NAME": env.get("CDB_CONSUMER_NAME", f"{name}-test"),
        }
        self.log_path = log_dir / f"{name}.log"
        self.args = args or [sys.executable, "-m", "cdb", "run", name]
        self.proc: subprocess.Popen | None = None

    def start(self, wait_healthy: bool = True, timeout: float = 30.0) -> ServiceProcess:
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(self.args, env=self.env, stdout=log, stderr=subprocess.STDOUT)
        if wait_healthy:
            wait_for_port(self.port, timeout=timeout)
            wait_until(
                lambda: self.health()[0] == 200,
                timeout=timeout,
                message=f"{self.name} healthy (log: {self.log_path})",
            )
        return self

    def health(self) -> tuple[int, Any]:
        return http_get(self.port, "/health")

    def status(self) -> dict[str, Any]:
        return http_get(self.port, "/status")[1]

    def metrics(self) -> str:
        return http_get(self.port, "/metrics")[1]

    def kill(self) -> None:
        """SIGKILL: no chance to acknowledge or clean up, like a node dying."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self, timeout: float = 15.0) -> int | None:
        """SIGTERM and wait for the graceful exit; returns the exit code."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                return self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError(f"{self.name} did not stop within {timeout}s") from None
        return self.proc.returncode if self.proc else None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

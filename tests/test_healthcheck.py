"""``cdb healthcheck`` (the image's HEALTHCHECK) run as Docker runs it: a real command.

Against a local HTTP server and real processes whose command lines look like the
container's main program, and against a real service whose Redis is stopped: the check
follows liveness, so it keeps passing while the service only waits for its dependency.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from helpers import ServiceProcess, http_get, wait_until

from cdb.healthcheck import guess_url

PROBE = [sys.executable, str(Path(__file__).with_name("probe_service.py"))]


class _Live(BaseHTTPRequestHandler):
    status = 200

    def do_GET(self):  # noqa: N802 (http.server's naming)
        self.send_response(type(self).status if self.path in ("/livez", "/healthz") else 404)
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args):
        pass


@pytest.fixture
def live_server():
    handler = type("Handler", (_Live,), {"status": 200})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server, handler
    server.shutdown()
    server.server_close()


def run_check(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    """``cdb healthcheck`` in a clean environment plus ``env`` (as in the container)."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("CDB_", "HTTP_"))}
    return subprocess.run(
        [sys.executable, "-m", "cdb", "healthcheck", *args],
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=30,
    )


@pytest.fixture
def fake_pid1():
    """Start a process whose command line looks like the container's main program."""
    procs: list[subprocess.Popen] = []

    def start(*argv: str) -> int:
        proc = subprocess.Popen(
            [sys.executable, "-c", "import time; time.sleep(60)", *argv],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        procs.append(proc)
        return proc.pid

    yield start
    for proc in procs:
        proc.kill()
        proc.wait()


def test_guess_url_follows_liveness_of_each_program():
    env = {}
    assert guess_url(["cdb", "run", "signal"], env) == "http://127.0.0.1:8001/livez"
    assert guess_url(["cdb", "run", "notifier"], {"HTTP_PORT": "9"}) == "http://127.0.0.1:9/livez"
    assert guess_url(["cdb-operator", "--liveness", "http://0.0.0.0:8080/healthz"], env) == (
        "http://0.0.0.0:8080/healthz"
    )
    assert guess_url(["cdb-operator", "--liveness="], env) is None
    assert guess_url(["cdb", "backup", "/tmp/x"], env) is None


def test_passes_on_200_and_fails_on_503(live_server):
    server, handler = live_server
    url = f"http://127.0.0.1:{server.server_port}/livez"
    assert run_check({"CDB_HEALTHCHECK_URL": url}).returncode == 0
    handler.status = 503
    proc = run_check({"CDB_HEALTHCHECK_URL": url})
    assert proc.returncode == 1 and "HTTP 503" in proc.stdout


def test_fails_when_nothing_listens():
    proc = run_check({}, "--url", "http://127.0.0.1:1/livez")
    assert proc.returncode == 1


def test_finds_the_service_port_from_the_command_line(live_server, fake_pid1):
    server, handler = live_server
    pid = fake_pid1("/opt/venv/bin/cdb", "run", "signal")
    env = {"CDB_HEALTHCHECK_PID": str(pid), "HTTP_PORT": str(server.server_port)}
    assert run_check(env).returncode == 0
    handler.status = 503
    assert run_check(env).returncode == 1


def test_uses_the_operators_liveness_url(live_server, fake_pid1):
    server, _ = live_server
    pid = fake_pid1("cdb-operator", f"--liveness=http://0.0.0.0:{server.server_port}/healthz")
    proc = run_check({}, "--pid", str(pid))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"127.0.0.1:{server.server_port}" in proc.stdout


def test_has_nothing_to_probe_for_a_one_off_command(fake_pid1):
    pid = fake_pid1("cdb", "backup", "/tmp/x")
    proc = run_check({"CDB_HEALTHCHECK_PID": str(pid)})
    assert proc.returncode == 0
    assert "nothing to probe" in proc.stdout


def test_a_real_service_stays_healthy_while_redis_is_down(own_redis, tmp_path):
    """The HEALTHCHECK must not get a service restarted for its dependency's outage."""
    svc = ServiceProcess("probe", own_redis.env(), tmp_path, args=[*PROBE, "run", "probe"])
    svc.start()
    try:
        env = {"CDB_HEALTHCHECK_PID": str(svc.proc.pid), "HTTP_PORT": str(svc.port)}
        assert run_check(env).returncode == 0
        own_redis.stop()
        wait_until(lambda: http_get(svc.port, "/readyz")[0] == 503, message="NotReady")
        proc = run_check(env)
        assert proc.returncode == 0, proc.stdout
        assert "/livez: ok" in proc.stdout
    finally:
        assert svc.stop() == 0


def test_ports_are_every_service_s_default_port():
    """The check guesses ports without importing the services; it must know each one's."""
    import importlib

    from cdb.cli import SERVICES
    from cdb.healthcheck import PORTS

    defaults = {
        name: importlib.import_module(module).SERVICE.default_port
        for name, module in SERVICES.items()
    }
    assert defaults == PORTS

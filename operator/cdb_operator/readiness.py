"""The operator's readiness endpoint (``cdb-operator --readiness URL``), apart from liveness.

kopf's ``/healthz`` (``--liveness``) answers while the operator's event loop runs: that is
liveness, and the chart's liveness and startup probes use it. Readiness asks about the
operator's one dependency, the Kubernetes API server: ``GET /readyz`` answers 200 while
``GET /version`` succeeded within the last few seconds, 503 with the reason otherwise, so
an API-server blip makes the pod NotReady instead of restarting it.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.parse
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from cdb_operator.apply import ApiError, Kube

Check = Callable[[], str | None]


def api_server_check(kube: Kube, timeout: float = 3.0) -> Check:
    """A check that GETs ``/version`` with a short timeout: ``None`` when it answered."""
    quick = Kube(kube.api, timeout=timeout)

    def check() -> str | None:
        try:
            quick.request("GET", "/version")
        except ApiError as exc:
            return f"API server unreachable: {exc}"[:300]
        return None

    return check


class Cached:
    """Runs ``check`` at most once per ``max_age_s`` seconds (probes may come often)."""

    def __init__(self, check: Check, max_age_s: float = 5.0) -> None:
        self.check = check
        self.max_age_s = max_age_s
        self._at = -float("inf")
        self._result: str | None = None
        self._lock = threading.Lock()

    def __call__(self) -> str | None:
        with self._lock:
            now = time.monotonic()
            if now - self._at >= self.max_age_s:
                self._result = self.check()
                self._at = time.monotonic()
            return self._result


def serve(url: str, check: Check) -> ThreadingHTTPServer:
    """Serve ``check`` at ``url``'s path on its host and port, in a daemon thread."""
    parts = urllib.parse.urlsplit(url)
    path = parts.path or "/readyz"

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (http.server's naming)
            if self.path != path:
                self.send_response(404)
                self.end_headers()
                return
            problem = check()
            body = {"status": "ok"} if problem is None else {"status": "unavailable"}
            if problem is not None:
                body["problems"] = [problem]
            data = json.dumps(body).encode()
            self.send_response(200 if problem is None else 503)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer((parts.hostname or "0.0.0.0", parts.port or 80), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="readiness", daemon=True).start()
    return server

"""The operator's readiness endpoint: 200 while the API server answers, 503 naming it when not."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from helpers import http_get

from cdb.localservers import free_port
from cdb_operator.apply import Kube
from cdb_operator.readiness import Cached, api_server_check, serve


class _ApiServer(BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 (http.server's naming)
        body = b'{"major": "1", "minor": "31"}' if self.path == "/version" else b"{}"
        self.send_response(200 if self.path == "/version" else 404)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def api_server():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _ApiServer)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


def test_ready_while_the_api_server_answers_and_not_when_it_is_gone(api_server):
    kube = Kube.for_url(f"http://127.0.0.1:{api_server.server_port}")
    port = free_port()
    server = serve(f"http://0.0.0.0:{port}/readyz", Cached(api_server_check(kube), max_age_s=0))
    try:
        assert http_get(port, "/readyz") == (200, {"status": "ok"})
        assert http_get(port, "/other")[0] == 404
        api_server.shutdown()
        api_server.server_close()
        status, body = http_get(port, "/readyz", timeout=10)
        assert status == 503
        assert body["problems"][0].startswith("API server unreachable"), body
    finally:
        server.shutdown()
        server.server_close()


def test_cached_checks_at_most_once_per_max_age():
    calls = []
    cached = Cached(lambda: calls.append(1) or None, max_age_s=60)
    assert cached() is None and cached() is None
    assert len(calls) == 1

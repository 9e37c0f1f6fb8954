"""The notifier as a real process, pushing to a real HTTP peer on 127.0.0.1 that plays the push
service: encrypted pushes for WARNING and CRITICAL only, gone subscriptions removed, log-only
without keys. No network beyond loopback."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import tempfile
import threading
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import http_ece
import psycopg2
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from helpers import ServiceProcess, http_get, wait_until
from py_vapid import Vapid02

from cdb.bus import Bus
from cdb.db.migrate import migrate
from cdb.events import Alert
from cdb.notifier.subscriptions import subscription_key
from cdb.notifier.vapid import b64url, public_key_b64
from cdb.settings import PostgresSettings

TOKEN = "test-token-0123456789"


class PushService:
    """A tiny push service: records every request; ``/gone/...`` answers 410, ``/broken/...``
    400, ``/flaky/...`` 503 to its first request, everything else 201."""

    def __init__(self) -> None:
        self.requests: list[dict] = []
        received = self.requests

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                received.append({"path": self.path, "headers": dict(self.headers), "body": body})
                tries = sum(1 for r in received if r["path"] == self.path)
                if self.path.startswith("/gone/"):
                    code = 410
                elif self.path.startswith("/broken/"):
                    code = 400  # a refusal a retry would only repeat
                elif self.path.startswith("/flaky/") and tries == 1:
                    code = 503  # a push service's hiccup: the first try fails, the retry works
                else:
                    code = 201
                self.send_response(code)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def to(self, path: str) -> list[dict]:
        return [r for r in self.requests if r["path"] == path]


class Browser:
    """What a browser keeps for one subscription: its ECDH key pair and auth secret."""

    def __init__(self, endpoint: str) -> None:
        self.endpoint = endpoint
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.auth = os.urandom(16)

    def subscription(self) -> dict:
        point = self.key.public_key().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )
        return {
            "endpoint": self.endpoint,
            "expirationTime": None,
            "keys": {"p256dh": b64url(point), "auth": b64url(self.auth)},
        }

    def decrypt(self, body: bytes) -> dict:
        plain = http_ece.decrypt(
            body, private_key=self.key, auth_secret=self.auth, version="aes128gcm"
        )
        return json.loads(plain)


def post(port: int, path: str, body: object, token: str | None, method: str = "POST") -> int:
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}",
        data=json.dumps(body).encode(),
        method=method,
        headers={"Content-Type": "application/json"}
        | ({"Authorization": f"Bearer {token}"} if token else {}),
    )
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.status
    except urllib.error.HTTPError as exc:
        return exc.code


def vapid_env() -> tuple[Vapid02, dict[str, str]]:
    vapid = Vapid02()
    vapid.generate_keys()
    raw = vapid.private_key.private_numbers().private_value.to_bytes(32, "big")
    return vapid, {
        "WEBPUSH_VAPID_PUBLIC_KEY": public_key_b64(vapid),
        "WEBPUSH_VAPID_PRIVATE_KEY": b64url(raw),
        "WEBPUSH_CONTACT": "mailto:ops@example.com",
    }


@pytest.fixture
def log_dir() -> Path:
    return Path(tempfile.mkdtemp(prefix="cdb-notifier-"))


@pytest.fixture
def push_service() -> Iterator[PushService]:
    service = PushService()
    yield service
    service.server.shutdown()


def subscriptions(dsn: str) -> list[str]:
    with psycopg2.connect(dsn) as conn, conn.cursor() as cur:
        cur.execute("SELECT endpoint FROM webpush_subscriptions ORDER BY endpoint")
        rows = [r[0] for r in cur.fetchall()]
    conn.close()
    return rows


def test_critical_and_warning_are_pushed_encrypted_info_is_not(
    redis_env, redis_client, pg_env, log_dir, push_service
):
    migrate(PostgresSettings(**pg_env))
    dsn = PostgresSettings(**pg_env).postgres_dsn()
    vapid, keys = vapid_env()
    env = {**redis_env, **pg_env, **keys, "NOTIFIER_API_TOKEN": TOKEN}
    notifier = ServiceProcess("notifier", env, log_dir).start()
    try:
        port = notifier.port
        phone = Browser(push_service.url("/push/phone"))
        gone = Browser(push_service.url("/gone/laptop"))
        assert post(port, "/webpush/subscriptions", phone.subscription(), None) == 401
        assert post(port, "/webpush/subscriptions", phone.subscription(), "wrong" * 4) == 401
        bad = {"endpoint": "http://push.example.com/x", "keys": phone.subscription()["keys"]}
        assert post(port, "/webpush/subscriptions", bad, TOKEN) == 400  # plain http, not local
        bad = {"endpoint": phone.endpoint, "keys": {"p256dh": "AAAA", "auth": "x"}}
        assert post(port, "/webpush/subscriptions", bad, TOKEN) == 400
        assert post(port, "/webpush/subscriptions", phone.subscription(), TOKEN) == 201
        assert post(port, "/webpush/subscriptions", phone.subscription(), TOKEN) == 201
        assert post(port, "/webpush/subscriptions", gone.subscription(), TOKEN) == 201
        tablet = Browser(push_service.url("/flaky/tablet"))
        assert post(port, "/webpush/subscriptions", tablet.subscription(), TOKEN) == 201
        assert subscriptions(dsn) == sorted([phone.endpoint, gone.endpoint, tablet.endpoint])
        status, body = http_get(port, "/webpush/vapid-public-key")
        assert body == {"publicKey": keys["WEBPUSH_VAPID_PUBLIC_KEY"]}

        bus = Bus(redis_client, service="test-producer")
        bus.publish(Alert(level="INFO", code="JUST_INFO", message="nothing to push"))
        bus.publish(
            Alert(
                level="CRITICAL",
                code="DAILY_LOSS_LIMIT",
                message="daily loss limit exceeded – trading halted",
                source="risk",
            )
        )
        wait_until(lambda: push_service.to("/push/phone"), message="a push to the phone")
        wait_until(
            lambda: subscriptions(dsn) == sorted([phone.endpoint, tablet.endpoint]),
            message="the gone one removed",
        )
        wait_until(lambda: len(push_service.to("/flaky/tablet")) == 2, message="a retry")
        assert tablet.decrypt(push_service.to("/flaky/tablet")[1]["body"])["level"] == "CRITICAL"
        # The INFO alert came first on the stream, so it was handled before: nothing for it.
        [push] = push_service.to("/push/phone")
        assert len(push_service.to("/gone/laptop")) == 1
        headers = {k.lower(): v for k, v in push["headers"].items()}
        assert headers["content-encoding"] == "aes128gcm"
        assert headers["urgency"] == "high"
        assert int(headers["ttl"]) == 86400
        assert b"daily loss" not in push["body"]  # encrypted on the wire
        assert Vapid02.verify(headers["authorization"])  # signed by our VAPID key
        assert f"k={keys['WEBPUSH_VAPID_PUBLIC_KEY']}" in headers["authorization"]
        claims = json.loads(
            base64.urlsafe_b64decode(headers["authorization"].split("t=")[1].split(".")[1] + "==")
        )
        assert claims["aud"] == f"http://127.0.0.1:{push_service.port}"
        assert claims["sub"] == "mailto:ops@example.com"
        message = phone.decrypt(push["body"])
        assert message["code"] == "DAILY_LOSS_LIMIT"
        assert message["body"] == "daily loss limit exceeded – trading halted"
        assert message["level"] == "CRITICAL"

        bus.publish(Alert(level="WARNING", code="EXPOSURE", message="exposure 52 % ≥ 50 %"))
        wait_until(lambda: len(push_service.to("/push/phone")) == 2, message="the warning pushed")
        warning = push_service.to("/push/phone")[1]
        assert phone.decrypt(warning["body"])["code"] == "EXPOSURE"
        assert {k.lower(): v for k, v in warning["headers"].items()}["urgency"] == "normal"
        assert len(push_service.to("/gone/laptop")) == 1  # removed: never tried again

        wait_until(lambda: len(push_service.to("/flaky/tablet")) == 3, message="tablet: warning")
        # phone and tablet, twice each (the tablet's first failure retried, not counted)
        wait_until(lambda: notifier.status()["pushes_sent"] == 4, message="4 pushes sent")
        status = notifier.status()
        assert status["alerts_logged"] == 3
        assert status["push_failures"] == 0
        assert status["subscriptions_removed"] == 1
        logged = [json.loads(line) for line in notifier.log().splitlines() if "alert_code" in line]
        assert [(r["alert_level"], r["alert_code"]) for r in logged] == [
            ("INFO", "JUST_INFO"),
            ("CRITICAL", "DAILY_LOSS_LIMIT"),
            ("WARNING", "EXPOSURE"),
        ]
        assert keys["WEBPUSH_VAPID_PRIVATE_KEY"] not in notifier.log()
    finally:
        assert notifier.stop() == 0


def test_without_keys_it_logs_only_with_one_warning(redis_env, redis_client, log_dir):
    # No POSTGRES_* at all: log-only mode needs no database.
    notifier = ServiceProcess("notifier", {**redis_env, "NOTIFIER_API_TOKEN": TOKEN}, log_dir)
    notifier.start()
    try:
        bus = Bus(redis_client, service="test-producer")
        for i in range(3):
            bus.publish(Alert(level="CRITICAL", code=f"C{i}", message="logged only"))
        wait_until(lambda: notifier.status()["alerts_logged"] == 3, message="3 alerts logged")
        lines = [json.loads(line) for line in notifier.log().splitlines() if line.startswith("{")]
        warnings = [r for r in lines if "web push disabled" in r["message"]]
        assert len(warnings) == 1 and warnings[0]["level"] == "WARNING"
        assert [r["alert_code"] for r in lines if "alert_code" in r] == ["C0", "C1", "C2"]
        sub = Browser("https://push.example.com/x").subscription()
        assert post(notifier.port, "/webpush/subscriptions", sub, TOKEN) == 503
        assert notifier.status()["webpush"] == "disabled (log-only)"
        assert notifier.health()[0] == 200
    finally:
        assert notifier.stop() == 0


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"WEBPUSH_VAPID_PRIVATE_KEY": None}, "WEBPUSH_VAPID_PRIVATE_KEY is required"),
        ({"WEBPUSH_VAPID_PRIVATE_KEY": "bm90LWEta2V5"}, "WEBPUSH_VAPID_PRIVATE_KEY is not a"),
        ({"WEBPUSH_VAPID_PUBLIC_KEY": "other"}, "WEBPUSH_VAPID_PUBLIC_KEY does not belong"),
        ({"WEBPUSH_CONTACT": None}, "WEBPUSH_CONTACT is required"),
        ({"WEBPUSH_CONTACT": "ops@example.com"}, "WEBPUSH_CONTACT must match"),
    ],
)
def test_bad_webpush_settings_stop_it_with_one_line(redis_env, change, expected):
    _, keys = vapid_env()
    env = {**os.environ, **redis_env, **keys}
    for key, value in change.items():
        if value is None:
            env.pop(key)
        else:
            env[key] = value
    done = subprocess.run(
        [sys.executable, "-m", "cdb", "run", "notifier"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert done.stderr.strip().startswith(f"configuration error: {expected}"), done.stderr
    assert keys["WEBPUSH_VAPID_PRIVATE_KEY"] not in done.stderr + done.stdout


def test_an_unsubscribe_is_honoured_at_once_even_while_postgres_is_down(
    redis_env, redis_client, own_postgres, log_dir, push_service
):
    own_postgres.create_database("notifier")
    pg_env = own_postgres.env("notifier")
    migrate(PostgresSettings(**pg_env))
    dsn = PostgresSettings(**pg_env).postgres_dsn()
    _, keys = vapid_env()
    env = {**redis_env, **pg_env, **keys, "NOTIFIER_API_TOKEN": TOKEN}
    notifier = ServiceProcess("notifier", env, log_dir).start()
    bus = Bus(redis_client, service="test-producer")
    phone, tablet, watch = (Browser(push_service.url(f"/push/{n}")) for n in ("p", "t", "w"))
    broken = Browser(push_service.url("/broken/kiosk"))
    try:
        port = notifier.port
        for browser in (phone, tablet, watch, broken):
            assert post(port, "/webpush/subscriptions", browser.subscription(), TOKEN) == 201
        bus.publish(Alert(level="WARNING", code="FIRST", message="one"))
        wait_until(lambda: notifier.status()["push_failures"] == 1, message="first round")
        # the failed push's log line names the alert and the subscription
        line = next(ln for ln in notifier.log().splitlines() if "failed" in ln and "push of" in ln)
        record = json.loads(line)
        assert "WARNING FIRST" in record["message"]
        assert record["subscription"] == subscription_key(broken.endpoint)
        assert record["subscription"] in record["message"] and "127.0.0.1" in record["message"]
        assert record["alert_code"] == "FIRST" and record["alert_entry_id"]
        assert broken.endpoint not in notifier.log(), "the capability URL is not logged"

        # deleted while PostgreSQL is up: gone from the table and from the cache at once
        assert post(port, "/webpush/subscriptions", tablet.subscription(), TOKEN, "DELETE") == 204
        own_postgres.stop()
        # deleted while it is down: accepted, and no longer pushed to either
        assert post(port, "/webpush/subscriptions", watch.subscription(), TOKEN, "DELETE") == 202
        bus.publish(Alert(level="WARNING", code="SECOND", message="two", source="test"))
        wait_until(lambda: len(push_service.to("/push/p")) == 2, message="the phone pushed")
        wait_until(lambda: notifier.status()["alerts_logged"] == 2)
        assert len(push_service.to("/push/t")) == 1, "the deleted tablet got nothing"
        assert len(push_service.to("/push/w")) == 1, "the watch deleted during the outage neither"
        own_postgres.start()
        wait_until(
            lambda: subscriptions(dsn) == sorted([phone.endpoint, broken.endpoint]),
            timeout=30,
            message="the deletion made during the outage reaches the table",
        )
    finally:
        assert notifier.stop() == 0

"""``cdb run notifier``: log every alert, push WARNING and CRITICAL to subscribed browsers.

Reads ``alerts``. Subscriptions live in PostgreSQL and are cached here, so an
outage of the database (often the very thing an alert is about) still reaches the
subscribers known before it; only a notifier that never loaded them retries the
alert later. Without VAPID keys it runs log-only and needs no database.
HTTP routes (besides /livez, /readyz, /health, /status, /metrics): ``GET /webpush/vapid-public-key``,
``POST`` and ``DELETE /webpush/subscriptions`` (``Authorization: Bearer <NOTIFIER_API_TOKEN>``).
"""

from __future__ import annotations

import hmac
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import urlsplit

import psycopg2
from flask import Flask, jsonify, request
from prometheus_client import Counter
from pydantic import ValidationError

from cdb.bus import ALERTS, Bus, Delivery
from cdb.events import Alert
from cdb.metrics import PostgresUp, zero
from cdb.notifier import policy
from cdb.notifier.push import Pusher
from cdb.notifier.settings import NotifierSettings
from cdb.notifier.subscriptions import Subscription, SubscriptionStore, subscription_key
from cdb.notifier.vapid import load_vapid, public_key_b64
from cdb.service import Service, TransientError

log = logging.getLogger(__name__)
UNAVAILABLE = (psycopg2.OperationalError, psycopg2.InterfaceError)


class NotifierService(Service):
    name = "notifier"
    default_port = 8005
    settings_class = NotifierSettings
    streams = (ALERTS,)

    def __init__(self, settings: NotifierSettings, bus: Bus) -> None:
        super().__init__(settings, bus)
        self.settings: NotifierSettings = settings
        private = settings.WEBPUSH_VAPID_PRIVATE_KEY
        self.vapid = load_vapid(
            settings.WEBPUSH_VAPID_PUBLIC_KEY,
            private.get_secret_value() if private else None,
            settings.WEBPUSH_CONTACT,
        )
        self.pusher = (
            Pusher(
                self.vapid,
                settings.WEBPUSH_CONTACT or "",
                settings.WEBPUSH_TTL_S,
                settings.WEBPUSH_TIMEOUT_S,
            )
            if self.vapid
            else None
        )
        self.pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="push")
        self.store = SubscriptionStore(settings)
        self.rate = policy.RateLimit(settings.WEBPUSH_MAX_PER_MINUTE)
        self.subscriptions: list[Subscription] | None = None  # None: never loaded
        self.loaded_at = 0.0
        self.refresh_wanted = True
        self.db_error: str | None = None
        #: endpoints removed (gone, or deleted through the API) not yet deleted from the table;
        #: never pushed to meanwhile. Guarded by ``lock``: the HTTP threads add to it.
        self.to_remove: set[str] = set()
        self.lock = threading.Lock()
        self.warned = False
        self.counts = {"logged": 0, "sent": 0, "failed": 0, "removed": 0, "suppressed": 0}
        self.alerts_total = Counter(
            "cdb_notifier_alerts", "Alerts logged, per level", ["level"], registry=self.registry
        )
        self.pushes_total = Counter(
            "cdb_notifier_pushes",
            "Push attempts per outcome (sent, gone, failed, suppressed)",
            ["outcome"],
            registry=self.registry,
        )
        # series from the start, at 0 (outcomes: cdb/notifier/push.py and the rate limit)
        zero(self.alerts_total, [("INFO",), ("WARNING",), ("CRITICAL",)])
        zero(self.pushes_total, [("sent",), ("gone",), ("failed",), ("suppressed",)])
        self.registry.register(PostgresUp(lambda: self.db_error is None))

    # -- runtime hooks ---------------------------------------------------------------------------

    def setup(self) -> None:
        if self.pusher is None:
            if not self.warned:
                log.warning(
                    "web push disabled: WEBPUSH_VAPID_PUBLIC_KEY and WEBPUSH_VAPID_PRIVATE_KEY "
                    "are not set; alerts are only logged"
                )
                self.warned = True
            return
        self._refresh(force=True)

    def handle(self, delivery: Delivery) -> None:
        alert = delivery.event
        if not isinstance(alert, Alert):
            return
        push = self.pusher is not None and policy.should_push(alert)
        targets = self._targets() if push else []  # may raise: the alert is retried, not lost
        self._log(alert)
        if not push:
            return
        if not self.rate.allow(time.monotonic()):
            self.counts["suppressed"] += 1
            self.pushes_total.labels("suppressed").inc()
            log.warning(
                "push suppressed (more than %d a minute)", self.settings.WEBPUSH_MAX_PER_MINUTE
            )
            return
        data = policy.payload(alert)
        headers = policy.push_headers(alert, delivery.entry_id)
        # In parallel: one slow or dead push service must not hold up the others (nor the loop
        # for longer than one subscription's retries).
        outcomes = self.pool.map(lambda sub: self.pusher.send(sub, data, headers), targets)
        for sub, outcome in zip(targets, outcomes, strict=True):
            host = urlsplit(sub.endpoint).hostname
            if outcome.status == "gone":
                log.info(
                    "subscription %s at %s is gone (%s); removing it",
                    sub.key,
                    host,
                    outcome.detail,
                )
                self._remove(sub.endpoint)
            elif outcome.status == "failed":
                self.counts["failed"] += 1
                log.warning(
                    "push of alert %s %s (entry %s) to subscription %s at %s failed: %s",
                    alert.level,
                    alert.code,
                    delivery.entry_id,
                    sub.key,
                    host,
                    outcome.detail,
                    extra={
                        "alert_code": alert.code,
                        "alert_entry_id": delivery.entry_id,
                        "subscription": sub.key,
                        "push_host": host,
                    },
                )
            else:
                self.counts["sent"] += 1
            self.pushes_total.labels(outcome.status).inc()

    def tick(self) -> float | None:
        if self.pusher is not None and self.to_remove:
            self._flush_removals()
        return None

    def health_problems(self) -> list[str]:
        if self.pusher is not None and self.db_error:
            return [f"postgres unreachable (subscriptions may be stale): {self.db_error}"]
        return []

    def status(self) -> dict[str, Any]:
        return {
            "webpush": "enabled" if self.pusher else "disabled (log-only)",
            "subscriptions": len(self.subscriptions or []),
            "alerts_logged": self.counts["logged"],
            "pushes_sent": self.counts["sent"],
            "push_failures": self.counts["failed"],
            "pushes_suppressed": self.counts["suppressed"],
            "subscriptions_removed": self.counts["removed"],
        }

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)
        if self.pusher is not None:
            self.pusher.close()

    # -- subscriptions ---------------------------------------------------------------------------

    def _refresh(self, force: bool = False) -> None:
        stale = time.monotonic() - self.loaded_at >= self.settings.SUBSCRIPTIONS_REFRESH_S
        if not (force or self.refresh_wanted or stale):
            return
        self.refresh_wanted = False
        try:
            subs = self.store.all()
        except UNAVAILABLE as exc:
            self.db_error = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
            self.refresh_wanted = True
            log.warning("cannot read subscriptions: %s", self.db_error)
            return
        self.db_error = None
        with self.lock:
            self.subscriptions = [s for s in subs if s.endpoint not in self.to_remove]
        self.loaded_at = time.monotonic()

    def _targets(self) -> list[Subscription]:
        self._refresh()
        if self.subscriptions is None:
            raise TransientError(f"subscriptions not loaded yet: {self.db_error}")
        with self.lock:  # a removal made while the push was being prepared still counts
            return [s for s in self.subscriptions if s.endpoint not in self.to_remove]

    def _forget(self, endpoint: str) -> None:
        """Stop pushing to ``endpoint`` now, whatever the database says or can be asked."""
        with self.lock:
            self.to_remove.add(endpoint)
            if self.subscriptions is not None:
                self.subscriptions = [s for s in self.subscriptions if s.endpoint != endpoint]

    def _remove(self, endpoint: str) -> None:
        self._forget(endpoint)
        self._flush_removals()

    def _flush_removals(self) -> None:
        with self.lock:
            pending = sorted(self.to_remove)
        for endpoint in pending:
            try:
                self.store.remove(endpoint)
            except UNAVAILABLE:
                return  # retried from tick()
            with self.lock:
                self.to_remove.discard(endpoint)
            self.counts["removed"] += 1

    # -- logging ---------------------------------------------------------------------------------

    def _log(self, alert: Alert) -> None:
        self.counts["logged"] += 1
        self.alerts_total.labels(alert.level).inc()
        log.log(
            policy.LOG_LEVELS[alert.level],
            "alert %s %s: %s",
            alert.level,
            alert.code,
            alert.message,
            extra={
                "alert_level": alert.level,
                "alert_code": alert.code,
                "alert_source": alert.source,
                "alert_context": alert.context,
                "alert_timestamp": alert.timestamp,
            },
        )

    # -- HTTP ------------------------------------------------------------------------------------

    def _authorized(self) -> tuple[bool, tuple | None]:
        """Fail closed: no token configured means nobody may change subscriptions."""
        token = self.settings.NOTIFIER_API_TOKEN
        if token is None:
            body = {"error": "subscriptions are disabled: set NOTIFIER_API_TOKEN"}
            return False, (jsonify(body), 503)
        if self.pusher is None:
            body = {"error": "web push is disabled: set the WEBPUSH_VAPID_* keys"}
            return False, (jsonify(body), 503)
        given = request.headers.get("Authorization", "")
        expected = "Bearer " + token.get_secret_value()
        if not hmac.compare_digest(given.encode(), expected.encode()):
            return False, (jsonify({"error": "missing or wrong bearer token"}), 401)
        return True, None

    def routes(self, app: Flask) -> None:
        @app.get("/webpush/vapid-public-key")
        def vapid_public_key():
            if self.vapid is None:
                return jsonify({"error": "web push is disabled"}), 404
            return jsonify({"publicKey": public_key_b64(self.vapid)})

        @app.post("/webpush/subscriptions")
        def add_subscription():
            ok, refusal = self._authorized()
            if not ok:
                return refusal
            try:
                sub = Subscription.model_validate(request.get_json(silent=True) or {})
            except ValidationError as exc:
                first = exc.errors(include_url=False, include_input=False)[0]
                where = ".".join(str(p) for p in first["loc"]) or "body"
                return jsonify({"error": f"{where}: {first['msg']}"}), 400
            try:
                self.store.add(sub)
            except UNAVAILABLE:
                return jsonify({"error": "database unavailable, try again"}), 503
            self.refresh_wanted = True
            log.info("subscription added for %s", urlsplit(sub.endpoint).hostname)
            return jsonify({"endpoint": sub.endpoint}), 201

        @app.delete("/webpush/subscriptions")
        def remove_subscription():
            ok, refusal = self._authorized()
            if not ok:
                return refusal
            endpoint = (request.get_json(silent=True) or {}).get("endpoint")
            if not isinstance(endpoint, str) or not endpoint:
                return jsonify({"error": "endpoint: required"}), 400
            # Honoured at once: never pushed to again, even while PostgreSQL is down and the
            # cached list cannot be reloaded; the row is deleted now or when it is back.
            self._forget(endpoint)
            try:
                removed = self.store.remove(endpoint)
            except UNAVAILABLE:
                log.info(
                    "subscription %s unsubscribed while the database is unavailable: "
                    "no longer pushed to, deleted when it is back",
                    subscription_key(endpoint),
                )
                return jsonify({"status": "accepted: deleted once the database is back"}), 202
            # kept in to_remove until tick() deletes it again (a no-op): a reload that read the
            # table just before this delete must not bring it back
            self.refresh_wanted = True
            return ("", 204) if removed else (jsonify({"error": "no such subscription"}), 404)


SERVICE = NotifierService

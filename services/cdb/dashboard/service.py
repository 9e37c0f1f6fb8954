"""``cdb run dashboard``: the page to see the bot, understand each trade and stop it.

Reads the audit trail (PostgreSQL) and the bot's Redis (prices, heartbeats, the breaker
hash); the only thing it ever writes is a ``Control`` on ``control``, through
:mod:`cdb.dashboard.control` like the operator and ``cdb breaker``, and a browser's
push subscription, forwarded to the notifier. Both are refused unless
``DASHBOARD_TOKEN`` is set (:mod:`cdb.dashboard.auth`).

Pages: ``/`` (overview, refreshed by polling ``/api/overview`` every 2 s),
``/explain/CLIENT_ID`` (``/explain/signal/SIGNAL_ID`` for a signal that got no order),
``/push`` (web-push subscription). JSON: ``/api/overview``,
``/api/explain/CLIENT_ID``, ``/api/breaker``, ``POST /api/control`` then
``POST /api/control/confirm``, ``GET /api/control/CONTROL_ID``, ``/api/push/key``,
``POST /api/push/subscribe``.
"""

from __future__ import annotations

import logging
import re
import time
from typing import Any, ClassVar

import psycopg2
import redis
import requests
from flask import Blueprint, Flask, jsonify, redirect, render_template, request, session
from prometheus_client import Counter

from cdb.bus import Bus
from cdb.dashboard import auth, control, explain, figures, queries
from cdb.dashboard.settings import DashboardSettings
from cdb.events import CLIENT_ID_PATTERN
from cdb.notifier.policy import RateLimit
from cdb.risk.breaker import utc_day
from cdb.service import Service

log = logging.getLogger(__name__)
CLIENT_ID = re.compile(CLIENT_ID_PATTERN)
#: Signal ids are free text up to 64 characters; links accept the URL-safe ones.
SIGNAL_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; worker-src 'self'; frame-ancestors 'none'; base-uri 'none'; "
    "form-action 'self'"
)


class DashboardService(Service):
    name: ClassVar[str] = "dashboard"
    default_port: ClassVar[int] = 8006
    settings_class: ClassVar[type[DashboardSettings]] = DashboardSettings

    def __init__(self, settings: DashboardSettings, bus: Bus) -> None:
        super().__init__(settings, bus)
        self.settings: DashboardSettings = settings
        token = settings.DASHBOARD_TOKEN
        self.token = token.get_secret_value() if token else None
        self.reader = queries.Reader(settings, settings.QUOTE_ASSET)
        self.confirmations = auth.Confirmations()
        #: sign-in attempts per minute, all clients together: guessing a token stays slow
        self.login_attempts = RateLimit(auth.LOGINS_PER_MINUTE)
        self.last_error: str | None = None
        self.controls = Counter(
            "cdb_dashboard_controls",
            "Controls sent from the dashboard, by action",
            ["action"],
            registry=self.registry,
        )
        self.refused = Counter(
            "cdb_dashboard_refused",
            "State-changing requests refused (no token, wrong token, CSRF)",
            registry=self.registry,
        )

    # -- runtime hooks -----------------------------------------------------------------------

    def tick(self) -> float | None:
        return 1.0  # nothing to consume: the page reads on request

    def status(self) -> dict[str, Any]:
        return {"writable": self.token is not None, "last_read_error": self.last_error}

    def close(self) -> None:
        self.reader.close()

    # -- reads -----------------------------------------------------------------------------

    def overview(self) -> dict[str, Any]:
        """Everything the overview page shows (see docs/dashboard.md for each figure)."""
        now = int(time.time())
        s = self.settings
        client = self.bus.client
        book = self.reader.book()
        prices = queries.latest_prices(client)
        cash = book["cash"] if book["cash"] is not None else s.PAPER_START_BALANCE
        open_positions = figures.positions(book["positions"], prices)
        day_start = book["day_start"] or {}
        day_start_equity = (
            float(day_start["equity"]) if day_start.get("day") == utc_day(now) else None
        )
        acct = figures.account(cash, open_positions, day_start_equity, s.MAX_DAILY_DRAWDOWN_PCT)
        start_cash = cash + book["cash_flows"]
        return {
            "now": now,
            "quote": s.QUOTE_ASSET,
            "account": {**acct, "start_cash": start_cash},
            "positions": open_positions,
            "markets": figures.market_ages(prices, now),
            "services": figures.services_health(
                queries.heartbeats(client), now, s.DASHBOARD_HEALTH_STALE_S
            ),
            "breaker": control.read_breaker(client),
            "equity_curve": figures.equity_curve(start_cash, book["curve"], now, acct["equity"]),
            "daily_pnl": book["daily"],
            "latest": self.reader.latest(s.DASHBOARD_LATEST),
            "writable": self.token is not None,
        }

    def explanation(self, client_id: str | None = None, signal_id: str | None = None) -> dict:
        return explain.build(**self.reader.explain_rows(client_id, signal_id))

    # -- HTTP ------------------------------------------------------------------------------

    def routes(self, app: Flask) -> None:
        app.secret_key = auth.session_key(self.token)
        app.config.update(
            SESSION_COOKIE_HTTPONLY=True,
            SESSION_COOKIE_SAMESITE="Strict",
            SESSION_COOKIE_NAME="cdb_dashboard",
        )
        bp = Blueprint(
            "dashboard",
            __name__,
            static_folder="static",
            static_url_path="/assets",
            template_folder="templates",
        )

        @app.after_request
        def security_headers(resp):
            resp.headers.setdefault("Content-Security-Policy", CSP)
            resp.headers.setdefault("X-Content-Type-Options", "nosniff")
            resp.headers.setdefault("Referrer-Policy", "no-referrer")
            resp.headers.setdefault("Cache-Control", "no-store")
            return resp

        def page(template: str, **extra):
            return render_template(
                template,
                writable=self.token is not None,
                signed_in=auth.signed_in(self.token),
                csrf=auth.csrf_token(),
                quote=self.settings.QUOTE_ASSET,
                **extra,
            )

        def failed(exc: Exception):
            self.last_error = f"{type(exc).__name__}: {str(exc).strip()[:200]}"
            log.warning("dashboard read failed: %s", self.last_error)
            return jsonify({"error": f"cannot read the bot's data: {self.last_error}"}), 503

        @bp.get("/")
        def index():
            return page("index.html")

        @bp.get("/explain/<client_id>")
        def explain_page(client_id: str):
            if not CLIENT_ID.match(client_id):
                return page("explain.html", expl=None, error="not a client id"), 400
            try:
                expl = self.explanation(client_id)
            except (psycopg2.Error, redis.RedisError) as exc:
                failed(exc)
                return page("explain.html", expl=None, error=self.last_error), 503
            return page("explain.html", expl=expl, error=None), 200 if expl["found"] else 404

        @bp.get("/explain/signal/<signal_id>")
        def explain_signal_page(signal_id: str):
            if not SIGNAL_ID.match(signal_id):
                return page("explain.html", expl=None, error="not a signal id"), 400
            try:
                expl = self.explanation(signal_id=signal_id)
            except (psycopg2.Error, redis.RedisError) as exc:
                failed(exc)
                return page("explain.html", expl=None, error=self.last_error), 503
            return page("explain.html", expl=expl, error=None), 200 if expl["found"] else 404

        @bp.get("/api/explain/signal/<signal_id>")
        def api_explain_signal(signal_id: str):
            if not SIGNAL_ID.match(signal_id):
                return jsonify({"error": "not a signal id"}), 400
            try:
                expl = self.explanation(signal_id=signal_id)
            except (psycopg2.Error, redis.RedisError) as exc:
                return failed(exc)
            return jsonify(expl), 200 if expl["found"] else 404

        @bp.get("/push")
        def push_page():
            return page("push.html")

        @bp.get("/sw.js")
        def service_worker():
            resp = bp.send_static_file("sw.js")
            resp.headers["Service-Worker-Allowed"] = "/"
            return resp

        @bp.post("/login")
        def login():
            if not self.login_attempts.allow(time.monotonic()):
                return page("index.html", login_error="too many attempts, wait a minute"), 429
            given = request.form.get("token", "")
            if self.token is None or not auth.token_matches(given, self.token):
                self.refused.inc()
                return page("index.html", login_error="wrong token"), 401
            session.clear()
            session["auth"] = True
            auth.csrf_token()
            return redirect("/", code=303)

        @bp.post("/logout")
        def logout():
            if not auth.signed_in(self.token):
                return jsonify({"error": "not signed in"}), 401
            given = request.form.get("csrf", "")
            if not auth.token_matches(given, str(session.get("csrf", ""))):
                return jsonify({"error": "missing or wrong CSRF token"}), 403
            session.clear()
            return redirect("/", code=303)

        @bp.get("/api/overview")
        def api_overview():
            try:
                body = self.overview()
            except (psycopg2.Error, redis.RedisError) as exc:
                return failed(exc)
            self.last_error = None
            return jsonify(body)

        @bp.get("/api/explain/<client_id>")
        def api_explain(client_id: str):
            if not CLIENT_ID.match(client_id):
                return jsonify({"error": "not a client id"}), 400
            try:
                expl = self.explanation(client_id)
            except (psycopg2.Error, redis.RedisError) as exc:
                return failed(exc)
            return jsonify(expl), 200 if expl["found"] else 404

        @bp.get("/api/breaker")
        def api_breaker():
            try:
                return jsonify({"breaker": control.read_breaker(self.bus.client)})
            except redis.RedisError as exc:
                return failed(exc)

        @bp.post("/api/control")
        def api_control():
            refusal = auth.refuse_unless_allowed(self.token)
            if refusal is not None:
                self.refused.inc()
                return refusal
            body = request.get_json(silent=True) or {}
            verb = body.get("verb")
            kill = bool(body.get("kill_switch", False))
            reason = " ".join(str(body.get("reason", "")).split())
            if verb not in ("engage", "release"):
                return jsonify({"error": "verb: engage or release"}), 400
            if not reason or len(reason) > 200:
                return jsonify({"error": "reason: required, at most 200 characters"}), 400
            what = {
                ("engage", False): "engage the breaker: no new entries",
                ("engage", True): "engage the KILL SWITCH: no orders at all",
            }.get((verb, kill), "release the breaker and the kill switch")
            ident = self.confirmations.ask(verb, kill, reason)
            return jsonify(
                {
                    "confirm_id": ident,
                    "action": control.ACTIONS[(verb, kill)],
                    "summary": f"{what} – reason: {reason}",
                    "expires_in_s": auth.CONFIRM_TTL_S,
                }
            )

        @bp.post("/api/control/confirm")
        def api_control_confirm():
            refusal = auth.refuse_unless_allowed(self.token)
            if refusal is not None:
                self.refused.inc()
                return refusal
            ident = str((request.get_json(silent=True) or {}).get("confirm_id", ""))
            pending = self.confirmations.take(ident)
            if pending is None:
                return jsonify({"error": "unknown or expired confirmation; ask again"}), 409
            try:
                sent = control.send(
                    self.bus, pending.verb, pending.kill_switch, pending.reason, "dashboard"
                )
            except redis.RedisError as exc:
                return failed(exc)
            self.controls.labels(sent.action).inc()
            log.warning("control %s sent from the dashboard: %s", sent.action, sent.reason)
            return jsonify({"control_id": sent.control_id, "action": sent.action}), 202

        @bp.get("/api/control/<control_id>")
        def api_control_state(control_id: str):
            try:
                state = control.read_breaker(self.bus.client)
            except redis.RedisError as exc:
                return failed(exc)
            return jsonify({"confirmed": control.confirmed(state, control_id), "breaker": state})

        @bp.get("/api/push/key")
        def api_push_key():
            try:
                resp = requests.get(
                    f"{self.settings.NOTIFIER_URL}/webpush/vapid-public-key", timeout=3
                )
            except requests.RequestException as exc:
                return jsonify({"error": f"notifier unreachable: {type(exc).__name__}"}), 502
            return jsonify(resp.json()), resp.status_code

        @bp.post("/api/push/subscribe")
        def api_push_subscribe():
            refusal = auth.refuse_unless_allowed(self.token)
            if refusal is not None:
                self.refused.inc()
                return refusal
            notifier_token = self.settings.NOTIFIER_API_TOKEN
            if notifier_token is None:
                return jsonify({"error": "set NOTIFIER_API_TOKEN for the dashboard"}), 503
            try:
                resp = requests.post(
                    f"{self.settings.NOTIFIER_URL}/webpush/subscriptions",
                    json=request.get_json(silent=True) or {},
                    headers={"Authorization": f"Bearer {notifier_token.get_secret_value()}"},
                    timeout=5,
                )
            except requests.RequestException as exc:
                return jsonify({"error": f"notifier unreachable: {type(exc).__name__}"}), 502
            return jsonify(resp.json()), resp.status_code

        app.register_blueprint(bp)


SERVICE = DashboardService

"""Who may change things on the dashboard: the token, the session, CSRF, the confirmation.

Fail closed: without ``DASHBOARD_TOKEN`` every state-changing route answers 403. A person
signs in by typing the token (a session cookie: HttpOnly, SameSite=Strict); a script sends
``Authorization: Bearer <token>`` instead. Cookie-authenticated POSTs must also carry the
session's CSRF token in ``X-CSRF-Token``. A control is two requests: the first returns a
single-use confirmation id (valid ``CONFIRM_TTL_S``), the second sends it.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from dataclasses import dataclass
from typing import Any

from flask import jsonify, request, session

CONFIRM_TTL_S = 120.0
#: Sign-in attempts allowed per minute (all clients together).
LOGINS_PER_MINUTE = 20


def session_key(token: str | None) -> bytes:
    """Flask's secret key: derived from the token (sessions survive a restart), else random."""
    if token is None:
        return secrets.token_bytes(32)
    return hmac.new(token.encode(), b"cdb-dashboard-session", hashlib.sha256).digest()


def token_matches(given: str, token: str) -> bool:
    return hmac.compare_digest(given.encode(), token.encode())


def signed_in(token: str | None) -> bool:
    return token is not None and bool(session.get("auth"))


def csrf_token() -> str:
    """The session's CSRF token, made on first use."""
    if "csrf" not in session:
        session["csrf"] = secrets.token_urlsafe(24)
    return session["csrf"]


def refuse_unless_allowed(token: str | None) -> Any | None:
    """``None`` when the request may change state; otherwise the refusal to return."""
    if token is None:
        return jsonify({"error": "read-only dashboard: set DASHBOARD_TOKEN to allow changes"}), 403
    bearer = request.headers.get("Authorization", "")
    if bearer.startswith("Bearer "):
        if token_matches(bearer[7:], token):
            return None
        return jsonify({"error": "wrong bearer token"}), 401
    if not session.get("auth"):
        return jsonify({"error": "sign in with the dashboard token first"}), 401
    given = request.headers.get("X-CSRF-Token", "")
    if not given or not hmac.compare_digest(given.encode(), str(session.get("csrf", "")).encode()):
        return jsonify({"error": "missing or wrong CSRF token"}), 403
    return None


@dataclass(frozen=True)
class Pending:
    verb: str
    kill_switch: bool
    reason: str
    expires: float


class Confirmations:
    """Controls asked for and not yet confirmed: id → request, single use, short-lived."""

    def __init__(self, ttl: float = CONFIRM_TTL_S) -> None:
        self.ttl = ttl
        self.lock = threading.Lock()
        self.items: dict[str, Pending] = {}

    def ask(self, verb: str, kill_switch: bool, reason: str) -> str:
        now = time.monotonic()
        with self.lock:
            self.items = {k: v for k, v in self.items.items() if v.expires > now}
            ident = secrets.token_urlsafe(16)
            self.items[ident] = Pending(verb, kill_switch, reason, now + self.ttl)
            return ident

    def take(self, ident: str) -> Pending | None:
        with self.lock:
            item = self.items.pop(ident, None)
        if item is None or item.expires <= time.monotonic():
            return None
        return item

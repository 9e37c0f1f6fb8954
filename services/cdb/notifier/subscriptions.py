"""Web Push subscriptions: the browser's ``PushSubscription.toJSON()``, checked, kept in PostgreSQL.

The store opens a short connection per call: subscriptions change rarely, and the
HTTP routes run in other threads than the alert loop.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import ipaddress
from typing import Annotated
from urllib.parse import urlsplit

import psycopg2.extras
from pydantic import BaseModel, ConfigDict, Field, field_validator

from cdb.db.connect import connect
from cdb.settings import PostgresSettings


def _b64url_bytes(value: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
    except (binascii.Error, ValueError):
        raise ValueError("is not base64url") from None


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class SubscriptionKeys(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    p256dh: Annotated[str, Field(max_length=200)]
    auth: Annotated[str, Field(max_length=100)]

    @field_validator("p256dh")
    @classmethod
    def _p256dh(cls, value: str) -> str:
        raw = _b64url_bytes(value)
        if len(raw) != 65 or raw[0] != 4:
            raise ValueError("must be an uncompressed P-256 public key (65 bytes)")
        return value

    @field_validator("auth")
    @classmethod
    def _auth(cls, value: str) -> str:
        if len(_b64url_bytes(value)) < 16:
            raise ValueError("must be a 16-byte authentication secret")
        return value


class Subscription(BaseModel):
    """One browser's push endpoint and keys; other fields of the browser's JSON are ignored."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    endpoint: Annotated[str, Field(max_length=2048)]
    keys: SubscriptionKeys

    @field_validator("endpoint")
    @classmethod
    def _endpoint(cls, value: str) -> str:
        # Push services are HTTPS; plain HTTP only to this machine (a local test push service).
        parts = urlsplit(value)
        if not parts.hostname:
            raise ValueError("must be an absolute URL")
        if parts.scheme == "https" or (parts.scheme == "http" and _is_loopback(parts.hostname)):
            return value
        raise ValueError("must be an https:// URL")

    @property
    def key(self) -> str:
        """A short name for logs: the first 12 hex digits of the endpoint's SHA-256.

        The endpoint itself is a capability URL (whoever knows it can push), so logs name the
        subscription by this and the push service's host, never by the full endpoint.
        """
        return subscription_key(self.endpoint)

    def info(self) -> dict:
        """The ``subscription_info`` pywebpush expects."""
        return {"endpoint": self.endpoint, "keys": self.keys.model_dump()}


def subscription_key(endpoint: str) -> str:
    """See :attr:`Subscription.key`."""
    return hashlib.sha256(endpoint.encode()).hexdigest()[:12]


class SubscriptionStore:
    """The ``webpush_subscriptions`` table; every call raises ``psycopg2.OperationalError`` when
    PostgreSQL is down (the caller decides whether that is transient)."""

    def __init__(self, settings: PostgresSettings) -> None:
        self.settings = settings

    def _run(self, sql: str, args: tuple = ()) -> list[tuple]:
        conn = connect(self.settings, application_name="cdb-notifier")
        try:
            with conn, conn.cursor() as cur:
                cur.execute(sql, args)
                rows = cur.fetchall() if cur.description else []
                return rows if cur.description else [(cur.rowcount,)]
        finally:
            conn.close()

    def all(self) -> list[Subscription]:
        rows = self._run("SELECT endpoint, keys FROM webpush_subscriptions ORDER BY created_at")
        out = []
        for endpoint, keys in rows:
            try:
                out.append(Subscription(endpoint=endpoint, keys=keys))
            except ValueError:
                continue  # a row written by hand that no longer validates: never push to it
        return out

    def add(self, sub: Subscription) -> None:
        self._run(
            "INSERT INTO webpush_subscriptions (endpoint, keys) VALUES (%s, %s) "
            "ON CONFLICT (endpoint) DO UPDATE SET keys = EXCLUDED.keys",
            (sub.endpoint, psycopg2.extras.Json(sub.keys.model_dump())),
        )

    def remove(self, endpoint: str) -> bool:
        (count,) = self._run("DELETE FROM webpush_subscriptions WHERE endpoint = %s", (endpoint,))[
            0
        ]
        return count > 0

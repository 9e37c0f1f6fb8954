"""Load and check the VAPID key pair once at start, so a bad key stops the notifier with one line
instead of failing on the first CRITICAL alert."""

from __future__ import annotations

import base64

from cryptography.hazmat.primitives import serialization
from py_vapid import Vapid02

from cdb.settings import SettingsError


def b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def public_key_b64(vapid: Vapid02) -> str:
    """The public key as browsers want it for ``applicationServerKey``."""
    raw = vapid.public_key.public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )
    return b64url(raw)


def load_vapid(public: str | None, private: str | None, contact: str | None) -> Vapid02 | None:
    """The signing key, or None when neither key is set (log-only mode).

    Raises ``SettingsError`` when only one key is set, the private key does not parse, the
    public key is not the private key's, or no contact is given.
    """
    if not public and not private:
        return None
    if not private:
        raise SettingsError(
            "WEBPUSH_VAPID_PRIVATE_KEY is required when WEBPUSH_VAPID_PUBLIC_KEY is set"
        )
    if not public:
        raise SettingsError(
            "WEBPUSH_VAPID_PUBLIC_KEY is required when WEBPUSH_VAPID_PRIVATE_KEY is set"
        )
    try:
        vapid = Vapid02.from_string(private_key=private.strip())
    except Exception:  # py_vapid raises several types; the value must never be echoed
        raise SettingsError(
            "WEBPUSH_VAPID_PRIVATE_KEY is not a VAPID key (base64url raw P-256 key or DER)"
        ) from None
    if public.strip().rstrip("=") != public_key_b64(vapid):
        raise SettingsError("WEBPUSH_VAPID_PUBLIC_KEY does not belong to WEBPUSH_VAPID_PRIVATE_KEY")
    if not contact:
        raise SettingsError(
            "WEBPUSH_CONTACT is required with VAPID keys (mailto:ops@example.com or https://...)"
        )
    return vapid

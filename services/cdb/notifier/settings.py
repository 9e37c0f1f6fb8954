"""Settings of the notifier: VAPID keys and contact for Web Push, the token guarding subscriptions."""

from __future__ import annotations

from pydantic import Field, SecretStr

from cdb.settings import BaseServiceSettings, PostgresSettings


class NotifierSettings(BaseServiceSettings, PostgresSettings):
    """Without both VAPID keys the notifier only logs (one warning at start)."""

    WEBPUSH_VAPID_PUBLIC_KEY: str | None = Field(
        None,
        description="VAPID public key, base64url of the uncompressed P-256 point "
        "(the browser's applicationServerKey)",
    )
    WEBPUSH_VAPID_PRIVATE_KEY: SecretStr | None = Field(
        None, description="VAPID private key, base64url of the raw 32-byte key or of its DER"
    )
    WEBPUSH_CONTACT: str | None = Field(
        None,
        pattern=r"^(mailto:[^@\s]+@[^@\s]+|https://\S+)$",
        description="Contact the push services may reach (mailto:ops@example.com or https://)",
    )
    NOTIFIER_API_TOKEN: SecretStr | None = Field(
        None,
        min_length=16,
        description="Bearer token required to add or remove a subscription "
        "(unset: the routes refuse every request)",
    )
    WEBPUSH_TTL_S: int = Field(
        86_400,
        ge=0,
        le=2_419_200,
        description="How long a push service keeps an undelivered alert (seconds)",
    )
    WEBPUSH_TIMEOUT_S: float = Field(5.0, gt=0, le=60, description="Timeout of one push request")
    WEBPUSH_MAX_PER_MINUTE: int = Field(
        30, ge=1, description="Alerts pushed per minute at most; the rest are only logged"
    )
    SUBSCRIPTIONS_REFRESH_S: float = Field(
        30.0, gt=0, description="How often the subscription list is re-read from PostgreSQL"
    )

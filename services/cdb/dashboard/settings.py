"""Settings of the dashboard: its token, where the notifier is, and the risk limits it shows.

It reads the risk manager's own settings class, so the daily drawdown limit, the quote
asset and the starting balance it shows are the ones the risk manager applies (the
operator's ConfigMap sets them for every service).
"""

from __future__ import annotations

from pydantic import Field, SecretStr

from cdb.risk.settings import RiskSettings


class DashboardSettings(RiskSettings):
    """Without ``DASHBOARD_TOKEN`` the dashboard is read-only: every change is refused."""

    DASHBOARD_TOKEN: SecretStr | None = Field(
        None,
        min_length=16,
        description="Token a person types to engage/release the breaker or subscribe to pushes "
        "(unset: the dashboard is read-only)",
    )
    NOTIFIER_URL: str = Field(
        "http://127.0.0.1:8005",
        pattern=r"^https?://\S+$",
        description="Base URL of the notifier (its VAPID key and subscriptions)",
    )
    NOTIFIER_API_TOKEN: SecretStr | None = Field(
        None, min_length=16, description="The notifier's token, sent when a browser subscribes"
    )
    DASHBOARD_HEALTH_STALE_S: float = Field(
        60.0, gt=0, description="A service whose last heartbeat is older than this shows stale"
    )
    DASHBOARD_LATEST: int = Field(20, ge=1, le=500, description="Rows of each latest list")

"""What the notifier does with an alert: pure decisions, no I/O.

Which levels are pushed, what the push says, the headers that make a redelivered
alert replace its earlier copy at the push service (``Topic``), and a rate limit
so that a storm of warnings neither floods a phone nor stalls the alert stream.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field

from cdb.events import Alert, stable_id

PUSHED_LEVELS = frozenset({"WARNING", "CRITICAL"})
LOG_LEVELS = {"INFO": logging.INFO, "WARNING": logging.WARNING, "CRITICAL": logging.CRITICAL}


def should_push(alert: Alert) -> bool:
    return alert.level in PUSHED_LEVELS


def payload(alert: Alert) -> str:
    """The notification a service worker shows: small (push services allow ~4 KB), no context."""
    return json.dumps(
        {
            "title": f"{alert.level}: {alert.code}",
            "body": alert.message,
            "level": alert.level,
            "code": alert.code,
            "source": alert.source,
            "timestamp": alert.timestamp,
        },
        separators=(",", ":"),
    )


def push_headers(alert: Alert, entry_id: str) -> dict[str, str]:
    """RFC 8030 headers: urgency by level, and a topic unique to the stream entry, so a
    redelivery of the same entry replaces a copy the push service still holds."""
    return {
        "Urgency": "high" if alert.level == "CRITICAL" else "normal",
        "Topic": stable_id("alert", entry_id, length=32),
    }


@dataclass
class RateLimit:
    """A token bucket: ``per_minute`` pushes a minute, bursts up to the same number."""

    per_minute: int
    tokens: float = field(init=False)
    updated: float | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        self.tokens = float(self.per_minute)

    def allow(self, now: float) -> bool:
        if self.updated is not None:
            elapsed = max(0.0, now - self.updated)
            self.tokens = min(float(self.per_minute), self.tokens + elapsed * self.per_minute / 60)
        self.updated = now
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        return False

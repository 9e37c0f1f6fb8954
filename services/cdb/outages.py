"""Dependency outages as a service sees them: readiness reports and outage alerts on the bus.

The runtime feeds :class:`DependencyWatch` what it observed (the loop's last transient
failure, the service's own problems, the readiness probe's answer); the watch writes the
service's readiness to ``cdb:readiness`` (read by the operator to say which dependency a
bot waits for) and publishes an ``alert`` when an outage outlasts ``OUTAGE_ALERT_S``.
Alerts that cannot be published (the bus itself is down) wait in memory until it is back,
so a Redis outage is reported once it is over, with its length. Every service watches,
but each alert is claimed once per outage through ``SET NX``, so people get one alert,
not one per service.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time

import redis

from cdb.bus import ALERTS, Bus
from cdb.events import Alert
from cdb.probes import BUS, READINESS_KEY, OutageNotice, OutageTracker

log = logging.getLogger(__name__)

#: ``SET NX`` key claiming one alert of one outage for the first service that raises it.
CLAIM_KEY = "cdb:outage:{dependency}:{kind}"


def alert_for(notice: OutageNotice, service: str) -> Alert:
    """The ``alert`` event of one notice: ``DEPENDENCY_DOWN`` while it lasts (WARNING),
    ``DEPENDENCY_RECOVERED`` with the outage's length (WARNING for the bus, whose outage no
    earlier alert could report; INFO otherwise)."""
    length = round(notice.length_s)
    context = {
        "dependency": notice.dependency,
        "outage_s": length,
        "started_at": int(notice.started_at),
        "seen_by": service,
    }
    reason = f": {notice.reason}" if notice.reason else ""
    if notice.kind == "ongoing":
        return Alert(
            level="WARNING",
            code="DEPENDENCY_DOWN",
            message=f"{notice.dependency} unreachable for {length} s so far "
            f"(seen by {service}{reason}); services wait and resume when it is back"[:500],
            context=context,
            source=service,
        )
    return Alert(
        level="WARNING" if notice.dependency == BUS else "INFO",
        code="DEPENDENCY_RECOVERED",
        message=f"{notice.dependency} was unreachable for {length} s (seen by {service}"
        f"{reason}); it is back and services resumed"[:500],
        context={**context, "ended_at": int(notice.ended_at)},
        source=service,
    )


class DependencyWatch:
    """Per service: tracks outages, publishes their alerts once, writes readiness reports."""

    def __init__(self, bus: Bus, service: str, threshold_s: float) -> None:
        self.bus = bus
        self.service = service
        self.threshold_s = threshold_s
        self.tracker = OutageTracker(threshold_s)
        self.pending: list[OutageNotice] = []

    def observe(self, down: dict[str, str]) -> None:
        """Record which dependencies are down now (dependency → reason) and flush alerts."""
        self.pending += self.tracker.observe(down, time.monotonic(), time.time())
        if self.pending and BUS not in down:
            self.flush()

    def flush(self) -> None:
        """Publish the alerts due; what the bus refuses stays pending for the next call."""
        while self.pending:
            notice = self.pending[0]
            key = CLAIM_KEY.format(dependency=notice.dependency, kind=notice.kind)
            try:
                ttl = max(1, int(self.threshold_s))
                if self.bus.client.set(key, self.service, nx=True, ex=ttl):
                    self.bus.publish(alert_for(notice, self.service), ALERTS)
                    log.warning(
                        "outage of %s %s (%.0f s): alert raised",
                        notice.dependency,
                        "ongoing" if notice.kind == "ongoing" else "over",
                        notice.length_s,
                    )
            except redis.RedisError:
                return
            self.pending.pop(0)

    def report(self, ready: bool, problems: list[str], dependencies: list[str]) -> None:
        """Write this service's readiness where the operator reads it (best effort)."""
        value = {
            "service": self.service,
            "consumer": self.bus.consumer,
            "ready": ready,
            "problems": problems[:10],
            "dependencies": dependencies,
            "at": int(time.time()),
        }
        with contextlib.suppress(redis.RedisError):
            self.bus.client.hset(READINESS_KEY, self.service, json.dumps(value))

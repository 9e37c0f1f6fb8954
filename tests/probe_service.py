"""A minimal service on the real runtime, for testing the bus and runtime as a real process.

Its handler is idempotent the way every real handler must be: the effect (a set member per
event) is keyed by the event's own id, while a list records every delivery, so a test can
see both that an entry was delivered twice and that it took effect once.
``PROBE_DIE_AFTER`` makes it SIGKILL itself after handling that many entries, before the
runtime acknowledges them: a consumer dying between read and ack.
The test hooks for liveness live here, not in the runtime: a signal whose ``reason`` is
``freeze`` blocks the handler (the main loop stops ticking, as a deadlocked handler would),
and one whose reason is ``stop-worker`` ends the worker thread the probe declares vital.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time

from pydantic import Field

from cdb.bus import CONTROL, MARKET_DATA, SIGNALS, Bus, Delivery
from cdb.logs import configure_logging, secret_values
from cdb.runtime import Runtime, redis_client
from cdb.service import Service
from cdb.settings import BaseServiceSettings, SettingsError, exit_on_bad_settings, load_settings


class ProbeSettings(BaseServiceSettings):
    PROBE_DIE_AFTER: int = Field(0, ge=0, description="SIGKILL self after this many entries")
    PROBE_SETUP_S: float = Field(0.0, ge=0, description="seconds setup() takes (a slow start)")
    PROBE_SLOW_HEALTH_S: float = Field(
        0.0, ge=0, description="seconds health_problems() takes (a dependency answering slowly)"
    )


class Probe(Service):
    name = "probe"
    default_port = 8099
    settings_class = ProbeSettings
    streams = (MARKET_DATA, SIGNALS, CONTROL)

    def __init__(self, settings: ProbeSettings, bus: Bus) -> None:
        super().__init__(settings, bus)
        self.handled = 0
        self.worker_stop = threading.Event()
        self.worker = threading.Thread(target=self.worker_stop.wait, name="probe-worker")
        self.worker.daemon = True
        self.worker.start()

    def setup(self) -> None:
        time.sleep(self.settings.PROBE_SETUP_S)  # a risk manager rebuilding a large state

    def health_problems(self) -> list[str]:
        time.sleep(self.settings.PROBE_SLOW_HEALTH_S)
        return []

    def threads(self) -> list[threading.Thread]:
        return [self.worker]

    def handle(self, delivery: Delivery) -> None:
        event = delivery.event
        if getattr(event, "reason", None) == "freeze":
            while True:  # a wedged handler: only a restart gets this process going again
                time.sleep(1)
        if getattr(event, "reason", None) == "stop-worker":
            self.worker_stop.set()
        key = getattr(event, "signal_id", None) or f"{event.type}:{delivery.entry_id}"
        pipe = self.bus.client.pipeline()
        pipe.rpush("probe:deliveries", delivery.entry_id)
        pipe.sadd("probe:effects", key)
        pipe.execute()
        self.handled += 1
        if self.settings.PROBE_DIE_AFTER and self.handled >= self.settings.PROBE_DIE_AFTER:
            os.kill(os.getpid(), signal.SIGKILL)

    def status(self) -> dict:
        return {"handled": self.handled}


def main() -> int:
    try:
        settings = load_settings(ProbeSettings)
    except SettingsError as exc:
        exit_on_bad_settings(exc)
    secrets = secret_values(settings)
    configure_logging("probe", settings.LOG_LEVEL, secrets)
    bus = Bus(redis_client(settings), service="probe")
    if settings.REDIS_PASSWORD:  # a careless log line; the redaction filter must catch it
        logging.getLogger("probe").warning(
            "connecting with password %s", settings.REDIS_PASSWORD.get_secret_value()
        )
    return Runtime(Probe(settings, bus)).run()


if __name__ == "__main__":
    sys.exit(main())

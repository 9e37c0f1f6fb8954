"""A bus for a service that only watches: plain ``XREAD``, no consumer group, no writes.

The ML advisor (shadow mode) reads ``market_data`` and publishes ``ml_signals``, nothing
else. Through a consumer group it would need write rights on ``market_data`` (``XREADGROUP``
and ``XACK`` change a group's state, and Redis cannot restrict them to one group), and with
them a compromised advisor could acknowledge the risk manager's ticks away and blind its
stop losses. Read with ``XREAD``, it needs read rights only (:mod:`cdb.redis_acl`).

What changes against :class:`cdb.bus.Bus`, for such a service:

- Its read position lives in the process. ``ack_later`` moves it to the handled entries,
  ``replay_pending`` (after a transient failure) moves the next read back there, so within
  a process an entry is handled at least once, as with a group. A new process starts
  ``warmup_s`` seconds back in the stream (Redis entry ids are arrival times in ms): what
  came while it was down and older is not read — shadow statistics, not trades.
- An entry it cannot use is logged and counted (``cdb_events_dead_lettered_total``) but not
  copied to ``dead_letter``: every other reader of the stream dead-letters it already.
- It publishes only what its service publishes (``publish``/``publish_many``); the runtime
  sends no heartbeats, readiness reports or outage alerts for it (``observer``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Sequence

from cdb.bus import Bus, Delivery

log = logging.getLogger(__name__)

#: The largest sequence number of a stream entry id within one millisecond (2^64 - 1).
LAST_SEQ = 2**64 - 1


def _id_key(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


class ObserverBus(Bus):
    """:class:`Bus` reading with ``XREAD`` from an in-process position (see the module).

    ``warmup_s``: how far back (seconds of Redis arrival time) a new process starts reading.
    """

    def __init__(self, *args, warmup_s: float = 0.0, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if warmup_s < 0:
            raise ValueError(f"warmup_s must be >= 0, got {warmup_s}")
        self.warmup_s = warmup_s
        #: next read after these ids; the handled ones (where a replay resumes)
        self._next: dict[str, str] = {}
        self._handled: dict[str, str] = {}

    def subscribe(self, streams: Sequence[str], start_id: str | None = None) -> None:
        """Start reading ``streams`` ``warmup_s`` back from now (``start_id`` overrides)."""
        self._streams = list(streams)
        # XREAD returns ids after the one given: the last possible id of the millisecond
        # before, so an entry made in the very millisecond of the start is read too
        since_ms = int((time.time() - self.warmup_s) * 1000)
        start = start_id or (f"{since_ms - 1}-{LAST_SEQ}" if since_ms > 0 else "0-0")
        self._next = dict.fromkeys(self._streams, start)
        self._handled = dict(self._next)

    def replay_pending(self) -> None:
        """Read again from the last handled entry of each stream (after a failure)."""
        self._next = dict(self._handled)

    def read(self, count: int = 500, block_ms: int = 1000) -> list[Delivery]:
        """Up to ``count`` new entries after the read position, waiting up to ``block_ms``."""
        if not self._streams:
            raise RuntimeError("subscribe() before read()")
        raw = self.client.xread(self._next, count=count, block=block_ms or None)
        for stream_name, entries in raw or []:
            if entries:
                stream = stream_name.decode() if isinstance(stream_name, bytes) else stream_name
                last = entries[-1][0]
                self._next[stream] = last.decode() if isinstance(last, bytes) else last
        return self._decode(raw)

    def _dead_letter(self, bad: list[tuple[str, str, bytes | None, str]]) -> None:
        for stream, eid, _data, reason in bad:
            log.warning("skipped %s %s (its other readers dead-letter it): %s", stream, eid, reason)
            self.stats.add(self.stats.dead_lettered, stream)

    def ack_later(self, deliveries: Iterable[Delivery]) -> None:
        """Move the position a replay resumes from past these handled entries."""
        for d in deliveries:
            if _id_key(d.entry_id) > _id_key(self._handled.get(d.stream, "0-0")):
                self._handled[d.stream] = d.entry_id

    def flush_acks(self) -> None:
        """Nothing to send: the position is in this process."""

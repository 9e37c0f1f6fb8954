"""The single-writer lock: at most one execution process sends orders at any time.

A Redis key set with ``SET NX PX`` holds a token unique to this process; the
holder refreshes its lifetime every loop and before every exchange call, and only
while the key still holds its own token (a Lua compare-and-set). A second copy
cannot take the key until the holder stops refreshing it: it waits in standby and
says so in ``/health``. A holder that loses the key (it stalled past the TTL)
stops sending at once.
"""

from __future__ import annotations

import os
import socket
import uuid

import redis

LOCK_KEY = "cdb:execution:lock"

_REFRESH = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
    return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
    return redis.call('DEL', KEYS[1])
end
return 0
"""


class SingleWriterLock:
    """A Redis lease with a per-process token (``host/pid/random``)."""

    def __init__(self, client: redis.Redis, ttl_s: float, key: str = LOCK_KEY) -> None:
        self.client = client
        self.key = key
        self.ttl_ms = int(ttl_s * 1000)
        self.token = f"{socket.gethostname()}/{os.getpid()}/{uuid.uuid4().hex[:8]}"
        self.held = False

    def acquire(self) -> bool:
        """Take the lock if free (or already ours); True while this process holds it."""
        if self.held:
            return self.refresh()
        self.held = bool(self.client.set(self.key, self.token, nx=True, px=self.ttl_ms))
        return self.held

    def refresh(self) -> bool:
        """Extend the lease if it is still ours; False (and not held) if it was lost."""
        self.held = bool(self.client.eval(_REFRESH, 1, self.key, self.token, self.ttl_ms))
        return self.held

    def release(self) -> None:
        """Give the lock up at a graceful stop, so a standby copy takes over at once."""
        if self.held:
            self.client.eval(_RELEASE, 1, self.key, self.token)
        self.held = False

    def holder(self) -> str | None:
        value = self.client.get(self.key)
        return value.decode() if isinstance(value, bytes) else value

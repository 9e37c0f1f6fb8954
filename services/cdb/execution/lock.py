"""The single-writer lock: at most one execution process sends orders at any time.

A Redis key set with ``SET NX PX`` holds a token unique to this process; the
holder refreshes its lifetime every loop and before every exchange call, and only
while the key still holds its own token (a Lua compare-and-set). A second copy
cannot take the key until the holder stops refreshing it: it waits in standby and
says so in ``/health``. A holder that loses the key (it stalled past the TTL)
stops sending at once.

One shortcut, for the common crash-and-restart on one machine: a token names its
host and process id, and a copy on the *same host* may take the key from a holder
whose process no longer exists (a dead process cannot be executing). Anywhere
else (another pod, a live or unknown process) only the TTL frees the key.
"""

from __future__ import annotations

import os
import socket
import time
import uuid
from collections.abc import Sequence
from typing import Any, NamedTuple

import redis

LOCK_KEY = "cdb:execution:lock"

_REFRESH = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
    return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""
_REPLACE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
    return redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
end
return false
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
    return redis.call('DEL', KEYS[1])
end
return 0
"""


class SentRefresh(NamedTuple):
    """A lease refresh on its way: the connection to read its answers from."""

    conn: Any
    sent_at: float  # monotonic seconds, just before sending
    commands: int


class SingleWriterLock:
    """A Redis lease with a per-process token (``host/pid/random``)."""

    def __init__(self, client: redis.Redis, ttl_s: float, key: str = LOCK_KEY) -> None:
        self.client = client
        self.key = key
        self.ttl_ms = int(ttl_s * 1000)
        self.token = f"{socket.gethostname()}/{os.getpid()}/{uuid.uuid4().hex[:8]}"
        self.held = False
        self.also_replies: list[Any] = []

    def acquire(self) -> bool:
        """Take the lock if free (or already ours); True while this process holds it."""
        if self.held:
            return self.refresh()
        self.held = bool(self.client.set(self.key, self.token, nx=True, px=self.ttl_ms))
        if not self.held:
            holder = self.holder()
            if holder is not None and holder_is_dead(holder):
                replaced = self.client.eval(_REPLACE, 1, self.key, holder, self.token, self.ttl_ms)
                self.held = bool(replaced)
        return self.held

    def refresh(self, also: Sequence[tuple[Any, ...]] = ()) -> bool:
        """Extend the lease if it is still ours; False (and not held) if it was lost.

        ``also``: more commands (e.g. ``("HGETALL", key)``) sent in the same round trip (a
        pipeline, not a transaction); their raw replies go to ``also_replies``.
        """
        pipe = self.client.pipeline(transaction=False)  # the client's retry policy applies
        pipe.eval(_REFRESH, 1, self.key, self.token, self.ttl_ms)
        for command in also:
            pipe.execute_command(*command)
        first, *self.also_replies = pipe.execute()
        self.held = bool(first)
        return self.held

    def refresh_send(self, also: Sequence[tuple[Any, ...]] = ()) -> SentRefresh:
        """Send a refresh (and ``also``) without waiting for the answer: the caller does
        other work meanwhile (execution: its ``SENT`` commit), then ``refresh_read``.
        A raw connection of the client's pool, without the client's retries: a caller that
        gets a connection error falls back to ``refresh``.

        The lease is extended when Redis runs the command, which is after ``sent_at``: a
        caller that reads the answer "held" may count on the lease until ``sent_at`` +
        TTL (monotonic clock).
        """
        pool = self.client.connection_pool
        conn = pool.get_connection()
        commands = [("EVAL", _REFRESH, 1, self.key, self.token, self.ttl_ms), *also]
        sent_at = time.monotonic()
        try:
            conn.send_packed_command(conn.pack_commands(commands))
        except BaseException:
            conn.disconnect()
            pool.release(conn)
            raise
        return SentRefresh(conn, sent_at, len(commands))

    def refresh_read(self, sent: SentRefresh) -> bool:
        """The answer to ``refresh_send``: True while the lease is ours (and not held if not)."""
        try:
            replies = [sent.conn.read_response() for _ in range(sent.commands)]
        except BaseException:
            sent.conn.disconnect()
            raise
        finally:
            self.client.connection_pool.release(sent.conn)
        first, *self.also_replies = replies  # an error reply raised in read_response
        self.held = bool(first)
        return self.held

    def release(self) -> None:
        """Give the lock up at a graceful stop, so a standby copy takes over at once."""
        if self.held:
            self.client.eval(_RELEASE, 1, self.key, self.token)
        self.held = False

    def holder(self) -> str | None:
        value = self.client.get(self.key)
        return value.decode() if isinstance(value, bytes) else value


def holder_is_dead(token: str) -> bool:
    """True only for a token of a process on this host that no longer exists."""
    parts = token.split("/")
    if len(parts) != 3 or parts[0] != socket.gethostname() or not parts[1].isdigit():
        return False
    pid = int(parts[1])
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # exists, owned by someone else
        return False
    return False
